/**
 * What the kernel lifecycle tells the statistics collector: a kernel is about to be reported
 * terminated, so its last stat must be in Redis (without a short expiry) before `kernel_terminated`
 * reaches the manager, which reads `<kernel_id>` from Redis DB 0 when it handles the event (spec §6).
 */
import { Context, Effect, Layer } from "effect"

export interface KernelStatsSinkShape {
  /** Write the kernel's last stat once more and stop its series. Never fails; bounded in time. */
  readonly finalize: (kernelId: string) => Effect.Effect<void>
}

export class KernelStatsSink extends Context.Service<KernelStatsSink, KernelStatsSinkShape>()("bai-agent/stats/KernelStatsSink") {
  /** For tests of the lifecycle without a collector. */
  static readonly layerNoop = Layer.succeed(KernelStatsSink, KernelStatsSink.of({ finalize: () => Effect.void }))
}
