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
import type { RunnerConnection, RunnerEndpoint } from "../../src/kernel/runner/RunnerConnection.ts"
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
      // every connection opens its sockets on first use, and keeps them
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

/** A kernel's data as a caller holds it (an adoption's V1Pod and V1Service, an execute's request). */
const bigObject = () => ({ fields: new Array(100_000).fill("pod field") as Array<string> })

describe("RunnerConnections: a connection outlives the call that opened it", () => {
  // A connection's sockets' reader, writer, monitor and keep-alive fibers live as long as the kernel,
  // forked by their first use, i.e. inside a caller's span. A forked fiber starts with its parent's context: the caller's span (with the `Error` whose
  // structured stack `Effect.withSpan` captured) and its stack frame (an `Effect.fn`'s call-site
  // `Error`). Those stacks hold the caller's closures — at 1,000 adopted kernels 14 KiB of heap per
  // kernel with `open` as `Effect.fn` (bench/README.md, "1,000 kernels, all runner connections": an
  // adoption's V1Pod and V1Service). The connection forks its fibers without them.
  const openedBy = (name: string, call: (conns: RunnerConnections["Service"], endpoint: RunnerEndpoint, weak: (o: object) => void) => Effect.Effect<RunnerConnection, unknown>) =>
    it.live(`keeps nothing of the caller's closure alive once the call returned: ${name}`, () =>
      Effect.gen(function*() {
        const runner = yield* fakeRunner
        const conns = yield* RunnerConnections
        let ref: WeakRef<object> | undefined
        const conn = yield* call(conns, runner.endpoint, (o) => void (ref = new WeakRef(o)))
        assert.isDefined(ref)
        yield* conn.send("interrupt", "")
        const [type] = yield* runner.receive
        assert.strictEqual(type, "interrupt") // the connection is open and working
        assert.isTrue(yield* conn.socketsOpen)
        yield* Effect.sleep("50 millis") // let the fibers park on their sockets
        collectGarbage()
        assert.isUndefined(ref!.deref(), "the caller's closure is still reachable from the connection")
      }).pipe(Effect.provide(RunnerConnections.layer), Effect.scoped), { timeout: 60_000 })

  openedBy("`open` called from a traced Effect.fn", (conns, endpoint, weak) => {
    const caller = Effect.fn("test.caller")(function*(kernelId: string) {
      const context = bigObject()
      weak(context)
      // as Adoption's `adopt(pod, service)`: the function that calls `open` closes over the caller's data
      const conn = yield* Effect.suspend(() => context.fields.length > 0 ? conns.open(kernelId, endpoint) : Effect.die("empty"))
      return conn.kernelId
    })
    return caller("k-fn").pipe(Effect.andThen((kid) => conns.get(kid)))
  })

  openedBy("`open` wrapped in Effect.withSpan (as CreateFlow's runnerOpen)", (conns, endpoint, weak) => {
    // as CreateFlow's statusPing: a generator closing over the kernel's data calls `open` in a span
    const statusPing = (kernelId: string, pod: { readonly fields: ReadonlyArray<string> }) =>
      Effect.gen(function*() {
        if (pod.fields.length === 0) return yield* Effect.die("empty")
        return yield* conns.open(kernelId, endpoint).pipe(Effect.withSpan("test.runnerOpen", { attributes: { kernelId } }))
      })
    const pod = bigObject()
    weak(pod)
    return statusPing("k-span", pod)
  })

  openedBy("the first use (the sockets' fibers forked) inside a span and a traced Effect.fn", (conns, endpoint, weak) =>
    Effect.gen(function*() {
      const conn = yield* conns.open("k-use", endpoint)
      // as an execute RPC: its handler's span, a traced helper, a request the helper's caller holds
      const execute = Effect.fn("test.execute")(function*(request: { readonly fields: ReadonlyArray<string> }) {
        yield* conn.send("interrupt", request.fields[0]!)
      })
      const request = bigObject()
      weak(request)
      const handler = () => execute(request).pipe(Effect.withSpan("test.rpc"))
      yield* handler()
      return conn
    }))
})
