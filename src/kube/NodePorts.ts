/**
 * NodePort allocation. The agent chooses every kernel's NodePorts itself from `container.port-range`
 * (default 30000–31000) and sets them explicitly on the Service; a port the API server reports as
 * taken (422 "provided port is already allocated") is remembered as foreign and another is chosen.
 * Ports of adopted kernels are claimed at start-up. With `kubernetes.runner-address = "pod-ip"` a
 * kernel gets NodePorts for its service ports only (`exposedPorts`). At start-up the cluster's own NodePort range is
 * probed with a dry-run Service so that a `port-range` outside it is reported clearly.
 */
import type * as k8s from "@kubernetes/client-node"
import { Context, Data, Effect, Layer, Random, Ref } from "effect"
import { AgentConfig } from "../config/AgentConfig.ts"
import { KubeClient } from "./KubeClient.ts"
import { MANAGED_BY, MANAGED_BY_VALUE } from "./KernelObjects.ts"
import { ensureRunnerFence } from "./RunnerFence.ts"

export interface NodePortsShape {
  readonly range: readonly [number, number]
  /** Chooses `count` distinct free ports (random start, then the next free ones); fails if the range is exhausted. */
  readonly reserve: (count: number) => Effect.Effect<ReadonlyArray<number>, NoFreeNodePort>
  readonly release: (ports: Iterable<number>) => Effect.Effect<void>
  /** Marks ports as ours (adopted kernels). */
  readonly claim: (ports: Iterable<number>) => Effect.Effect<void>
  /** Marks ports as used by someone else (a 422 from the API server). */
  readonly markForeign: (ports: Iterable<number>) => Effect.Effect<void>
  readonly inUse: Effect.Effect<ReadonlySet<number>>
}

export class NoFreeNodePort extends Data.TaggedError("NoFreeNodePort")<{ readonly message: string }> {}

/** Ports named in a 422 "provided port is already allocated" message. */
export const allocatedPortsIn = (message: string): ReadonlyArray<number> => {
  const out: Array<number> = []
  const re = /Invalid value: (\d+): provided port is already allocated/g
  for (let m = re.exec(message); m !== null; m = re.exec(message)) out.push(Number(m[1]))
  return out
}

/** The cluster's range from a 422 "provided port is not in the valid range. The range of valid ports is 30000-32767". */
export const clusterRangeIn = (message: string): readonly [number, number] | undefined => {
  const m = /not in the valid range\. The range of valid ports is (\d+)-(\d+)/.exec(message)
  return m === null ? undefined : [Number(m[1]), Number(m[2])]
}

export class NodePorts extends Context.Service<NodePorts, NodePortsShape>()("bai-agent/kube/NodePorts") {
  static readonly make = (range: readonly [number, number]) =>
    Effect.gen(function*() {
      const [lo, hi] = range
      const ours = yield* Ref.make<ReadonlySet<number>>(new Set())
      const foreign = yield* Ref.make<ReadonlySet<number>>(new Set())
      const size = hi - lo + 1

      const reserve = (count: number) =>
        Effect.gen(function*() {
          const start = yield* Random.nextIntBetween(0, size, { halfOpen: true })
          const taken = yield* Ref.get(foreign)
          const picked = yield* Ref.modify(ours, (used): [ReadonlyArray<number>, ReadonlySet<number>] => {
            const out: Array<number> = []
            for (let i = 0; i < size && out.length < count; i++) {
              const p = lo + ((start + i) % size)
              if (!used.has(p) && !taken.has(p)) out.push(p)
            }
            if (out.length < count) return [[], used]
            const next = new Set(used)
            for (const p of out) next.add(p)
            return [out, next]
          })
          if (picked.length < count) return yield* Effect.fail(new NoFreeNodePort({ message: `no ${count} free NodePorts left in container.port-range ${lo}-${hi}` }))
          return picked
        })

      return NodePorts.of({
        range,
        reserve,
        release: (ports) =>
          Ref.update(ours, (used) => {
            const next = new Set(used)
            for (const p of ports) next.delete(p)
            return next
          }),
        claim: (ports) => Ref.update(ours, (used) => new Set([...used, ...ports])),
        markForeign: (ports) => Ref.update(foreign, (s) => new Set([...s, ...ports])),
        inUse: Ref.get(ours)
      })
    })

  /**
   * Creates (and at once deletes) a probe Service with NodePorts at both ends of `port-range`: a
   * range the cluster does not allow is logged as an error (every create would fail). A dry run is
   * not enough: the 1.20 API server skips NodePort allocation, and so the range check, in dry runs.
   * Returns the problem, if any.
   */
  static readonly checkClusterRange = Effect.fn("NodePorts.checkClusterRange")(function*(
    kube: KubeClient["Service"],
    namespace: string,
    range: readonly [number, number]
  ) {
    const body: k8s.V1Service = {
      metadata: { generateName: "bai-nodeport-probe-", labels: { [MANAGED_BY]: MANAGED_BY_VALUE } },
      spec: {
        type: "NodePort",
        ports: [...new Set(range)].map((nodePort, i) => ({ name: `p${i}`, port: 2000 + i, nodePort })),
        selector: { "backend.ai/probe": "none" }
      }
    }
    const outcome = yield* kube.core("probe NodePort range", (api) =>
      api.createNamespacedService({ namespace, body })).pipe(
        Effect.flatMap((svc) =>
          kube.core("delete NodePort probe", (api) =>
            api.deleteNamespacedService({ name: svc.metadata?.name ?? "", namespace, body: {} })).pipe(Effect.ignore, Effect.as(undefined))
        ),
        Effect.catch((e) => {
          const cluster = e.reason === "Invalid" ? clusterRangeIn(e.message) : undefined
          if (cluster !== undefined) {
            return Effect.succeed(
              `container.port-range ${range[0]}-${range[1]} is outside the cluster's NodePort range ${cluster[0]}-${cluster[1]} (kube-apiserver --service-node-port-range): kernels cannot be created`
            )
          }
          return Effect.logWarning(`cannot probe the cluster's NodePort range: ${e.message}`).pipe(Effect.as(undefined))
        }),
        // create and delete together: an interruption must not leave the probe behind
        Effect.uninterruptible
      )
    if (outcome !== undefined) yield* Effect.logError(outcome)
    return outcome
  })

  /**
   * From `container.port-range`; probes the cluster's range once at start-up and fences what the
   * NodePorts expose (the runner NetworkPolicy, `kubernetes.network-policy`) before any kernel exists.
   */
  static readonly layer = Layer.effect(
    NodePorts,
    Effect.gen(function*() {
      const { agentId, config } = yield* AgentConfig
      const kube = yield* KubeClient
      const range = config.container["port-range"] as readonly [number, number]
      yield* NodePorts.checkClusterRange(kube, config.kubernetes.namespace, range)
      yield* ensureRunnerFence(kube, config.kubernetes.namespace, agentId, config.kubernetes["network-policy"], config.kubernetes["runner-address"])
      return yield* NodePorts.make(range)
    })
  )
}
