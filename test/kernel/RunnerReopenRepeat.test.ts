/**
 * Runner sockets closed by the idle watcher and reopened at once by the next run, many times over,
 * against the runner simulator: every run's output arrives complete (the close/reopen race,
 * src/kernel/runner/RunnerConnection.ts header; RunnerReopen.test.ts forces a stale pipe instead).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { RunnerConnections } from "../../src/kernel/runner/RunnerConnections.ts"
import { pollUntilFinished, spawnRunner, stdoutOf, waitFor } from "./RunnerSupport.ts"

const LINES = 100
const code = `for i in range(${LINES}):\n    print('line', i, flush=True)`
const expected = Array.from({ length: LINES }, (_, i) => `line ${i}\n`).join("")

describe("runner sockets closed and reopened at once, repeatedly", () => {
  it.live("30 times closed by the idle watcher and reopened at once by a run: every run's output complete", () =>
    Effect.gen(function*() {
      const runner = yield* spawnRunner
      const conn = yield* (yield* RunnerConnections).open("s2", runner.endpoint)
      yield* conn.status("10 seconds")
      for (let round = 0; round < 30; round++) {
        yield* waitFor("idle close", conn.socketsOpen, (open) => !open)
        yield* conn.attachRun(`r${round}`, [["code", code]], { create: true })
        assert.strictEqual(stdoutOf(yield* pollUntilFinished(conn, `r${round}`)), expected, `round ${round}`)
      }
    }).pipe(Effect.provide(RunnerConnections.layerWith({ socketIdle: "1 millis" })), Effect.scoped), 240_000)
})
