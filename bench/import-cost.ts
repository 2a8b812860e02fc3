/**
 * `node bench/run.ts import-cost [--repeat 3]`
 *
 * What each big dependency costs at import: for every module below, a fresh `node --expose-gc`
 * process imports it (nothing else), runs a full GC and reports /proc/self/smaps_rollup (RSS and its
 * anonymous / file split) and the V8 heap in use; `--repeat` processes per module, medians printed,
 * with the difference to a process that imports nothing. `dist/AgentLive.js` is every module of the
 * agent loaded (no layer built): compare with the idle agent of `bench/run.ts memory`.
 * `dist-bench/AgentLive.js` is the same modules bundled as `npm run build` bundles the entry points
 * (deploy/bundle.ts; written here before the probes). Needs `npm run build` for the dist/ rows.
 */
import { execFileSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import { bundleOne } from "../deploy/bundle.ts"

const argValue = (flag: string, fallback: number): number => {
  const i = process.argv.indexOf(flag)
  return i >= 0 && process.argv[i + 1] !== undefined ? Number(process.argv[i + 1]) : fallback
}
const REPEAT = argValue("--repeat", 3)
const repoRoot = fileURLToPath(new URL("..", import.meta.url))

const modules: ReadonlyArray<readonly [string, ReadonlyArray<string>]> = [
  ["(nothing)", []],
  ["effect", ["effect"]],
  ["effect + @effect/platform-node", ["effect", "@effect/platform-node/NodeRuntime", "@effect/platform-node/NodeServices", "@effect/platform-node/NodeHttpServer"]],
  ["@kubernetes/client-node", ["@kubernetes/client-node"]],
  ["etcd3 (+ @grpc/grpc-js)", ["etcd3"]],
  ["ioredis", ["ioredis"]],
  ["zeromq", ["zeromq"]],
  ["msgpackr + smol-toml + cockatiel + snappyjs", ["msgpackr", "smol-toml", "cockatiel", "snappyjs"]],
  ["all of the above", ["effect", "@effect/platform-node/NodeRuntime", "@effect/platform-node/NodeServices", "@effect/platform-node/NodeHttpServer", "@kubernetes/client-node", "etcd3", "ioredis", "zeromq", "msgpackr", "smol-toml", "cockatiel", "snappyjs"]],
  ["dist/AgentLive.js (the whole agent, loaded; tsc's output)", ["./dist/AgentLive.js"]],
  ["dist-bench/AgentLive.js (the same, bundled)", ["./dist-bench/AgentLive.js"]]
]

interface Sample {
  readonly rss: number
  readonly anon: number
  readonly pssFile: number
  readonly heap: number
  readonly ms: number
}

const probe = (specs: ReadonlyArray<string>): Sample => {
  const code = `
    import * as fs from "node:fs"
    const t0 = performance.now()
    for (const s of ${JSON.stringify(specs)}) await import(s)
    const ms = performance.now() - t0
    globalThis.gc(); globalThis.gc()
    const text = fs.readFileSync("/proc/self/smaps_rollup", "utf8")
    const kib = (f) => Number(new RegExp("^" + f + ":\\\\s+(\\\\d+) kB$", "m").exec(text)[1]) / 1024
    console.log(JSON.stringify({ rss: kib("Rss"), anon: kib("Anonymous"), pssFile: kib("Pss_File"), heap: process.memoryUsage().heapUsed / 2 ** 20, ms }))
  `
  const out = execFileSync(process.execPath, ["--expose-gc", "--input-type=module", "-e", code], { cwd: repoRoot, encoding: "utf8" })
  return JSON.parse(out.trim().split("\n").pop()!) as Sample
}

const median = (xs: ReadonlyArray<number>): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

await bundleOne("AgentLive", `${repoRoot}dist-bench`)
const rows = modules.map(([name, specs]) => {
  const samples = Array.from({ length: REPEAT }, () => probe(specs))
  const m = (f: (s: Sample) => number) => median(samples.map(f))
  return { name, rss: m((s) => s.rss), anon: m((s) => s.anon), pssFile: m((s) => s.pssFile), heap: m((s) => s.heap), ms: m((s) => s.ms) }
})
const base = rows[0]!
console.log(`import cost (node ${process.version}, medians of ${REPEAT} processes, after a full GC; Δ = minus "(nothing)")`)
console.log(`| module | RSS MiB | Δ RSS | Δ anonymous | Δ Pss_File | Δ V8 heap used | import ms |`)
console.log(`|---|---|---|---|---|---|---|`)
for (const r of rows) {
  const d = (a: number, b: number) => (r === base ? "—" : (a - b).toFixed(1))
  console.log(`| ${r.name} | ${r.rss.toFixed(1)} | ${d(r.rss, base.rss)} | ${d(r.anon, base.anon)} | ${d(r.pssFile, base.pssFile)} | ${d(r.heap, base.heap)} | ${r.ms.toFixed(0)} |`)
}
