import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import {
  computeSnapshot,
  decodeNode,
  decodePodState,
  formatAmounts,
  formatScaled,
  keepNode,
  keepPod,
  nodeState,
  type NodeObject,
  parseQuantity,
  type PodObject,
  podState,
  quantityValue,
  reservedAmounts
} from "../../src/kube/NodeResources.ts"

describe("Kubernetes quantities", () => {
  it("parses every suffix family exactly", () => {
    assert.strictEqual(quantityValue("100m", 3), 100n)
    assert.strictEqual(quantityValue("2", 3), 2000n)
    assert.strictEqual(quantityValue("2.5", 3), 2500n)
    assert.strictEqual(quantityValue("0.1", 3), 100n)
    assert.strictEqual(quantityValue(".5", 3), 500n)
    assert.strictEqual(quantityValue("1Gi"), 1073741824n)
    assert.strictEqual(quantityValue("1.5Gi"), 1610612736n)
    assert.strictEqual(quantityValue("512M"), 512_000_000n)
    assert.strictEqual(quantityValue("1e3"), 1000n)
    assert.strictEqual(quantityValue("1E3"), 1000n)
    assert.strictEqual(quantityValue("12e-1", 3), 1200n)
    assert.strictEqual(quantityValue("32920852Ki"), 32920852n * 1024n)
    assert.strictEqual(quantityValue("1k"), 1000n)
    assert.strictEqual(quantityValue("1Ei"), 1n << 60n)
    assert.strictEqual(quantityValue("100Ei"), 100n << 60n) // beyond 2^53: still exact
    assert.strictEqual(quantityValue("+3"), 3n)
    assert.strictEqual(quantityValue("-3"), -3n)
  })

  it("rounds up like MilliValue/Value", () => {
    assert.strictEqual(quantityValue("1n", 3), 1n)
    assert.strictEqual(quantityValue("1500u", 3), 2n)
    assert.strictEqual(quantityValue("0.5"), 1n)
    assert.strictEqual(quantityValue("1m"), 1n)
  })

  it("rejects malformed quantities", () => {
    for (const bad of ["", "abc", "1.2.3", "1Gb", "1 Gi", "1ki", "e3", "1e", "Gi"]) {
      assert.isUndefined(parseQuantity(bad), bad)
    }
    assert.strictEqual(quantityValue("garbage"), 0n)
    assert.strictEqual(quantityValue(undefined), 0n)
  })

  it("formats decimal strings", () => {
    assert.strictEqual(formatScaled(3500n, 3), "3.5")
    assert.strictEqual(formatScaled(16000n, 3), "16")
    assert.strictEqual(formatScaled(1n, 3), "0.001")
    assert.strictEqual(formatScaled(0n, 3), "0")
    assert.strictEqual(formatScaled(1073741824n, 0), "1073741824")
  })
})

const node = (name: string, opts: {
  cpu?: string
  memory?: string
  gpu?: string
  ready?: boolean
  unschedulable?: boolean
  taint?: string
} = {}): NodeObject => ({
  metadata: { name },
  spec: {
    unschedulable: opts.unschedulable ?? false,
    taints: opts.taint === undefined ? [] : [{ key: "k", effect: opts.taint }]
  },
  status: {
    allocatable: {
      cpu: opts.cpu ?? "4",
      memory: opts.memory ?? "8Gi",
      pods: "110",
      ...(opts.gpu === undefined ? {} : { "nvidia.com/gpu": opts.gpu })
    },
    conditions: [{ type: "Ready", status: opts.ready === false ? "False" : "True" }],
    addresses: [{ type: "InternalIP", address: `10.0.0.${name.length}` }, { type: "Hostname", address: name }]
  }
})

const pod = (nodeName: string | undefined, requests: Record<string, string>, opts: {
  phase?: string
  labels?: Record<string, string>
  init?: Record<string, string>
  containers?: number
} = {}): PodObject => ({
  metadata: { name: "p", namespace: "default", uid: "u", labels: opts.labels ?? {} },
  spec: {
    ...(nodeName === undefined ? {} : { nodeName }),
    containers: Array.from({ length: opts.containers ?? 1 }, () => ({ resources: { requests } })),
    ...(opts.init === undefined ? {} : { initContainers: [{ resources: { requests: opts.init } }] })
  },
  status: { phase: opts.phase ?? "Running" }
})

/** This agent's (i-me) kernel pods carry these labels. */
const ours = { "app.kubernetes.io/managed-by": "bai-k8s-agent", "backend.ai/agent-id": "i-me" }

/** Pods of every kind the pods informer decodes: counted, ours, unbound, ended, odd. */
const samplePods: ReadonlyArray<PodObject> = [
  pod("n", { cpu: "1" }),
  pod("n", { cpu: "250m", memory: "1Gi" }, { containers: 2, init: { cpu: "2" } }),
  pod("n", { cpu: "1" }, { labels: ours }),
  pod(undefined, { cpu: "1" }),
  pod("n", { cpu: "1" }, { phase: "Succeeded" }),
  { spec: { nodeName: "n", containers: null, overhead: { cpu: "100m" } } },
  {}
]

describe("the pods informer's decoder", () => {
  it("keeps a pod as its PodState (null when it does not count), the same as podState of the decoded pod", () => {
    for (const raw of samplePods) {
      const exit = Effect.runSync(Effect.exit(decodePodState("i-me")(raw)))
      assert.deepStrictEqual(exit, Exit.succeed(podState(raw, "i-me") ?? null), JSON.stringify(raw))
    }
    assert.deepStrictEqual(Effect.runSync(decodePodState("i-me")(pod("n", { cpu: "1" }, { labels: ours }))), null)
    assert.deepStrictEqual(Effect.runSync(decodePodState("i-other")(pod("n", { cpu: "1" }, { labels: ours })))?.requests.cpu, 1000n)
  })

  it("refuses what the pod schema refuses", () => {
    for (const bad of [null, "pod", { spec: { containers: "x" } }, { metadata: { name: 3 } }, { status: { phase: 1 } }]) {
      assert.isTrue(Exit.isFailure(Effect.runSync(Effect.exit(decodePodState("i-me")(bad)))), JSON.stringify(bad))
    }
  })
})

describe("nodes, pods and the snapshot", () => {
  it("classifies worker nodes", () => {
    assert.isTrue(nodeState(node("a"))!.worker)
    assert.isFalse(nodeState(node("a", { ready: false }))!.worker)
    assert.isFalse(nodeState(node("a", { unschedulable: true }))!.worker)
    assert.isFalse(nodeState(node("a", { taint: "NoSchedule" }))!.worker)
    assert.isFalse(nodeState(node("a", { taint: "NoExecute" }))!.worker)
    assert.isTrue(nodeState(node("a", { taint: "PreferNoSchedule" }))!.worker)
    assert.strictEqual(nodeState(node("abc"))!.internalIP, "10.0.0.3")
    assert.strictEqual(nodeState(node("a", { cpu: "3500m" }))!.allocatable.cpu, 3500n)
  })

  it("counts foreign, bound, non-terminal pods with their effective request", () => {
    const otherAgent = { "app.kubernetes.io/managed-by": "bai-k8s-agent", "backend.ai/agent-id": "i-other" }
    assert.isUndefined(podState(pod(undefined, { cpu: "1" }), "i-me"))
    assert.isUndefined(podState(pod("n", { cpu: "1" }, { phase: "Succeeded" }), "i-me"))
    assert.isUndefined(podState(pod("n", { cpu: "1" }, { phase: "Failed" }), "i-me"))
    assert.isUndefined(podState(pod("n", { cpu: "1" }, { labels: ours }), "i-me"))
    assert.strictEqual(podState(pod("n", { cpu: "1" }, { labels: otherAgent }), "i-me")!.requests.cpu, 1000n)
    assert.strictEqual(podState(pod("n", { cpu: "1" }, { phase: "Pending" }), "i-me")!.requests.cpu, 1000n)
    const two = podState(pod("n", { cpu: "250m", memory: "1Gi" }, { containers: 2 }), "i-me")!
    assert.strictEqual(two.requests.cpu, 500n)
    assert.strictEqual(two.requests.mem, 2n * 1073741824n)
    // an init container asking for more than the sum of the app containers dominates
    assert.strictEqual(podState(pod("n", { cpu: "250m" }, { init: { cpu: "2" } }), "i-me")!.requests.cpu, 2000n)
  })

  it("sums allocatable minus foreign requests over workers, minus the reservation", () => {
    const nodes = [
      nodeState(node("n1", { cpu: "8", memory: "32Gi" }))!,
      nodeState(node("n2", { cpu: "16", memory: "64Gi", gpu: "2" }))!,
      nodeState(node("n3", { cpu: "100", ready: false }))!
    ]
    const pods = [
      podState(pod("n1", { cpu: "1500m", memory: "1Gi" }), "i-me")!,
      podState(pod("n2", { "nvidia.com/gpu": "1" }), "i-me")!,
      podState(pod("n3", { cpu: "1" }), "i-me")!
    ]
    const s = computeSnapshot(nodes, pods, reservedAmounts({ "reserved-cpu": 0.5, "reserved-mem": 1073741824 }))
    assert.deepStrictEqual(formatAmounts(s.available), {
      cpu: "22",
      mem: String(95 * 1073741824 - 1073741824),
      "cuda.device": "1"
    })
    assert.deepStrictEqual(s.workers.map((w) => w.name), ["n1", "n2"])
    assert.deepStrictEqual(s.excluded, ["n3"])
    assert.deepStrictEqual(formatAmounts(s.largestPlaceable), { cpu: "16", mem: String(64 * 1073741824), "cuda.device": "1" })
    assert.deepStrictEqual(formatAmounts(s.workers[0]!.free), { cpu: "6.5", mem: String(31 * 1073741824), "cuda.device": "0" })
  })

  it("never reports negative amounts (overcommitted node)", () => {
    const s = computeSnapshot(
      [nodeState(node("n1", { cpu: "1" }))!],
      [podState(pod("n1", { cpu: "3" }), "i-me")!],
      reservedAmounts({ "reserved-cpu": 2, "reserved-mem": 0 })
    )
    assert.strictEqual(s.available.cpu, 0n)
    assert.strictEqual(s.workers[0]!.free.cpu, 0n)
  })
})

describe("what a list page keeps of a node or a pod (keepNode, keepPod)", () => {
  const heavy = (o: Record<string, unknown>) => ({
    ...o,
    kind: "Pod",
    metadata: { ...(o.metadata as object), managedFields: [{ manager: "kubelet", fieldsV1: { "f:status": {} } }], annotations: { a: "x".repeat(1000) } },
    spec: { ...(o.spec as object), volumes: [{ name: "v", emptyDir: {} }] }
  })
  it("a pod: decodes to the PodState the whole pod decodes to, without what the decoder does not read", () => {
    const raws = samplePods.map((p) => heavy(p as Record<string, unknown>))
    for (const raw of raws) {
      const kept = keepPod(structuredClone(raw))
      assert.deepStrictEqual(Effect.runSync(Effect.exit(decodePodState("i-me")(kept))), Effect.runSync(Effect.exit(decodePodState("i-me")(raw))), JSON.stringify(raw))
      assert.isFalse(JSON.stringify(kept).includes("managedFields"), JSON.stringify(kept))
      assert.isFalse(JSON.stringify(kept).includes("volumes"), JSON.stringify(kept))
    }
  })

  it("a pod the schema refuses stays as it came (the decoder refuses it)", () => {
    for (const bad of [null, "pod", { spec: { containers: "x" } }, { metadata: { name: 3 } }, { status: { phase: 1 } }]) {
      assert.strictEqual(keepPod(bad), bad)
      assert.isTrue(Exit.isFailure(Effect.runSync(Effect.exit(decodePodState("i-me")(keepPod(bad))))), JSON.stringify(bad))
    }
  })

  it("a node: decodes to what the whole node decodes to, without its image list", () => {
    const raw = {
      ...node("n1", { cpu: "4", memory: "8Gi" }),
      status: { ...node("n1", { cpu: "4", memory: "8Gi" }).status, images: [{ names: ["lablup/python:3.6"], sizeBytes: 1 }] }
    }
    const kept = keepNode(structuredClone(raw))
    assert.deepStrictEqual(Effect.runSync(Effect.exit(decodeNode(kept))), Effect.runSync(Effect.exit(decodeNode(raw))))
    assert.isFalse(JSON.stringify(kept).includes("images"))
    assert.strictEqual(keepNode("node"), "node")
  })
})

