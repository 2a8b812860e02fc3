/**
 * Keeps the kernel registry true to the cluster (design §2), with no local state file:
 *
 * - **Start-up**: lists the agent's labelled Pods, Services and ConfigMaps; adopts ready kernels
 *   (registry entry, NodePorts, runner connection), reports kernels whose pods ended while the agent
 *   was down (`kernel_terminated`), tears down half-created kernels (no ready mark) and orphans
 *   (Services/ConfigMaps without a pod; the garbage collector would too, via ownerReferences).
 * - **Records** (LiveKernels, etcd): every pass also compares the kernels the manager was told about
 *   with the cluster. A recorded kernel this process does not run, with no pod left (deleted while
 *   the agent was down), is reported `force-terminated`; one with only a half-created pod (the agent
 *   died during its create: the manager still holds it as PREPARING) is torn down and reported
 *   `failed-to-start`; a recorded termination whose event may not have left is sent again.
 * - **Watch**: the agent's one pod watch (KernelPodWatch, an informer over the agent's pods shared
 *   with the create and delete waits), resumed from the last resourceVersion after a disconnect: a
 *   running kernel whose pod fails, is evicted or is deleted by someone else is torn down and
 *   reported with the reason and exit code on that event.
 * - **Relist** on 410 Gone and every `kubernetes.relist-interval`: after each list of the shared
 *   watch this comparison runs again (without adoption; retried with a backoff while the API server
 *   does not answer): also catches what a watch that went blind missed.
 *
 * A list is only trusted for kernels that were already running before it was taken, so kernels
 * created meanwhile are never reported terminated by mistake; an unreachable API server only delays
 * the watch, it never terminates anything.
 */
import type * as k8s from "@kubernetes/client-node"
import { Context, Effect, FiberMap, Layer, Option, PubSub, Ref, Schedule } from "effect"
import { AgentConfig } from "../config/AgentConfig.ts"
import { type KubernetesFailure, kubernetesFailure } from "../domain/Errors.ts"
import { agentSelector, endedReason, isReadyMarked, kernelIdOf } from "../kube/KernelObjects.ts"
import { informerBackoff } from "../kube/Informer.ts"
import { KubeClient, type KubeError, withoutManagedFields } from "../kube/KubeClient.ts"
import { MemoryRelease } from "../observability/MemoryRelease.ts"
import { countKernelTerminated } from "../observability/Metrics.ts"
import { KernelStatsSink } from "../stats/KernelStatsSink.ts"
import { KernelLifecycle } from "./KernelLifecycle.ts"
import { KernelPodWatch, type PodChange } from "./lifecycle/KernelPodWatch.ts"
import { KernelTable } from "./KernelTable.ts"
import { FAILED_TO_START, FORCE_TERMINATED, type LiveKernelRecord, LiveKernels } from "./LiveKernels.ts"

export interface ReconcileReport {
  readonly adopted: ReadonlyArray<string>
  readonly terminated: ReadonlyArray<string>
  readonly removed: ReadonlyArray<string>
  /** resourceVersion of the pod list. */
  readonly resourceVersion: string | undefined
}

export class Reconciler extends Context.Service<Reconciler, {
  /** One full comparison of the cluster with the registry; `adopt` at start-up only. */
  readonly reconcile: (options: { readonly adopt: boolean }) => Effect.Effect<ReconcileReport, KubernetesFailure>
  /**
   * The watch loop over a subscription to the shared pod watch (taken before the last pass, so that
   * nothing since is missed): each pod event, and a pass (no adoption) after each list of the watch
   * (410 Gone, `kubernetes.relist-interval`); `pass` starts with one (runs until interrupted).
   */
  readonly watch: (changes: PubSub.Subscription<PodChange>, options: { readonly pass: boolean }) => Effect.Effect<never>
}>()("bai-agent/kernel/Reconciler") {
  static readonly make = Effect.gen(function*() {
    const { agentId, config } = yield* AgentConfig
    const kube = yield* KubeClient
    const registry = yield* KernelTable
    const lifecycle = yield* KernelLifecycle
    const live = yield* LiveKernels
    const stats = yield* KernelStatsSink
    const memory = yield* MemoryRelease
    const namespace = config.kubernetes.namespace
    const selector = agentSelector(agentId)
    const handlers = yield* FiberMap.make<string>()
    const adoptedOnce = yield* Ref.make(false)

    const unavailable = (e: KubeError) => kubernetesFailure(e)

    const listAll = Effect.all({
      pods: kube.list("list pods", (api, page) => api.listNamespacedPod({ namespace, labelSelector: selector, ...page }), withoutManagedFields),
      services: kube.list("list services", (api, page) => api.listNamespacedService({ namespace, labelSelector: selector, ...page }), withoutManagedFields),
      // which kernels have one is all a pass reads of them
      configMaps: kube.list(
        "list configmaps",
        (api, page) => api.listNamespacedConfigMap({ namespace, labelSelector: selector, ...page }),
        (cm): k8s.V1ConfigMap => (cm.metadata === undefined ? {} : { metadata: withoutManagedFields(cm).metadata! })
      )
    }, { concurrency: 3 }).pipe(Effect.mapError(unavailable))

    /** A ready kernel the registry does not know, found ended or broken: report it and remove its objects. */
    const reportLost = (kernelId: string, reason: string, exitCode: number | null) =>
      Effect.gen(function*() {
        yield* lifecycle.removeObjects(kernelId)
        yield* stats.finalize(kernelId)
        yield* live.terminated(kernelId, reason, exitCode)
        yield* countKernelTerminated(reason)
        yield* Effect.logInfo(`kernel found ended while the agent was not watching (${reason})`).pipe(Effect.annotateLogs({ kernelId }))
      })

    /** A recorded kernel whose create never finished: its objects go, the manager hears it. */
    const reportHalfCreated = (kernelId: string) =>
      Effect.gen(function*() {
        yield* lifecycle.removeObjects(kernelId)
        yield* live.terminated(kernelId, FAILED_TO_START, null)
        yield* countKernelTerminated(FAILED_TO_START)
        yield* Effect.logInfo("kernel whose create was cut off (agent restart) reported failed-to-start").pipe(Effect.annotateLogs({ kernelId }))
      })

    /** The records, or none when etcd does not answer (the next pass reads them again). */
    const readRecords = live.recorded.pipe(
      Effect.catch((e) =>
        Effect.logWarning(`cannot read the kernel records: ${e.message}; checked at the next pass`).pipe(
          Effect.as(new Map<string, LiveKernelRecord>() as ReadonlyMap<string, LiveKernelRecord>)
        )
      )
    )

    const reconcile = Effect.fn("Reconciler.reconcile")(function*(options: { readonly adopt: boolean }) {
      // until one start-up pass succeeded, every pass adopts (never removes ready kernels it does not know)
      const adopt = options.adopt || !(yield* Ref.get(adoptedOnce))
      // kernels running before the list: only these may be judged lost by it
      const before = (yield* registry.list).filter((k) => k.status === "running")
      // records read before the list: a create that starts later is busy or known when judged
      const records = yield* readRecords
      /**
       * The record of a kernel this process has not settled itself (only those are judged here);
       * asked after `settle`: a destroy that finished since the list has settled its kernel.
       */
      const recordOf = (kid: string) =>
        Effect.map(live.settledHere(kid), (settled) => (settled ? undefined : records.get(kid)))
      const { configMaps, pods, services } = yield* listAll
      const adopted: Array<string> = []
      /** Adopted kernels with no record (from an agent that kept none): recorded together after the pass. */
      const unrecorded: Array<string> = []
      const terminated: Array<string> = []
      const removed: Array<string> = []
      const serviceOf = new Map<string, k8s.V1Service>()
      for (const s of services.items) {
        const kid = kernelIdOf(s)
        if (kid !== undefined) serviceOf.set(kid, s)
      }
      const configMapKids = new Set(configMaps.items.map(kernelIdOf).filter((k) => k !== undefined))
      const podKids = new Set<string>()

      const settle = (kid: string) => Effect.all([lifecycle.busy(kid), registry.find(kid)])

      yield* Effect.forEach(pods.items, (pod) =>
        Effect.gen(function*() {
          const kid = kernelIdOf(pod)
          if (kid === undefined) return
          podKids.add(kid)
          const [busy, known] = yield* settle(kid)
          if (busy) return
          const ended = endedReason(pod, false)
          if (Option.isSome(known)) {
            if (known.value.status === "running" && Option.isSome(ended)) {
              yield* lifecycle.podEnded(kid, ended.value.reason, ended.value.exitCode)
              terminated.push(kid)
            }
            return
          }
          const record = yield* recordOf(kid)
          if (record?.state === "terminated") {
            // reported before (its objects should have gone first): nothing is adopted, the event goes again
            yield* lifecycle.removeObjects(kid)
            yield* live.terminated(kid, record.reason, record.exitCode)
            terminated.push(kid)
            return
          }
          if (!isReadyMarked(pod)) {
            // half-created: tear down; the manager hears of it when it was told of the create
            // (recorded), i.e. it still holds the kernel as PREPARING
            if (record?.state === "live") {
              yield* reportHalfCreated(kid)
              terminated.push(kid)
            } else {
              yield* lifecycle.removeObjects(kid)
              removed.push(kid)
            }
            return
          }
          if (!adopt) {
            // a ready kernel this process does not know: destroyed meanwhile (settled, so no record
            // here), foreign, or recorded and lost (reported)
            if (record?.state === "live") {
              yield* reportLost(kid, FORCE_TERMINATED, null)
              terminated.push(kid)
            } else {
              yield* lifecycle.removeObjects(kid)
              removed.push(kid)
            }
            return
          }
          const svc = serviceOf.get(kid)
          if (Option.isSome(ended) || svc === undefined || !configMapKids.has(kid)) {
            const why = Option.isSome(ended) ? ended.value : { reason: FORCE_TERMINATED, exitCode: null }
            yield* reportLost(kid, why.reason, why.exitCode)
            terminated.push(kid)
            return
          }
          const info = yield* lifecycle.adopt(pod, svc)
          if (Option.isSome(info)) {
            adopted.push(kid)
            // adopted from an agent that kept no records: from now on it has one
            if (record === undefined) unrecorded.push(kid)
          } else {
            yield* reportLost(kid, FORCE_TERMINATED, null)
            terminated.push(kid)
          }
        }).pipe(
          Effect.catch((e) => Effect.logWarning(`reconcile: ${e.message}`).pipe(Effect.annotateLogs({ kernelId: kernelIdOf(pod) ?? "" })))
        ), { concurrency: 8, discard: true })

      yield* live.ensure(unrecorded)

      // running kernels whose pod is gone
      yield* Effect.forEach(before, (k) =>
        Effect.gen(function*() {
          if (podKids.has(k.kernelId)) return
          const [busy, now] = yield* settle(k.kernelId)
          if (busy || Option.isNone(now) || now.value.status !== "running" || now.value.podUid !== k.podUid) return
          yield* lifecycle.podEnded(k.kernelId, FORCE_TERMINATED, null)
          terminated.push(k.kernelId)
        }), { concurrency: 8, discard: true })

      // recorded kernels with no pod: gone while the agent was not there, or reported before and
      // perhaps not heard (the event goes again; at least once)
      yield* Effect.forEach(records, ([kid]) =>
        Effect.gen(function*() {
          if (podKids.has(kid)) return
          const [busy, known] = yield* settle(kid)
          if (busy || Option.isSome(known)) return
          const record = yield* recordOf(kid)
          if (record === undefined) return
          if (record.state === "terminated") {
            yield* live.terminated(kid, record.reason, record.exitCode)
            yield* Effect.logInfo(`kernel_terminated (${record.reason}) sent again: it may not have reached the manager`).pipe(
              Effect.annotateLogs({ kernelId: kid })
            )
          } else {
            yield* reportLost(kid, FORCE_TERMINATED, null)
          }
          terminated.push(kid)
        }).pipe(Effect.catch((e) => Effect.logWarning(`reconcile: ${e.message}`).pipe(Effect.annotateLogs({ kernelId: kid })))),
        { concurrency: 8, discard: true })

      // Services and ConfigMaps without a pod
      const orphans = new Set([...serviceOf.keys(), ...configMapKids].filter((kid) => !podKids.has(kid)))
      yield* Effect.forEach(orphans, (kid) =>
        Effect.gen(function*() {
          const [busy, known] = yield* settle(kid)
          if (busy || Option.isSome(known)) return
          yield* lifecycle.removeObjects(kid)
          removed.push(kid)
        }).pipe(Effect.catch((e) => Effect.logWarning(`reconcile: ${e.message}`))), { concurrency: 8, discard: true })

      if (adopted.length + terminated.length + removed.length > 0) {
        yield* Effect.logInfo(`reconciled: ${adopted.length} adopted, ${terminated.length} terminated, ${removed.length} torn down`)
      }
      if (adopt) yield* Ref.set(adoptedOnce, true)
      // the lists and the adoption were a burst: what they leave unused is given back after it
      yield* memory.afterBurst
      return { adopted, terminated, removed, resourceVersion: pods.resourceVersion } satisfies ReconcileReport
    })

    const onPod = (type: string, pod: k8s.V1Pod) =>
      Effect.gen(function*() {
        const kid = kernelIdOf(pod)
        if (kid === undefined) return
        if (yield* lifecycle.busy(kid)) return
        const known = yield* registry.find(kid)
        if (Option.isNone(known)) {
          // A pod, not marked ready nor being deleted, of a kernel whose create failed here (its record
          // forgotten): the create gave up on its POST and the API server ran the request later (a
          // paused or overloaded server). Torn down now, as the next list's pass would.
          if (type !== "DELETED" && !isReadyMarked(pod) && pod.metadata?.deletionTimestamp == null && (yield* live.settledHere(kid))) {
            yield* FiberMap.run(
              handlers,
              kid,
              lifecycle.removeObjects(kid).pipe(
                Effect.catch((e) => Effect.logWarning(`cannot remove the pod a failed create left: ${e.message}`).pipe(Effect.annotateLogs({ kernelId: kid })))
              ),
              { onlyIfMissing: true }
            )
          }
          return
        }
        if (known.value.status !== "running") return
        if (known.value.podUid !== undefined && pod.metadata?.uid !== known.value.podUid) return
        const ended = endedReason(pod, type === "DELETED")
        if (Option.isNone(ended)) return
        yield* FiberMap.run(handlers, kid, lifecycle.podEnded(kid, ended.value.reason, ended.value.exitCode), { onlyIfMissing: true })
      })

    /** A pass after a list; an API server that does not answer only delays it (backoff). */
    const pass = reconcile({ adopt: false }).pipe(
      Effect.tapError((e) => Effect.logWarning(`reconcile pass failed, retrying: ${e.message}`)),
      Effect.retry(informerBackoff),
      Effect.ignore
    )

    const watch = (changes: PubSub.Subscription<PodChange>, options: { readonly pass: boolean }): Effect.Effect<never> =>
      (options.pass ? pass : Effect.void).pipe(
        Effect.andThen(Effect.forever(Effect.flatMap(PubSub.take(changes), (change) =>
          change._tag === "Listed" ? pass : onPod(change.event.type, change.event.object))))
      )

    return Reconciler.of({ reconcile, watch })
  })

  /** Start-up reconciliation (adopting ready kernels), then the watch and the periodic relist. */
  static readonly layer = Layer.effectDiscard(
    Effect.gen(function*() {
      const reconciler = yield* Reconciler.make
      // subscribed before the start-up pass: what changes during it is handled after it
      const changes = yield* (yield* KernelPodWatch).subscribe
      const first = yield* reconciler.reconcile({ adopt: true }).pipe(
        Effect.retry({ times: 3, schedule: Schedule.spaced("2 seconds") }),
        Effect.tapError((e) => Effect.logError(`start-up reconciliation failed: ${e.message}; kernels are adopted when the API server answers`)),
        Effect.option
      )
      // the same comparison (without adoption) after every list of the watch
      yield* reconciler.watch(changes, { pass: Option.isNone(first) }).pipe(Effect.forkScoped)
    })
  )
}
