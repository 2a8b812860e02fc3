/**
 * Kubernetes quantities and the resource snapshot, against values computed by hand from the
 * `resource.Quantity` rules (apimachinery: suffixes Ki…Ei = 2^10…2^60, n…E = 10^-9…10^18, `e`
 * exponents; `MilliValue`/`Value` round up) and the scheduler's effective request
 * (max(Σ containers, max init) + overhead).
 */
import { assert, describe, it } from "@effect/vitest"
import { AGENT_ID_LABEL, MANAGED_BY as MANAGED_BY_LABEL, MANAGED_BY_VALUE } from "../../src/kube/KernelObjects.ts"
import {
  computeSnapshot,
  formatAmounts,
  formatScaled,
  type NodeState,
  nodeState,
  parseQuantity,
  podState,
  quantityScaled,
  quantityValue,
  reservedAmounts,
  SLOT_DEFS
} from "../../src/kube/NodeResources.ts"

describe("quantities", () => {
  it("every suffix, exactly", () => {
    const table: ReadonlyArray<readonly [string, number, bigint]> = [
      ["1Ki", 0, 1024n], ["1Mi", 0, 1048576n], ["1Gi", 0, 1073741824n], ["1Ti", 0, 1099511627776n],
      ["1Pi", 0, 1125899906842624n], ["1Ei", 0, 1152921504606846976n],
      ["1n", 9, 1n], ["1u", 6, 1n], ["1m", 3, 1n], ["1", 0, 1n], ["1k", 0, 1000n], ["1M", 0, 1000000n],
      ["1G", 0, 1000000000n], ["1T", 0, 1000000000000n], ["1P", 0, 1000000000000000n], ["1E", 0, 1000000000000000000n],
      ["1e3", 0, 1000n], ["1E3", 0, 1000n], ["1e+3", 0, 1000n], ["5e-1", 1, 5n], ["1.5Ki", 0, 1536n], ["+2", 0, 2n],
      ["-2", 0, -2n], [".5", 3, 500n], ["5.", 0, 5n], [" 3 ", 0, 3n], ["0.25Gi", 0, 268435456n], ["100m", 3, 100n],
      ["1500m", 3, 1500n], ["2", 3, 2000n], ["12e2", 3, 1200000n]
    ]
    for (const [q, scale, want] of table) assert.strictEqual(quantityValue(q, scale), want, `${q} at scale ${scale}`)
  })

  it("parse keeps mantissa and exponents apart", () => {
    assert.deepStrictEqual(parseQuantity("1.50Mi"), { mantissa: 150n, exp10: -2, exp2: 20 })
    assert.deepStrictEqual(parseQuantity("-7m"), { mantissa: -7n, exp10: -3, exp2: 0 })
    assert.deepStrictEqual(parseQuantity("3e-2"), { mantissa: 3n, exp10: -2, exp2: 0 })
    assert.deepStrictEqual(parseQuantity("0"), { mantissa: 0n, exp10: 0, exp2: 0 })
    assert.deepStrictEqual(parseQuantity("1e1000"), { mantissa: 1n, exp10: 1000, exp2: 0 })
    assert.deepStrictEqual(parseQuantity("1e-1000"), { mantissa: 1n, exp10: -1000, exp2: 0 })
  })

  it("malformed quantities are refused (and count 0)", () => {
    for (const q of ["", "Ki", "1KiB", "1ki", "1 Ki", "1e", "1e1001", "1e-1001", "1.2.3", "--1", "0x10", "1K", "1mi", "e3", "1Ki1", "1.5e3Ki"]) {
      assert.isUndefined(parseQuantity(q), q)
      assert.strictEqual(quantityValue(q, 0), 0n, q)
    }
    assert.strictEqual(quantityValue(undefined, 3), 0n)
  })

  it("rounding up (ceil) for positive fractions, toward zero for negative ones (bigint division)", () => {
    assert.strictEqual(quantityScaled(parseQuantity("1.1")!, 0), 2n)
    assert.strictEqual(quantityScaled(parseQuantity("1.0")!, 0), 1n)
    assert.strictEqual(quantityScaled(parseQuantity("1n")!, 3), 1n)
    assert.strictEqual(quantityScaled(parseQuantity("1001u")!, 3), 2n)
    assert.strictEqual(quantityScaled(parseQuantity("1000u")!, 3), 1n)
    assert.strictEqual(quantityScaled(parseQuantity("-1.5")!, 0), -1n)
    assert.strictEqual(quantityScaled(parseQuantity("0.5Ki")!, 0), 512n)
    assert.strictEqual(quantityScaled(parseQuantity("1m")!, 0), 1n)
  })

  it("formatScaled", () => {
    assert.strictEqual(formatScaled(3500n, 3), "3.5")
    assert.strictEqual(formatScaled(3000n, 3), "3")
    assert.strictEqual(formatScaled(5n, 3), "0.005")
    assert.strictEqual(formatScaled(1050n, 3), "1.05")
    assert.strictEqual(formatScaled(0n, 3), "0")
    assert.strictEqual(formatScaled(-1500n, 3), "-1.5")
    assert.strictEqual(formatScaled(-2000n, 3), "-2")
    assert.strictEqual(formatScaled(42n, 0), "42")
    assert.strictEqual(formatScaled(-42n, 0), "-42")
    assert.deepStrictEqual(formatAmounts({ cpu: 2500n, mem: 1024n }), { cpu: "2.5", mem: "1024", "cuda.device": "0" })
  })

  it("slot definitions", () => {
    assert.deepStrictEqual(SLOT_DEFS.map((d) => [d.slot, d.resource, d.unit, d.scale]), [
      ["cpu", "cpu", "count", 3],
      ["mem", "memory", "bytes", 0],
      ["cuda.device", "nvidia.com/gpu", "count", 0]
    ])
  })
})

describe("nodes and pods", () => {
  const ready = { conditions: [{ type: "Ready", status: "True" }] }

  it("a worker is Ready, schedulable and not tainted NoSchedule/NoExecute; allocatable falls back to capacity", () => {
    const base = { metadata: { name: "n1" }, status: { ...ready, allocatable: { cpu: "3500m", memory: "1Gi", "nvidia.com/gpu": "2" } } }
    assert.deepStrictEqual(nodeState(base), {
      name: "n1",
      internalIP: undefined,
      worker: true,
      allocatable: { cpu: 3500n, mem: 1073741824n, "cuda.device": 2n }
    })
    const withIp = nodeState({ ...base, status: { ...base.status, addresses: [{ type: "Hostname", address: "h" }, { type: "InternalIP", address: "10.0.0.5" }] } })
    assert.strictEqual(withIp?.internalIP, "10.0.0.5")
    assert.isFalse(nodeState({ ...base, status: { allocatable: {}, conditions: [{ type: "Ready", status: "False" }] } })!.worker)
    assert.isFalse(nodeState({ ...base, status: { allocatable: {}, conditions: [{ type: "MemoryPressure", status: "True" }] } })!.worker)
    assert.isFalse(nodeState({ ...base, spec: { unschedulable: true } })!.worker)
    assert.isTrue(nodeState({ ...base, spec: { unschedulable: false } })!.worker)
    assert.isFalse(nodeState({ ...base, spec: { taints: [{ key: "k", effect: "NoSchedule" }] } })!.worker)
    assert.isFalse(nodeState({ ...base, spec: { taints: [{ key: "k", effect: "NoExecute" }] } })!.worker)
    assert.isTrue(nodeState({ ...base, spec: { taints: [{ key: "k", effect: "PreferNoSchedule" }] } })!.worker)
    assert.deepStrictEqual(nodeState({ metadata: { name: "c" }, status: { capacity: { cpu: "2" } } })!.allocatable, { cpu: 2000n, mem: 0n, "cuda.device": 0n })
    assert.deepStrictEqual(nodeState({ metadata: { name: "z" } })!.allocatable, { cpu: 0n, mem: 0n, "cuda.device": 0n })
    assert.isFalse(nodeState({ metadata: { name: "z" } })!.worker)
    assert.isUndefined(nodeState({ metadata: {} }))
  })

  it("effective request: max(Σ containers, each init container) + overhead, per slot", () => {
    const p = podState({
      spec: {
        nodeName: "n1",
        containers: [
          { resources: { requests: { cpu: "100m", memory: "100Mi" } } },
          { resources: { requests: { cpu: "200m" } } },
          { resources: null },
          {}
        ],
        initContainers: [
          { resources: { requests: { cpu: "250m", memory: "50Mi", "nvidia.com/gpu": "1" } } },
          { resources: { requests: { cpu: "400m" } } }
        ],
        overhead: { cpu: "10m", memory: "1Mi" }
      }
    }, "agent-1")
    assert.deepStrictEqual(p, { node: "n1", requests: { cpu: 410n, mem: 101n * 1048576n, "cuda.device": 1n } })
    assert.deepStrictEqual(podState({ spec: { nodeName: "n2" } }, "a"), { node: "n2", requests: { cpu: 0n, mem: 0n, "cuda.device": 0n } })
  })

  it("pods that do not count: unbound, terminal, or our own kernels (of this agent)", () => {
    const spec = { nodeName: "n1", containers: [{ resources: { requests: { cpu: "1" } } }] }
    assert.isUndefined(podState({ spec: { ...spec, nodeName: "" } }, "a"))
    assert.isUndefined(podState({ spec: { ...spec, nodeName: null } }, "a"))
    assert.isUndefined(podState({ spec: { containers: spec.containers } }, "a"))
    assert.isUndefined(podState({ spec, status: { phase: "Succeeded" } }, "a"))
    assert.isUndefined(podState({ spec, status: { phase: "Failed" } }, "a"))
    assert.isDefined(podState({ spec, status: { phase: "Running" } }, "a"))
    assert.isDefined(podState({ spec, status: { phase: "Pending" } }, "a"))
    const ours = { labels: { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE, [AGENT_ID_LABEL]: "a" } }
    assert.isUndefined(podState({ metadata: ours, spec }, "a"))
    assert.isDefined(podState({ metadata: ours, spec }, "b"), "another agent's kernel is foreign")
    assert.isDefined(podState({ metadata: { labels: { [AGENT_ID_LABEL]: "a" } }, spec }, "a"))
    assert.isDefined(podState({ metadata: { labels: { [MANAGED_BY_LABEL]: "other", [AGENT_ID_LABEL]: "a" } }, spec }, "a"))
  })
})

describe("snapshot", () => {
  const node = (name: string, worker: boolean, cpu: bigint, mem: bigint, gpu = 0n): NodeState => ({
    name,
    internalIP: `ip-${name}`,
    worker,
    allocatable: { cpu, mem, "cuda.device": gpu }
  })

  it("free per worker, totals minus the reservation, the largest placeable shape, excluded nodes sorted", () => {
    const snap = computeSnapshot(
      [node("b", true, 4000n, 8000n, 1n), node("a", true, 2000n, 16000n), node("z", false, 9999n, 9999n), node("c", false, 1n, 1n)],
      [
        { node: "b", requests: { cpu: 1000n, mem: 1000n, "cuda.device": 0n } },
        { node: "b", requests: { cpu: 500n, mem: 0n, "cuda.device": 0n } },
        { node: "a", requests: { cpu: 3000n, mem: 1n, "cuda.device": 0n } },
        { node: "gone", requests: { cpu: 100n, mem: 100n, "cuda.device": 0n } }
      ],
      { cpu: 500n, mem: 2000n, "cuda.device": 0n }
    )
    assert.deepStrictEqual(snap.workers.map((w) => [w.name, w.internalIP, w.free.cpu, w.free.mem, w.free["cuda.device"]]), [
      ["a", "ip-a", 0n, 15999n, 0n],
      ["b", "ip-b", 2500n, 7000n, 1n]
    ])
    assert.deepStrictEqual(snap.workers[1]!.requested, { cpu: 1500n, mem: 1000n, "cuda.device": 0n })
    assert.deepStrictEqual(snap.workers[1]!.allocatable, { cpu: 4000n, mem: 8000n, "cuda.device": 1n })
    assert.deepStrictEqual(snap.available, { cpu: 2000n, mem: 20999n, "cuda.device": 1n })
    assert.deepStrictEqual(snap.largestPlaceable, { cpu: 2500n, mem: 15999n, "cuda.device": 1n })
    assert.deepStrictEqual(snap.excluded, ["c", "z"])
  })

  it("a reservation larger than the cluster floors at 0; no nodes → all zero", () => {
    const snap = computeSnapshot([node("a", true, 1000n, 1000n)], [], { cpu: 5000n, mem: 1000n, "cuda.device": 0n })
    assert.deepStrictEqual(snap.available, { cpu: 0n, mem: 0n, "cuda.device": 0n })
    assert.deepStrictEqual(snap.largestPlaceable, { cpu: 1000n, mem: 1000n, "cuda.device": 0n })
    const empty = computeSnapshot([], [], { cpu: 0n, mem: 0n, "cuda.device": 0n })
    assert.deepStrictEqual(empty, { available: { cpu: 0n, mem: 0n, "cuda.device": 0n }, workers: [], largestPlaceable: { cpu: 0n, mem: 0n, "cuda.device": 0n }, excluded: [] })
    const partial = computeSnapshot([{ name: "p", internalIP: undefined, worker: true, allocatable: { cpu: 7n } }], [], {})
    assert.deepStrictEqual(partial.available, { cpu: 7n, mem: 0n, "cuda.device": 0n })
  })

  it("reservedAmounts: cores to millicores (rounded), bytes floored", () => {
    assert.deepStrictEqual(reservedAmounts({ "reserved-cpu": 1.5, "reserved-mem": 1073741824.9 }), { cpu: 1500n, mem: 1073741824n, "cuda.device": 0n })
    assert.deepStrictEqual(reservedAmounts({ "reserved-cpu": 0.0006, "reserved-mem": 0 }), { cpu: 1n, mem: 0n, "cuda.device": 0n })
  })
})
