/**
 * The per-kernel registry of runner connections at scale: one connection is four ZeroMQ sockets
 * (PUSH, PULL and the PULL's event monitor pair), and libzmq's default context allows 1,023 sockets,
 * so on zeromq.js's global context an agent could reach about 255 kernels' runners — the 256th
 * `open` failed with "Too many open file descriptors". The connections have a context of their own
 * sized for thousands of kernels.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as v8 from "node:v8"
import * as vm from "node:vm"
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

  // A forked fiber starts with its parent's context, and `Effect.addFinalizer` keeps the context it was
  // added in: a caller's span (`Effect.withSpan` captures an `Error` at its call site) and its stack
  // frame were inherited the same way — CreateFlow opens the connection inside its `runnerOpen` span.
  it.live("keeps nothing of the caller's closure alive when `open` runs inside the caller's span (as CreateFlow's runnerOpen)", () =>
    Effect.gen(function*() {
      const runner = yield* fakeRunner
      const conns = yield* RunnerConnections
      let weak: WeakRef<object> | undefined
      // as CreateFlow's status ping: a generator closing over the kernel's pod calls `open` in a span
      const statusPing = (kernelId: string, pod: { readonly fields: ReadonlyArray<string> }) =>
        Effect.gen(function*() {
          if (pod.fields.length === 0) return yield* Effect.die("empty")
          return yield* conns.open(kernelId, runner.endpoint).pipe(Effect.withSpan("test.runnerOpen", { attributes: { kernelId } }))
        }).pipe(Effect.withSpan("test.create"))
      const conn = yield* Effect.suspend(() => {
        const pod = { fields: new Array(100_000).fill("pod field") as Array<string> }
        weak = new WeakRef(pod)
        return statusPing("k-span", pod)
      })
      yield* conn.send("interrupt", "")
      const [type] = yield* runner.receive
      assert.strictEqual(type, "interrupt")
      yield* Effect.sleep("50 millis")
      collectGarbage()
      assert.isUndefined(weak!.deref(), "the caller's closure is still reachable from the connection")
    }).pipe(Effect.provide(RunnerConnections.layer), Effect.scoped), { timeout: 60_000 })
})
