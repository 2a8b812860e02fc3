/**
 * `node bench/heap-diff.ts BEFORE.heapsnapshot AFTER.heapsnapshot [--per N] [--top 40]`
 *
 * What grew between two V8 heap snapshots (`node bench/run.ts memory --heap-snapshot DIR` writes one
 * per point, e.g. `0-main-dist.heapsnapshot` and `1000-main-dist.heapsnapshot`): self sizes and counts
 * summed per label (`<type>: <constructor or name>`; strings per string type), the labels whose size
 * changed most, with the change per unit of `--per` (e.g. the kernel count: bytes per kernel and
 * objects per kernel). A snapshot is taken after a full GC, so this is the live heap's growth;
 * `bench/heap-retainers.ts` says who holds a label's objects.
 */
import { readHeapSnapshot } from "./heapSnapshot.ts"

const argValue = (flag: string): string | undefined => {
  const i = process.argv.indexOf(flag)
  return i >= 0 ? process.argv[i + 1] : undefined
}
const [before, after] = process.argv.slice(2).filter((a, i, all) => !a.startsWith("--") && (i === 0 || !all[i - 1]!.startsWith("--")))
if (before === undefined || after === undefined) {
  console.error("usage: node bench/heap-diff.ts BEFORE.heapsnapshot AFTER.heapsnapshot [--per N] [--top 40]")
  process.exit(2)
}
const PER = Number(argValue("--per") ?? 1)
const TOP = Number(argValue("--top") ?? 40)

const STRING_TYPES = new Set(["string", "concatenated string", "sliced string"])

/** self size and count per label, and the total */
const labelled = (file: string) => {
  const { NF, nType, nName, nSize, nodeTypes, nodes, strings, count } = readHeapSnapshot(file)
  const m = new Map<string, { size: number; n: number }>()
  let total = 0
  for (let i = 0; i < count; i++) {
    const type = nodeTypes[nodes[i * NF + nType]!]!
    const size = nodes[i * NF + nSize]!
    total += size
    const label = STRING_TYPES.has(type) ? `(${type})` : `${type}: ${strings[nodes[i * NF + nName]!]!.slice(0, 80)}`
    const v = m.get(label) ?? { size: 0, n: 0 }
    v.size += size
    v.n += 1
    m.set(label, v)
  }
  return { m, total, count }
}

const a = labelled(before)
const b = labelled(after)
const rows = [...new Set([...a.m.keys(), ...b.m.keys()])].map((label) => {
  const x = a.m.get(label) ?? { size: 0, n: 0 }
  const y = b.m.get(label) ?? { size: 0, n: 0 }
  return { label, size: y.size - x.size, n: y.n - x.n, after: y.size }
}).sort((p, q) => Math.abs(q.size) - Math.abs(p.size))

const MiB = (bytes: number) => (bytes / 2 ** 20).toFixed(2)
console.log(`${before}: ${a.count} nodes, ${MiB(a.total)} MiB\n${after}: ${b.count} nodes, ${MiB(b.total)} MiB`)
console.log(`growth ${MiB(b.total - a.total)} MiB, ${((b.total - a.total) / PER).toFixed(0)} bytes per ${PER === 1 ? "snapshot" : `1/${PER}`}`)
console.log(`\n| label | Δ MiB | Δ bytes per unit | Δ count | Δ count per unit | MiB after |\n|---|---|---|---|---|---|`)
for (const r of rows.slice(0, TOP)) {
  console.log(`| ${r.label.replace(/\|/g, "\\|")} | ${MiB(r.size)} | ${(r.size / PER).toFixed(0)} | ${r.n} | ${(r.n / PER).toFixed(2)} | ${MiB(r.after)} |`)
}
