// size: the D19 stat format as one pure module (metric table, decimals, series, the cycle step), scored whole by the statformat mutation group
/**
 * The statistics format of the Docker reference agent (spec §6, "D19 / A19.09 (reference format)";
 * D19 `stats.py` `Metric`/`MovingStatistics`, `intrinsic.py`), as pure functions.
 *
 * A metric record `M` = `{current, capacity, pct, unit_hint, "stats.<name>"…}` with decimal strings
 * (3 decimals, trailing zeros removed; `pct` 2 decimals; `capacity`/`pct` nil when unknown). A
 * {@link Series} is one metric of one subject (the cluster, a node, a kernel) over time:
 *
 * - `stats.diff` / `stats.rate` compare the last two raw samples (the collector's own sliding window of
 *   two, timestamps from `Clock`); for counters a decrease (counter reset, pod restart) counts as 0.
 * - `stats.min|max|sum|avg` aggregate the metric's *current* values since the series started (D19
 *   aggregated the raw values, which made `cpu_util` avg/max meaningless for cumulative CPU time;
 *   for gauges the two are the same). A counter's first sample has no rate yet: it is not aggregated.
 *
 * Which value becomes `current` depends on the metric's kind:
 * - `gauge`: the sample (memory, disk, cumulative `cpu_used` msec, byte counters shown as totals);
 * - `delta`: the increase since the last sample, with the elapsed msec as capacity (node `cpu_util` in
 *   msec; pct = percent of one core);
 * - `rate`: the increase per second (net bytes per second, unit hint `bps` as in D19);
 * - `util`: msec of CPU per second with capacity 1000 (kernel `cpu_util`; pct = percent of one core).
 */
import type { ValueWriter } from "../codec/Msgpack.ts"
import type { NodeStats, PodStats } from "./KubeletSummary.ts"

export type MetricKind = "gauge" | "delta" | "rate" | "util"
export type StatName = "min" | "max" | "sum" | "avg" | "diff" | "rate"

export interface MetricSpec {
  readonly key: string
  readonly kind: MetricKind
  readonly unitHint: string
  readonly stats: ReadonlyArray<StatName>
}

/** One measurement: a raw value and, for gauges, the capacity it is a share of. */
export interface Sample {
  readonly value: number
  readonly capacity?: number | undefined
}

/** A serialized metric (values are decimal strings or nil). */
export type MetricRecord = { readonly [field: string]: string | null }

export interface Series {
  readonly spec: MetricSpec
  readonly value: number
  /** Clock millis of the last sample. */
  readonly at: number
  readonly prevValue: number | undefined
  readonly prevAt: number | undefined
  readonly current: number
  readonly capacity: number | undefined
  /** Aggregates of `current` (see the module comment). */
  readonly count: number
  readonly sum: number
  readonly min: number
  readonly max: number
}

// ---- metric definitions (D19 intrinsic.py; kernel net_* as in later Docker agents) -----------------

const spec = (key: string, kind: MetricKind, unitHint: string, stats: ReadonlyArray<StatName> = []): MetricSpec => ({
  key,
  kind,
  unitHint,
  stats
})

/** `node` (the whole cluster) and `devices` (each Kubernetes node). */
export const NodeMetrics: ReadonlyArray<MetricSpec> = [
  spec("cpu_util", "delta", "msec"),
  spec("mem", "gauge", "bytes", ["max"]),
  spec("disk", "gauge", "bytes"),
  spec("net_rx", "rate", "bps"),
  spec("net_tx", "rate", "bps")
]

/** `<kernel_id>` keys. */
export const KernelMetrics: ReadonlyArray<MetricSpec> = [
  spec("cpu_util", "util", "percent", ["avg", "max"]),
  spec("cpu_used", "gauge", "msec"),
  spec("mem", "gauge", "bytes", ["max"]),
  spec("io_read", "gauge", "bytes", ["rate"]),
  spec("io_write", "gauge", "bytes", ["rate"]),
  spec("io_scratch_size", "gauge", "bytes", ["max"]),
  spec("net_rx", "rate", "bps", ["rate"]),
  spec("net_tx", "rate", "bps", ["rate"])
]

// ---- decimals ----------------------------------------------------------------------------------

/** Python `str(remove_exponent(Decimal(n).quantize(10**-places)))`: "12.5", "3", "0". */
export const formatDecimal = (n: number, places = 3): string => {
  // a whole number prints as itself (toFixed's digits are exact below 2^53; String(-0) is "0"): the
  // common case, byte counts, without toFixed's strings (the stats loop formats every value of every
  // kernel each cycle)
  if (Number.isSafeInteger(n)) return String(n)
  if (!Number.isFinite(n)) return "0"
  return places >= 0 && places <= MAX_FAST_PLACES && Number.isInteger(places) ? formatScaled(n, places) : formatDecimalExact(n, places)
}

const MAX_FAST_PLACES = 3
const SCALES = [1, 10, 100, 1000]
/** Per places: ".d…" of every fraction 0 … 10^places − 1, trailing zeros removed ("" for 0). */
const FRACTIONS: ReadonlyArray<ReadonlyArray<string>> = SCALES.map((scale, places) =>
  Array.from({ length: scale }, (_, f) => places === 0 || f === 0 ? "" : `.${String(f).padStart(places, "0")}`.replace(/0+$/, ""))
)

/**
 * {@link formatDecimal} for at most {@link MAX_FAST_PLACES} places, with integer arithmetic on the
 * scaled value and one string (the stats loop formats ~32,000 values per cycle at 1,000 kernels; the
 * exact path builds three or four). `a = |n| × 10^places` is the exact product rounded to the nearest
 * double, and rounding is monotonic: below 2^50, where every k + ½ is a double, an exact product below
 * (above) k + ½ gives an `a` at most (at least) k + ½. So `a`'s rounding to an integer is the exact
 * product's unless `a` is exactly k + ½ (a tie, or a value within half an ulp of one): those and values
 * past 2^50 take {@link formatDecimalExact}.
 */
const formatScaled = (n: number, places: number): string => {
  const scale = SCALES[places]!
  const a = Math.abs(n) * scale
  if (!(a < 2 ** 50)) return formatDecimalExact(n, places)
  const whole = Math.floor(a)
  const rest = a - whole // exact
  if (rest === 0.5) return formatDecimalExact(n, places)
  const r = rest > 0.5 ? whole + 1 : whole
  if (r === 0) return "0" // Python's "-0" after remove_exponent is printed "0" here, as before
  const int = Math.floor(r / scale)
  const digits = String(int) + FRACTIONS[places]![r - int * scale]!
  return n < 0 ? "-" + digits : digits
}

/** {@link formatDecimal} through `toFixed`, exact for every double and any places (ties half-even). */
export const formatDecimalExact = (n: number, places: number): string => {
  if (!Number.isFinite(n)) return "0"
  let s = n.toFixed(places)
  // an exact tie (the double's decimal expansion ends in 5 right after `places`): toFixed rounds it
  // away from zero, Python's Decimal.quantize (default context) half-even, so an even last kept digit
  // keeps the truncation. toFixed is exact up to 100 digits, and a tie ends within places + 1, so
  // toFixed(places + 1) of a tie is exact and ends in 5: only then is the long expansion needed
  const exact = places < 100 && !n.toFixed(places + 1).endsWith("5") ? "" : n.toFixed(Math.min(100, places + 30))
  const dot = exact.indexOf(".")
  if (dot >= 0 && exact[dot + 1 + places] === "5" && /^0*$/.test(exact.slice(dot + 2 + places))) {
    const truncated = places === 0 ? exact.slice(0, dot) : exact.slice(0, dot + 1 + places)
    if (Number(truncated[truncated.length - 1]) % 2 === 0) s = truncated
  }
  if (s.includes(".")) s = s.replace(/0+$/, "").replace(/\.$/, "")
  return s === "-0" ? "0" : s
}

// ---- series --------------------------------------------------------------------------------------

const isCounter = (kind: MetricKind) => kind !== "gauge"

/** The raw increase between the last two samples (counters never go backwards); 0 without a window. */
const diffOf = (s: Pick<Series, "spec" | "value" | "prevValue" | "prevAt">): number => {
  if (s.prevValue === undefined || s.prevAt === undefined) return 0
  const raw = s.value - s.prevValue
  return isCounter(s.spec.kind) ? Math.max(0, raw) : raw
}

/** The increase per second between the last two samples; 0 without a window or without elapsed time. */
const rateOf = (s: Pick<Series, "spec" | "value" | "at" | "prevValue" | "prevAt">): number => {
  const elapsed = s.at - (s.prevAt ?? s.at)
  return elapsed > 0 ? (diffOf(s) * 1000) / elapsed : 0
}

/**
 * The series after a sample of `value` (and, for gauges, `capacity`) at Clock millis `at`; `prev`
 * undefined starts it. Builds the new Series and nothing else (every metric of every kernel, every
 * cycle). A counter's first sample has no window: current 0, not aggregated (count 0).
 */
const advance = (prev: Series | undefined, metric: MetricSpec, value: number, sampleCapacity: number | undefined, at: number, nominalMs: number): Series => {
  const kind = metric.kind
  if (prev === undefined) {
    const current = kind === "gauge" ? value : 0
    const capacity = kind === "gauge" ? sampleCapacity : kind === "delta" ? nominalMs : kind === "util" ? 1000 : undefined
    const count = kind === "gauge" ? 1 : 0
    return { spec: metric, value, at, prevValue: undefined, prevAt: undefined, current, capacity, count, sum: current, min: current, max: current }
  }
  const elapsed = at - prev.at
  const diff = Math.max(0, value - prev.value) // used for counters only
  const current = kind === "gauge" ? value : kind === "delta" ? diff : elapsed > 0 ? (diff * 1000) / elapsed : 0
  const capacity = kind === "gauge" ? sampleCapacity : kind === "delta" ? elapsed : kind === "util" ? 1000 : undefined
  const first = prev.count === 0
  return {
    spec: metric,
    value,
    at,
    prevValue: prev.value,
    prevAt: prev.at,
    current,
    capacity,
    count: prev.count + 1,
    sum: prev.sum + current,
    min: first ? current : Math.min(prev.min, current),
    max: first ? current : Math.max(prev.max, current)
  }
}

/** Starts a series with its first sample at Clock millis `at`; `nominalMs` is the collection interval. */
export const startSeries = (metric: MetricSpec, sample: Sample, at: number, nominalMs: number): Series =>
  advance(undefined, metric, sample.value, sample.capacity, at, nominalMs)

/** The series after one more sample. */
export const updateSeries = (s: Series, sample: Sample, at: number, nominalMs: number): Series =>
  advance(s, s.spec, sample.value, sample.capacity, at, nominalMs)

export const stepSeries = (s: Series | undefined, metric: MetricSpec, sample: Sample, at: number, nominalMs: number): Series =>
  advance(s, s?.spec ?? metric, sample.value, sample.capacity, at, nominalMs)

const statOf = (s: Series, name: StatName): number => {
  switch (name) {
    case "min":
      return s.count === 0 ? s.current : s.min
    case "max":
      return s.count === 0 ? s.current : s.max
    case "sum":
      return s.sum
    case "avg":
      return s.count === 0 ? s.current : s.sum / s.count
    case "diff":
      return diffOf(s)
    case "rate":
      return rateOf(s)
  }
}

/**
 * Byte quantities (bytes, bytes per second). Manager 19.06 reads `net_rx`/`net_tx` `stats.rate` with
 * `int(value)` (legacy kernel fields `net_rx_bytes`/`net_tx_bytes`, live and from `last_stat`), which
 * raises on a fraction such as "500.5": byte rates are written as whole numbers.
 */
const isByteMetric = (spec: MetricSpec): boolean => spec.unitHint === "bytes" || spec.unitHint === "bps"

/**
 * D19 `Metric.to_serializable_dict`. Byte quantities are whole numbers in every field (manager 19.06
 * `int()`s kernel `mem.current|capacity|stats.max`, `io_*.current`, `io_scratch_size.*`: "50.5"
 * would raise there).
 */
export const serialize = (s: Series): MetricRecord => {
  const out: Record<string, string | null> = {}
  recordFields(s, (key, value) => {
    out[key] = value
  })
  return out
}

/** The fields of {@link serialize}'s record, in its key order, handed to `put` (no record object). */
const recordFields = (s: Series, put: (key: string, value: string | null) => void): void => {
  const places = isByteMetric(s.spec) ? 0 : 3
  put("current", formatDecimal(s.current, places))
  put("capacity", s.capacity === undefined ? null : formatDecimal(s.capacity, places))
  put("pct", s.capacity !== undefined && s.capacity > 0 ? formatDecimal((s.current / s.capacity) * 100, 2) : null)
  put("unit_hint", s.spec.unitHint)
  for (const name of s.spec.stats) put(STAT_KEYS[name], formatDecimal(statOf(s, name), places))
}

/** Fields of a record in a msgpack map: {@link recordFields}' `put` for {@link writeSeriesSet}. */
let sink: ValueWriter | undefined
const putField = (key: string, value: string | null): void => {
  sink!.str(key)
  if (value === null) sink!.nil()
  else sink!.str(value)
}
const writeSeries = (s: Series, key: string): void => {
  sink!.str(key)
  sink!.mapHeader(4 + s.spec.stats.length)
  recordFields(s, putField)
}

/**
 * The msgpack of {@link serializeSet}`(set)` (a `<kernel_id>` value), written straight from the series:
 * no record object and no map of them per kernel per cycle (`Msgpack.encodeBy(w => writeSeriesSet(w, set))`
 * equals `Msgpack.encode(serializeSet(set))`, byte for byte).
 */
export const writeSeriesSet = (w: ValueWriter, set: SeriesSet): void => {
  const saved = sink
  sink = w
  try {
    w.mapHeader(set.size)
    set.forEach(writeSeries)
  } finally {
    sink = saved
  }
}

/** The record keys of the stats (constants: no key string built per metric per kernel per cycle). */
const STAT_KEYS: { readonly [name in StatName]: string } = {
  min: "stats.min",
  max: "stats.max",
  sum: "stats.sum",
  avg: "stats.avg",
  diff: "stats.diff",
  rate: "stats.rate"
}

// ---- samples from the Summary API ------------------------------------------------------------

const n = (v: number | undefined): number => v ?? 0
const msecOf = (ns: number | undefined): number => n(ns) / 1e6

/** Node metrics of one kubelet summary (`node` part). */
export const nodeSamples = (node: NodeStats): Record<string, Sample> => {
  const ws = n(node.memory?.workingSetBytes)
  return {
    cpu_util: { value: msecOf(node.cpu?.usageCoreNanoSeconds) },
    mem: {
      value: ws,
      capacity: node.memory?.availableBytes !== undefined ? ws + node.memory.availableBytes : undefined
    },
    disk: { value: n(node.fs?.usedBytes), capacity: node.fs?.capacityBytes },
    net_rx: { value: n(node.network?.rxBytes) },
    net_tx: { value: n(node.network?.txBytes) }
  }
}

/**
 * The pod's scratch usage: what the kubelet reports for its volumes (the work dir volume), else its
 * ephemeral storage (writable layer, logs, emptyDirs).
 */
export const scratchBytes = (pod: PodStats): number => {
  const volumes = pod.volume ?? []
  if (volumes.length > 0) return volumes.reduce((a, v) => a + n(v.usedBytes), 0)
  return n(pod["ephemeral-storage"]?.usedBytes)
}

/**
 * Kernel metrics of one pod. The Summary API has no block-I/O counters: `io_read`/`io_write` are 0
 * (the keys exist because the manager reads them). `mem` always has a capacity, as in D19 (manager
 * 19.06's usage reports `int()` it): the pod's memory limit, else `fallbackMemCapacity` (the node's
 * memory), else the working set itself.
 */
export const podSamples = (pod: PodStats, memoryLimit?: number, fallbackMemCapacity?: number): Record<string, Sample> => {
  const cpuMsec = msecOf(pod.cpu?.usageCoreNanoSeconds)
  const ws = n(pod.memory?.workingSetBytes)
  return {
    cpu_util: { value: cpuMsec },
    cpu_used: { value: cpuMsec },
    mem: { value: ws, capacity: memoryLimit ?? fallbackMemCapacity ?? ws },
    io_read: { value: 0 },
    io_write: { value: 0 },
    io_scratch_size: { value: scratchBytes(pod) },
    net_rx: { value: n(pod.network?.rxBytes) },
    net_tx: { value: n(pod.network?.txBytes) }
  }
}

// ---- the collector's state, one cycle at a time ------------------------------------------------

export type SeriesSet = ReadonlyMap<string, Series>

export interface NodeState {
  readonly series: SeriesSet
  /** Clock millis of the last successful summary. */
  readonly at: number
}

export interface CollectorState {
  /** Per Kubernetes node ("devices"). */
  readonly nodes: ReadonlyMap<string, NodeState>
  /** The cluster as one node: running stats of the aggregated values. */
  readonly cluster: SeriesSet
  readonly kernels: ReadonlyMap<string, SeriesSet>
  /** Clock millis of the previous cycle. */
  readonly lastCycleAt: number | undefined
}

export const emptyState: CollectorState = { nodes: new Map(), cluster: new Map(), kernels: new Map(), lastCycleAt: undefined }

export interface KernelRef {
  readonly kernelId: string
  readonly namespace: string
  readonly podName: string
  readonly podUid: string | undefined
  /** Bytes: the pod's memory limit (the kernel's `mem` slot), if it has one. */
  readonly memoryLimit?: number | undefined
}

/**
 * The `mem` slot of a kernel's `resource_spec` JSON (src/spec/KernelConfig.ts `resourceSpecJson`):
 * the pod's memory limit; undefined when absent, zero or unreadable. Slots may be Decimal strings
 * ("1E+9").
 */
export const memoryLimitOf = (resourceSpec: string): number | undefined => {
  // only a JSON object has slots: anything else (e.g. the "" of an adopted kernel without a spec)
  // would make JSON.parse throw or yield a non-object, each stats cycle for each kernel
  if (!/^[ \t\n\r]*\{/.test(resourceSpec)) return undefined
  let parsed: unknown
  try {
    parsed = JSON.parse(resourceSpec)
  } catch {
    return undefined
  }
  if (typeof parsed !== "object" || parsed === null) return undefined
  const slots = (parsed as { readonly slots?: unknown }).slots
  if (typeof slots !== "object" || slots === null) return undefined
  const mem = (slots as { readonly mem?: unknown }).mem
  const v = typeof mem === "string" && /^\s*\+?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$/.test(mem) ? Number(mem) : typeof mem === "number" ? mem : NaN
  return Number.isFinite(v) && v > 0 ? Math.trunc(v) : undefined
}

export interface NodeResult {
  readonly node: string
  /** The summary, or undefined when the node did not answer this cycle. */
  readonly summary: { readonly node: NodeStats; readonly pods?: ReadonlyArray<PodStats> } | undefined
  /** Clock millis when the summary arrived. */
  readonly at: number
}

export interface AgentStat {
  readonly node: { readonly [metric: string]: MetricRecord }
  readonly devices: { readonly [metric: string]: { readonly [device: string]: MetricRecord } }
}

export interface CycleOutput {
  readonly state: CollectorState
  /** The `<agent_id>` value; undefined when no node has ever answered (nothing true to write). */
  readonly agent: AgentStat | undefined
  /**
   * The series of the kernels measured this cycle: their `<kernel_id>` values are
   * {@link serializeSet} of each (as msgpack: {@link writeSeriesSet}).
   */
  readonly kernels: ReadonlyMap<string, SeriesSet>
}

const stepSet = (
  prev: SeriesSet | undefined,
  specs: ReadonlyArray<MetricSpec>,
  samples: Record<string, Sample>,
  at: number,
  nominalMs: number
): Map<string, Series> => {
  const next = new Map<string, Series>()
  for (const m of specs) {
    const sample = samples[m.key]
    if (sample !== undefined) next.set(m.key, stepSeries(prev?.get(m.key), m, sample, at, nominalMs))
  }
  return next
}

/** A `<kernel_id>` value (or the agent's `node` part): `{metric: M}`. */
export const serializeSet = (set: SeriesSet): Record<string, MetricRecord> => {
  const out: Record<string, MetricRecord> = {}
  for (const [key, s] of set) out[key] = serialize(s)
  return out
}

/**
 * One collection cycle: feeds the node and pod samples into the series and returns the values to
 * write.
 *
 * - A node that did not answer keeps its last series (its device records repeat, and its last values
 *   count in the cluster totals) for `staleAfterMs`, then it is dropped; when it answers again its
 *   series restart (so a counter never jumps by a node's whole history).
 * - The cluster (`node`) values are the sums of the nodes' current values and capacities (`delta`
 *   metrics: capacity = the longest node window), so counters need no cluster-wide history.
 * - Kernels not in `kernels` lose their series; kernels whose pod was not in any summary keep theirs
 *   and are not written this cycle (their key keeps its previous value until it expires).
 */
export const step = (
  state: CollectorState,
  input: {
    readonly at: number
    readonly nominalMs: number
    readonly staleAfterMs: number
    readonly nodes: ReadonlyArray<NodeResult>
    readonly kernels: ReadonlyArray<KernelRef>
  }
): CycleOutput => {
  const { nominalMs } = input
  const nodes = new Map<string, NodeState>()
  // namespace → pod name → the pod and the node result it came from (no key string per pod)
  const pods = new Map<string, Map<string, { readonly pod: PodStats; readonly from: NodeResult }>>()
  for (const r of input.nodes) {
    const prev = state.nodes.get(r.node)
    if (r.summary !== undefined) {
      nodes.set(r.node, { series: stepSet(prev?.series, NodeMetrics, nodeSamples(r.summary.node), r.at, nominalMs), at: r.at })
      for (const p of r.summary.pods ?? []) {
        let named = pods.get(p.podRef.namespace)
        if (named === undefined) pods.set(p.podRef.namespace, (named = new Map()))
        named.set(p.podRef.name, { pod: p, from: r })
      }
    } else if (prev !== undefined && input.at - prev.at <= input.staleAfterMs) {
      nodes.set(r.node, prev)
    }
  }

  // the cluster as one node
  let agent: AgentStat | undefined
  let cluster: SeriesSet = state.cluster
  if (nodes.size > 0) {
    const devices: Record<string, Record<string, MetricRecord>> = {}
    const next = new Map<string, Series>()
    for (const m of NodeMetrics) {
      let current = 0
      let capacity: number | undefined = 0
      let window = 0
      const perDevice: Record<string, MetricRecord> = {}
      for (const [name, ns] of nodes) {
        const s = ns.series.get(m.key)
        if (s === undefined) continue
        perDevice[name] = serialize(s)
        current += s.current
        if (m.kind === "delta") window = Math.max(window, s.capacity ?? 0)
        else capacity = capacity === undefined || s.capacity === undefined ? undefined : capacity + s.capacity
      }
      devices[m.key] = perDevice
      const aggregate: Sample = { value: current, capacity: m.kind === "delta" ? window : m.kind === "gauge" ? capacity : undefined }
      // the cluster series is a gauge of the summed current values (with the metric's unit and stats)
      const gaugeSpec: MetricSpec = { ...m, kind: "gauge" }
      next.set(m.key, stepSeries(state.cluster.get(m.key), gaugeSpec, aggregate, input.at, nominalMs))
    }
    cluster = next
    agent = { node: serializeSet(cluster), devices }
  }

  // kernels
  const kernels = new Map<string, SeriesSet>()
  const kernelOut = new Map<string, SeriesSet>()
  for (const k of input.kernels) {
    const prev = state.kernels.get(k.kernelId)
    const found = pods.get(k.namespace)?.get(k.podName)
    if (found === undefined || (k.podUid !== undefined && found.pod.podRef.uid !== k.podUid)) {
      if (prev !== undefined) kernels.set(k.kernelId, prev)
      continue
    }
    const nodeMem = nodes.get(found.from.node)?.series.get("mem")?.capacity
    const set = stepSet(prev, KernelMetrics, podSamples(found.pod, k.memoryLimit, nodeMem), found.from.at, nominalMs)
    kernels.set(k.kernelId, set)
    kernelOut.set(k.kernelId, set)
  }

  return { state: { nodes, cluster, kernels, lastCycleAt: input.at }, agent, kernels: kernelOut }
}
