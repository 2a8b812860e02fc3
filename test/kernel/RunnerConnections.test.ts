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
import * as v8 from "node:v8"
import * as vm from "node:vm"
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

/** Full garbage collections (vitest's workers run without --expose-gc). */
const collectGarbage = (): void => {
  v8.setFlagsFromString("--expose-gc")
  const gc = vm.runInNewContext("gc") as () => void
  for (let i = 0; i < 4; i++) gc()
}

describe("RunnerConnections: a connection outlives the call that opened it", () => {
  // A connection's reader, writer, monitor and keep-alive fibers live as long as the kernel. With
  // `open` as `Effect.fn("RunnerConnections.open")` they kept its call-site `Error`, whose structured
  // stack holds the caller's closure — at 1,000 adopted kernels 14 KiB of heap per kernel
  // (bench/README.md, "1,000 kernels, all runner connections": an adoption's V1Pod and V1Service).
  it.live("keeps nothing of the opening call's closure alive once the call returned", () =>
    Effect.gen(function*() {
      const runner = yield* fakeRunner
      const conns = yield* RunnerConnections
      let weak: WeakRef<object> | undefined
      const caller = Effect.fn("test.caller")(function*(kernelId: string) {
        const context = { pod: new Array(100_000).fill("pod field") }
        weak = new WeakRef(context)
        // as Adoption's `adopt(pod, service)`: the function that calls `open` closes over the caller's data
        const conn = yield* Effect.suspend(() => context.pod.length > 0 ? conns.open(kernelId, runner.endpoint) : Effect.die("empty"))
        return conn.kernelId
      })
      assert.strictEqual(yield* caller("k-retain"), "k-retain")
      const conn = yield* conns.get("k-retain")
      yield* conn.send("interrupt", "")
      const [type] = yield* runner.receive
      assert.strictEqual(type, "interrupt") // the connection is open and working
      yield* Effect.sleep("50 millis") // let the fibers park on their sockets
      collectGarbage()
      assert.isUndefined(weak!.deref(), "the opening call's closure is still reachable from the connection")
    }).pipe(Effect.provide(RunnerConnections.layer), Effect.scoped), { timeout: 60_000 })
})
