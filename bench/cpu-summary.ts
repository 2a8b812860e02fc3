/**
 * `node bench/cpu-summary.ts FILE.cpuprofile [--last SECONDS] [--before FUNCTION] [--top 30]`
 *
 * Where an agent's CPU time goes (`node bench/run.ts memory --node-args "--cpu-prof
 * --cpu-prof-dir=DIR"` writes the agent's profile when it exits): the samples of the last `--last`
 * seconds before the profile ends (default: all; the steady state, without the start-up adoption), as
 * self time per function (name, file:line) and per package or src/ folder, plus the share of GC and
 * idle. Paths of one bundled file are mapped back to the package only through the function's
 * location in the bundle's source map when `<file>.map` exists next to it.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { SourceMap } from "node:module"

const file = process.argv[2]
if (file === undefined) {
  console.error("usage: node bench/cpu-summary.ts FILE.cpuprofile [--last SECONDS] [--before FUNCTION] [--top 30]")
  process.exit(2)
}
const arg = (flag: string): string | undefined => {
  const i = process.argv.indexOf(flag)
  return i >= 0 ? process.argv[i + 1] : undefined
}
const LAST = arg("--last") === undefined ? Infinity : Number(arg("--last"))
const TOP = Number(arg("--top") ?? 30)
/**
 * `--before signalHandler`: the window ends at the first sample whose stack holds a frame of that
 * function (the memory bench's SIGUSR2 report right after its measurement windows), not at the
 * profile's end (the agent's shutdown, e.g. closing 2,000 sockets, is not the steady state).
 */
const BEFORE = arg("--before")

interface ProfileNode {
  readonly id: number
  readonly children?: ReadonlyArray<number>
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number; readonly columnNumber: number }
}
interface Profile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly startTime: number
  readonly endTime: number
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}
const profile = JSON.parse(fs.readFileSync(file, "utf8")) as Profile
const byId = new Map(profile.nodes.map((n) => [n.id, n]))

// sample i was taken at startTime + sum(timeDeltas[0..i]); it stands for the time until the next one
const times: Array<number> = []
let t = profile.startTime
for (const d of profile.timeDeltas) times.push((t += d))
const parentOf = new Map<number, number>()
for (const n of profile.nodes) for (const c of n.children ?? []) parentOf.set(c, n.id)
const inStack = (id: number, fn: string): boolean => {
  for (let c: number | undefined = id; c !== undefined; c = parentOf.get(c)) if (byId.get(c)?.callFrame.functionName === fn) return true
  return false
}
const firstBefore = BEFORE === undefined ? -1 : profile.samples.findIndex((id) => inStack(id, BEFORE))
if (BEFORE !== undefined && firstBefore < 0) console.error(`no sample under ${BEFORE}: the window ends at the profile's end`)
const end = firstBefore >= 0 ? times[firstBefore]! : profile.endTime
const from = end - LAST * 1e6

const maps = new Map<string, SourceMap | undefined>()
const sourceMapOf = (url: string): SourceMap | undefined => {
  if (!maps.has(url)) {
    let m: SourceMap | undefined
    try {
      const f = fileURLToPath(url)
      if (fs.existsSync(`${f}.map`)) m = new SourceMap(JSON.parse(fs.readFileSync(`${f}.map`, "utf8")))
    } catch {
      m = undefined
    }
    maps.set(url, m)
  }
  return maps.get(url)
}
/** the original file of a frame (through the bundle's source map), relative to node_modules or the repository */
const originOf = (f: ProfileNode["callFrame"]): { readonly origin: string; readonly line: number | undefined } => {
  if (f.url === "") return { origin: f.functionName.startsWith("(") ? f.functionName : "(native)", line: undefined }
  const entry = f.url.startsWith("file:") ? sourceMapOf(f.url)?.findEntry(f.lineNumber, f.columnNumber) : undefined
  const mapped = entry !== undefined && "originalSource" in entry ? entry as { readonly originalSource: string; readonly originalLine: number } : undefined
  const rel = (mapped?.originalSource ?? f.url).replace(/^file:\/\//, "")
  const line = mapped !== undefined ? mapped.originalLine + 1 : f.lineNumber + 1
  const nm = rel.lastIndexOf("node_modules/")
  if (nm >= 0) return { origin: rel.slice(nm + "node_modules/".length), line }
  const src = rel.lastIndexOf("/src/")
  return { origin: src >= 0 ? rel.slice(src + 1) : rel.startsWith("node:") ? rel : path.basename(rel), line }
}
const groupOf = (origin: string): string => {
  if (origin.startsWith("(")) return origin
  if (origin.startsWith("node:")) return "(node internals)"
  const parts = origin.split("/")
  if (parts[0] === "src") return parts.length > 2 ? `src/${parts[1]}` : "src"
  return parts[0]!.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0]!
}

const selfByFunction = new Map<string, number>()
const selfByGroup = new Map<string, number>()
let total = 0
for (let i = 0; i < profile.samples.length; i++) {
  if (times[i]! < from || times[i]! >= end) continue
  const dt = (i + 1 < times.length ? times[i + 1]! : profile.endTime) - times[i]!
  const node = byId.get(profile.samples[i]!)!
  const { line, origin } = originOf(node.callFrame)
  const key = `${node.callFrame.functionName || "(anonymous)"} ${origin}${line === undefined ? "" : `:${line}`}`
  selfByFunction.set(key, (selfByFunction.get(key) ?? 0) + dt)
  selfByGroup.set(groupOf(origin), (selfByGroup.get(groupOf(origin)) ?? 0) + dt)
  total += dt
}
const busy = total - (selfByGroup.get("(idle)") ?? 0)
const show = (title: string, m: Map<string, number>, top: number) => {
  console.log(`\n${title}\n| | ms | % of busy |\n|---|---|---|`)
  for (const [k, v] of [...m].filter(([k]) => !k.startsWith("(idle)")).sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`| ${k.replace(/\|/g, "\\|")} | ${(v / 1000).toFixed(0)} | ${((v / busy) * 100).toFixed(1)} |`)
  }
}
console.log(`${file}: ${(total / 1e6).toFixed(1)} s of samples${Number.isFinite(LAST) ? ` (the last ${LAST} s${firstBefore >= 0 ? ` before ${BEFORE}` : ""})` : ""}, busy ${(busy / 1e6).toFixed(2)} s (${((busy / total) * 100).toFixed(1)} % of one core)`)
show("self time by package / src folder", selfByGroup, TOP)
show(`self time by function (top ${TOP})`, selfByFunction, TOP)
