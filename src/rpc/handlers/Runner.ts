/**
 * Handlers of the runner-backed and file RPCs (spec §2.1, §8.4–§8.6): `execute`, `interrupt_kernel`,
 * `get_completions`, `start_service`, `get_logs`, `upload_file`, `download_file`, `list_files`.
 * Needs {@link KernelExecution}, {@link KernelFiles}, {@link KernelTable} and {@link KubeClient}.
 */
import { Effect } from "effect"
import { kubernetesFailure } from "../../domain/Errors.ts"
import { KernelExecution } from "../../kernel/KernelExecution.ts"
import { KernelFiles } from "../../kernel/KernelFiles.ts"
import { KernelTable } from "../../kernel/KernelTable.ts"
import { KubeClient, optional } from "../../kube/KubeClient.ts"
import type { PartialAgentRpcHandlers } from "../AgentRpcs.ts"

/** The kernel pod's main container (src/kube/KernelObjects.ts). */
const KERNEL_CONTAINER = "kernel"

/**
 * `get_logs` answers the last {@link LOGS_TAIL_LINES} lines of the kernel's log, at most
 * {@link LOGS_MAX_BYTES} of them (the kubelet cuts; a kernel writing gigabytes of log costs the agent
 * nothing more).
 */
export const LOGS_TAIL_LINES = 10_000
export const LOGS_MAX_BYTES = 4 * 1024 * 1024

export const RunnerHandlers = Effect.gen(function*() {
  const execution = yield* KernelExecution
  const files = yield* KernelFiles
  const registry = yield* KernelTable
  const kube = yield* KubeClient

  const handlers: PartialAgentRpcHandlers = {
    execute: Effect.fn("AgentRpcs.execute")(function*(apiVersion, kernelId, runId, mode, code, opts, flushTimeout) {
      return yield* execution.execute({ apiVersion, kernelId, runId, mode, code, opts, flushTimeout })
    }),
    interrupt_kernel: Effect.fn("AgentRpcs.interrupt_kernel")(function*(kernelId) {
      yield* execution.interrupt(kernelId)
      return null
    }),
    get_completions: Effect.fn("AgentRpcs.get_completions")(function*(kernelId, text, opts) {
      return yield* execution.complete(kernelId, text, opts)
    }),
    start_service: Effect.fn("AgentRpcs.start_service")(function*(kernelId, service, opts) {
      return yield* execution.startService(kernelId, service, opts)
    }),
    get_logs: Effect.fn("AgentRpcs.get_logs")(function*(kernelId) {
      const info = yield* registry.touch(kernelId)
      const logs = yield* optional(
        kube.core("read pod log", (api) =>
          api.readNamespacedPodLog({
            name: info.objectName,
            namespace: info.namespace,
            container: KERNEL_CONTAINER,
            tailLines: LOGS_TAIL_LINES,
            limitBytes: LOGS_MAX_BYTES
          })
        )
      ).pipe(
        Effect.mapError(kubernetesFailure)
      )
      return { logs: logs._tag === "Some" ? String(logs.value) : "" }
    }),
    upload_file: Effect.fn("AgentRpcs.upload_file")(function*(kernelId, filename, filedata) {
      yield* files.upload(kernelId, filename, filedata)
      return null
    }),
    download_file: Effect.fn("AgentRpcs.download_file")(function*(kernelId, filepath) {
      return yield* files.download(kernelId, filepath)
    }),
    list_files: Effect.fn("AgentRpcs.list_files")(function*(kernelId, path) {
      return yield* files.list(kernelId, path)
    })
  }
  return handlers
})
