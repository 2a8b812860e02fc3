// Memory of a process as the kernel accounts it: /proc/<pid>/smaps_rollup (Rss, Pss_Anon, Pss_File,
// Anonymous) and CPU time from /proc/<pid>/stat (utime + stime, all threads). Plain functions shared by
// bench/memory.ts and bench/import-cost.ts.
import * as fs from "node:fs"

export interface Smaps {
  /** resident set, MiB */
  readonly rss: number
  /** anonymous memory (heap, stacks, malloc arenas), MiB */
  readonly anon: number
  /** proportional share of file-backed pages (the node binary, shared libraries, .node addons), MiB */
  readonly pssFile: number
  /** proportional share of anonymous pages, MiB */
  readonly pssAnon: number
}

const kib = (text: string, field: string): number => {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, "m").exec(text)
  return m === null ? Number.NaN : Number(m[1]) / 1024
}

export const smapsOf = (pid: number | "self"): Smaps => {
  const text = fs.readFileSync(`/proc/${pid}/smaps_rollup`, "utf8")
  return { rss: kib(text, "Rss"), anon: kib(text, "Anonymous"), pssFile: kib(text, "Pss_File"), pssAnon: kib(text, "Pss_Anon") }
}

const TICKS_PER_SECOND = 100 // USER_HZ on Linux

/** utime + stime of the whole process (all threads), seconds. */
export const cpuSecondsOf = (pid: number): number => {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
  // fields after the command name (which may contain spaces and parentheses): state is field 3
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return (Number(rest[11]) + Number(rest[12])) / TICKS_PER_SECOND
}

export const formatSmaps = (s: Smaps): string =>
  `RSS ${s.rss.toFixed(1)} MiB (anonymous ${s.anon.toFixed(1)}, Pss_Anon ${s.pssAnon.toFixed(1)}, Pss_File ${s.pssFile.toFixed(1)})`
