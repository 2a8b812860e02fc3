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
import { agentSelector } from "../../kube/KernelObjects.ts"
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

/**
 * A pod from the API, checked as far as its consumers rely on without looking: an object whose
 * metadata, spec and status, when present, are objects (the fields read further are optional and
 * checked where they are read).
 */
const decodePod = Schema.decodeUnknownEffect(Schema.declare((u: unknown): u is k8s.V1Pod =>
  isRecord(u) && ["metadata", "spec", "status"].every((f) => u[f] === undefined || isRecord(u[f]))
))

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
        list: kube.core("list pods", (api) => api.listNamespacedPod({ namespace, labelSelector })).pipe(
          Effect.map((l) => ({ items: l.items, resourceVersion: l.metadata?.resourceVersion }))
        ),
        decode: decodePod,
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
