/**
 * `node --trace-gc-nvp bench/stats-cycle.ts … > OUT; node bench/gc-nvp-sum.ts OUT`
 *
 * Bytes allocated and promoted per stats cycle, from V8's `--trace-gc-nvp` lines between the markers
 * bench/stats-cycle.ts prints around its measured cycles: the sum of `allocated=` (bytes allocated
 * since the previous GC) and `promoted=` (bytes moved from the young to the old generation) of the
 * GCs in between, divided by the number of cycles, plus the count of scavenges (gc=s) and of
 * mark-compacts (gc=ms / mc). Allocation after the last GC inside the window is not counted (at most
 * one young generation, a few MiB over the whole window).
 */
import * as fs from "node:fs"

const file = process.argv[2]
if (file === undefined) {
  console.error("usage: node bench/gc-nvp-sum.ts OUT")
  process.exit(2)
}
const lines = fs.readFileSync(file, "utf8").split("\n")
let inside = false
let cycles = 0
const sum = { allocated: 0, promoted: 0, scavenges: 0, fullGcs: 0, pauseMs: 0 }
for (const line of lines) {
  if (line.startsWith("stats-cycle: measured cycles start")) inside = true
  const end = /^stats-cycle: measured cycles end \((\d+)\)/.exec(line)
  if (end !== null) {
    inside = false
    cycles = Number(end[1])
  }
  if (!inside || !line.includes(" pause=")) continue
  const field = (name: string): string | undefined => new RegExp(`(?:^| )${name}=(\\S+)`).exec(line)?.[1]
  sum.allocated += Number(field("allocated") ?? 0)
  sum.promoted += Number(field("promoted") ?? 0)
  sum.pauseMs += Number(field("pause") ?? 0)
  if (field("gc") === "s") sum.scavenges++
  else sum.fullGcs++
}
if (cycles === 0) {
  console.error(`${file}: no measured window (run bench/stats-cycle.ts under --trace-gc-nvp)`)
  process.exit(1)
}
const mb = (n: number) => (n / 1e6).toFixed(2)
console.log(`${file}: per cycle ${mb(sum.allocated / cycles)} MB allocated, ${mb(sum.promoted / cycles)} MB promoted, ${(sum.scavenges / cycles).toFixed(2)} scavenges, ${(sum.fullGcs / cycles).toFixed(2)} other GCs, GC pause ${(sum.pauseMs / cycles).toFixed(1)} ms (${cycles} cycles)`)
