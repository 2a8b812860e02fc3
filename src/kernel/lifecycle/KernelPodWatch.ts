/**
 * Concern: the one list-and-watch of this agent's kernel pods (kube/Informer.ts, label-selected),
 * shared by everything that follows pods: the create and delete waits (PodWaits) and the
 * Reconciler. Consumers subscribe to its changes — each watch event after the cache took it, and
 * `Listed` after each (re)list, since a list says nothing about what changed meanwhile — and read
 * the cache. Subscribing first and reading the cache after misses nothing.
 */
import type * as k8s from "@kubernetes/client-node"
import { Context, Duration, Effect, Layer, type Option, PubSub, Schema, type Scope } from "effect"
import { AgentConfig } from "../../config/AgentConfig.ts"
import { agentSelector, RECOVERY_ANNOTATION } from "../../kube/KernelObjects.ts"
import * as Informer from "../../kube/Informer.ts"
import { KubeClient } from "../../kube/KubeClient.ts"

/** What a subscriber hears: a pod's watch event, or a (re)list that replaced the cache. */
export type PodChange =
  | { readonly _tag: "Event"; readonly event: Informer.InformerEvent<k8s.V1Pod> }
  | { readonly _tag: "Listed" }

export interface KernelPodWatchShape {
  /** The cached pod named `name` (in the agent's namespace). */
  readonly get: (name: string) => Effect.Effect<Option.Option<k8s.V1Pod>>
  /** The changes from now on, in order, for as long as the scope lives. */
  readonly subscribe: Effect.Effect<PubSub.Subscription<PodChange>, never, Scope.Scope>
  /** Completes once the first list went into the cache. */
  readonly synced: Effect.Effect<void>
}

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

/** The metadata fields a cached pod keeps (no managedFields, ownerReferences, timestamps but deletion's). */
const KEPT_METADATA = ["name", "namespace", "uid", "resourceVersion", "labels", "annotations", "deletionTimestamp", "deletionGracePeriodSeconds"] as const

/** The fields of `from` named in `keys` that are present (no key invented for an absent field). */
const pick = (from: Record<string, unknown>, keys: ReadonlyArray<string>): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  for (const k of keys) if (from[k] !== undefined) out[k] = from[k]
  return out
}

const isPodShaped = (u: unknown): u is k8s.V1Pod =>
  isRecord(u) && ["metadata", "spec", "status"].every((f) => u[f] === undefined || isRecord(u[f])) &&
  (!isRecord(u.metadata) || ["labels", "annotations"].every((f) => {
    const v = (u.metadata as Record<string, unknown>)[f]
    return v === undefined || isRecord(v)
  }))
const checkPod = Schema.decodeUnknownEffect(Schema.declare(isPodShaped))

/** `from` without the key `key` (the same object when it has none). */
const omit = <A extends object>(from: A, key: string): A => {
  if (!(key in from)) return from
  const out = { ...from } as Record<string, unknown>
  delete out[key]
  return out as A
}

const projectPod = (pod: k8s.V1Pod): k8s.V1Pod => {
  const out: k8s.V1Pod = {}
  if (pod.metadata !== undefined) {
    const metadata = pick(pod.metadata as Record<string, unknown>, KEPT_METADATA) as k8s.V1ObjectMeta
    if (metadata.annotations !== undefined) metadata.annotations = omit(metadata.annotations, RECOVERY_ANNOTATION)
    out.metadata = metadata
  }
  if (pod.spec !== undefined) {
    const spec = pick(pod.spec as unknown as Record<string, unknown>, ["nodeName"]) as unknown as k8s.V1PodSpec
    const containers = (pod.spec as { readonly containers?: unknown }).containers
    if (Array.isArray(containers)) spec.containers = containers.map((c: { readonly name?: unknown }) => ({ name: c?.name }) as k8s.V1Container)
    out.spec = spec
  }
  if (pod.status !== undefined) {
    const status: k8s.V1PodStatus = { ...pod.status }
    delete status.podIPs // podIP and hostIP are kept: the plural lists are read by no consumer
    delete status.hostIPs
    // at their exact length: client-node's deserializer pushes into a new array, whose backing store
    // then holds 17 slots for one element (152 bytes)
    if (Array.isArray(status.conditions)) status.conditions = status.conditions.slice()
    if (Array.isArray(status.containerStatuses)) status.containerStatuses = status.containerStatuses.slice()
    out.status = status
  }
  return out
}

/**
 * A pod from the API, checked as far as its consumers rely on without looking (an object whose
 * metadata, spec and status, when present, are objects, and so are the metadata's labels and
 * annotations; the fields read further are optional and checked where they are read), and
 * projected to what the consumers of the pod watch read: the metadata of KEPT_METADATA but the
 * recovery annotation, the spec's `nodeName` and its containers' names (a `V1PodSpec` needs
 * `containers`), the status but `podIPs` and `hostIPs` (its arrays at their exact length). The rest — managedFields
 * above all (3.3 of the 7.1 KiB a listed kernel pod held, bench/README.md "1,000 kernels, all runner
 * connections"), then the recovery record, the containers' spec and the address lists (~1 KiB of 3–4 left,
 * "Goal 2 at 1,000 kernels, V8's side") — is not cached: pods read for anything else (adoption's
 * recovery record) come from the API, not from this cache.
 */
export const decodeKernelPod = (raw: unknown): Effect.Effect<k8s.V1Pod, Schema.SchemaError> => Effect.map(checkPod(raw), projectPod)

/**
 * What a list keeps of each pod as its page arrives: the cached projection already (the projection of
 * a projection is itself, so `decodeKernelPod` of it is what it would have been of the pod); a pod that
 * fails the check stays as it came, for the decoder to report and leave out.
 */
export const keepKernelPod = (pod: k8s.V1Pod): k8s.V1Pod => (isPodShaped(pod) ? projectPod(pod) : pod)

export class KernelPodWatch extends Context.Service<KernelPodWatch, KernelPodWatchShape>()("bai-agent/kernel/lifecycle/KernelPodWatch") {
  static readonly layer = Layer.effect(
    KernelPodWatch,
    Effect.gen(function*() {
      const { agentId, config } = yield* AgentConfig
      const kube = yield* KubeClient
      const namespace = config.kubernetes.namespace
      const labelSelector = agentSelector(agentId)
      const changes = yield* PubSub.unbounded<PodChange>()
      // metrics label `resource`: the agent's kernel pods (NodeResources watches all pods as "pods")
      const informer = yield* Informer.make({
        kind: "kernel-pods",
        path: `/api/v1/namespaces/${namespace}/pods`,
        query: { labelSelector },
        list: kube.list("list pods", (api, page) => api.listNamespacedPod({ namespace, labelSelector, ...page }), keepKernelPod),
        decode: decodeKernelPod,
        relistInterval: Duration.seconds(config.kubernetes["relist-interval"]),
        onEvent: (event) => PubSub.publish(changes, { _tag: "Event", event }).pipe(Effect.asVoid),
        onList: PubSub.publish(changes, { _tag: "Listed" }).pipe(Effect.asVoid)
      })
      return KernelPodWatch.of({
        get: (name) => informer.get(`${namespace}/${name}`),
        subscribe: PubSub.subscribe(changes),
        synced: informer.synced
      })
    })
  )
}
