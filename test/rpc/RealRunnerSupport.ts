// Helpers for the interop tests that drive the agent's services (not its RPC socket) against the real
// 19.06 runner: the lifecycle stack plus KernelExecution and KernelFiles, and a query run to its end.
import { Effect, Layer } from "effect"
import { KernelExecution } from "../../src/kernel/KernelExecution.ts"
import { KernelFiles } from "../../src/kernel/KernelFiles.ts"
import type { ExecuteResult } from "../../src/rpc/AgentRpcs.ts"
import { lifecycleLayer, type Site } from "../kernel/KernelLifecycleSupport.ts"

/** KernelLifecycle, KernelTable, RunnerConnections… (lifecycleLayer) + KernelExecution + KernelFiles. */
export const executionLayer = (site: Site, options: { readonly withReconciler?: boolean } = {}) =>
  Layer.mergeAll(KernelExecution.layer, KernelFiles.layer).pipe(Layer.provideMerge(lifecycleLayer(site, options)))

/** `execute(query, code)`, then `continue` until `finished` (at most 40 polls of ≤ 15 s). */
export const executeToEnd = (kernelId: string, code: string) =>
  Effect.gen(function*() {
    const execution = yield* KernelExecution
    const results: Array<ExecuteResult> = []
    let runId: string | null = null
    for (let i = 0; i < 40; i++) {
      const r: ExecuteResult = yield* execution.execute({
        apiVersion: 3, kernelId, runId, mode: runId === null ? "query" : "continue", code, opts: {}, flushTimeout: 15
      })
      results.push(r)
      runId = r.runId
      if (r.status !== "continued") return results
    }
    return yield* Effect.die(new Error(`run ${runId} of ${kernelId} did not finish within 40 polls`))
  })

/** The concatenated console text of one stream over a run's results. */
export const consoleText = (results: ReadonlyArray<ExecuteResult>, stream: "stdout" | "stderr"): string =>
  results
    .flatMap((r) => ("console" in r ? (r.console as ReadonlyArray<readonly [string, unknown]>) : []))
    .filter(([t]) => t === stream)
    .map(([, d]) => String(d))
    .join("")
