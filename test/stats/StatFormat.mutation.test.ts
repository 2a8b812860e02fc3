/**
 * The D19 statistics format: decimals against CPython's `Decimal` (golden strings pasted from
 * /usr/bin/python3 3.11: `str(remove_exponent(Decimal(n).quantize(Decimal(10) ** -places)))`), and
 * the series arithmetic against hand-computed windows.
 */
import { assert, describe, it } from "@effect/vitest"
import type { PodStats } from "../../src/stats/KubeletSummary.ts"
import {
  emptyState,
  formatDecimal,
  KernelMetrics,
  memoryLimitOf,
  type MetricSpec,
  NodeMetrics,
  nodeSamples,
  podSamples,
  timeOf,
  scratchBytes,
  serialize,
  startSeries,
  step,
  stepSeries,
  updateSeries
} from "../../src/stats/StatFormat.ts"

// [value, places, CPython]; exact binary ties are in PY_TIES below
const PY_DECIMAL: ReadonlyArray<readonly [number, number, string]> = [
  [12.5, 3, "12.5"], [3, 3, "3"], [0.0004, 3, "0"], [1.23456, 3, "1.235"], [34359738368, 3, "34359738368"],
  [12.345, 2, "12.35"], [100, 2, "100"], [0.1, 3, "0.1"], [1e-7, 3, "0"], [123456.7891, 3, "123456.789"],
  [-5.25, 3, "-5.25"], [99.999, 2, "100"], [99.9951, 2, "100"], [1500.0, 0, "1500"], [1499.4, 0, "1499"],
  [0.5004, 0, "1"], [7.1, 0, "7"], [1e15, 3, "1000000000000000"], [2.675, 2, "2.67"], [-12.0, 3, "-12"],
  [1.0005, 3, "1"], [33.3333333, 2, "33.33"], [250, 3, "250"]
]

const spec = (kind: MetricSpec["kind"], unitHint: string, stats: MetricSpec["stats"]): MetricSpec => ({ key: "m", kind, unitHint, stats })

// exact binary ties: CPython's Decimal(float).quantize rounds half-even (the default context), the
// D19 agent's stats strings; values printed by CPython 3 (python3 -c "Decimal(v).quantize(...)")
const PY_TIES: ReadonlyArray<readonly [number, number, string]> = [
  [0.0625, 3, "0.062"], [2.5, 0, "2"], [0.125, 2, "0.12"], [0.375, 2, "0.38"], [-2.5, 0, "-2"], [3.5, 0, "4"],
  [1.0625, 3, "1.062"], [-0.0625, 3, "-0.062"], [0.5, 0, "0"], [1.5, 0, "2"]
]

describe("formatDecimal rounds exact ties half-even, as Python's Decimal.quantize", () => {
  for (const [v, places, want] of PY_TIES) {
    it(`${v} at ${places} places → ${want}`, () => assert.strictEqual(formatDecimal(v, places), want))
  }
})

describe("formatDecimal is Python's quantize + remove_exponent", () => {
  for (const [v, places, want] of PY_DECIMAL) {
    it(`${v} at ${places} places → ${want}`, () => assert.strictEqual(formatDecimal(v, places), want))
  }
  it("default 3 places; -0 and non-finite values print 0", () => {
    assert.strictEqual(formatDecimal(1.23456), "1.235")
    assert.strictEqual(formatDecimal(-0.0004), "0")
    assert.strictEqual(formatDecimal(-0), "0")
    assert.strictEqual(formatDecimal(NaN), "0")
    assert.strictEqual(formatDecimal(Infinity), "0")
    assert.strictEqual(formatDecimal(-Infinity, 0), "0")
    assert.strictEqual(formatDecimal(1000, 0), "1000")
    assert.strictEqual(formatDecimal(10.5, 1), "10.5")
  })
})

describe("series arithmetic", () => {
  it("gauge stats: min, max, sum, avg, diff, rate over the current values", () => {
    const m = spec("gauge", "msec", ["min", "max", "sum", "avg", "diff", "rate"])
    let s = startSeries(m, { value: 10 }, 1000, 2000)
    assert.deepStrictEqual(serialize(s), {
      current: "10", capacity: null, pct: null, unit_hint: "msec",
      "stats.min": "10", "stats.max": "10", "stats.sum": "10", "stats.avg": "10", "stats.diff": "0", "stats.rate": "0"
    })
    s = updateSeries(s, { value: 40 }, 3000, 2000)
    s = updateSeries(s, { value: 25 }, 7000, 2000)
    assert.deepStrictEqual(serialize(s), {
      current: "25", capacity: null, pct: null, unit_hint: "msec",
      "stats.min": "10", "stats.max": "40", "stats.sum": "75", "stats.avg": "25", "stats.diff": "-15", "stats.rate": "-3.75"
    })
    assert.strictEqual(s.count, 3)
    assert.strictEqual(s.prevValue, 40)
    assert.strictEqual(s.prevAt, 3000)
  })

  it("a counter's first sample is not aggregated; its stats show the current value until the second", () => {
    const m = spec("rate", "msec", ["min", "max", "avg", "sum"])
    let s = startSeries(m, { value: 100 }, 0, 2000)
    assert.strictEqual(s.count, 0)
    assert.deepStrictEqual(serialize(s), { current: "0", capacity: null, pct: null, unit_hint: "msec", "stats.min": "0", "stats.max": "0", "stats.avg": "0", "stats.sum": "0" })
    s = updateSeries(s, { value: 300 }, 4000, 2000) // 50 per second
    s = updateSeries(s, { value: 700 }, 6000, 2000) // 200 per second
    assert.deepStrictEqual(serialize(s), { current: "200", capacity: null, pct: null, unit_hint: "msec", "stats.min": "50", "stats.max": "200", "stats.avg": "125", "stats.sum": "250" })
  })

  it("zero elapsed time: rate and util are 0, not Infinity; delta's capacity is the window", () => {
    const rate = updateSeries(startSeries(spec("rate", "msec", ["rate"]), { value: 0 }, 5, 2000), { value: 10 }, 5, 2000)
    assert.strictEqual(serialize(rate).current, "0")
    assert.strictEqual(serialize(rate)["stats.rate"], "0")
    const util = updateSeries(startSeries(spec("util", "percent", []), { value: 0 }, 5, 2000), { value: 10 }, 5, 2000)
    assert.deepStrictEqual(serialize(util), { current: "0", capacity: "1000", pct: "0", unit_hint: "percent" })
    const delta = updateSeries(startSeries(spec("delta", "msec", []), { value: 100 }, 0, 2000), { value: 400 }, 3000, 2000)
    assert.deepStrictEqual(serialize(delta), { current: "300", capacity: "3000", pct: "10", unit_hint: "msec" })
    const reset = updateSeries(delta, { value: 50 }, 5000, 2000)
    assert.deepStrictEqual(serialize(reset), { current: "0", capacity: "2000", pct: "0", unit_hint: "msec" })
  })

  it("pct: capacity 0 gives nil; byte metrics round every field to whole numbers", () => {
    const g = startSeries(spec("gauge", "bytes", ["max"]), { value: 10.6, capacity: 0 }, 0, 2000)
    assert.deepStrictEqual(serialize(g), { current: "11", capacity: "0", pct: null, unit_hint: "bytes", "stats.max": "11" })
    const bps = startSeries(spec("gauge", "bps", []), { value: 1.4, capacity: 3 }, 0, 2000)
    assert.deepStrictEqual(serialize(bps), { current: "1", capacity: "3", pct: "46.67", unit_hint: "bps" })
    const pctg = startSeries(spec("gauge", "percent", []), { value: 1.4, capacity: 3 }, 0, 2000)
    assert.deepStrictEqual(serialize(pctg), { current: "1.4", capacity: "3", pct: "46.67", unit_hint: "percent" })
  })

  it("stepSeries starts or continues", () => {
    const m = spec("gauge", "msec", ["sum"])
    const a = stepSeries(undefined, m, { value: 2 }, 0, 1000)
    const b = stepSeries(a, m, { value: 3 }, 1000, 1000)
    assert.strictEqual(serialize(b)["stats.sum"], "5")
  })
})

describe("samples", () => {
  it("node samples: msec of CPU, memory capacity = working set + available, disk, net", () => {
    assert.deepStrictEqual(
      nodeSamples({
        nodeName: "n",
        cpu: { usageCoreNanoSeconds: 2_500_000_000 },
        memory: { workingSetBytes: 300, availableBytes: 700 },
        fs: { usedBytes: 5, capacityBytes: 50 },
        network: { rxBytes: 11, txBytes: 22 }
      }),
      {
        cpu_util: { value: 2500 },
        mem: { value: 300, capacity: 1000 },
        disk: { value: 5, capacity: 50 },
        net_rx: { value: 11 },
        net_tx: { value: 22 }
      }
    )
    // absent: no key (not a key holding undefined)
    assert.deepStrictEqual(nodeSamples({ nodeName: "n" }), {
      cpu_util: { value: 0 },
      mem: { value: 0 },
      disk: { value: 0 },
      net_rx: { value: 0 },
      net_tx: { value: 0 }
    })
    // each at its own measurement's time; an unreadable time is none
    assert.deepStrictEqual(
      nodeSamples({
        nodeName: "n",
        cpu: { usageCoreNanoSeconds: 1e6, time: "2026-12-01T11:29:15Z" },
        memory: { workingSetBytes: 1, time: "2026-12-01T11:29:16.5Z" },
        fs: { usedBytes: 2, capacityBytes: 3, time: "yesterday" },
        network: { rxBytes: 4, txBytes: 5, time: "2026-12-01T11:29:17Z" }
      }),
      {
        cpu_util: { value: 1, at: Date.UTC(2026, 11, 1, 11, 29, 15) },
        mem: { value: 1, at: Date.UTC(2026, 11, 1, 11, 29, 16, 500) },
        disk: { value: 2, capacity: 3 },
        net_rx: { value: 4, at: Date.UTC(2026, 11, 1, 11, 29, 17) },
        net_tx: { value: 5, at: Date.UTC(2026, 11, 1, 11, 29, 17) }
      }
    )
  })

  const pod = (extra: Partial<PodStats>): PodStats => ({ podRef: { name: "p", namespace: "ns", uid: "u" }, ...extra })

  it("scratch: the sum of volume usage, else ephemeral storage, else 0", () => {
    assert.strictEqual(scratchBytes(pod({ volume: [{ name: "a", usedBytes: 3 }, { name: "b", usedBytes: 4 }, { name: "c" }], "ephemeral-storage": { usedBytes: 99 } })), 7)
    assert.strictEqual(scratchBytes(pod({ volume: [], "ephemeral-storage": { usedBytes: 99 } })), 99)
    assert.strictEqual(scratchBytes(pod({})), 0)
  })

  it("pod samples: mem capacity = limit, else node memory, else the working set", () => {
    const p = pod({ cpu: { usageCoreNanoSeconds: 3_000_000 }, memory: { workingSetBytes: 40 }, network: { rxBytes: 1, txBytes: 2 } })
    assert.deepStrictEqual(podSamples(p, 100, 1000), {
      cpu_util: { value: 3 },
      cpu_used: { value: 3 },
      mem: { value: 40, capacity: 100 },
      io_read: { value: 0 },
      io_write: { value: 0 },
      io_scratch_size: { value: 0 },
      net_rx: { value: 1 },
      net_tx: { value: 2 }
    })
    assert.strictEqual(podSamples(p, undefined, 1000).mem!.capacity, 1000)
    assert.strictEqual(podSamples(p).mem!.capacity, 40)
    // cpu, memory and network each at their own time; scratch and io_* at the pod's (cpu's, else memory's)
    const t = (sec: number) => `2026-12-01T11:30:${sec}Z`
    const timed = pod({
      cpu: { usageCoreNanoSeconds: 1e6, time: t(28) },
      memory: { workingSetBytes: 40, time: t(29) },
      network: { rxBytes: 1, txBytes: 2, time: t(42) },
      "ephemeral-storage": { usedBytes: 5, time: t(43) }
    })
    const at = (sec: number) => Date.UTC(2026, 11, 1, 11, 30, sec)
    assert.deepStrictEqual(podSamples(timed, 100), {
      cpu_util: { value: 1, at: at(28) },
      cpu_used: { value: 1, at: at(28) },
      mem: { value: 40, capacity: 100, at: at(29) },
      io_read: { value: 0, at: at(28) },
      io_write: { value: 0, at: at(28) },
      io_scratch_size: { value: 5, at: at(28) },
      net_rx: { value: 1, at: at(42) },
      net_tx: { value: 2, at: at(42) }
    })
    assert.strictEqual(podSamples(pod({ memory: { workingSetBytes: 1, time: t(29) } })).io_scratch_size!.at, at(29))
    // the reused samples of one pod do not carry a time into the next
    assert.isUndefined(podSamples(p).cpu_util!.at)
    assert.isUndefined(podSamples(p).io_read!.at)
  })

  it("timeOf: RFC 3339 to millis, unreadable or absent to undefined, the same answer when asked again", () => {
    for (let round = 0; round < 2; round++) {
      assert.strictEqual(timeOf("2026-12-01T11:29:15Z"), Date.UTC(2026, 11, 1, 11, 29, 15))
      assert.strictEqual(timeOf("2026-12-01T11:29:15.250Z"), Date.UTC(2026, 11, 1, 11, 29, 15, 250))
      assert.isUndefined(timeOf("yesterday"))
      assert.isUndefined(timeOf(undefined))
    }
    // past the remembered times: each still its own
    for (let sec = 0; sec < 600; sec++) {
      const t = new Date(Date.UTC(2026, 11, 1, 11, 0, 0) + sec * 1000).toISOString()
      assert.strictEqual(timeOf(t), Date.parse(t))
    }
  })

  it("memoryLimitOf: the mem slot as an integer byte count, else undefined", () => {
    const spec = (mem: unknown) => JSON.stringify({ slots: { mem } })
    assert.strictEqual(memoryLimitOf(spec("1E+9")), 1e9)
    assert.strictEqual(memoryLimitOf(spec(" +1073741824.9 ")), 1073741824)
    assert.strictEqual(memoryLimitOf(spec(".5e1")), 5)
    assert.strictEqual(memoryLimitOf(spec(2048)), 2048)
    for (const bad of ["0", "-1", "abc", "1e", "0x10", "Infinity", "", null, true]) assert.isUndefined(memoryLimitOf(spec(bad)), String(bad))
    assert.isUndefined(memoryLimitOf("not json"))
    // the spec as JSON allows it: leading JSON whitespace before the object; not an object → undefined
    assert.strictEqual(memoryLimitOf(` \t\r\n${spec("2048")}`), 2048)
    assert.isUndefined(memoryLimitOf(""))
    assert.isUndefined(memoryLimitOf(JSON.stringify([{ slots: { mem: "2048" } }])))
    assert.isUndefined(memoryLimitOf(`\u00a0${spec("2048")}`))
    assert.isUndefined(memoryLimitOf("null"))
    assert.isUndefined(memoryLimitOf("5"))
    assert.isUndefined(memoryLimitOf(JSON.stringify({ slots: null })))
    assert.isUndefined(memoryLimitOf(JSON.stringify({ slots: "x" })))
    assert.isUndefined(memoryLimitOf(JSON.stringify({})))
  })
})

describe("cluster aggregation", () => {
  const node = (name: string, at: number, cpuNs: number, fsCap: number | undefined) => ({
    node: name,
    at,
    summary: {
      node: {
        nodeName: name,
        cpu: { usageCoreNanoSeconds: cpuNs },
        memory: { workingSetBytes: 10 },
        fs: fsCap === undefined ? { usedBytes: 1 } : { usedBytes: 1, capacityBytes: fsCap }
      }
    }
  })

  it("delta capacity = the longest node window; a gauge capacity unknown on one node is unknown for the cluster", () => {
    const base = { nominalMs: 2000, staleAfterMs: 10_000, kernels: [] }
    const c1 = step(emptyState, { ...base, at: 0, nodes: [node("a", 0, 0, 100), node("b", 0, 0, undefined)] })
    assert.strictEqual(c1.agent!.node.disk!.capacity, null)
    assert.strictEqual(c1.agent!.node.disk!.current, "2")
    assert.strictEqual(c1.agent!.node.mem!.capacity, null) // no availableBytes anywhere
    const c2 = step(c1.state, { ...base, at: 3000, nodes: [node("a", 3000, 3e9, 100), node("b", 1000, 1e9, 100)] })
    assert.deepStrictEqual(c2.agent!.node.cpu_util, { current: "4000", capacity: "3000", pct: "133.33", unit_hint: "msec" })
    assert.deepStrictEqual(c2.agent!.node.disk, { current: "2", capacity: "200", pct: "1", unit_hint: "bytes" })
    assert.strictEqual(c2.state.lastCycleAt, 3000)
    // a node that stays away exactly staleAfterMs is kept; one ms later it is dropped
    const kept = step(c2.state, { ...base, at: 11_000, nodes: [node("a", 11_000, 3e9, 100), { node: "b", at: 11_000, summary: undefined }] })
    assert.deepStrictEqual(Object.keys(kept.agent!.devices.disk!).sort(), ["a", "b"])
    const c3 = step(c2.state, { ...base, at: 11_001, nodes: [node("a", 11_001, 3e9, 100), { node: "b", at: 11_001, summary: undefined }] })
    assert.deepStrictEqual(Object.keys(c3.agent!.devices.disk!), ["a"])
    const none = step(c2.state, { ...base, at: 50_000, nodes: [{ node: "a", at: 50_000, summary: undefined }] })
    assert.isUndefined(none.agent)
    assert.strictEqual(none.state.cluster, c2.state.cluster)
  })

  it("all node and kernel metric keys", () => {
    assert.deepStrictEqual(NodeMetrics.map((m) => [m.key, m.kind, m.unitHint, m.stats.join()]), [
      ["cpu_util", "delta", "msec", ""], ["mem", "gauge", "bytes", "max"], ["disk", "gauge", "bytes", ""],
      ["net_rx", "rate", "bps", ""], ["net_tx", "rate", "bps", ""]
    ])
    assert.deepStrictEqual(KernelMetrics.map((m) => [m.key, m.kind, m.unitHint, m.stats.join()]), [
      ["cpu_util", "util", "percent", "avg,max"], ["cpu_used", "gauge", "msec", ""], ["mem", "gauge", "bytes", "max"],
      ["io_read", "gauge", "bytes", "rate"], ["io_write", "gauge", "bytes", "rate"], ["io_scratch_size", "gauge", "bytes", "max"],
      ["net_rx", "rate", "bps", "rate"], ["net_tx", "rate", "bps", "rate"]
    ])
  })
})
