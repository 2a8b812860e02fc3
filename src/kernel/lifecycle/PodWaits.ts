/**
 * Concern: waiting on one kernel pod — until it runs (or fails decisively) and until it is gone.
 * Each wait reacts to watch events from a known resourceVersion (no polling); a watch that ends or
 * expires (410) re-reads the pod and watches again, a broken watch is retried on a `Schedule`.
 * The interface is per pod and small on purpose: it can later be backed by a shared informer
 * (src/kube/Informer.ts) without touching its callers.
 */
import type * as k8s from "@kubernetes/client-node"
import { Context, Data, Duration, Effect, Layer, Option, Ref, Schedule, Stream } from "effect"
import { AgentConfig } from "../../config/AgentConfig.ts"
import { classifyCreating } from "../../kube/KernelObjects.ts"
import { KubeClient, type KubeError, optional } from "../../kube/KubeClient.ts"

/** The pod named in a wait is not there (any more) or was replaced by another uid. */
export class PodVanished extends Data.TaggedError("PodVanished")<{}> {}

/** A watch failed other than by expiring (410): the round is run again after a pause. */
class WatchBroken extends Data.TaggedError("WatchBroken")<{ readonly cause: KubeError }> {}

export interface PodWaitsShape {
  /**
   * Follows the pod until `classifyCreating` is decisive (not Pending) and returns it; fails with
   * `PodVanished` when it disappears. `seed` (the POST's answer) starts the first watch at its
   * resourceVersion without a GET. `observe` sees every version (bound to a node, last state).
   */
  readonly untilDecided: (
    name: string,
    uid: string,
    seed: k8s.V1Pod,
    observe: (pod: k8s.V1Pod) => Effect.Effect<void>
  ) => Effect.Effect<k8s.V1Pod, KubeError | PodVanished>
  /**
   * Waits (bounded) until the pod `name` (with `uid`, if given) is gone; returns the last version
   * seen. Pods bound to a node stay Terminating until the kubelet confirms.
   */
  readonly untilGone: (name: string, uid: string | undefined, bound: Duration.Input) => Effect.Effect<Option.Option<k8s.V1Pod>, KubeError>
}

const decisive = (p: k8s.V1Pod) => classifyCreating(p)._tag !== "Pending"

/** A watch that failed other than by expiring (410): watched again after this pause. */
const brokenWatchPause = Schedule.spaced("1 second")

export class PodWaits extends Context.Service<PodWaits, PodWaitsShape>()("bai-agent/kernel/lifecycle/PodWaits") {
  static readonly layer = Layer.effect(
    PodWaits,
    Effect.gen(function*() {
      const { config } = yield* AgentConfig
      const kube = yield* KubeClient
      const namespace = config.kubernetes.namespace
      const podsPath = `/api/v1/namespaces/${namespace}/pods`
      const readPod = (name: string) => optional(kube.core("read pod", (api) => api.readNamespacedPod({ name, namespace })))
      const watchPod = (pod: k8s.V1Pod, name: string) =>
        kube.watch<k8s.V1Pod>(podsPath, { fieldSelector: `metadata.name=${name}`, resourceVersion: pod.metadata?.resourceVersion })

      const untilDecided: PodWaitsShape["untilDecided"] = (name, uid, seed, observe) =>
        Effect.gen(function*() {
          const first = yield* Ref.make(Option.some(seed))
          /** One round: the current version (seed, then a GET), then its watch; `None` = watch again. */
          const round = Effect.gen(function*() {
            const seeded = yield* Ref.getAndSet(first, Option.none())
            const cur = Option.isSome(seeded) ? seeded : yield* readPod(name)
            if (Option.isNone(cur) || cur.value.metadata?.uid !== uid) return yield* new PodVanished()
            yield* observe(cur.value)
            if (decisive(cur.value)) return cur
            const last = yield* Ref.make(cur.value)
            return yield* watchPod(cur.value, name).pipe(
              Stream.filter((e) => e.type === "ADDED" || e.type === "MODIFIED" || e.type === "DELETED"),
              Stream.map((e) =>
                // a deletion seen while creating reads as a pod being deleted (classified Failed)
                e.type === "DELETED" ? { ...e.object, metadata: { ...e.object.metadata, deletionTimestamp: new Date() } } : e.object
              ),
              Stream.tap((p) => Ref.set(last, p).pipe(Effect.andThen(observe(p)))),
              Stream.takeUntil(decisive),
              Stream.runDrain,
              Effect.andThen(Ref.get(last)),
              Effect.map(Option.liftPredicate(decisive)),
              Effect.catch((e) => (e.reason === "Gone" ? Effect.succeedNone : Effect.fail(new WatchBroken({ cause: e }))))
            )
          })
          return yield* round.pipe(
            Effect.retry({ while: (e) => e._tag === "WatchBroken", schedule: brokenWatchPause }),
            Effect.catchTag("WatchBroken", (e) => Effect.fail(e.cause)),
            Effect.repeat({ until: Option.isSome }),
            Effect.map((p) => Option.getOrThrow(p))
          )
        })

      const untilGone: PodWaitsShape["untilGone"] = (name, uid, bound) =>
        Effect.gen(function*() {
          const last = yield* Ref.make<Option.Option<k8s.V1Pod>>(Option.none())
          /** One round: `true` once the pod is gone. */
          const round = Effect.gen(function*() {
            const cur = yield* readPod(name)
            if (Option.isNone(cur) || (uid !== undefined && cur.value.metadata?.uid !== uid)) return true
            yield* Ref.set(last, cur)
            return yield* watchPod(cur.value, name).pipe(
              Stream.tap((e) => (e.type === "BOOKMARK" ? Effect.void : Ref.set(last, Option.some(e.object)))),
              Stream.takeUntil((e) => e.type === "DELETED"),
              Stream.runLast,
              Effect.map((ev) => Option.isSome(ev) && ev.value.type === "DELETED"),
              Effect.catchIf((e) => e.reason === "Gone", () => Effect.succeed(false))
            )
          })
          yield* Effect.repeat(round, { until: (gone) => gone })
          return yield* Ref.get(last)
        }).pipe(
          Effect.timeoutOption(bound),
          Effect.map(Option.flatten)
        )

      return PodWaits.of({ untilDecided, untilGone })
    })
  )
}
