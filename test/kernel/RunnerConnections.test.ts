/**
 * The per-kernel registry of runner connections at scale: one connection is four ZeroMQ sockets
 * (PUSH, PULL and the PULL's event monitor pair), and libzmq's default context allows 1,023 sockets,
 * so on zeromq.js's global context an agent could reach about 255 kernels' runners — the 256th
 * `open` failed with "Too many open file descriptors". The connections have a context of their own
 * sized for thousands of kernels.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { RUNNER_MAX_SOCKETS, RunnerConnections } from "../../src/kernel/runner/RunnerConnections.ts"
import { fakeRunner } from "./RunnerSupport.ts"

const KERNELS = 400

describe("RunnerConnections", () => {
  it.live(`holds ${KERNELS} kernels' connections (more than libzmq's default 1,023 sockets allow) and the last one sends`, () =>
    Effect.gen(function*() {
      const runner = yield* fakeRunner
      const conns = yield* RunnerConnections
      for (let i = 0; i < KERNELS; i++) yield* conns.open(`k-${i}`, runner.endpoint)
      assert.strictEqual((yield* conns.list).length, KERNELS)
      const last = yield* conns.get(`k-${KERNELS - 1}`)
      yield* last.send("interrupt", "")
      const [type] = yield* runner.receive
      assert.strictEqual(type, "interrupt")
      assert.isAtLeast(RUNNER_MAX_SOCKETS, 4 * 4096)
    }).pipe(Effect.provide(RunnerConnections.layer), Effect.scoped), { timeout: 60_000 })
})
