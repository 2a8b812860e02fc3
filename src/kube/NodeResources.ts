// size: the slot rules (node eligibility, exact quantities, per-pod requests) and the two informers whose caches they read; the pod cache's decoder (a pod's PodState, not the pod) and what their list pages keep took it just over 400
/**
 * Resource slots from the cluster (spec §7.5, fixed): the worker nodes (Ready, schedulable, matching
 * `kubernetes.node-selector`, not tainted NoSchedule/NoExecute) and, per node, **allocatable** minus
 * the requests of the pods this agent does not manage (other tenants, system pods). The manager
 * accounts for our own kernels, so they are not subtracted. `resource.reserved-*` is subtracted from
 * the total once (it is the agent's reservation, not a per-node one).
 *
 * Nodes and pods are kept in memory by two informers (kube/Informer.ts: list + watch from the
 * resourceVersion, relist on 410 Gone and every `kubernetes.relist-interval`). The snapshot is
 * recomputed lazily after a change, so a heartbeat costs nothing when nothing moved.
 *
 * Quantities are parsed exactly (bigint): cpu in millicores, everything else in base units.
 */
import { Context, Duration, Effect, HashMap, Layer, Option, Schema } from "effect"
import { AgentConfig } from "../config/AgentConfig.ts"
import * as Informer from "./Informer.ts"
import { AGENT_ID_LABEL, MANAGED_BY, MANAGED_BY_VALUE } from "./KernelObjects.ts"
import { KubeClient } from "./KubeClient.ts"
import { MemoryRelease } from "../observability/MemoryRelease.ts"

// ---------------------------------------------------------------------------------------------
// Kubernetes quantities (resource.Quantity): <sign><digits>[.<digits>]<suffix>, exact.

/** An exact quantity: `mantissa × 10^exp10 × 2^exp2`. */
export interface Quantity {
  readonly mantissa: bigint
  readonly exp10: number
  readonly exp2: number
}

const binarySuffix: Record<string, number> = { Ki: 10, Mi: 20, Gi: 30, Ti: 40, Pi: 50, Ei: 60 }
const decimalSuffix: Record<string, number> = { n: -9, u: -6, m: -3, "": 0, k: 3, M: 6, G: 9, T: 12, P: 15, E: 18 }

/** Parses a Kubernetes quantity ("100m", "2", "1Gi", "1e3", "512M", "0.5", "+1.5Ki"); undefined if malformed. */
export const parseQuantity = (input: string): Quantity | undefined => {
  const m = /^([+-]?)(\d+(?:\.\d*)?|\.\d+)(?:(Ki|Mi|Gi|Ti|Pi|Ei)|([eE][+-]?\d+)|(n|u|m|k|M|G|T|P|E)?)$/.exec(input.trim())
  if (m === null) return undefined
  const [, sign, number, bin, exp, dec] = m
  const [intPart = "", fracPart = ""] = number!.split(".")
  let mantissa = BigInt(`${intPart}${fracPart}` || "0")
  if (sign === "-") mantissa = -mantissa
  let exp10 = -fracPart.length
  let exp2 = 0
  if (bin !== undefined) exp2 = binarySuffix[bin]!
  else if (exp !== undefined) {
    const e = Number(exp.slice(1))
    if (!Number.isSafeInteger(e) || Math.abs(e) > 1000) return undefined
    exp10 += e
  } else exp10 += decimalSuffix[dec ?? ""]!
  return { mantissa, exp10, exp2 }
}

const ceilDiv = (a: bigint, b: bigint): bigint => {
  const q = a / b
  return a % b !== 0n && (a > 0n) === (b > 0n) ? q + 1n : q
}

/** `q × 10^scale`, rounded up to an integer (Kubernetes rounds requests up: `MilliValue`, `Value`). */
export const quantityScaled = (q: Quantity, scale: number): bigint => {
  const num = q.mantissa * (1n << BigInt(q.exp2))
  const e = q.exp10 + scale
  return e >= 0 ? num * 10n ** BigInt(e) : ceilDiv(num, 10n ** BigInt(-e))
}

/** A quantity string as an integer in units of `10^-scale` (0 when absent or malformed). */
export const quantityValue = (input: string | undefined, scale = 0): bigint => {
  if (input === undefined) return 0n
  const q = parseQuantity(input)
  return q === undefined ? 0n : quantityScaled(q, scale)
}

/** A non-negative amount in units of `10^-scale` as a decimal string: (3500n, 3) → "3.5". */
export const formatScaled = (value: bigint, scale: number): string => {
  if (scale === 0) return value.toString()
  const neg = value < 0n
  const abs = neg ? -value : value
  const base = 10n ** BigInt(scale)
  const frac = (abs % base).toString().padStart(scale, "0").replace(/0+$/, "")
  return `${neg ? "-" : ""}${abs / base}${frac === "" ? "" : `.${frac}`}`
}

// ---------------------------------------------------------------------------------------------
// Slots

/** A Backend.AI slot backed by a Kubernetes resource. `scale` = decimal digits kept (cpu: millicores). */
export interface SlotDef {
  readonly slot: string
  readonly resource: string
  readonly unit: "count" | "bytes"
  readonly scale: number
}

/** cpu (cores), mem (bytes), and the accelerators we know (nvidia.com/gpu → cuda.device). */
export const SLOT_DEFS: ReadonlyArray<SlotDef> = [
  { slot: "cpu", resource: "cpu", unit: "count", scale: 3 },
  { slot: "mem", resource: "memory", unit: "bytes", scale: 0 },
  { slot: "cuda.device", resource: "nvidia.com/gpu", unit: "count", scale: 0 }
]

/** Amounts per slot, in units of `10^-scale` of the slot (cpu in millicores). */
export type SlotAmounts = Readonly<Record<string, bigint>>

const zero = (): Record<string, bigint> => Object.fromEntries(SLOT_DEFS.map((d) => [d.slot, 0n]))

const amountsOf = (resources: Readonly<Record<string, string>> | undefined): Record<string, bigint> => {
  const out = zero()
  if (resources === undefined) return out
  for (const d of SLOT_DEFS) out[d.slot] = quantityValue(resources[d.resource], d.scale)
  return out
}

/** `{slot: decimal string}` of amounts (cpu back in cores). */
export const formatAmounts = (a: SlotAmounts): Record<string, string> =>
  Object.fromEntries(SLOT_DEFS.map((d) => [d.slot, formatScaled(a[d.slot] ?? 0n, d.scale)]))

// ---------------------------------------------------------------------------------------------
// The Kubernetes objects, as much of them as we read (decoded at the edge).

const Taint = Schema.Struct({ key: Schema.optional(Schema.String), effect: Schema.optional(Schema.String) })
const Condition = Schema.Struct({ type: Schema.String, status: Schema.String })
const Address = Schema.Struct({ type: Schema.String, address: Schema.String })
const Meta = Schema.Struct({
  name: Schema.optional(Schema.String),
  namespace: Schema.optional(Schema.String),
  uid: Schema.optional(Schema.String),
  resourceVersion: Schema.optional(Schema.String),
  labels: Schema.optional(Schema.NullOr(Schema.Record(Schema.String, Schema.String)))
})
const ResourceList = Schema.optional(Schema.NullOr(Schema.Record(Schema.String, Schema.String)))

export const NodeObject = Schema.Struct({
  metadata: Schema.optional(Meta),
  spec: Schema.optional(Schema.Struct({
    unschedulable: Schema.optional(Schema.NullOr(Schema.Boolean)),
    taints: Schema.optional(Schema.NullOr(Schema.Array(Taint)))
  })),
  status: Schema.optional(Schema.Struct({
    allocatable: ResourceList,
    capacity: ResourceList,
    conditions: Schema.optional(Schema.NullOr(Schema.Array(Condition))),
    addresses: Schema.optional(Schema.NullOr(Schema.Array(Address)))
  }))
})
export type NodeObject = typeof NodeObject.Type

const Container = Schema.Struct({
  resources: Schema.optional(Schema.NullOr(Schema.Struct({ requests: ResourceList })))
})
export const PodObject = Schema.Struct({
  metadata: Schema.optional(Meta),
  spec: Schema.optional(Schema.Struct({
    nodeName: Schema.optional(Schema.NullOr(Schema.String)),
    containers: Schema.optional(Schema.NullOr(Schema.Array(Container))),
    initContainers: Schema.optional(Schema.NullOr(Schema.Array(Container))),
    overhead: ResourceList
  })),
  status: Schema.optional(Schema.Struct({ phase: Schema.optional(Schema.NullOr(Schema.String)) }))
})
export type PodObject = typeof PodObject.Type

/** What we keep of a node. */
export interface NodeState {
  readonly name: string
  readonly internalIP: string | undefined
  /** Ready, schedulable and not tainted NoSchedule/NoExecute (the label selector is applied by the API). */
  readonly worker: boolean
  readonly allocatable: SlotAmounts
}

/** What we keep of a foreign pod: where it runs and what it requests. */
export interface PodState {
  readonly node: string
  readonly requests: SlotAmounts
}


export const nodeState = (n: NodeObject): NodeState | undefined => {
  const name = n.metadata?.name
  if (name === undefined) return undefined
  const ready = (n.status?.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True")
  const tainted = (n.spec?.taints ?? []).some((t) => t.effect === "NoSchedule" || t.effect === "NoExecute")
  const internalIP = (n.status?.addresses ?? []).find((a) => a.type === "InternalIP")?.address
  return {
    name,
    internalIP,
    worker: ready && n.spec?.unschedulable !== true && !tainted,
    allocatable: amountsOf(n.status?.allocatable ?? n.status?.capacity ?? undefined)
  }
}

/**
 * The pod's effective request (what the scheduler reserves): max(Σ containers, max init container)
 * + overhead. Undefined when the pod does not count: not bound, terminal, or one of our kernels.
 */
export const podState = (p: PodObject, agentId: string): PodState | undefined => {
  const node = p.spec?.nodeName
  if (node === undefined || node === null || node === "") return undefined
  const phase = p.status?.phase
  if (phase === "Succeeded" || phase === "Failed") return undefined
  const labels = p.metadata?.labels ?? {}
  if (labels[MANAGED_BY] === MANAGED_BY_VALUE && labels[AGENT_ID_LABEL] === agentId) return undefined
  const sum = zero()
  for (const c of p.spec?.containers ?? []) {
    const r = amountsOf(c.resources?.requests ?? undefined)
    for (const d of SLOT_DEFS) sum[d.slot] = sum[d.slot]! + r[d.slot]!
  }
  for (const c of p.spec?.initContainers ?? []) {
    const r = amountsOf(c.resources?.requests ?? undefined)
    for (const d of SLOT_DEFS) if (r[d.slot]! > sum[d.slot]!) sum[d.slot] = r[d.slot]!
  }
  const overhead = amountsOf(p.spec?.overhead ?? undefined)
  for (const d of SLOT_DEFS) sum[d.slot] = sum[d.slot]! + overhead[d.slot]!
  return { node, requests: sum }
}

// ---------------------------------------------------------------------------------------------
// Snapshot

export interface WorkerNode {
  readonly name: string
  readonly internalIP: string | undefined
  readonly allocatable: SlotAmounts
  /** Requests of pods we do not manage, on this node. */
  readonly requested: SlotAmounts
  /** allocatable − requested, floored at 0: the largest kernel this node can still place. */
  readonly free: SlotAmounts
}

export interface ResourceSnapshot {
  /** Σ free over workers, minus `resource.reserved-*`, floored at 0 (cpu in millicores). */
  readonly available: SlotAmounts
  readonly workers: ReadonlyArray<WorkerNode>
  /** Per slot, the largest `free` of any single worker (the largest placeable shape). */
  readonly largestPlaceable: SlotAmounts
  /** Nodes known (matching the selector) but not workers (NotReady, cordoned, tainted). */
  readonly excluded: ReadonlyArray<string>
}

/** Pure: the snapshot of the given nodes and foreign pods. */
export const computeSnapshot = (
  nodes: Iterable<NodeState>,
  pods: Iterable<PodState>,
  reserved: SlotAmounts
): ResourceSnapshot => {
  const requestedByNode = new Map<string, Record<string, bigint>>()
  for (const p of pods) {
    let acc = requestedByNode.get(p.node)
    if (acc === undefined) requestedByNode.set(p.node, acc = zero())
    for (const d of SLOT_DEFS) acc[d.slot] = acc[d.slot]! + (p.requests[d.slot] ?? 0n)
  }
  const workers: Array<WorkerNode> = []
  const excluded: Array<string> = []
  const total = zero()
  const largest = zero()
  for (const n of nodes) {
    if (!n.worker) {
      excluded.push(n.name)
      continue
    }
    const requested = requestedByNode.get(n.name) ?? zero()
    const free = zero()
    for (const d of SLOT_DEFS) {
      const f = (n.allocatable[d.slot] ?? 0n) - requested[d.slot]!
      free[d.slot] = f > 0n ? f : 0n
      total[d.slot] = total[d.slot]! + free[d.slot]!
      if (free[d.slot]! > largest[d.slot]!) largest[d.slot] = free[d.slot]!
    }
    workers.push({ name: n.name, internalIP: n.internalIP, allocatable: n.allocatable, requested, free })
  }
  workers.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  excluded.sort()
  for (const d of SLOT_DEFS) {
    const v = total[d.slot]! - (reserved[d.slot] ?? 0n)
    total[d.slot] = v > 0n ? v : 0n
  }
  return { available: total, workers, largestPlaceable: largest, excluded }
}

/** `resource.reserved-cpu` (cores, may be fractional) and `reserved-mem` (bytes) as slot amounts. */
export const reservedAmounts = (resource: { readonly "reserved-cpu": number; readonly "reserved-mem": number }): SlotAmounts => ({
  ...zero(),
  cpu: BigInt(Math.round(resource["reserved-cpu"] * 1000)),
  mem: BigInt(Math.floor(resource["reserved-mem"]))
})

// ---------------------------------------------------------------------------------------------
// The service

export class NodeResourcesError extends Schema.TaggedError<NodeResourcesError>()("NodeResourcesError", {
  reason: Schema.Literals(["NotSynced"]),
  message: Schema.String
}) {}

export interface NodeResourcesShape {
  /** The current resources; fails with `NotSynced` until nodes and pods were listed once. */
  readonly snapshot: Effect.Effect<ResourceSnapshot, NodeResourcesError>
  /** The worker nodes (name, InternalIP, amounts); empty until synced. */
  readonly workers: Effect.Effect<ReadonlyArray<WorkerNode>>
  /** Completes once nodes and pods have been listed once. */
  readonly synced: Effect.Effect<void>
}

export interface NodeResourcesOptions {
  readonly agentId: string
  /** Label selector of the worker nodes ("" = all). */
  readonly nodeSelector: string
  readonly reserved: SlotAmounts
  readonly relistInterval: Duration.Input
  /** How long `make` waits for the first sync before returning anyway (heartbeats then fail until synced). */
  readonly initialSyncTimeout?: Duration.Input
}

export const decodeNode = Schema.decodeUnknownEffect(NodeObject)
const decodePod = Schema.decodeUnknownEffect(PodObject)

/**
 * What a list keeps of each node / pod as its page arrives: its decoding (a Struct decodes to its
 * declared fields only, and decoding that again gives it back: the informer's decoder sees what it
 * would have made of the whole object); one that does not decode stays as it came, for the decoder
 * to report and leave out. A node's image list, a pod's containers' specs and managedFields go here.
 */
const keepDecoded = <A>(schema: Schema.Codec<A, unknown>) => {
  const decode = Schema.decodeUnknownOption(schema)
  return (raw: unknown): unknown => Option.getOrElse(decode(raw), () => raw)
}
export const keepNode = keepDecoded(NodeObject)
export const keepPod = keepDecoded(PodObject)

/**
 * The pods informer's decoder: a pod from the API, checked (`PodObject`), cached as what the snapshot
 * needs of it — its `PodState`, or null when it does not count (this agent's kernels, unbound or
 * terminal pods) — instead of the decoded pod (1,000 kernel pods held 1.2 MiB as decoded pods; the
 * snapshot no longer re-parses every pod's quantities after each change either).
 */
export const decodePodState = (agentId: string) => (raw: unknown): Effect.Effect<PodState | null, Schema.SchemaError> =>
  Effect.map(decodePod(raw), (p) => podState(p, agentId) ?? null)

export class NodeResources extends Context.Service<NodeResources, NodeResourcesShape>()("bai-agent/kube/NodeResources") {
  static readonly make = Effect.fnUntraced(function*(options: NodeResourcesOptions) {
    const kube = yield* KubeClient
    // a list of every node and every pod is a burst: what it leaves unused is given back after it
    const { afterBurst } = yield* MemoryRelease
    const labelSelector = options.nodeSelector === "" ? undefined : options.nodeSelector
    const nodes = yield* Informer.make({
      kind: "nodes",
      path: "/api/v1/nodes",
      query: { labelSelector },
      list: kube.list("list nodes", (api, page) => api.listNode(labelSelector === undefined ? page : { labelSelector, ...page }), keepNode),
      decode: decodeNode,
      relistInterval: options.relistInterval,
      onList: afterBurst
    })
    // bound, non-terminal pods only (server-side): a pod that finishes comes as DELETED
    const fieldSelector = "spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed"
    const pods = yield* Informer.make({
      kind: "pods",
      path: "/api/v1/pods",
      query: { fieldSelector },
      list: kube.list("list pods", (api, page) => api.listPodForAllNamespaces({ fieldSelector, ...page }), keepPod),
      decode: decodePodState(options.agentId),
      relistInterval: options.relistInterval,
      onList: afterBurst
    })

    const synced = Effect.all([nodes.synced, pods.synced], { discard: true })
    const isSynced = Effect.all([nodes.isSynced, pods.isSynced]).pipe(Effect.map(([a, b]) => a && b))
    // recomputed only when either cache changed (each change is a new map)
    let memo: { readonly nodes: unknown; readonly pods: unknown; readonly snapshot: ResourceSnapshot } | undefined
    const current = Effect.gen(function*() {
      const n = yield* nodes.items
      const p = yield* pods.items
      if (memo !== undefined && memo.nodes === n && memo.pods === p) return memo.snapshot
      const nodeStates: Array<NodeState> = []
      for (const o of HashMap.values(n)) {
        const s = nodeState(o)
        if (s !== undefined) nodeStates.push(s)
      }
      const podStates: Array<PodState> = []
      for (const s of HashMap.values(p)) if (s !== null) podStates.push(s)
      memo = { nodes: n, pods: p, snapshot: computeSnapshot(nodeStates, podStates, options.reserved) }
      return memo.snapshot
    })
    const snapshot = isSynced.pipe(
      Effect.flatMap((ok) =>
        ok ? current : Effect.fail(new NodeResourcesError({ reason: "NotSynced", message: "nodes and pods not listed yet" }))
      )
    )

    yield* synced.pipe(
      Effect.timeoutOrElse({
        duration: options.initialSyncTimeout ?? "30 seconds",
        orElse: () => Effect.logWarning("nodes/pods not listed yet; heartbeats wait for the Kubernetes API")
      })
    )
    return NodeResources.of({
      snapshot,
      workers: isSynced.pipe(Effect.flatMap((ok) => (ok ? Effect.map(current, (s) => s.workers) : Effect.succeed([])))),
      synced
    })
  })

  /** From AgentConfig (agent id, `kubernetes.node-selector`, `resource.reserved-*`, `kubernetes.relist-interval`). */
  static readonly layer = Layer.effect(
    NodeResources,
    Effect.gen(function*() {
      const { agentId, config } = yield* AgentConfig
      return yield* NodeResources.make({
        agentId,
        nodeSelector: config.kubernetes["node-selector"],
        reserved: reservedAmounts(config.resource),
        relistInterval: Duration.seconds(config.kubernetes["relist-interval"])
      })
    })
  )

  /** A fixed snapshot (tests of consumers). */
  static readonly layerTest = (snapshot: ResourceSnapshot): Layer.Layer<NodeResources> =>
    Layer.succeed(NodeResources, NodeResources.of({ snapshot: Effect.succeed(snapshot), workers: Effect.succeed(snapshot.workers), synced: Effect.void }))
}
