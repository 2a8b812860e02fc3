/**
 * The agent-wide NetworkPolicy fence around its kernel pods (see `buildRunnerFence`): applied (created
 * or replaced) at start-up, before any kernel is created, from `[kubernetes.network-policy]`. Each
 * kernel's service ports are opened by its own policy (`buildServicePolicy`, made with the pod).
 * NetworkPolicies need a network plugin that enforces them; the API server accepts them either way.
 */
import { Effect } from "effect"
import * as os from "node:os"
import { buildRunnerFence, type RunnerAddress } from "./KernelObjects.ts"
import type { KubeClient } from "./KubeClient.ts"

/** This host's own non-loopback addresses: where the agent's connections to the runners come from. */
const hostAddresses = (): Array<string> =>
  Object.values(os.networkInterfaces())
    .flatMap((list) => list ?? [])
    .filter((a) => !a.internal && !(a.family === "IPv6" && a.address.toLowerCase().startsWith("fe80:")))
    .map((a) => a.address)

export interface RunnerFenceSettings {
  readonly enabled: boolean
  /** Empty = {@link hostAddresses}. */
  readonly "agent-sources": ReadonlyArray<string>
}

/**
 * Creates or replaces the fence; returns a problem (also logged as an error) when it could not: the
 * runner ports are then reachable by whoever reaches a node.
 */
export const ensureRunnerFence = Effect.fn("RunnerFence.ensure")(function*(
  kube: KubeClient["Service"],
  namespace: string,
  agentId: string,
  settings: RunnerFenceSettings,
  runnerAddress: RunnerAddress
) {
  if (!settings.enabled) {
    yield* Effect.logWarning(
      runnerAddress === "pod-ip"
        ? "kubernetes.network-policy.enabled = false: the kernels' runner ports (2000/2001, no NodePorts with runner-address = \"pod-ip\") accept anyone who reaches the pod network"
        : "kubernetes.network-policy.enabled = false: the kernels' runner ports (2000/2001 behind NodePorts) accept anyone who reaches a node"
    )
    return undefined
  }
  const sources = settings["agent-sources"].length > 0 ? settings["agent-sources"] : hostAddresses()
  const body = buildRunnerFence(namespace, agentId, sources)
  const name = body.metadata!.name!
  const outcome = yield* kube.networking("create runner fence", (api) => api.createNamespacedNetworkPolicy({ namespace, body })).pipe(
    Effect.catchIf(
      (e) => e.reason === "AlreadyExists",
      () => kube.networking("replace runner fence", (api) => api.replaceNamespacedNetworkPolicy({ name, namespace, body }))
    ),
    Effect.as(undefined),
    Effect.catch((e) =>
      Effect.succeed(
        `cannot apply the NetworkPolicy ${namespace}/${name} fencing the runner ports (${e.reason}: ${e.message}); ` +
          "re-apply deploy/kubernetes/rbac.yaml (networkpolicies) or set kubernetes.network-policy.enabled = false knowingly"
      )
    )
  )
  if (outcome !== undefined) yield* Effect.logError(outcome)
  else yield* Effect.logInfo(`runner ports fenced by NetworkPolicy ${namespace}/${name}: 2000/2001 only from ${sources.join(", ") || "nobody"} (runner-address ${runnerAddress})`)
  return outcome
})
