/**
 * The per-kernel registry of runner connections at scale: one connection is four ZeroMQ sockets while
 * open (PUSH, PULL and the PULL's event monitor pair), and libzmq's default context allows 1,023
 * sockets, so on zeromq.js's global context an agent could reach about 255 kernels' runners — the
 * 256th connection failed with "Too many open file descriptors". The connections have a context of
 * their own sized for thousands of kernels. Sockets open on a connection's first use, so every
 * connection here is used, and all of them at once.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { RUNNER_MAX_SOCKETS, RunnerConnections } from "../../src/kernel/runner/RunnerConnections.ts"
import { fakeRunner } from "./RunnerSupport.ts"

const KERNELS = 400

describe("RunnerConnections", () => {
  it.live(`holds ${KERNELS} kernels' open connections (more than libzmq's default 1,023 sockets allow) and each one sends`, () =>
    Effect.gen(function*() {
      const runner = yield* fakeRunner
      const conns = yield* RunnerConnections
      for (let i = 0; i < KERNELS; i++) yield* conns.open(`k-${i}`, runner.endpoint)
      assert.strictEqual((yield* conns.list).length, KERNELS)
      // every connection opens its sockets (the idle period is the default minute: they all stay open)
      for (let i = 0; i < KERNELS; i++) yield* (yield* conns.get(`k-${i}`)).send("interrupt", `${i}`)
      const received = new Set<string>()
      for (let i = 0; i < KERNELS; i++) {
        const [type, payload] = yield* runner.receive
        assert.strictEqual(type, "interrupt")
        received.add(payload.toString())
      }
      assert.strictEqual(received.size, KERNELS)
      for (let i = 0; i < KERNELS; i++) assert.isTrue(yield* (yield* conns.get(`k-${i}`)).socketsOpen, `k-${i}`)
      assert.isAtLeast(RUNNER_MAX_SOCKETS, 4 * 4096)
    }).pipe(Effect.provide(RunnerConnections.layer), Effect.scoped), { timeout: 60_000 })
})
