// The runner sockets of a kernel close when it is idle and open again on its next call (issue 17 goal
// 2), against the REAL 19.06 runner: the interpreter state survives (the same runner process), and the
// next run's output arrives complete, as does a run that outlasts the idle period many times over.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schedule } from "effect"
import { inject } from "vitest"
import { KernelLifecycle } from "../../src/kernel/KernelLifecycle.ts"
import { RunnerConnections } from "../../src/kernel/runner/RunnerConnections.ts"
import { consoleText, executeToEnd, executionLayer } from "../rpc/RealRunnerSupport.ts"
import type { TestbedEnv } from "../testbed/env.ts"
import { makeSite, pythonConfig } from "./KernelLifecycleSupport.ts"
import { ghostAt } from "./RunnerSupport.ts"

const env: TestbedEnv = inject("testbed")

/** Until the kernel's runner sockets are closed (bounded: a condition, not a sleep). */
const socketsClosed = (kid: string) =>
  Effect.gen(function*() {
    const conn = yield* (yield* RunnerConnections).get(kid)
    yield* conn.socketsOpen.pipe(
      Effect.repeat({ until: (open) => !open, schedule: Schedule.spaced("20 millis") }),
      Effect.timeoutOrElse({ duration: "30 seconds", orElse: () => Effect.die(new Error("the runner sockets did not close within 30 s")) })
    )
  })

describe("idle runner sockets with the real runner", () => {
  it.live("closed when idle, reopened by the next run: same interpreter, complete output, long runs keep them", () =>
    Effect.gen(function*() {
      const site = yield* makeSite(env, { runnerSocketIdle: "500ms" })
      const kid = crypto.randomUUID()
      yield* Effect.gen(function*() {
        yield* (yield* KernelLifecycle).create(kid, pythonConfig(env))
        const first = yield* executeToEnd(kid, "import os\nmarker = 'kept'\npid = os.getpid()")
        assert.strictEqual(first[first.length - 1]!.status, "finished")
        yield* socketsClosed(kid)
        // reopened: the same runner process and interpreter, every line of output
        const lines = yield* executeToEnd(kid, "import os\nprint(marker, pid == os.getpid())\nfor i in range(300):\n    print('line', i)")
        assert.strictEqual(consoleText(lines, "stdout"), `kept True\n${Array.from({ length: 300 }, (_, i) => `line ${i}\n`).join("")}`)
        yield* socketsClosed(kid)
        // a run lasting 6 idle periods, printing before and after: nothing lost in between
        const slow = yield* executeToEnd(kid, "import time\nprint('before', flush=True)\ntime.sleep(3)\nprint('after')")
        assert.strictEqual(consoleText(slow, "stdout"), "before\nafter\n")
        yield* (yield* KernelLifecycle).destroy(kid, "user-requested")
      }).pipe(Effect.provide(executionLayer(site)))
    }).pipe(Effect.scoped), 240_000)

  it.live("closed and reopened at once, 20 times, and with a stale pipe at the runner's PUSH: every run's output complete", () =>
    Effect.gen(function*() {
      const site = yield* makeSite(env, { runnerSocketIdle: "20ms" })
      const kid = crypto.randomUUID()
      const lines = Array.from({ length: 100 }, (_, i) => `line ${i}\n`).join("")
      const code = "for i in range(100):\n    print('line', i, flush=True)"
      yield* Effect.gen(function*() {
        yield* (yield* KernelLifecycle).create(kid, pythonConfig(env))
        for (let round = 0; round < 20; round++) {
          yield* socketsClosed(kid)
          assert.strictEqual(consoleText(yield* executeToEnd(kid, code), "stdout"), lines, `round ${round}`)
        }
        // a stale pipe on purpose: a "ghost" peer of the runner's REPL-out swallows what the runner's
        // PUSH sends it (as the closed connection does until the runner has processed its end)
        yield* socketsClosed(kid)
        const ghost = yield* ghostAt((yield* (yield* RunnerConnections).get(kid)).endpoint)
        yield* ghost.closeAfter(2)
        assert.strictEqual(consoleText(yield* executeToEnd(kid, code), "stdout"), lines)
        assert.deepStrictEqual([...new Set(yield* ghost.swallowed)], ["status"])
        yield* (yield* KernelLifecycle).destroy(kid, "user-requested")
      }).pipe(Effect.provide(executionLayer(site)))
    }).pipe(Effect.scoped), 240_000)
})
