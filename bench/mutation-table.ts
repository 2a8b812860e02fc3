/**
 * The per-file table of `npm run test:mutation` (docs/mutation.md): reads Stryker's JSON report
 * (.stryker/mutation.json, written with `disableBail`, so `killedBy` lists every test that kills a
 * mutant) and prints, per mutated file, the score of the whole suite ("after") and of the tests that
 * existed before the mutation work alone ("before": tests outside `*.mutation.test.ts` files), and the
 * share of mutants killed outright ("killed": timeouts left out).
 *
 * Score = (killed + timed out) / (killed + timed out + survived + no coverage), as Stryker counts it.
 * A timed-out mutant counts as killed "before" when a pre-existing test covers it (Stryker records no
 * killer for a timeout). Usage: node bench/mutation-table.ts [report.json…] (several reports are
 * merged: bench/mutation.ts writes one per group).
 */
import { readFileSync } from "node:fs"

interface Mutant {
  readonly status: string
  readonly killedBy?: ReadonlyArray<string>
  readonly coveredBy?: ReadonlyArray<string>
}
interface Report {
  readonly files: Readonly<Record<string, { readonly mutants: ReadonlyArray<Mutant> }>>
  readonly testFiles?: Readonly<Record<string, { readonly tests: ReadonlyArray<{ readonly id: string }> }>>
}

const paths = process.argv.length > 2 ? process.argv.slice(2) : [".stryker/mutation.json"]
const files: Record<string, { readonly mutants: ReadonlyArray<Mutant> }> = {}
/** Ids of the tests in *.mutation.test.ts files, per report (test ids are per report). */
const isOldIn = new Map<string, (id: string) => boolean>()
for (const p of paths) {
  const report = JSON.parse(readFileSync(p, "utf8")) as Report
  const newTests = new Set<string>()
  for (const [file, tf] of Object.entries(report.testFiles ?? {})) {
    if (/\.mutation\.test\.ts$/.test(file)) for (const t of tf.tests) newTests.add(t.id)
  }
  for (const [file, f] of Object.entries(report.files)) {
    files[file] = f
    isOldIn.set(file, (id) => !newTests.has(id))
  }
}

const pct = (k: number, n: number) => (n === 0 ? "n/a" : `${((100 * k) / n).toFixed(1)} %`)

const rows: Array<readonly [string, string, string, string, string, string]> = []
let [allValid, allBefore, allAfter, allKilled] = [0, 0, 0, 0]
for (const [file, { mutants }] of Object.entries(files).sort(([a], [b]) => a.localeCompare(b))) {
  const isOld = isOldIn.get(file)!
  let valid = 0
  let before = 0
  let after = 0
  let killed = 0
  let survived = 0
  for (const m of mutants) {
    if (!["Killed", "Timeout", "Survived", "NoCoverage"].includes(m.status)) continue
    valid++
    if (m.status === "Killed" || m.status === "Timeout") after++
    if (m.status === "Killed") killed++
    else if (m.status === "Survived") survived++
    const oldKill = m.status === "Killed"
      ? (m.killedBy ?? []).some(isOld)
      : m.status === "Timeout" && (m.coveredBy ?? []).some(isOld)
    if (oldKill) before++
  }
  allValid += valid
  allBefore += before
  allAfter += after
  allKilled += killed
  rows.push([file, String(valid), pct(before, valid), pct(after, valid), pct(killed, valid), String(survived)])
}
rows.push(["all measured files", String(allValid), pct(allBefore, allValid), pct(allAfter, allValid), pct(allKilled, allValid), ""])

// "after" is Stryker's score (timeouts count as detected); "killed" leaves timeouts out
const head = ["file", "mutants", "before", "after", "killed", "survived"] as const
const width = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
const line = (r: ReadonlyArray<string>) => `| ${r.map((c, i) => (i === 0 ? c.padEnd(width[i]!) : c.padStart(width[i]!))).join(" | ")} |`
console.log(line(head))
console.log(`|${width.map((w, i) => (i === 0 ? `:${"-".repeat(w + 1)}` : `${"-".repeat(w + 1)}:`)).join("|")}|`)
for (const r of rows) console.log(line(r))
