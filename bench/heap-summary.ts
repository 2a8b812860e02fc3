/**
 * `node bench/heap-summary.ts FILE.heapsnapshot [--top 25]`
 *
 * Where a V8 heap goes (`node bench/run.ts memory --heap-snapshot DIR` writes the agent's): the
 * snapshot's nodes summed by self size, per node type (object, closure, code, string, hidden …), per
 * constructor / name within the big types, the largest single strings (script sources show up here),
 * and the closures per script (which module's functions are alive: with tsc's output one script per
 * module, with the bundle one).
 */
import { readHeapSnapshot } from "./heapSnapshot.ts"

const file = process.argv[2]
if (file === undefined) {
  console.error("usage: node bench/heap-summary.ts FILE.heapsnapshot [--top 25]")
  process.exit(2)
}
const topIndex = process.argv.indexOf("--top")
const TOP = topIndex >= 0 ? Number(process.argv[topIndex + 1]) : 25

const { NF, EF, nType, nName, nSize, nEdges, eType, eName, eTo, nodeTypes, edgeTypes, edges, nodes, strings, count } = readHeapSnapshot(file)

const typeOf = (i: number) => nodeTypes[nodes[i * NF + nType]!]!
const nameOf = (i: number) => strings[nodes[i * NF + nName]!]!
const sizeOf = (i: number) => nodes[i * NF + nSize]!
const firstEdge = new Uint32Array(count + 1)
for (let i = 0; i < count; i++) firstEdge[i + 1] = firstEdge[i]! + nodes[i * NF + nEdges]!
/** the node an edge named `name` of node i points to */
const edgeTo = (i: number, name: string): number | undefined => {
  for (let e = firstEdge[i]!; e < firstEdge[i + 1]!; e++) {
    const t = edgeTypes[edges[e * EF + eType]!]
    if ((t === "internal" || t === "property" || t === "context") && strings[edges[e * EF + eName]!] === name) {
      return edges[e * EF + eTo]! / NF
    }
  }
  return undefined
}

const MiB = (b: number) => (b / 2 ** 20).toFixed(2)
const add = (m: Map<string, { size: number; n: number }>, k: string, size: number) => {
  const v = m.get(k) ?? { size: 0, n: 0 }
  v.size += size
  v.n += 1
  m.set(k, v)
}
const byType = new Map<string, { size: number; n: number }>()
const byName = new Map<string, { size: number; n: number }>()
const closuresByScript = new Map<string, { size: number; n: number }>()
const sourcesByPackage = new Map<string, { size: number; n: number }>()
/** node_modules/<package> (scoped: two segments), node:* internals, or the script name */
const packageOf = (script: string) => {
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(script)
  return m !== null ? m[1]! : script.startsWith("node:") ? "(node internals)" : script
}
/** the scripts seen (through a closure's function: a script none of whose functions is alive is not counted) */
const scripts = new Set<number>()
const bigStrings: Array<{ size: number; text: string }> = []
let total = 0
for (let i = 0; i < count; i++) {
  const t = typeOf(i)
  const s = sizeOf(i)
  total += s
  add(byType, t, s)
  if (t === "string" || t === "concatenated string" || t === "sliced string") {
    if (s >= 64 * 1024) bigStrings.push({ size: s, text: nameOf(i).slice(0, 70).replace(/\s+/g, " ") })
    continue
  }
  add(byName, `${t}: ${nameOf(i).slice(0, 80)}`, s)
  if (t === "closure") {
    const shared = edgeTo(i, "shared")
    const script = shared === undefined ? undefined : edgeTo(shared, "script")
    const source = script === undefined ? undefined : edgeTo(script, "name")
    if (script !== undefined && !scripts.has(script)) {
      scripts.add(script)
      const text = edgeTo(script, "source")
      if (text !== undefined) add(sourcesByPackage, packageOf(source === undefined ? "(unnamed)" : nameOf(source)), sizeOf(text))
    }
    add(closuresByScript, source === undefined ? "(no script)" : nameOf(source).replace(/^.*\/node_modules\//, "node_modules/"), s)
  }
}

const table = (title: string, m: Map<string, { size: number; n: number }>, top: number) => {
  console.log(`\n${title}\n| | MiB | count |\n|---|---|---|`)
  for (const [k, v] of [...m].sort((a, b) => b[1].size - a[1].size).slice(0, top)) {
    console.log(`| ${k.replace(/\|/g, "\\|")} | ${MiB(v.size)} | ${v.n} |`)
  }
}
console.log(`${file}: ${count} nodes, ${MiB(total)} MiB self size in all`)
table("by node type", byType, 20)
table(`top ${TOP} by type: constructor / name (strings excluded)`, byName, TOP)
console.log(`\nstrings ≥ 64 KiB: ${bigStrings.length}, ${MiB(bigStrings.reduce((a, s) => a + s.size, 0))} MiB`)
for (const s of bigStrings.sort((a, b) => b.size - a.size).slice(0, 10)) console.log(`  ${MiB(s.size)} MiB  ${JSON.stringify(s.text)}`)
table(`script source text by package (top ${TOP}; count = scripts)`, sourcesByPackage, TOP)
table(`closures by script (top ${TOP}; count = live functions)`, closuresByScript, TOP)
