import { assert, describe, it } from "@effect/vitest"
import type { PodStats, Summary } from "../../src/stats/KubeletSummary.ts"
import {
  emptyState,
  formatDecimal,
  formatDecimalExact,
  KernelMetrics,
  memoryLimitOf,
  NodeMetrics,
  serialize,
  serializeSet,
  type SeriesSet,
  startSeries,
  step,
  updateSeries,
  writeSeriesSet
} from "../../src/stats/StatFormat.ts"
import * as Msgpack from "../../src/codec/Msgpack.ts"

/**
 * A measured kernel's `<kernel_id>` value as the collector writes it (msgpack straight from the
 * series), required to be the bytes of the record `serializeSet` builds, and decoded.
 */
const kernelStat = (set: SeriesSet | undefined): { readonly [metric: string]: { readonly [f: string]: string | null } } => {
  assert.isDefined(set)
  const bytes = Msgpack.encodeBy((w) => writeSeriesSet(w, set!))
  assert.deepStrictEqual(bytes, Msgpack.encode(serializeSet(set!)))
  return Msgpack.decode(bytes) as { readonly [metric: string]: { readonly [f: string]: string | null } }
}

const metric = (specs: typeof NodeMetrics, key: string) => specs.find((m) => m.key === key)!

const pod = (name: string, uid: string, cpuNs: number, mem: number, rx = 0, tx = 0, work?: number): PodStats => ({
  podRef: { name, namespace: "ns", uid },
  cpu: { usageNanoCores: 0, usageCoreNanoSeconds: cpuNs },
  memory: { workingSetBytes: mem, availableBytes: 1000 },
  network: { rxBytes: rx, txBytes: tx },
  ...(work !== undefined ? { volume: [{ name: "work", usedBytes: work }] } : {}),
  "ephemeral-storage": { usedBytes: 7, capacityBytes: 100, availableBytes: 93 }
})

const summary = (node: string, cpuNs: number, mem: number, rx: number, pods: ReadonlyArray<PodStats>): Summary => ({
  node: {
    nodeName: node,
    cpu: { usageCoreNanoSeconds: cpuNs },
    memory: { workingSetBytes: mem, availableBytes: 1000 - mem },
    network: { rxBytes: rx, txBytes: rx * 2 },
    fs: { usedBytes: 10, capacityBytes: 100 }
  },
  pods
})

describe("StatFormat", () => {
  it("formats decimals like Python's remove_exponent(quantize(...))", () => {
    assert.strictEqual(formatDecimal(12.5), "12.5")
    assert.strictEqual(formatDecimal(3), "3")
    assert.strictEqual(formatDecimal(0.0004), "0")
    assert.strictEqual(formatDecimal(-0.0004), "0")
    assert.strictEqual(formatDecimal(1.23456), "1.235")
    assert.strictEqual(formatDecimal(34359738368), "34359738368")
    assert.strictEqual(formatDecimal(12.345, 2), "12.35")
    assert.strictEqual(formatDecimal(100, 2), "100")
  })

  it("gauge: current, capacity, pct and running max", () => {
    const m = metric(NodeMetrics, "mem")
    let s = startSeries(m, { value: 300, capacity: 1000 }, 0, 2000)
    s = updateSeries(s, { value: 500, capacity: 1000 }, 2000, 2000)
    s = updateSeries(s, { value: 200, capacity: 1000 }, 4000, 2000)
    assert.deepStrictEqual(serialize(s), { current: "200", capacity: "1000", pct: "20", unit_hint: "bytes", "stats.max": "500" })
  })

  it("delta (node cpu_util): msec used in the window over the window's msec", () => {
    const m = metric(NodeMetrics, "cpu_util")
    let s = startSeries(m, { value: 10_000 }, 0, 2000)
    assert.deepStrictEqual(serialize(s), { current: "0", capacity: "2000", pct: "0", unit_hint: "msec" })
    s = updateSeries(s, { value: 13_000 }, 2000, 2000) // 1.5 cores busy
    assert.deepStrictEqual(serialize(s), { current: "3000", capacity: "2000", pct: "150", unit_hint: "msec" })
  })

  it("util (kernel cpu_util): msec per second, pct of one core, avg/max over the rates", () => {
    const m = metric(KernelMetrics, "cpu_util")
    let s = startSeries(m, { value: 0 }, 0, 2000)
    s = updateSeries(s, { value: 500 }, 2000, 2000) // 25 %
    s = updateSeries(s, { value: 2500 }, 4000, 2000) // 100 %
    assert.deepStrictEqual(serialize(s), {
      current: "1000",
      capacity: "1000",
      pct: "100",
      unit_hint: "percent",
      "stats.avg": "625",
      "stats.max": "1000"
    })
  })

  it("rate: bytes per second; a counter reset counts as 0, not negative", () => {
    const m = metric(KernelMetrics, "net_rx")
    let s = startSeries(m, { value: 1000 }, 0, 2000)
    assert.deepStrictEqual(serialize(s), { current: "0", capacity: null, pct: null, unit_hint: "bps", "stats.rate": "0" })
    s = updateSeries(s, { value: 4000 }, 1500, 2000)
    assert.deepStrictEqual(serialize(s), { current: "2000", capacity: null, pct: null, unit_hint: "bps", "stats.rate": "2000" })
    s = updateSeries(s, { value: 10 }, 3500, 2000)
    assert.strictEqual(serialize(s).current, "0")
    assert.strictEqual(serialize(s)["stats.rate"], "0")
  })

  // Manager 19.06 reads the legacy kernel fields net_rx_bytes/net_tx_bytes as
  // `int(live_stat["net_rx"]["stats.rate"])` (models/kernel.py `_resolve_legacy_metric`), also from
  // `last_stat` once terminated: Python's int("500.5") raises, so a byte rate is a whole number.
  it("stats.rate of a byte metric is a whole number the manager's int() parses", () => {
    const m = metric(KernelMetrics, "net_rx")
    let s = startSeries(m, { value: 0 }, 0, 2000)
    s = updateSeries(s, { value: 1001 }, 2000, 2000)
    assert.match(serialize(s)["stats.rate"]!, /^\d+$/)
    // 1001 B / 2 s = 500.5, an exact tie: Python's Decimal.quantize (and round) give 500 (half-even)
    assert.strictEqual(serialize(s)["stats.rate"], "500")
  })

  it("gauge with stats.rate (io_*): rate of the raw value", () => {
    const m = metric(KernelMetrics, "io_write")
    let s = startSeries(m, { value: 0 }, 0, 2000)
    s = updateSeries(s, { value: 4096 }, 2000, 2000)
    assert.deepStrictEqual(serialize(s), { current: "4096", capacity: null, pct: null, unit_hint: "bytes", "stats.rate": "2048" })
  })

  it("step: cluster = sum of nodes, devices per node, kernels matched by namespace/name (and uid)", () => {
    const kernels = [
      { kernelId: "k1", namespace: "ns", podName: "kernel-k1", podUid: "u1" },
      { kernelId: "k2", namespace: "ns", podName: "kernel-k2", podUid: undefined },
      { kernelId: "k3", namespace: "ns", podName: "kernel-k3", podUid: "other" }
    ]
    const c1 = step(emptyState, {
      at: 0,
      nominalMs: 2000,
      staleAfterMs: 30_000,
      nodes: [
        { node: "a", at: 0, summary: summary("a", 1e9, 100, 0, [pod("kernel-k1", "u1", 5e8, 50, 0, 0, 1234)]) },
        { node: "b", at: 0, summary: summary("b", 2e9, 200, 0, [pod("kernel-k2", "u2", 1e8, 60), pod("kernel-k3", "u3", 1, 1)]) }
      ],
      kernels
    })
    assert.deepStrictEqual(c1.agent!.node.mem, { current: "300", capacity: "2000", pct: "15", unit_hint: "bytes", "stats.max": "300" })
    assert.deepStrictEqual(Object.keys(c1.agent!.devices.mem!).sort(), ["a", "b"])
    assert.deepStrictEqual(Object.keys(c1.agent!.node).sort(), ["cpu_util", "disk", "mem", "net_rx", "net_tx"])
    assert.deepStrictEqual([...c1.kernels.keys()].sort(), ["k1", "k2"]) // k3: uid mismatch
    const k1 = kernelStat(c1.kernels.get("k1"))
    assert.deepStrictEqual(Object.keys(k1).sort(), [...KernelMetrics.map((m) => m.key)].sort())
    assert.strictEqual(k1.cpu_used!.current, "500")
    assert.strictEqual(k1.io_scratch_size!.current, "1234")
    assert.strictEqual(kernelStat(c1.kernels.get("k2")).io_scratch_size!.current, "7") // no volume stats: ephemeral storage

    // node b fails: its last series is carried (devices repeat), k2 is not written
    const c2 = step(c1.state, {
      at: 2000,
      nominalMs: 2000,
      staleAfterMs: 30_000,
      nodes: [
        { node: "a", at: 2000, summary: summary("a", 3e9, 100, 4000, [pod("kernel-k1", "u1", 1.5e9, 70)]) },
        { node: "b", at: 2000, summary: undefined }
      ],
      kernels
    })
    assert.deepStrictEqual(c2.agent!.node.cpu_util, { current: "2000", capacity: "2000", pct: "100", unit_hint: "msec" })
    assert.deepStrictEqual(c2.agent!.devices.net_rx!.a, { current: "2000", capacity: null, pct: null, unit_hint: "bps" })
    assert.deepStrictEqual(c2.agent!.devices.mem!.b, c1.agent!.devices.mem!.b)
    assert.deepStrictEqual([...c2.kernels.keys()], ["k1"])
    assert.strictEqual(kernelStat(c2.kernels.get("k1")).cpu_util!.pct, "50")
    assert.isTrue(c2.state.kernels.has("k2"))

    // b stays away beyond staleAfterMs: dropped; k2 leaves the registry: its series go
    const c3 = step(c2.state, {
      at: 40_000,
      nominalMs: 2000,
      staleAfterMs: 30_000,
      nodes: [{ node: "a", at: 40_000, summary: summary("a", 3e9, 100, 4000, []) }, { node: "b", at: 40_000, summary: undefined }],
      kernels: [kernels[0]!]
    })
    assert.deepStrictEqual(Object.keys(c3.agent!.devices.mem!), ["a"])
    assert.isFalse(c3.state.kernels.has("k2"))
  })

  // A real kubelet's summary holds cAdvisor's last sample of each pod (every 10–20 s, each pod on its
  // own ticker) and of the node (every 10 s), stamped with its `time`; reads every 2 s see the same
  // sample several times. Rates are taken between the kubelet's samples, at the kubelet's times.
  it("step: a sample read again (same kubelet time) changes nothing; rates span the kubelet's own window", () => {
    const t0 = Date.parse("2026-12-01T11:30:28Z")
    const iso = (ms: number) => new Date(ms).toISOString().replace(".000Z", "Z")
    const timed = (p: PodStats, at: number, netAt = at): PodStats => ({
      ...p,
      cpu: { ...p.cpu, time: iso(at) },
      memory: { ...p.memory, time: iso(at) },
      network: { ...p.network, time: iso(netAt) }
    })
    const node = (cpuNs: number, at: number): Summary["node"] => ({
      nodeName: "a",
      cpu: { usageCoreNanoSeconds: cpuNs, time: iso(at) },
      memory: { workingSetBytes: 100, availableBytes: 900, time: iso(at) }
    })
    const kernels = [{ kernelId: "k1", namespace: "ns", podName: "kernel-k1", podUid: "u1" }]
    const cycle = (state: typeof emptyState, readAt: number, s: Summary) =>
      step(state, { at: readAt, nominalMs: 2000, staleAfterMs: 30_000, nodes: [{ node: "a", at: readAt, summary: s }], kernels })
    // one core busy: 1e9 ns of CPU per second; the pod sampled at t0 and t0 + 15 s, the node at t0 + 2 s and + 12 s
    const first = { node: node(4e9, t0 + 2000), pods: [timed(pod("kernel-k1", "u1", 10e9, 50, 1000), t0)] }
    const second = { node: node(14e9, t0 + 12_000), pods: [timed(pod("kernel-k1", "u1", 25e9, 60, 31_000), t0 + 15_000, t0 + 10_000)] }
    let out = cycle(emptyState, 0, first)
    const readings: Array<{ cpu: string | null; rx: string | null; mem: string | null; node: string | null }> = []
    const sets: Array<SeriesSet | undefined> = [out.kernels.get("k1")]
    for (let i = 1; i <= 10; i++) {
      out = cycle(out.state, i * 2000, i < 8 ? first : second)
      sets.push(out.kernels.get("k1"))
      const k = kernelStat(out.kernels.get("k1"))
      readings.push({ cpu: k.cpu_util!.pct, rx: k.net_rx!.current, mem: k.mem!.current, node: out.agent!.node.cpu_util!.pct })
    }
    // reads 1–7 carry the first sample again: no window yet (a counter's first sample), nothing moves
    for (const r of readings.slice(0, 7)) assert.deepStrictEqual(r, { cpu: "0", rx: "0", mem: "50", node: "0" })
    // reads 8–10 carry the second: 15 s of CPU over the pod's 15 s window, 30,000 bytes over its network's 10 s;
    // the node's 10 s over its own 10 s window
    for (const r of readings.slice(7)) assert.deepStrictEqual(r, { cpu: "100", rx: "3000", mem: "60", node: "100" })
    // a set read again is the same object (the collector's "already encoded"); a new sample, a new set
    for (let i = 1; i <= 10; i++) assert.strictEqual(sets[i] === sets[i - 1], i !== 8, `read ${i}`)
    // the series counted two samples of the pod, not eleven reads: avg over one rate
    assert.strictEqual(kernelStat(out.kernels.get("k1")).cpu_util!["stats.avg"], "1000")
  })

  it("step: a kubelet time going back restarts the window instead of freezing the series", () => {
    const iso = (ms: number) => new Date(ms).toISOString()
    const t0 = Date.parse("2026-12-01T11:30:28Z")
    const kernels = [{ kernelId: "k1", namespace: "ns", podName: "kernel-k1", podUid: "u1" }]
    const at = (cpuNs: number, ms: number): Summary => ({
      node: { nodeName: "a" },
      pods: [{ ...pod("kernel-k1", "u1", cpuNs, 50), cpu: { usageCoreNanoSeconds: cpuNs, time: iso(ms) } }]
    })
    const cycle = (state: typeof emptyState, readAt: number, s: Summary) =>
      step(state, { at: readAt, nominalMs: 2000, staleAfterMs: 30_000, nodes: [{ node: "a", at: readAt, summary: s }], kernels })
    let out = cycle(emptyState, 0, at(0, t0 + 3_600_000)) // an hour ahead, then the node's clock is stepped back
    out = cycle(out.state, 2000, at(1e9, t0))
    out = cycle(out.state, 4000, at(3e9, t0 + 10_000))
    assert.strictEqual(kernelStat(out.kernels.get("k1")).cpu_util!.current, "200")
  })

  it("kernel stats survive manager 19.06's readers: mem.capacity is the pod's memory limit, no int()/float() field is nil", () => {
    // the readers: gateway/resource.py 208–214 (usage reports, from last_stat), models/kernel.py 143–202
    const pyInt = (v: string | null | undefined): number => {
      assert.isString(v, "int(None) raises TypeError")
      assert.match(v!, /^\s*[+-]?\d+\s*$/, `int(${JSON.stringify(v)}) raises ValueError`)
      return Number(v)
    }
    const pyFloat = (v: string | null | undefined): number => {
      assert.isString(v, "float(None) raises TypeError")
      assert.isFalse(Number.isNaN(Number(v)), `float(${JSON.stringify(v)}) raises ValueError`)
      return Number(v)
    }
    const read = (k: { readonly [metric: string]: { readonly [f: string]: string | null } }) => ({
      cpu_used: pyFloat(k.cpu_used?.current),
      cpu_pct: pyFloat(k.cpu_util?.pct),
      mem_used: pyInt(k.mem?.capacity),
      mem_max: pyInt(k.mem?.["stats.max"]),
      mem_cur: pyInt(k.mem?.current),
      net_rx: pyInt(k.net_rx?.["stats.rate"]),
      net_tx: pyInt(k.net_tx?.["stats.rate"]),
      io_read: pyInt(k.io_read?.current),
      io_write: pyInt(k.io_write?.current),
      scratch_max: pyInt(k.io_scratch_size?.["stats.max"]),
      scratch_cur: pyInt(k.io_scratch_size?.current)
    })
    const kernels = [
      { kernelId: "k1", namespace: "ns", podName: "kernel-k1", podUid: "u1", memoryLimit: 268435456 },
      { kernelId: "k2", namespace: "ns", podName: "kernel-k2", podUid: "u2", memoryLimit: undefined }
    ]
    const input = (at: number, cpuNs: number, mem: number) => ({
      at,
      nominalMs: 2000,
      staleAfterMs: 30_000,
      nodes: [{ node: "a", at, summary: summary("a", 1e9, 100, 0, [pod("kernel-k1", "u1", cpuNs, mem, 10, 20, 5), pod("kernel-k2", "u2", cpuNs, mem)]) }],
      kernels
    })
    const c1 = step(emptyState, input(0, 5e8, 50.5))
    const c2 = step(c1.state, input(2000, 9e8, 70.6))
    for (const c of [c1, c2]) {
      const k1 = read(kernelStat(c.kernels.get("k1")))
      assert.strictEqual(k1.mem_used, 268435456, "the pod's memory limit")
      read(kernelStat(c.kernels.get("k2")))
    }
    // a pod without a limit: the capacity of the node it runs on (working set + available)
    assert.strictEqual(read(kernelStat(c2.kernels.get("k2"))).mem_used, 1000)
    assert.strictEqual(read(kernelStat(c2.kernels.get("k1"))).mem_max, 71, "whole bytes (70.6 rounds to 71)")
  })

  it("memoryLimitOf: the mem slot of the kernel's resource spec (Decimal strings included)", () => {
    assert.strictEqual(memoryLimitOf(JSON.stringify({ slots: { cpu: "1", mem: "268435456" } })), 268435456)
    assert.strictEqual(memoryLimitOf(JSON.stringify({ slots: { mem: "1E+9" } })), 1e9)
    assert.isUndefined(memoryLimitOf(JSON.stringify({ slots: { mem: "0" } })))
    assert.isUndefined(memoryLimitOf(JSON.stringify({ slots: { cpu: "1" } })))
    assert.isUndefined(memoryLimitOf("not json"))
    assert.isUndefined(memoryLimitOf(JSON.stringify({ slots: { mem: "-5" } })))
    assert.isUndefined(memoryLimitOf("null"))
  })

  it("step: no node ever answered → no agent value", () => {
    const c = step(emptyState, { at: 0, nominalMs: 2000, staleAfterMs: 30_000, nodes: [{ node: "a", at: 0, summary: undefined }], kernels: [] })
    assert.isUndefined(c.agent)
  })
})

describe("formatDecimal's integer arithmetic", () => {
  // the fast path (≤ 3 places: the scaled value rounded as an integer) against the toFixed path, on
  // values of every magnitude the stats see, exact ties and their neighbours one ulp away
  it("prints every value as the exact toFixed path does", () => {
    let seed = 7
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31
      return seed / 2 ** 31
    }
    const values: Array<number> = [0.0005, 0.0015, 0.0025, 1.0005, 2.5, 0.125, 0.375, 1e15 + 0.5, 2 ** 50 / 1000 + 0.25, 123456.7895]
    for (let i = 0; i < 20_000; i++) {
      const magnitude = 10 ** Math.floor(random() * 22 - 6)
      values.push((random() - 0.25) * magnitude)
      // ties and near-ties at 0 to 3 places: k + 0.5 units of the last place, then one ulp either side
      const units = 10 ** Math.floor(random() * 4)
      const tie = (Math.floor(random() * 1e6) + 0.5) / units
      values.push(tie, -tie, nextUp(tie), nextDown(tie), tie / 8, tie * 8)
    }
    let compared = 0
    for (const v of values) {
      for (const places of [0, 1, 2, 3]) {
        if (Number.isSafeInteger(v)) continue
        assert.strictEqual(formatDecimal(v, places), formatDecimalExact(v, places), `${v} at ${places} places`)
        compared++
      }
    }
    assert.isAbove(compared, 400_000)
  })
})

const nextUp = (x: number): number => {
  const b = new Float64Array([x])
  const u = new BigInt64Array(b.buffer)
  u[0] = u[0]! + (x >= 0 ? 1n : -1n)
  return b[0]!
}
const nextDown = (x: number): number => {
  const b = new Float64Array([x])
  const u = new BigInt64Array(b.buffer)
  u[0] = u[0]! + (x >= 0 ? -1n : 1n)
  return b[0]!
}
