/**
 * `node bench/heap-retainers.ts FILE.heapsnapshot [--match REGEX] [--top N] [--min BYTES]`
 *
 * What keeps a V8 heap alive (`node bench/run.ts memory --heap-snapshot DIR` writes the agent's): the
 * snapshot's dominator tree (Cooper–Harvey–Kennedy over the strong edges; weak and shortcut edges
 * do not retain), then
 *
 * - `--match REGEX`: the nodes whose label (`<type>:<constructor or name>`, e.g. `object:FiberImpl`,
 *   `object:Error`) matches, grouped by label, the edge their immediate dominator holds them by, and
 *   that dominator's label: their summed retained size (what would be freed with them) and count;
 * - `--top N` (default 30): the N largest retained sizes above `--min` bytes (default 256 KiB), each
 *   with the chain of its dominators.
 *
 * - `--parts REGEX [--up K] [--depth D]`: what the nodes whose label matches (or their K-th dominator
 *   each, e.g. `--parts '^object:V1PodStatus$' --up 1`: the pods holding them) are made of: the retained
 *   sizes of what they dominate, summed by path of edges (`.status.conditions`) down to depth D
 *   (default 2), per matched node.
 *
 * `bench/heap-summary.ts` sums self sizes by type and constructor; this says who holds them.
 */
import { readHeapSnapshot } from "./heapSnapshot.ts"

const argValue = (flag: string): string | undefined => {
  const i = process.argv.indexOf(flag)
  return i >= 0 ? process.argv[i + 1] : undefined
}
const file = process.argv[2]
if (file === undefined || file.startsWith("--")) {
  console.error("usage: node bench/heap-retainers.ts FILE.heapsnapshot [--match REGEX] [--top N] [--min BYTES]")
  process.exit(2)
}
const MATCH = argValue("--match")
const TOP = Number(argValue("--top") ?? 30)
const MIN = Number(argValue("--min") ?? 262144)
const PARTS = argValue("--parts")
const UP = Number(argValue("--up") ?? 0)
const DEPTH = Number(argValue("--depth") ?? 2)

const { NF, EF, nType, nName, nSize, nEdges, eType, eName, eTo, nodeTypes, edgeTypes, edges, nodes, strings, count: N } = readHeapSnapshot(file)

const firstEdge = new Uint32Array(N + 1)
for (let i = 0, e = 0; i < N; i++) {
  firstEdge[i] = e
  e += nodes[i * NF + nEdges]! * EF
}
firstEdge[N] = edges.length
const strong = (e: number) => {
  const t = edgeTypes[edges[e + eType]!]
  return t !== "weak" && t !== "shortcut"
}
const target = (e: number) => edges[e + eTo]! / NF

// depth-first post order from the root (node 0), iteratively
const postIndex = new Int32Array(N).fill(-1)
const order: Array<number> = []
{
  const seen = new Uint8Array(N)
  const stack: Array<number> = [0]
  const cursor: Array<number> = [firstEdge[0]!]
  seen[0] = 1
  while (stack.length > 0) {
    const n = stack[stack.length - 1]!
    let e = cursor[cursor.length - 1]!
    let descended = false
    while (e < firstEdge[n + 1]!) {
      const to = target(e)
      const follow = strong(e) && seen[to] === 0
      e += EF
      if (follow) {
        cursor[cursor.length - 1] = e
        seen[to] = 1
        stack.push(to)
        cursor.push(firstEdge[to]!)
        descended = true
        break
      }
    }
    if (!descended) {
      stack.pop()
      cursor.pop()
      postIndex[n] = order.length
      order.push(n)
    }
  }
}

// predecessors over strong edges of reachable nodes
const predStart = new Uint32Array(N + 1)
for (let n = 0; n < N; n++) {
  if (postIndex[n]! < 0) continue
  for (let e = firstEdge[n]!; e < firstEdge[n + 1]!; e += EF) if (strong(e)) predStart[target(e) + 1]!++
}
for (let i = 0; i < N; i++) predStart[i + 1]! += predStart[i]!
const preds = new Int32Array(predStart[N]!)
{
  const fill = predStart.slice()
  for (let n = 0; n < N; n++) {
    if (postIndex[n]! < 0) continue
    for (let e = firstEdge[n]!; e < firstEdge[n + 1]!; e += EF) if (strong(e)) preds[fill[target(e)]!++] = n
  }
}

const idom = new Int32Array(N).fill(-1)
idom[0] = 0
const intersect = (a0: number, b0: number) => {
  let a = a0
  let b = b0
  while (a !== b) {
    while (postIndex[a]! < postIndex[b]!) a = idom[a]!
    while (postIndex[b]! < postIndex[a]!) b = idom[b]!
  }
  return a
}
for (let changed = true; changed;) {
  changed = false
  for (let k = order.length - 1; k >= 0; k--) {
    const n = order[k]!
    if (n === 0) continue
    let d = -1
    for (let p = predStart[n]!; p < predStart[n + 1]!; p++) {
      const q = preds[p]!
      if (idom[q] !== -1) d = d === -1 ? q : intersect(q, d)
    }
    if (d !== -1 && idom[n] !== d) {
      idom[n] = d
      changed = true
    }
  }
}
const retained = new Float64Array(N)
for (const n of order) retained[n]! += nodes[n * NF + nSize]!
for (const n of order) if (n !== 0) retained[idom[n]!]! += retained[n]!

const label = (n: number) => `${nodeTypes[nodes[n * NF + nType]!]}:${String(strings[nodes[n * NF + nName]!]).slice(0, 50).replace(/\s+/g, " ")}`
/** How the immediate dominator holds n: `.property`, `[index]`, or `(indirect)` when through others. */
const heldBy = (n: number) => {
  const d = idom[n]!
  for (let e = firstEdge[d]!; e < firstEdge[d + 1]!; e += EF) {
    if (target(e) !== n) continue
    const t = edgeTypes[edges[e + eType]!]
    return t === "element" || t === "hidden" ? `[${edges[e + eName]}]` : `.${strings[edges[e + eName]!]}`
  }
  return "(indirect)"
}
const mib = (b: number) => (b / 2 ** 20).toFixed(2).padStart(7)

console.log(`${file}: ${N} nodes, ${mib(retained[0]!).trim()} MiB reachable`)
if (MATCH !== undefined) {
  const re = new RegExp(MATCH)
  const groups = new Map<string, { bytes: number; count: number }>()
  for (let n = 0; n < N; n++) {
    if (postIndex[n]! < 0 || !re.test(label(n))) continue
    const key = `${label(n)} ${heldBy(n)} <- ${label(idom[n]!)}`
    const g = groups.get(key) ?? { bytes: 0, count: 0 }
    g.bytes += retained[n]!
    g.count++
    groups.set(key, g)
  }
  console.log(`\nmatching ${MATCH}: retained MiB, count, held by`)
  for (const [k, g] of [...groups].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, TOP)) console.log(`${mib(g.bytes)} ${String(g.count).padStart(7)}x  ${k}`)
}
if (PARTS !== undefined) {
  const re = new RegExp(PARTS)
  // the dominator tree's children of each node
  const childStart = new Uint32Array(N + 1)
  for (const n of order) if (n !== 0) childStart[idom[n]! + 1]!++
  for (let i = 0; i < N; i++) childStart[i + 1]! += childStart[i]!
  const children = new Int32Array(childStart[N]!)
  {
    const fill = childStart.slice()
    for (const n of order) if (n !== 0) children[fill[idom[n]!]!++] = n
  }
  const roots = new Set<number>()
  for (let n = 0; n < N; n++) {
    if (postIndex[n]! < 0 || !re.test(label(n))) continue
    let r = n
    for (let k = 0; k < UP && r !== 0; k++) r = idom[r]!
    roots.add(r)
  }
  const parts = new Map<string, number>()
  let whole = 0
  const walk = (n: number, path: string, depth: number) => {
    for (let c = childStart[n]!; c < childStart[n + 1]!; c++) {
      const child = children[c]!
      const p = `${path}${heldBy(child)}`
      parts.set(p, (parts.get(p) ?? 0) + retained[child]!)
      if (depth > 1) walk(child, p, depth - 1)
    }
  }
  for (const r of roots) {
    whole += retained[r]!
    walk(r, "", DEPTH)
  }
  const per = (b: number) => (b / Math.max(1, roots.size)).toFixed(0).padStart(7)
  console.log(`\nparts of ${roots.size} nodes (${PARTS}${UP > 0 ? `, ${UP} up` : ""}): ${mib(whole).trim()} MiB retained, ${per(whole).trim()} bytes each; bytes each by path`)
  for (const [p, b] of [...parts].sort((a, b) => (a[0] < b[0] ? -1 : 1))) if (b / roots.size >= 16) console.log(`${per(b)}  ${p}`)
}
console.log(`\nlargest retained sizes (≥ ${MIN} bytes), with their dominators`)
const largest = order.filter((n) => retained[n]! >= MIN).sort((a, b) => retained[b]! - retained[a]!).slice(0, TOP)
for (const n of largest) {
  const chain: Array<string> = []
  for (let c = n, k = 0; c !== 0 && k < 4; c = idom[c]!, k++) chain.push(`${heldBy(c)} ${label(idom[c]!)}`)
  console.log(`${mib(retained[n]!)}  ${label(n)}  <- ${chain.join(" <- ")}`)
}
