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
 *   two, at the kubelet's sample times, else the read's `Clock` time); for counters a decrease
 *   (counter reset, pod restart) counts as 0.
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

/**
 * One measurement: a raw value and, for gauges, the capacity it is a share of; `at`, when the source
 * stamped it (the kubelet's `time`, millis of the node's clock), else the step's time is the sample's.
 */
export interface Sample {
  readonly value: number
  readonly capacity?: number | undefined
  readonly at?: number | undefined
}

/** A serialized metric (values are decimal strings or nil). */
export type MetricRecord = { readonly [field: string]: string | null }

export interface Series {
  readonly spec: MetricSpec
  readonly value: number
  /** Millis of the last sample: the kubelet's time of it, else the read's Clock time. */
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

/** `node` (the cluster): each a gauge of the nodes' summed current values (with the metric's unit and stats). */
const ClusterMetrics: ReadonlyArray<MetricSpec> = NodeMetrics.map((m) => ({ ...m, kind: "gauge" }))

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

// A series' numbers live in a flat array of doubles, FIELDS per series (a kernel's eight series in one
// array): no object and no boxed number per field per metric per kernel per cycle. Absent values
// (`prevValue`/`prevAt` before the second sample, `capacity`) have a flag, never a NaN or undefined
// (a NaN from a hostile summary stays a NaN value).
const VALUE = 0
const AT = 1
const HAS_PREV = 2
const PREV_VALUE = 3
const PREV_AT = 4
const CURRENT = 5
const HAS_CAPACITY = 6
const CAPACITY = 7
const COUNT = 8
const SUM = 9
const MIN = 10
const MAX = 11
const FIELDS = 12

/** A {@link Series} read from `FIELDS` numbers at `offset` of `data`. */
class SeriesView implements Series {
  spec: MetricSpec
  data: ReadonlyArray<number>
  offset: number
  constructor(spec: MetricSpec, data: ReadonlyArray<number>, offset: number) {
    this.spec = spec
    this.data = data
    this.offset = offset
  }
  get value(): number {
    return this.data[this.offset + VALUE]!
  }
  get at(): number {
    return this.data[this.offset + AT]!
  }
  get prevValue(): number | undefined {
    return this.data[this.offset + HAS_PREV] === 1 ? this.data[this.offset + PREV_VALUE]! : undefined
  }
  get prevAt(): number | undefined {
    return this.data[this.offset + HAS_PREV] === 1 ? this.data[this.offset + PREV_AT]! : undefined
  }
  get current(): number {
    return this.data[this.offset + CURRENT]!
  }
  get capacity(): number | undefined {
    return this.data[this.offset + HAS_CAPACITY] === 1 ? this.data[this.offset + CAPACITY]! : undefined
  }
  get count(): number {
    return this.data[this.offset + COUNT]!
  }
  get sum(): number {
    return this.data[this.offset + SUM]!
  }
  get min(): number {
    return this.data[this.offset + MIN]!
  }
  get max(): number {
    return this.data[this.offset + MAX]!
  }
}

/**
 * Writes the series after a sample of `value` (and, for gauges, `capacity`) at millis `at` to `out`
 * at `o`; `prev` undefined starts it. A counter's first sample has no window: current 0, not
 * aggregated (count 0).
 *
 * A sample at the series' own time is the one it holds, read again (a kubelet summary carries
 * cAdvisor's last sample, taken every 10–20 s, and is read every 2 s): the series stays as it is, so
 * a rate is never taken over a read interval the counter did not move in, nor the next one over a
 * window longer than its elapsed time. A sample at an earlier time (the node's clock stepped back)
 * starts the series again rather than freezing it until the clock catches up.
 */
const advance = (
  out: Array<number>,
  o: number,
  prev: Series | undefined,
  metric: MetricSpec,
  value: number,
  sampleCapacity: number | undefined,
  at: number,
  nominalMs: number
): void => {
  if (prev !== undefined && at === prev.at) {
    copySeries(out, o, prev)
    return
  }
  if (prev !== undefined && at < prev.at) prev = undefined
  const kind = metric.kind
  let current: number
  let capacity: number | undefined
  out[o + VALUE] = value
  out[o + AT] = at
  if (prev === undefined) {
    current = kind === "gauge" ? value : 0
    capacity = kind === "gauge" ? sampleCapacity : kind === "delta" ? nominalMs : kind === "util" ? 1000 : undefined
    out[o + HAS_PREV] = 0
    out[o + PREV_VALUE] = 0
    out[o + PREV_AT] = 0
    out[o + COUNT] = kind === "gauge" ? 1 : 0
    out[o + SUM] = current
    out[o + MIN] = current
    out[o + MAX] = current
  } else {
    const elapsed = at - prev.at
    const diff = Math.max(0, value - prev.value) // used for counters only
    current = kind === "gauge" ? value : kind === "delta" ? diff : elapsed > 0 ? (diff * 1000) / elapsed : 0
    capacity = kind === "gauge" ? sampleCapacity : kind === "delta" ? elapsed : kind === "util" ? 1000 : undefined
    const first = prev.count === 0
    out[o + HAS_PREV] = 1
    out[o + PREV_VALUE] = prev.value
    out[o + PREV_AT] = prev.at
    out[o + COUNT] = prev.count + 1
    out[o + SUM] = prev.sum + current
    out[o + MIN] = first ? current : Math.min(prev.min, current)
    out[o + MAX] = first ? current : Math.max(prev.max, current)
  }
  out[o + CURRENT] = current
  out[o + HAS_CAPACITY] = capacity === undefined ? 0 : 1
  out[o + CAPACITY] = capacity ?? 0
}

/** `prev`'s numbers, unchanged, to `out` at `o`. */
const copySeries = (out: Array<number>, o: number, prev: Series): void => {
  const prevValue = prev.prevValue
  const prevAt = prev.prevAt
  const capacity = prev.capacity
  out[o + VALUE] = prev.value
  out[o + AT] = prev.at
  out[o + HAS_PREV] = prevValue === undefined || prevAt === undefined ? 0 : 1
  out[o + PREV_VALUE] = prevValue ?? 0
  out[o + PREV_AT] = prevAt ?? 0
  out[o + CURRENT] = prev.current
  out[o + HAS_CAPACITY] = capacity === undefined ? 0 : 1
  out[o + CAPACITY] = capacity ?? 0
  out[o + COUNT] = prev.count
  out[o + SUM] = prev.sum
  out[o + MIN] = prev.min
  out[o + MAX] = prev.max
}

const single = (prev: Series | undefined, metric: MetricSpec, sample: Sample, at: number, nominalMs: number): Series => {
  const data = new Array<number>(FIELDS)
  advance(data, 0, prev, metric, sample.value, sample.capacity, sample.at ?? at, nominalMs)
  return new SeriesView(metric, data, 0)
}

/** Starts a series with its first sample at millis `at` (or the sample's own); `nominalMs` is the collection interval. */
export const startSeries = (metric: MetricSpec, sample: Sample, at: number, nominalMs: number): Series =>
  single(undefined, metric, sample, at, nominalMs)

/** The series after one more sample. */
export const updateSeries = (s: Series, sample: Sample, at: number, nominalMs: number): Series =>
  single(s, s.spec, sample, at, nominalMs)

export const stepSeries = (s: Series | undefined, metric: MetricSpec, sample: Sample, at: number, nominalMs: number): Series =>
  single(s, s?.spec ?? metric, sample, at, nominalMs)

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
/** The view {@link writeSeriesSet} moves over a set's series (synchronous: one is enough). */
const writing = new SeriesView({ key: "", kind: "gauge", unitHint: "", stats: [] }, [], 0)

/**
 * The msgpack of {@link serializeSet}`(set)` (a `<kernel_id>` value), written straight from the series:
 * no record object and no map of them per kernel per cycle (`Msgpack.encodeBy(w => writeSeriesSet(w, set))`
 * equals `Msgpack.encode(serializeSet(set))`, byte for byte).
 */
export const writeSeriesSet = (w: ValueWriter, set: SeriesSet): void => {
  const saved = sink
  sink = w
  try {
    const specs = set.specs
    w.mapHeader(specs.length)
    for (let i = 0; i < specs.length; i++) {
      const spec = specs[i]!
      writing.spec = spec
      writing.data = set.data
      writing.offset = i * FIELDS
      w.str(spec.key)
      w.mapHeader(4 + spec.stats.length)
      recordFields(writing, putField)
    }
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

/**
 * The times parsed lately: a real kubelet's are whole seconds, so the ~5,000 pods of a cluster carry a
 * few dozen distinct ones at a time, and a kept summary's are read again every cycle. Emptied when full.
 */
const parsedTimes = new Map<string, number | undefined>()

/**
 * Millis of a kubelet measurement's `time` (RFC 3339); undefined when absent or unreadable (the
 * summary's read time stands in).
 */
export const timeOf = (time: string | undefined): number | undefined => {
  if (time === undefined) return undefined
  const known = parsedTimes.get(time)
  if (known !== undefined || parsedTimes.has(time)) return known
  if (parsedTimes.size >= 256) parsedTimes.clear()
  const ms = Date.parse(time)
  const at = Number.isFinite(ms) ? ms : undefined
  parsedTimes.set(time, at)
  return at
}

/** A sample without absent keys (the node's, built per node per read). */
const sampleOf = (value: number, capacity: number | undefined, at: number | undefined): Sample =>
  capacity === undefined ? (at === undefined ? { value } : { value, at }) : at === undefined ? { value, capacity } : { value, capacity, at }

/** Node metrics of one kubelet summary (`node` part), each at its measurement's time. */
export const nodeSamples = (node: NodeStats): Record<string, Sample> => {
  const ws = n(node.memory?.workingSetBytes)
  const netAt = timeOf(node.network?.time)
  return {
    cpu_util: sampleOf(msecOf(node.cpu?.usageCoreNanoSeconds), undefined, timeOf(node.cpu?.time)),
    mem: sampleOf(ws, node.memory?.availableBytes !== undefined ? ws + node.memory.availableBytes : undefined, timeOf(node.memory?.time)),
    disk: sampleOf(n(node.fs?.usedBytes), node.fs?.capacityBytes, timeOf(node.fs?.time)),
    net_rx: sampleOf(n(node.network?.rxBytes), undefined, netAt),
    net_tx: sampleOf(n(node.network?.txBytes), undefined, netAt)
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
  const filled = fillPodSamples(pod, memoryLimit, fallbackMemCapacity)
  const out: Record<string, Sample> = {}
  for (const m of KernelMetrics) {
    const { at, capacity, value } = filled[m.key]!
    out[m.key] = sampleOf(value, capacity, at)
  }
  return out
}

/**
 * {@link podSamples} in one set of sample objects reused for every pod (the step reads them before the
 * next pod's): no nine objects per kernel per cycle.
 */
const reusedPodSamples: { readonly [key: string]: { value: number; capacity: number | undefined; at: number | undefined } } = Object.fromEntries(
  KernelMetrics.map((m) => [m.key, { value: 0, capacity: undefined, at: undefined }])
)
const fillPodSamples = (pod: PodStats, memoryLimit: number | undefined, fallbackMemCapacity: number | undefined): Record<string, Sample> => {
  const s = reusedPodSamples
  const cpuMsec = msecOf(pod.cpu?.usageCoreNanoSeconds)
  const ws = n(pod.memory?.workingSetBytes)
  s.cpu_util!.value = cpuMsec
  s.cpu_used!.value = cpuMsec
  s.mem!.value = ws
  s.mem!.capacity = memoryLimit ?? fallbackMemCapacity ?? ws
  s.io_read!.value = 0
  s.io_write!.value = 0
  s.io_scratch_size!.value = scratchBytes(pod)
  s.net_rx!.value = n(pod.network?.rxBytes)
  s.net_tx!.value = n(pod.network?.txBytes)
  // each at its measurement's time (cpu, memory and network are sampled apart); scratch (volume
  // stats carry no time here) and the constant io_* at the pod's (its cpu's, else memory's), so a
  // pod read again is wholly the same samples
  const cpuAt = timeOf(pod.cpu?.time)
  const memAt = timeOf(pod.memory?.time)
  const netAt = timeOf(pod.network?.time)
  const podAt = cpuAt ?? memAt
  s.cpu_util!.at = cpuAt
  s.cpu_used!.at = cpuAt
  s.mem!.at = memAt
  s.io_read!.at = podAt
  s.io_write!.at = podAt
  s.io_scratch_size!.at = podAt
  s.net_rx!.at = netAt
  s.net_tx!.at = netAt
  return s
}

// ---- the collector's state, one cycle at a time ------------------------------------------------

/**
 * The series of one subject (a kernel, a node, the cluster), one per metric, in `specs` order: all
 * their numbers in one array (see {@link FIELDS}). Read-only; each cycle builds new sets.
 */
export class SeriesSet {
  readonly specs: ReadonlyArray<MetricSpec>
  readonly data: ReadonlyArray<number>
  constructor(specs: ReadonlyArray<MetricSpec>, data: ReadonlyArray<number>) {
    this.specs = specs
    this.data = data
  }
  get size(): number {
    return this.specs.length
  }
  indexOf(key: string): number {
    for (let i = 0; i < this.specs.length; i++) if (this.specs[i]!.key === key) return i
    return -1
  }
  has(key: string): boolean {
    return this.indexOf(key) >= 0
  }
  /** The metric's series (a new view: not for per-kernel loops). */
  get(key: string): Series | undefined {
    const i = this.indexOf(key)
    return i < 0 ? undefined : new SeriesView(this.specs[i]!, this.data, i * FIELDS)
  }
  /** The metric's current capacity, without a view. */
  capacityOf(key: string): number | undefined {
    const o = this.indexOf(key) * FIELDS
    return o < 0 || this.data[o + HAS_CAPACITY] !== 1 ? undefined : this.data[o + CAPACITY]!
  }
  forEach(f: (s: Series, key: string) => void): void {
    for (let i = 0; i < this.specs.length; i++) f(new SeriesView(this.specs[i]!, this.data, i * FIELDS), this.specs[i]!.key)
  }
}

const emptySet = new SeriesSet([], [])

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

export const emptyState: CollectorState = { nodes: new Map(), cluster: emptySet, kernels: new Map(), lastCycleAt: undefined }

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

/** The view {@link stepSet} reads a previous series through (synchronous: one is enough). */
const previous = new SeriesView({ key: "", kind: "gauge", unitHint: "", stats: [] }, [], 0)

/**
 * Whether every sample is at its series' own time: the samples `set` holds, read again (most reads of
 * a pod: the kubelet samples it every 10–20 s). The set then stays the same object, which the
 * collector takes for "its value is the one already encoded".
 */
const readAgain = (set: SeriesSet, samples: Record<string, Sample>, at: number): boolean => {
  for (let i = 0; i < set.specs.length; i++) {
    if ((samples[set.specs[i]!.key]!.at ?? at) !== set.data[i * FIELDS + AT]) return false
  }
  return true
}

/**
 * The set after one sample per metric of `specs` (metrics without a sample are left out); `prev`
 * itself when every sample is the one it holds.
 */
const stepSet = (
  prev: SeriesSet | undefined,
  specs: ReadonlyArray<MetricSpec>,
  samples: Record<string, Sample>,
  at: number,
  nominalMs: number
): SeriesSet => {
  let present = specs
  for (const m of specs) {
    if (samples[m.key] === undefined) {
      present = specs.filter((x) => samples[x.key] !== undefined)
      break
    }
  }
  if (prev !== undefined && prev.specs === present && readAgain(prev, samples, at)) return prev
  const data = new Array<number>(present.length * FIELDS)
  for (let i = 0; i < present.length; i++) {
    const m = present[i]!
    const sample = samples[m.key]!
    const j = prev === undefined ? -1 : prev.specs === present ? i : prev.indexOf(m.key)
    if (j >= 0) {
      previous.spec = prev!.specs[j]!
      previous.data = prev!.data
      previous.offset = j * FIELDS
    }
    advance(data, i * FIELDS, j >= 0 ? previous : undefined, m, sample.value, sample.capacity, sample.at ?? at, nominalMs)
  }
  return new SeriesSet(present, data)
}

/** A `<kernel_id>` value (or the agent's `node` part): `{metric: M}`. */
export const serializeSet = (set: SeriesSet): Record<string, MetricRecord> => {
  const out: Record<string, MetricRecord> = {}
  set.forEach((s, key) => {
    out[key] = serialize(s)
  })
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
    const aggregates: Record<string, Sample> = {}
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
      aggregates[m.key] = { value: current, capacity: m.kind === "delta" ? window : m.kind === "gauge" ? capacity : undefined }
    }
    cluster = stepSet(state.cluster, ClusterMetrics, aggregates, input.at, nominalMs)
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
    const nodeMem = nodes.get(found.from.node)?.series.capacityOf("mem")
    const set = stepSet(prev, KernelMetrics, fillPodSamples(found.pod, k.memoryLimit, nodeMem), found.from.at, nominalMs)
    kernels.set(k.kernelId, set)
    kernelOut.set(k.kernelId, set)
  }

  return { state: { nodes, cluster, kernels, lastCycleAt: input.at }, agent, kernels: kernelOut }
}
