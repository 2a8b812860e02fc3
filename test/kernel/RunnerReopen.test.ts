/**
 * The close/reopen race of idle runner sockets (src/kernel/runner/RunnerConnection.ts, header): when
 * the agent closes a kernel's idle sockets and reopens them at once, the runner's PUSH may still hold
 * the old connection's pipe (until its own thread has processed that pipe's termination) and
 * round-robins its sends over both: a record sent to the old pipe is lost. Reopened sockets send
 * nothing queued until a settling probe has shown that pipe gone. Real ZeroMQ, the runner simulator
 * (a separate process with libzmq's PUSH); every wait is on a condition, with a bound.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Option, Schedule, Scope } from "effect"
import * as Zmq from "zeromq"
import type { RunnerConnection } from "../../src/kernel/runner/RunnerConnection.ts"
import { RunnerConnections } from "../../src/kernel/runner/RunnerConnections.ts"
import type { PollResult } from "../../src/kernel/runner/RunnerRecords.ts"
import { spawnRunner } from "./RunnerSupport.ts"

const withConnections = <A, E>(self: Effect.Effect<A, E, RunnerConnections | Scope.Scope>, socketIdle: Duration.Input) =>
  self.pipe(Effect.provide(RunnerConnections.layerWith({ socketIdle })), Effect.scoped)

/** `check` re-read until `done` holds, bounded: a condition to wait on instead of a sleep. */
const waitFor = <A, E, R>(what: string, check: Effect.Effect<A, E, R>, done: (a: A) => boolean) =>
  check.pipe(
    Effect.repeat({ until: done, schedule: Schedule.spaced("5 millis") }),
    Effect.timeoutOrElse({ duration: "20 seconds", orElse: () => Effect.die(new Error(`${what}: not reached within 20 s`)) })
  )

const textOf = (polls: ReadonlyArray<PollResult>): string =>
  polls.flatMap((p) => p.items).map((it) => (it._tag === "Stream" && it.stream === "stdout" ? it.text : "")).join("")

/** Polls until `finished` (bounded by the number of polls and each poll's wait). */
const pollToEnd = (conn: RunnerConnection, runId: string) =>
  Effect.gen(function*() {
    const polls: Array<PollResult> = []
    for (let i = 0; i < 400; i++) {
      const p = yield* conn.poll(runId, "10 seconds")
      polls.push(p)
      if (Option.isSome(p.end) && p.end.value.status === "finished") return polls
    }
    return polls
  })

const LINES = 100
const code = `for i in range(${LINES}):\n    print('line', i, flush=True)`
const expected = Array.from({ length: LINES }, (_, i) => `line ${i}\n`).join("")

describe("runner sockets closed and reopened at once", () => {
  it.live("a stale pipe at the runner's PUSH gets no record of a run sent after the reopen", () =>
    withConnections(Effect.gen(function*() {
      const runner = yield* spawnRunner
      const conn = yield* (yield* RunnerConnections).open("s1", runner.endpoint)
      yield* conn.status("10 seconds")
      yield* waitFor("idle close", conn.socketsOpen, (open) => !open)

      // the ghost: a peer of the runner's REPL-out that is not the agent's live socket, as the old
      // connection is to the runner until its PUSH has processed that pipe's termination
      const ghost = yield* Effect.acquireRelease(
        Effect.sync(() => {
          const s = new Zmq.Pull({ linger: 0 })
          s.connect(`tcp://127.0.0.1:${runner.endpoint.replOutPort}`)
          return s
        }),
        (s) => Effect.sync(() => s.closed || s.close())
      )
      const asker = yield* Effect.acquireRelease(
        Effect.sync(() => {
          const s = new Zmq.Push({ linger: 0 })
          s.connect(`tcp://127.0.0.1:${runner.endpoint.replInPort}`)
          return s
        }),
        (s) => Effect.sync(() => s.close())
      )
      const swallowed: Array<string> = []
      yield* Effect.tryPromise(() => ghost.receive()).pipe(
        Effect.tap((frames) => Effect.sync(() => swallowed.push(frames[0]!.toString("latin1")))),
        Effect.forever,
        Effect.ignore, // closed
        Effect.forkScoped
      )
      // attached at the runner: the reply to a status of our own reaches the ghost (its only peer now)
      yield* Effect.tryPromise(() => asker.send(["status", ""]))
      yield* waitFor("the ghost attached", Effect.sync(() => swallowed.length), (n) => n === 1)

      // the reopen: the ghost swallows what the runner sends it until it goes (the old pipe's end)
      yield* waitFor("the ghost swallowed a message of the reopen", Effect.sync(() => swallowed.length), (n) => n >= 2).pipe(
        Effect.andThen(Effect.sync(() => ghost.close())),
        Effect.forkScoped
      )
      yield* conn.attachRun("r", [["code", code]], { create: true })
      assert.strictEqual(textOf(yield* pollToEnd(conn, "r")), expected)
      // the ghost got the probe's status replies, nothing of the run
      assert.isAtLeast(swallowed.length, 2)
      assert.deepStrictEqual([...new Set(swallowed)], ["status"])
    }), "50 millis"), 60_000)

  it.live("30 times closed by the idle watcher and reopened at once by a run: every run's output complete", () =>
    withConnections(Effect.gen(function*() {
      const runner = yield* spawnRunner
      const conn = yield* (yield* RunnerConnections).open("s2", runner.endpoint)
      yield* conn.status("10 seconds")
      for (let round = 0; round < 30; round++) {
        yield* waitFor("idle close", conn.socketsOpen, (open) => !open)
        yield* conn.attachRun(`r${round}`, [["code", code]], { create: true })
        assert.strictEqual(textOf(yield* pollToEnd(conn, `r${round}`)), expected, `round ${round}`)
      }
    }), "1 millis"), 240_000)
})
