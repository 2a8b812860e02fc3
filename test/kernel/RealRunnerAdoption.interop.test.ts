// Restart adoption against the real 19.06 runner: an agent stops (detaching its kernels), a new one
// starts with the reconciler and adopts the running kernel; the kernel's Python state proves it is the
// same runner process (the real runner keeps one ipykernel per kernel; runner.ts could not tell).
// The adopted kernel's runner sockets open on its first call, not at adoption (issue 17 goal 2).
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer, Option, Scope } from "effect"
import { inject } from "vitest"
import { KernelExecution } from "../../src/kernel/KernelExecution.ts"
import { KernelLifecycle } from "../../src/kernel/KernelLifecycle.ts"
import { KernelTable } from "../../src/kernel/KernelTable.ts"
import { RunnerConnections } from "../../src/kernel/runner/RunnerConnections.ts"
import { consoleText, executeToEnd, executionLayer } from "../rpc/RealRunnerSupport.ts"
import type { TestbedEnv } from "../testbed/env.ts"
import { makeSite, pythonConfig } from "./KernelLifecycleSupport.ts"
import { waitFor } from "./RunnerSupport.ts"

const env: TestbedEnv = inject("testbed")

/** Builds the execution stack in its own scope (closed by the caller: agent shutdown). */
const startAgent = (site: Parameters<typeof executionLayer>[0], withReconciler: boolean) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(executionLayer(site, { withReconciler }), scope)
    return { scope, context }
  })

/**
 * Agent A creates a kernel (its creation asks the runner: its sockets open), leaves state in its
 * interpreter and stops (detach); agent B starts with the reconciler, to adopt it. B's context.
 */
const restartedAgent = Effect.gen(function*() {
  const site = yield* makeSite(env)
  const kid = crypto.randomUUID()
  const a = yield* startAgent(site, false)
  yield* Effect.gen(function*() {
    yield* (yield* KernelLifecycle).create(kid, pythonConfig(env))
    assert.isTrue(yield* (yield* (yield* RunnerConnections).get(kid)).socketsOpen)
    const r = yield* executeToEnd(kid, "import os\nmarker = 'set by agent A'\npid = os.getpid()")
    assert.strictEqual(r[r.length - 1]!.status, "finished")
  }).pipe(Effect.provide(a.context))
  yield* Scope.close(a.scope, Exit.void)
  const b = yield* startAgent(site, true)
  yield* Effect.addFinalizer(() => Scope.close(b.scope, Exit.void))
  return { kid, b }
})

describe("restart adoption with the real runner", () => {
  it.live("a restarted agent adopts the running kernel: same interpreter state, runs and interrupts still work", () =>
    Effect.gen(function*() {
      const { kid, b } = yield* restartedAgent
      yield* Effect.gen(function*() {
        const info = yield* (yield* KernelTable).find(kid)
        assert.isTrue(Option.isSome(info))
        const r = yield* executeToEnd(kid, "import os\nprint(marker, pid == os.getpid())")
        assert.strictEqual(consoleText(r, "stdout"), "set by agent A True\n")
        // an interrupt through the adopted connection ends a running query (real runner: exit code 0
        // and a KeyboardInterrupt traceback)
        const execution = yield* KernelExecution
        const first = yield* execution.execute({
          apiVersion: 3, kernelId: kid, runId: null, mode: "query", code: "import time\ntime.sleep(60)", opts: {}, flushTimeout: 0.5
        })
        assert.strictEqual(first.status, "continued")
        yield* execution.interrupt(kid)
        const rest = yield* execution.execute({
          apiVersion: 3, kernelId: kid, runId: first.runId, mode: "continue", code: "", opts: {}, flushTimeout: 15
        })
        assert.strictEqual(rest.status, "finished")
        assert.strictEqual(rest.exitCode, 0)
        assert.include(consoleText([first, rest], "stderr"), "KeyboardInterrupt")
        yield* (yield* KernelLifecycle).destroy(kid, "user-requested")
      }).pipe(Effect.provide(b.context))
    }).pipe(Effect.scoped), 240_000)

  it.live("an adopted kernel holds no runner sockets until its first run, whose output then arrives complete; kept for the next, closed by destroy", () =>
    Effect.gen(function*() {
      const { kid, b } = yield* restartedAgent
      const lines = (n: number) => Array.from({ length: n }, (_, i) => `line ${i}\n`).join("")
      yield* Effect.gen(function*() {
        const conns = yield* RunnerConnections
        yield* waitFor("the kernel adopted", conns.list, (ids) => ids.includes(kid), "60 seconds")
        const conn = yield* conns.get(kid)
        assert.isFalse(yield* conn.socketsOpen)
        // the first call: same runner process and interpreter, every line
        const first = yield* executeToEnd(kid, "import os\nprint(marker, pid == os.getpid())\nfor i in range(300):\n    print('line', i)")
        assert.strictEqual(consoleText(first, "stdout"), `set by agent A True\n${lines(300)}`)
        assert.isTrue(yield* conn.socketsOpen)
        // the same sockets carry the next run
        assert.strictEqual(consoleText(yield* executeToEnd(kid, "for i in range(100):\n    print('line', i, flush=True)"), "stdout"), lines(100))
        assert.isTrue(yield* conn.socketsOpen)
        yield* (yield* KernelLifecycle).destroy(kid, "user-requested")
        assert.isFalse(yield* conn.socketsOpen)
        assert.isFalse((yield* conns.list).includes(kid))
      }).pipe(Effect.provide(b.context))
    }).pipe(Effect.scoped), 240_000)
})
