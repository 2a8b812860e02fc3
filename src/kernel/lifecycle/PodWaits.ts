/**
 * Concern: waiting on one kernel pod — until it runs (or fails decisively) and until it is gone.
 * Each wait follows the agent's one shared pod watch (KernelPodWatch: an informer over the agent's
 * pods): it subscribes, then reads, and reacts to the pod's watch events as they come (no polling,
 * no watch of its own). After a relist (410, the relist interval) the cache is read again, and a pod
 * the cache does not have is confirmed with a GET (the cache may be behind the API).
 */
import type * as k8s from "@kubernetes/client-node"
import { Context, Data, type Duration, Effect, Layer, Option, PubSub } from "effect"
import { AgentConfig } from "../../config/AgentConfig.ts"
import { classifyCreating } from "../../kube/KernelObjects.ts"
import { KubeClient, type KubeError, optional } from "../../kube/KubeClient.ts"
import { KernelPodWatch } from "./KernelPodWatch.ts"

/** The pod named in a wait is not there (any more) or was replaced by another uid. */
export class PodVanished extends Data.TaggedError("PodVanished")<{}> {}

export interface PodWaitsShape {
  /**
   * Follows the pod until `classifyCreating` is decisive (not Pending) and returns it; fails with
   * `PodVanished` when it disappears. `seed` (the POST's answer) is the version to start from when
   * the shared cache has not seen the pod yet. `observe` sees each version (bound to a node, last state).
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
const uidOf = (p: k8s.V1Pod) => p.metadata?.uid
/** A deletion seen while creating reads as a pod being deleted (classified Failed). */
const asDeleted = (p: k8s.V1Pod): k8s.V1Pod => ({ ...p, metadata: { ...p.metadata, deletionTimestamp: p.metadata?.deletionTimestamp ?? new Date() } })

export class PodWaits extends Context.Service<PodWaits, PodWaitsShape>()("bai-agent/kernel/lifecycle/PodWaits") {
  static readonly layer = Layer.effect(
    PodWaits,
    Effect.gen(function*() {
      const { config } = yield* AgentConfig
      const kube = yield* KubeClient
      const podWatch = yield* KernelPodWatch
      const namespace = config.kubernetes.namespace
      const keyOf = (name: string) => `${namespace}/${name}`
      const readPod = (name: string) => optional(kube.core("read pod", (api) => api.readNamespacedPod({ name, namespace })))
      /** The pod now: the cache's version, or (not cached, or another uid there) the API's. */
      const current = (name: string, uid: string | undefined) =>
        Effect.flatMap(podWatch.get(name), (cached) =>
          Option.isSome(cached) && (uid === undefined || uidOf(cached.value) === uid) ? Effect.succeed(cached) : readPod(name))

      const untilDecided: PodWaitsShape["untilDecided"] = (name, uid, seed, observe) =>
        Effect.gen(function*() {
          const changes = yield* podWatch.subscribe
          const key = keyOf(name)
          const cached = yield* podWatch.get(name)
          const first = Option.isSome(cached) && uidOf(cached.value) === uid ? cached.value : seed
          yield* observe(first)
          if (decisive(first)) return first
          for (;;) {
            const change = yield* PubSub.take(changes)
            let version: k8s.V1Pod
            if (change._tag === "Listed") {
              const now = yield* current(name, uid)
              if (Option.isNone(now) || uidOf(now.value) !== uid) return yield* new PodVanished()
              version = now.value
            } else {
              const { event } = change
              if (event.key !== key) continue
              if (uidOf(event.object) !== uid) {
                // an earlier pod of the name going away is not news; another pod under the name is
                if (event.type === "DELETED") continue
                return yield* new PodVanished()
              }
              version = event.type === "DELETED" ? asDeleted(event.object) : event.object
            }
            yield* observe(version)
            if (decisive(version)) return version
          }
        }).pipe(Effect.scoped)

      const untilGone: PodWaitsShape["untilGone"] = (name, uid, bound) =>
        Effect.gen(function*() {
          const changes = yield* podWatch.subscribe
          const key = keyOf(name)
          // the API's word first: a pod just made may not be in the cache yet
          const cur = yield* readPod(name)
          if (Option.isNone(cur) || (uid !== undefined && uidOf(cur.value) !== uid)) return Option.none<k8s.V1Pod>()
          const target = uidOf(cur.value)
          let last: k8s.V1Pod = cur.value
          for (;;) {
            const change = yield* PubSub.take(changes)
            if (change._tag === "Listed") {
              const now = yield* current(name, target)
              if (Option.isNone(now) || uidOf(now.value) !== target) return Option.some(last)
              last = now.value
              continue
            }
            const { event } = change
            if (event.key !== key || uidOf(event.object) !== target) continue
            last = event.object
            if (event.type === "DELETED") return Option.some(last)
          }
        }).pipe(
          Effect.scoped,
          Effect.timeoutOption(bound),
          Effect.map(Option.flatten)
        )

      return PodWaits.of({ untilDecided, untilGone })
    })
  )
}
