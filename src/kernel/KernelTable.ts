/**
 * The agent's view of its kernels. No local state file: the lifecycle rebuilds it from the labelled
 * pods at start-up (Reconciler) and keeps it current from the pod watch. Every RPC that names a kernel
 * looks it up here (unknown → `KernelNotFound`) and refreshes its idle clock.
 */
import { Context, Effect, Layer, Option, Ref, Semaphore } from "effect"
import { KernelNotFound } from "../domain/Errors.ts"
import { monotonicMillis } from "../domain/MonotonicClock.ts"
import { setKernelsByState } from "../observability/Metrics.ts"
import type { ServicePort } from "../domain/KernelResults.ts"

export type KernelStatus = "creating" | "running" | "terminating"

export interface KernelInfo {
  readonly kernelId: string
  readonly namespace: string
  /** Pod, Service and ConfigMap name: `kernel-<kid>`. */
  readonly objectName: string
  readonly podUid: string | undefined
  readonly status: KernelStatus
  /** kernel_host told to the manager: the pod's hostIP (or container.kernel-host); the runner's own address may differ (KernelObjects.runnerEndpoint). */
  readonly kernelHost: string
  readonly replInPort: number
  readonly replOutPort: number
  readonly servicePorts: ReadonlyArray<ServicePort>
  /** The manager's canonical image reference and the image the pod runs. */
  readonly canonicalImage: string
  readonly image: string
  readonly resourceSpec: string
  /** Agent-side path of the kernel's /home/work: `<container.scratch-root>/<kid>/work`. */
  readonly scratchDir: string
  /** Seconds; 0 = never idle-destroyed. */
  readonly idleTimeout: number
  /** Monotonic millis (src/domain/MonotonicClock.ts) of the last RPC naming this kernel. */
  readonly lastUsed: number
  /** The node the kernel's pod runs on, once it is running (whose kubelet summary holds its stats). */
  readonly nodeName?: string | undefined
}

export interface KernelTableShape {
  readonly get: (kernelId: string) => Effect.Effect<KernelInfo, KernelNotFound>
  readonly find: (kernelId: string) => Effect.Effect<Option.Option<KernelInfo>>
  readonly list: Effect.Effect<ReadonlyArray<KernelInfo>>
  readonly upsert: (info: KernelInfo) => Effect.Effect<void>
  readonly update: (kernelId: string, f: (info: KernelInfo) => KernelInfo) => Effect.Effect<Option.Option<KernelInfo>>
  readonly remove: (kernelId: string) => Effect.Effect<Option.Option<KernelInfo>>
  /** Refresh the idle clock; fails with KernelNotFound for unknown ids. */
  readonly touch: (kernelId: string) => Effect.Effect<KernelInfo, KernelNotFound>
}

export class KernelTable extends Context.Service<KernelTable, KernelTableShape>()("bai-agent/kernel/KernelTable") {
  static readonly make = Effect.gen(function*() {
    const state = yield* Ref.make<ReadonlyMap<string, KernelInfo>>(new Map())
    // `bai_kernels{state}` after every change of membership or status (serialized: the last count wins)
    const metricLock = yield* Semaphore.make(1)
    const publish = Ref.get(state).pipe(
      Effect.flatMap((m) => {
        const counts: Record<KernelStatus, number> = { creating: 0, running: 0, terminating: 0 }
        for (const k of m.values()) counts[k.status]++
        return setKernelsByState(counts)
      })
    )
    const changing = <A>(self: Effect.Effect<A>) => metricLock.withPermits(1)(Effect.tap(self, () => publish))
    yield* publish
    const find = (kernelId: string) => Ref.get(state).pipe(Effect.map((m) => Option.fromNullishOr(m.get(kernelId))))
    const modify = (kernelId: string, f: (info: KernelInfo) => KernelInfo) =>
      Ref.modify(state, (m): [Option.Option<KernelInfo>, ReadonlyMap<string, KernelInfo>] => {
        const cur = m.get(kernelId)
        if (cur === undefined) return [Option.none(), m]
        const next = f(cur)
        return [Option.some(next), new Map(m).set(kernelId, next)]
      })
    const update = (kernelId: string, f: (info: KernelInfo) => KernelInfo) => changing(modify(kernelId, f))
    return KernelTable.of({
      find,
      get: (kernelId) =>
        find(kernelId).pipe(
          Effect.flatMap(Option.match({
            onNone: () => Effect.fail(new KernelNotFound({ kernelId })),
            onSome: Effect.succeed
          }))
        ),
      list: Ref.get(state).pipe(Effect.map((m) => [...m.values()])),
      upsert: (info) => changing(Ref.update(state, (m) => new Map(m).set(info.kernelId, info))),
      update,
      remove: (kernelId) =>
        changing(Ref.modify(state, (m): [Option.Option<KernelInfo>, ReadonlyMap<string, KernelInfo>] => {
          const cur = m.get(kernelId)
          if (cur === undefined) return [Option.none(), m]
          const next = new Map(m)
          next.delete(kernelId)
          return [Option.some(cur), next]
        })),
      // the hot path (every RPC naming a kernel): no status change, no metric, no lock
      touch: (kernelId) =>
        monotonicMillis.pipe(
          Effect.flatMap((now) => modify(kernelId, (k) => ({ ...k, lastUsed: now }))),
          Effect.flatMap(Option.match({
            onNone: () => Effect.fail(new KernelNotFound({ kernelId })),
            onSome: Effect.succeed
          }))
        )
    })
  })

  static readonly layer = Layer.effect(KernelTable, KernelTable.make)
}
