// Restart adoption against the real 19.06 runner: an agent stops (detaching its kernels), a new one
// starts with the reconciler and adopts the running kernel; the kernel's Python state proves it is the
// same runner process (the real runner keeps one ipykernel per kernel; runner.ts could not tell).
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer, Option, Scope } from "effect"
import { inject } from "vitest"
import { KernelExecution } from "../../src/kernel/KernelExecution.ts"
import { KernelLifecycle } from "../../src/kernel/KernelLifecycle.ts"
import { KernelTable } from "../../src/kernel/KernelTable.ts"
import { consoleText, executeToEnd, executionLayer } from "../rpc/RealRunnerSupport.ts"
import type { TestbedEnv } from "../testbed/env.ts"
import { makeSite, pythonConfig } from "./KernelLifecycleSupport.ts"

const env: TestbedEnv = inject("testbed")

/** Builds the execution stack in its own scope (closed by the caller: agent shutdown). */
const startAgent = (site: Parameters<typeof executionLayer>[0], withReconciler: boolean) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(executionLayer(site, { withReconciler }), scope)
    return { scope, context }
  })

describe("restart adoption with the real runner", () => {
  it.live("a restarted agent adopts the running kernel: same interpreter state, runs and interrupts still work", () =>
    Effect.gen(function*() {
      const site = yield* makeSite(env)
      const kid = crypto.randomUUID()
      // agent A creates the kernel, leaves state in its interpreter, then stops (detach)
      const a = yield* startAgent(site, false)
      yield* Effect.gen(function*() {
        yield* (yield* KernelLifecycle).create(kid, pythonConfig(env))
        const r = yield* executeToEnd(kid, "import os\nmarker = 'set by agent A'\npid = os.getpid()")
        assert.strictEqual(r[r.length - 1]!.status, "finished")
      }).pipe(Effect.provide(a.context))
      yield* Scope.close(a.scope, Exit.void)

      // agent B starts with the reconciler and adopts it
      const b = yield* startAgent(site, true)
      yield* Effect.addFinalizer(() => Scope.close(b.scope, Exit.void))
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
})


