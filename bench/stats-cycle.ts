/**
 * `node --max-semi-space-size=1 bench/stats-cycle.ts [ROOT] [CYCLES] [project|scan] [--redis HOST:PORT] [--alloc-prof]`
 *
 * The stats loop's own work per cycle at 1,000 kernels on 4 nodes, in process and without any I/O:
 * StatsCollector.make of the checkout at ROOT (default: this one; another worktree or a copy of an
 * old commit compares builds in the same run) with an in-memory Redis and a KubeletSummary whose
 * `fetch` reads pre-generated summary texts (the testbed kubelet's `summary()` documents, 6 rounds of
 * growing counters) the way ROOT's fetch does: the Summary Schema when ROOT has neither
 * `projectSummary` nor SummaryJson, else `project` (JSON.parse + projectSummary) or `scan`
 * (SummaryJson.parseSummary: only in commit f986276 of branch `stats`, measured and not kept). Prints process CPU ms per cycle, GC pause ms per cycle (PerformanceObserver
 * "gc" entries), wall ms per cycle and the bytes written per cycle. Benchmarks run under the
 * machine-wide lock: `flock /work/bench.lock node … bench/stats-cycle.ts …`.
 *
 * `--redis HOST:PORT`: the writes go to that Redis (DB 0; a testbed's, never a shared one) through ROOT's
 * own `Redis` service (ioredis pipeline or `setManyEx`, whichever ROOT's collector calls), so the
 * client's cost is in the numbers; also prints Redis's own time for the writes per cycle (`INFO
 * commandstats`: usec of SET, EVALSHA and EVAL over the measured cycles).
 *
 * `--alloc-prof`: the allocation sites of the measured cycles in bytes per cycle, garbage included (V8's
 * sampling heap profiler keeping what the GCs collected). Under `node --trace-gc-nvp`, the lines
 * between the printed markers are the measured cycles' GCs: `node bench/gc-nvp-sum.ts OUT` sums them.
 */
import { PerformanceObserver } from "node:perf_hooks"
import { fileURLToPath } from "node:url"
import { Session } from "node:inspector/promises"
/** `--alloc-prof`: every allocation of the measured cycles, sampled, including the garbage; top sites printed. */
const ALLOC_PROF = process.argv.includes("--alloc-prof")
process.argv = process.argv.filter((a) => a !== "--alloc-prof")
const redisAt = process.argv.indexOf("--redis")
const REDIS = redisAt >= 0 ? process.argv[redisAt + 1] : undefined
const args = redisAt >= 0 ? process.argv.filter((_, i) => i !== redisAt && i !== redisAt + 1) : process.argv
const root = args[2] ?? fileURLToPath(new URL("..", import.meta.url))
const CYCLES = Number(args[3] ?? 60)
const MODE = args[4] ?? "project"
const { Effect, Layer, References, Schema } = await import(`${root}/node_modules/effect/dist/index.js`)
const KS = await import(`${root}/src/stats/KubeletSummary.ts`)
const SJ = MODE === "scan" ? await import(`${root}/src/stats/SummaryJson.ts`) : undefined
const { StatsCollector } = await import(`${root}/src/stats/StatsCollector.ts`)
const { Redis } = await import(`${root}/src/manager/Redis.ts`)
const { summary } = await import("../test/testbed/stats.ts")

const NODES = 4, KERNELS = 1000, VARIANTS = 6
const kernels = Array.from({ length: KERNELS }, (_, i) => ({
  kernelId: `00000000-0000-0000-0000-${String(i).padStart(12, "0")}`, node: `node-${i % NODES}`, uid: `uid-${i}`
}))
const start = new Date().toISOString()
const texts: Array<Map<string, string>> = []
for (let v = 0; v < VARIANTS; v++) {
  const m = new Map<string, string>()
  const seconds = 2 * (v + 1)
  for (let n = 0; n < NODES; n++) {
    const pods = kernels.filter((k) => k.node === `node-${n}`)
    m.set(`node-${n}`, JSON.stringify(summary({ nodeName: `node-${n}`, startTime: start, memoryCapacity: 64 * 2 ** 30, fsRoot: "/tmp" },
      pods.map((k, i) => ({
        name: `kernel-${k.kernelId}`, namespace: "bench", uid: k.uid, startTime: start, containers: ["kernel"],
        usage: { cpuNs: Math.round((1 + (i % 7)) * 1e7 * seconds), rssBytes: (20 + (i % 13)) << 20, pids: 1 },
        cpuNanoCores: (1 + (i % 7)) * 1e7, rxBytes: Math.round(1000 * seconds * (i % 5)), txBytes: Math.round(500 * seconds * (i % 3)),
        workDir: undefined, workVolume: "work", workBytes: 4096 * (i % 11), logBytes: 100
      })))))
  }
  texts.push(m)
}
let variant = 0
const decodeOld = KS.projectSummary === undefined ? Schema.decodeUnknownEffect(KS.Summary) : undefined
const fetch = (node: string) => Effect.suspend(() => {
  if (SJ !== undefined) {
    const r = SJ.parseSummary(texts[variant % VARIANTS]!.get(node)!)
    return r instanceof SJ.SummaryMismatch ? Effect.die(r.message) : Effect.succeed(r)
  }
  const json = JSON.parse(texts[variant % VARIANTS]!.get(node)!)
  if (decodeOld !== undefined) return Effect.orDie(decodeOld(json))
  const s = KS.projectSummary(json)
  // 9e4de78 returned the summary or a SummaryMismatch; later commits an effect Result
  if (KS.SummaryMismatch !== undefined) return s instanceof KS.SummaryMismatch ? Effect.die(s.message) : Effect.succeed(s)
  return s._tag === "Failure" ? Effect.die(s.failure) : Effect.succeed(s.success)
})
const infos = kernels.map((k) => ({ kernelId: k.kernelId, namespace: "bench", objectName: `kernel-${k.kernelId}`, podUid: k.uid, resourceSpec: "" }))
const layer = Layer.mergeAll(
  Layer.succeed(KS.KubeletSummary, KS.KubeletSummary.of({ fetch })),
  REDIS !== undefined
    ? Redis.layer({ addr: REDIS })
    // older checkouts write with `pipeline`, later ones with `setManyEx`: both answered in memory
    : Layer.mock(Redis)({ pipeline: (c: ReadonlyArray<unknown>) => Effect.succeed(c.map(() => "OK")), setManyEx: () => Effect.void })
)
/** Redis's own usec per command name so far (`INFO commandstats`), from ROOT's Redis service. */
const serverUsec = REDIS === undefined ? () => Effect.succeed(new Map<string, number>()) : () =>
  Effect.gen(function*() {
    const info = String(yield* (yield* Redis).command("INFO", "commandstats"))
    const out = new Map<string, number>()
    for (const m of info.matchAll(/^cmdstat_(\w+):calls=(\d+),usec=(\d+)/gm)) {
      out.set(m[1]!, Number(m[3]))
      out.set(`${m[1]!} calls`, Number(m[2]))
    }
    return out
  })
let gcMs = 0
new PerformanceObserver((l) => { for (const e of l.getEntries()) gcMs += e.duration }).observe({ entryTypes: ["gc"] })
const program = Effect.gen(function*() {
  const collector = yield* StatsCollector.make({ agentId: "i-bench", intervalSeconds: 2, ttlSeconds: 30, concurrency: 8,
    nodes: Effect.succeed(kernels.slice(0, NODES).map((k) => k.node)), kernels: Effect.succeed(infos) })
  for (let i = 0; i < 10; i++) { variant++; if (!(yield* collector.collectOnce).written && REDIS !== undefined) throw new Error("not written") }
  const usec0 = yield* serverUsec()
  // a marker for `--trace-gc-nvp` output: the GCs between the two markers are the measured cycles'
  // (bench/gc-nvp-sum.ts adds up their allocated and promoted bytes)
  console.log("stats-cycle: measured cycles start")
  const session = ALLOC_PROF ? new Session() : undefined
  if (session !== undefined) {
    session.connect()
    yield* Effect.promise(() => session.post("HeapProfiler.startSampling", { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true }))
  }
  const cpu0 = process.cpuUsage(); const gc0 = gcMs; const t0 = performance.now()
  let bytes = 0
  for (let i = 0; i < CYCLES; i++) {
    variant++
    const r = yield* collector.collectOnce
    bytes = r.bytes
    if (r.kernels !== KERNELS || !r.written) throw new Error(`kernels ${r.kernels}, written ${r.written}`)
  }
  const cpu = process.cpuUsage(cpu0)
  console.log(`stats-cycle: measured cycles end (${CYCLES})`)
  if (session !== undefined) {
    const { profile } = yield* Effect.promise(() => session.post("HeapProfiler.stopSampling"))
    interface Node { callFrame: { functionName: string; url: string; lineNumber: number }; selfSize: number; children: Array<Node> }
    const self = new Map<string, number>()
    const walk = (n: Node, parent: string) => {
      const here = `${n.callFrame.functionName || "(anonymous)"} ${n.callFrame.url.replace(/^.*\/(src|node_modules)\//, "$1/")}:${n.callFrame.lineNumber + 1}`
      const key = n.callFrame.url === "" ? `${here} < ${parent}` : here
      self.set(key, (self.get(key) ?? 0) + n.selfSize)
      for (const c of n.children) walk(c, here)
    }
    walk(profile.head as Node, "")
    const total = [...self.values()].reduce((a, b) => a + b, 0)
    console.log(`allocation sites, bytes per cycle (sampled; ${(total / CYCLES / 1e6).toFixed(2)} MB per cycle in all):`)
    for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`  ${(v / CYCLES / 1e3).toFixed(0).padStart(7)} KB  ${k}`)
    session.disconnect()
  }
  const wall = performance.now() - t0
  const usec1 = yield* serverUsec()
  const delta = (key: string) => (usec1.get(key) ?? 0) - (usec0.get(key) ?? 0)
  const redisMs = ["set", "evalsha", "eval"].map((c) =>
    `${c} ${(delta(c) / 1000 / CYCLES).toFixed(2)} (${(delta(`${c} calls`) / CYCLES).toFixed(0)} calls, ${(delta(c) / Math.max(1, delta(`${c} calls`))).toFixed(0)} µs each)`
  )
  yield* Effect.sleep("100 millis")
  console.log(`${root} ${SJ !== undefined ? "scan" : decodeOld !== undefined ? "schema" : "project"}${REDIS !== undefined ? " + Redis" : ""}: ${((cpu.user + cpu.system) / 1000 / CYCLES).toFixed(1)} ms CPU per cycle, GC ${((gcMs - gc0) / CYCLES).toFixed(1)} ms per cycle, wall ${(wall / CYCLES).toFixed(1)} ms, ${bytes} bytes${REDIS !== undefined ? `; Redis's own ms per cycle: ${redisMs.join(", ")}` : ""}`)
}).pipe(Effect.provide(layer), Effect.scoped, Effect.provideService(References.MinimumLogLevel, "Warn"))
await Effect.runPromise(program)
