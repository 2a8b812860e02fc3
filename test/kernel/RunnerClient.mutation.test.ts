/**
 * The run queue of a runner connection against a scripted runner (two real ZeroMQ sockets,
 * test/kernel/RunnerSupport.ts `fakeRunner`): the records are the 19.06 runner's wire format
 * (`[type, payload]` on REPL-out; spec §3), the expectations are that protocol's meaning. Waits are
 * on the poll's end record or on a condition with a bound, never on wall time.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Option, Schedule } from "effect"
import { encode, PyFloat } from "../../src/codec/Msgpack.ts"
import { makeConnection, type RunnerConnection } from "../../src/kernel/runner/RunnerConnection.ts"
import type { PollResult } from "../../src/kernel/runner/RunnerRecords.ts"
import { fakeRunner } from "./RunnerSupport.ts"

/** Retries `check` until it holds (at most ~10 s). */
const eventually = <A>(get: Effect.Effect<A>, check: (a: A) => boolean, what: string) =>
  get.pipe(
    Effect.flatMap((a) => (check(a) ? Effect.succeed(a) : Effect.fail(new Error(`not yet: ${what}`)))),
    Effect.retry({ schedule: Schedule.spaced("20 millis"), times: 500 }),
    Effect.orDie
  )

const texts = (p: PollResult) => p.items.map((it) => (it._tag === "Stream" ? `${it.stream}:${it.text}` : it._tag === "Media" ? `media:${it.mime}:${it.data}` : `other:${it.type}:${it.text}`))

const withRunner = <A, E>(f: (conn: RunnerConnection, runner: Effect.Success<typeof fakeRunner>) => Effect.Effect<A, E>) =>
  Effect.scoped(Effect.gen(function*() {
    const runner = yield* fakeRunner
    const conn = yield* makeConnection("k-mut", runner.endpoint)
    return yield* f(conn, runner)
  }))

describe("the run queue against a scripted runner", () => {
  it.live("runs are FIFO: the second run's frames go out only after the first finishes", () =>
    withRunner((conn, runner) =>
      Effect.gen(function*() {
        yield* conn.attachRun("r1", [["exec", "one"]], { create: true })
        assert.deepStrictEqual(yield* runner.receive.pipe(Effect.map(([t, p]) => [t, p.toString()])), ["exec", "one"])
        assert.deepStrictEqual(yield* conn.currentRun, Option.some("r1"))
        const second = yield* Effect.forkChild(conn.attachRun("r2", [["exec", "two"]], { create: true }))
        yield* eventually(conn.pendingRuns, (n) => n === 1, "r2 queued")
        // the current run takes more frames at once (input to a waiting run)
        yield* conn.attachRun("r1", [["input", "x"]], { create: false })
        assert.deepStrictEqual(yield* runner.receive.pipe(Effect.map(([t, p]) => [t, p.toString()])), ["input", "x"])

        yield* runner.emit("stdout", "a")
        yield* runner.emit("stdout", "b")
        yield* runner.emit("stderr", "e")
        yield* runner.emit("stdout", "c")
        yield* runner.emit("media", `{"type":"image/svg+xml","data":"<svg/>"}`)
        yield* runner.emit("html", "<i>x</i>")
        yield* runner.emit("finished", `{"exitCode": 7}`)
        const p1 = yield* conn.poll("r1", "20 seconds")
        assert.deepStrictEqual(texts(p1), ["stdout:ab", "stderr:e", "stdout:c", "media:image/svg+xml:<svg/>", "other:html:<i>x</i>"])
        assert.deepStrictEqual(p1.end, Option.some({ _tag: "End" as const, status: "finished" as const, exitCode: 7, options: null }))

        yield* Fiber.join(second)
        assert.deepStrictEqual(yield* runner.receive.pipe(Effect.map(([t, p]) => [t, p.toString()])), ["exec", "two"])
        assert.deepStrictEqual(yield* conn.currentRun, Option.some("r2"))
        assert.strictEqual(yield* conn.pendingRuns, 0)
        // a finished run that was collected is forgotten
        const gone = yield* Effect.flip(conn.poll("r1", "1 second"))
        assert.strictEqual(gone.reason, "UnknownRun")
        assert.strictEqual(yield* conn.bufferedBytes, 0)
      })), 60_000)

  it.live("waiting-input ends a poll but not the run; the run's output budget is returned on collection", () =>
    withRunner((conn, runner) =>
      Effect.gen(function*() {
        yield* conn.attachRun("r", [["exec", "x"]], { create: true })
        yield* runner.emit("stdout", "Password: ")
        yield* eventually(conn.bufferedBytes, (n) => n === 10, "10 bytes buffered")
        yield* runner.emit("waiting-input", `{"is_password": true}`)
        const p = yield* conn.poll("r", "20 seconds")
        assert.deepStrictEqual(texts(p), ["stdout:Password: "])
        assert.deepStrictEqual(Option.map(p.end, (e): ReadonlyArray<unknown> => [e.status, e.options?.is_password]), Option.some<ReadonlyArray<unknown>>(["waiting-input", true]))
        assert.deepStrictEqual(yield* conn.currentRun, Option.some("r"))
        assert.strictEqual(yield* conn.bufferedBytes, 0)
        yield* runner.emit("exec-timeout", "")
        const t = yield* conn.poll("r", "20 seconds")
        assert.deepStrictEqual(Option.map(t.end, (e) => e.status), Option.some("exec-timeout" as const))
        assert.deepStrictEqual(yield* conn.currentRun, Option.none())
      })), 60_000)

  it.live("unknown runs: attach without create and poll fail UnknownRun; records with no current run are dropped", () =>
    withRunner((conn, runner) =>
      Effect.gen(function*() {
        const e1 = yield* Effect.flip(conn.attachRun("nope", [], { create: false }))
        assert.strictEqual(e1.reason, "UnknownRun")
        const e2 = yield* Effect.flip(conn.poll("nope", "1 second"))
        assert.strictEqual(e2.reason, "UnknownRun")
        yield* runner.emit("stdout", "orphan")
        yield* runner.emit("finished", "")
        // a status round trip orders after both records on the same socket
        yield* Effect.forkChild(runner.receive.pipe(Effect.andThen(runner.emit("status", encode({ started_at: 5 })))))
        yield* conn.send("ping-me")
        assert.strictEqual(yield* conn.bufferedBytes, 0)
        assert.deepStrictEqual(yield* conn.currentRun, Option.none())
      })), 60_000)

  it.live("a poll with nothing to end returns what arrived when its flush window closes", () =>
    withRunner((conn, runner) =>
      Effect.gen(function*() {
        yield* conn.attachRun("r", [], { create: true })
        yield* runner.emit("stdout", "partial")
        yield* eventually(conn.bufferedBytes, (n) => n === 7, "7 bytes buffered")
        const p = yield* conn.poll("r", "50 millis")
        assert.deepStrictEqual(texts(p), ["stdout:partial"])
        assert.isTrue(Option.isNone(p.end))
        assert.deepStrictEqual(yield* conn.currentRun, Option.some("r"))
      })), 60_000)
})

describe("request/reply records", () => {
  it.live("status: started_at as int, float or PyFloat; anything else is a Protocol error", () =>
    withRunner((conn, runner) =>
      Effect.gen(function*() {
        // the request is registered before the reply is sent: fork it, let it reach its wait, answer
        const statusOnce = (payload: Uint8Array | string) =>
          Effect.gen(function*() {
            const asking = yield* Effect.forkChild(Effect.result(conn.status("10 seconds")))
            yield* Effect.yieldNow
            yield* runner.emit("status", payload)
            return yield* Fiber.join(asking)
          })
        const a = yield* statusOnce(encode({ started_at: 1700000000 }))
        assert.deepStrictEqual(a._tag === "Success" ? a.success : a.failure, { startedAt: 1700000000 })
        const b = yield* statusOnce(encode({ started_at: new PyFloat(12.5) }))
        assert.deepStrictEqual(b._tag === "Success" ? b.success : b.failure, { startedAt: 12.5 })
        const c = yield* statusOnce(encode({ started_at: 2n ** 60n }))
        assert.deepStrictEqual(c._tag === "Success" ? c.success : c.failure, { startedAt: 2 ** 60 })
        for (const bad of [encode({ started_at: "x" }), encode([1]), encode({}), "not msgpack"]) {
          const r = yield* statusOnce(bad)
          assert.strictEqual(r._tag === "Failure" ? r.failure.reason : "ok", "Protocol")
        }
      })), 60_000)

  it.live("completion and service-result replies are JSON; unanswered requests time out to None", () =>
    withRunner((conn, runner) =>
      Effect.gen(function*() {
        const ask = yield* Effect.forkChild(conn.complete(`{"code":"pri"}`, "20 seconds"))
        const [t, p] = yield* runner.receive
        assert.deepStrictEqual([t, p.toString()], ["complete", `{"code":"pri"}`])
        yield* runner.emit("completion", `["print"]`)
        assert.deepStrictEqual(yield* Fiber.join(ask), Option.some(["print"]))

        const svc = yield* Effect.forkChild(conn.startService(`{"name":"j"}`, "20 seconds"))
        const [t2] = yield* runner.receive
        assert.strictEqual(t2, "start-service")
        yield* runner.emit("service-result", "{not json")
        const err = yield* Effect.flip(Fiber.join(svc))
        assert.strictEqual(err.reason, "Protocol")

        const none = yield* conn.complete("{}", "50 millis")
        assert.isTrue(Option.isNone(none))
      })), 60_000)
})
