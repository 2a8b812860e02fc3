/**
 * Kernel lifecycle handlers (spec §2.1): ping_kernel, create_kernel, destroy_kernel, restart_kernel,
 * refresh_idle, reset_agent, clean_all_kernels, shutdown_agent. Every method naming a kernel refreshes
 * its idle clock; unknown kernel ids fail with `KernelNotFound`, except `destroy_kernel`, which reports
 * them `kernel_terminated(kid, "self-terminated")` and answers None (the 19.06 Docker agent).
 */
import { Effect } from "effect"
import { AgentShutdown } from "../../kernel/AgentShutdown.ts"
import { KernelLifecycle, USER_REQUESTED } from "../../kernel/KernelLifecycle.ts"
import { KernelTable } from "../../kernel/KernelTable.ts"
import type { PartialAgentRpcHandlers } from "../AgentRpcs.ts"

export const KernelHandlers: Effect.Effect<PartialAgentRpcHandlers, never, KernelLifecycle | KernelTable | AgentShutdown> =
  Effect.gen(function*() {
    const lifecycle = yield* KernelLifecycle
    const registry = yield* KernelTable
    const shutdown = yield* AgentShutdown

    return {
      ping_kernel: Effect.fn("AgentRpcs.ping_kernel")(function*(kernelId: string) {
        yield* registry.touch(kernelId)
      }),
      refresh_idle: Effect.fn("AgentRpcs.refresh_idle")(function*(kernelId: string) {
        yield* registry.touch(kernelId)
      }),
      create_kernel: Effect.fn("AgentRpcs.create_kernel")(function*(kernelId: string, config: { readonly [k: string]: unknown }) {
        return yield* lifecycle.create(kernelId, config)
      }),
      destroy_kernel: Effect.fn("AgentRpcs.destroy_kernel")(function*(kernelId: string, reason?: string | null) {
        yield* registry.touch(kernelId).pipe(Effect.ignore)
        // the last stat (`version: 2`) as the 19.06 Docker agent returns it; None for unknown ids
        const last = yield* lifecycle.destroy(kernelId, reason ?? USER_REQUESTED)
        return last ?? undefined
      }),
      restart_kernel: Effect.fn("AgentRpcs.restart_kernel")(function*(kernelId: string, config: { readonly [k: string]: unknown }) {
        yield* registry.touch(kernelId)
        return yield* lifecycle.restart(kernelId, config)
      }),
      reset_agent: Effect.fn("AgentRpcs.reset_agent")(function*() {
        yield* lifecycle.destroyAll("agent-reset")
      }),
      clean_all_kernels: Effect.fn("AgentRpcs.clean_all_kernels")(function*(reason: string | null) {
        yield* lifecycle.destroyAll(reason ?? "agent-reset")
      }),
      shutdown_agent: Effect.fn("AgentRpcs.shutdown_agent")(function*(terminateKernels: boolean) {
        if (terminateKernels) yield* lifecycle.destroyAll("agent-termination")
        yield* shutdown.request
      })
    }
  })
