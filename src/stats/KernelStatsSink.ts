/**
 * What the kernel lifecycle tells the statistics collector: a kernel is about to be reported
 * terminated, so its last stat must be in Redis (without a short expiry) before `kernel_terminated`
 * reaches the manager, which reads `<kernel_id>` from Redis DB 0 when it handles the event (spec §6).
 */
import { Context, Effect, Layer, Option } from "effect"
import type { MetricRecord } from "./StatFormat.ts"

/** A kernel's `<kernel_id>` value: `{metric: M}`. */
export type KernelStat = { readonly [metric: string]: MetricRecord }

export interface KernelStatsSinkShape {
  /**
   * Write the kernel's last stat once more and stop its series; returns that stat (none if the kernel
   * was never measured), which `destroy_kernel` returns as the Docker agent does. Never fails;
   * bounded in time.
   */
  readonly finalize: (kernelId: string) => Effect.Effect<Option.Option<KernelStat>>
}

export class KernelStatsSink extends Context.Service<KernelStatsSink, KernelStatsSinkShape>()("bai-agent/stats/KernelStatsSink") {
  /** For tests of the lifecycle without a collector. */
  static readonly layerNoop = Layer.succeed(KernelStatsSink, KernelStatsSink.of({ finalize: () => Effect.succeed(Option.none()) }))
}
