/**
 * What an adopted kernel's runner connection costs before anything calls it (issue 17 goal 2: 1,000
 * adopted kernels, none called, at ≤ 150 MiB). Until its first operation a connection is its kernel id,
 * its endpoint and the scope it will live in: no run queue, no waiters, no semaphores, no record
 * decoder, no closures of its own (7.1 KiB per connection before, 7 MiB at 1,000 kernels: bench/README.md,
 * "Goal 2 at 1,000 kernels, V8's side"). Its queries answer as an empty connection's do.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import * as v8 from "node:v8"
import * as vm from "node:vm"
import { RunnerConnections } from "../../src/kernel/runner/RunnerConnections.ts"
import { fakeRunner } from "./RunnerSupport.ts"

/** Full garbage collections (vitest's workers run without --expose-gc), then the V8 heap in use. */
const heapUsedAfterGc = (): number => {
  v8.setFlagsFromString("--expose-gc")
  const gc = vm.runInNewContext("gc") as () => void
  for (let i = 0; i < 4; i++) gc()
  return process.memoryUsage().heapUsed
}

const CONNECTIONS = 2_000
/** bytes of V8 heap an unused connection may hold, the registry's entry and its scope included */
const UNUSED_MAX_BYTES = 2_048

describe("an unused runner connection", () => {
  it.live(`holds at most ${UNUSED_MAX_BYTES} bytes of heap (${CONNECTIONS} connections, after a full GC)`, () =>
    Effect.gen(function*() {
      const conns = yield* RunnerConnections
      const endpoint = { host: "127.0.0.1", replInPort: 2000, replOutPort: 2001 }
      // the code paths run once before the baseline: compiled code and feedback are not per connection
      for (let i = 0; i < 10; i++) yield* conns.open(`warm-${i}`, endpoint)
      const ids = Array.from({ length: CONNECTIONS }, (_, i) => `k-${i}`)
      const before = heapUsedAfterGc()
      for (const id of ids) yield* conns.open(id, endpoint)
      const perConnection = (heapUsedAfterGc() - before) / CONNECTIONS
      assert.strictEqual((yield* conns.list).length, CONNECTIONS + 10)
      assert.isAtMost(perConnection, UNUSED_MAX_BYTES, `${perConnection.toFixed(0)} bytes per unused connection`)
    }).pipe(Effect.provide(RunnerConnections.layer), Effect.scoped), 60_000)

  it.live("answers its queries as an empty connection: no run, nothing pending or buffered, no sockets, a poll knows no run", () =>
    Effect.gen(function*() {
      const fake = yield* fakeRunner
      const conns = yield* RunnerConnections
      const conn = yield* conns.open("idle", fake.endpoint)
      assert.deepStrictEqual(yield* conn.currentRun, Option.none())
      assert.strictEqual(yield* conn.pendingRuns, 0)
      assert.strictEqual(yield* conn.bufferedBytes, 0)
      assert.isFalse(yield* conn.socketsOpen)
      const error = yield* Effect.flip(conn.poll("r-1", "1 second"))
      assert.strictEqual(error.reason, "UnknownRun")
      assert.strictEqual(error.message, "no run r-1 on this kernel")
      assert.strictEqual(error.kernelId, "idle")
      assert.isFalse(yield* conn.socketsOpen)
      assert.deepStrictEqual(yield* fake.peers, { replIn: 0, replOut: 0, disconnects: 0 })
      // closed without ever being used: the same answers, and every operation refuses
      yield* conns.close("idle")
      assert.strictEqual((yield* Effect.flip(conn.poll("r-1", "1 second"))).reason, "UnknownRun")
      assert.strictEqual((yield* Effect.flip(conn.interrupt)).reason, "Closed")
      assert.strictEqual((yield* Effect.flip(conn.status("1 second"))).reason, "Closed")
      assert.strictEqual((yield* Effect.flip(conn.attachRun("r-2", [], { create: true }))).reason, "Closed")
      assert.isFalse(yield* conn.socketsOpen)
      assert.deepStrictEqual(yield* fake.peers, { replIn: 0, replOut: 0, disconnects: 0 })
    }).pipe(Effect.provide(RunnerConnections.layer), Effect.scoped), 60_000)
})
