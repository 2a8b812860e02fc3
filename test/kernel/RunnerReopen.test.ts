/**
 * The close/reopen race of idle runner sockets (src/kernel/runner/RunnerConnection.ts, header): when
 * the agent closes a kernel's idle sockets and reopens them at once, the runner's PUSH may still hold
 * the old connection's pipe (until its own thread has processed that pipe's termination) and
 * round-robins its sends over both: a record sent to the old pipe is lost. Reopened sockets send
 * nothing queued until a settling probe has shown that pipe gone. Real ZeroMQ, the runner simulator
 * (a separate process with libzmq's PUSH); every wait is on a condition, with a bound.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Scope } from "effect"
import { RunnerConnections } from "../../src/kernel/runner/RunnerConnections.ts"
import { ghostAt, pollUntilFinished, spawnRunner, stdoutOf, waitFor } from "./RunnerSupport.ts"

const withConnections = <A, E>(self: Effect.Effect<A, E, RunnerConnections | Scope.Scope>, socketIdle: Duration.Input) =>
  self.pipe(Effect.provide(RunnerConnections.layerWith({ socketIdle })), Effect.scoped)

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
      const ghost = yield* ghostAt(runner.endpoint)
      // the reopen: the ghost swallows what the runner sends it until it goes (the old pipe's end)
      yield* ghost.closeAfter(2)
      yield* conn.attachRun("r", [["code", code]], { create: true })
      assert.strictEqual(stdoutOf(yield* pollUntilFinished(conn, "r")), expected)
      // the ghost got the probe's status replies, nothing of the run
      const swallowed = yield* ghost.swallowed
      assert.isAtLeast(swallowed.length, 2)
      assert.deepStrictEqual([...new Set(swallowed)], ["status"])
    }), "50 millis"), 60_000)
})
