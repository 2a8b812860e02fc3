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

/**
 * utime + stime of the whole process (all threads), seconds; with `reaped`, also the CPU of the children
 * it waited for (cutime + cstime: a process that ended counts with the one that reaped it).
 */
export const cpuSecondsOf = (pid: number, options: { readonly reaped?: boolean } = {}): number => {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
  // fields after the command name (which may contain spaces and parentheses): state is field 3
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  const own = Number(rest[11]) + Number(rest[12])
  return (options.reaped === true ? own + Number(rest[13]) + Number(rest[14]) : own) / TICKS_PER_SECOND
}

/** VmHWM of /proc/<pid>/status: the highest resident set size the process ever had, MiB. */
export const peakRssOf = (pid: number): number => kib(fs.readFileSync(`/proc/${pid}/status`, "utf8"), "VmHWM")

export const formatSmaps = (s: Smaps): string =>
  `RSS ${s.rss.toFixed(1)} MiB (anonymous ${s.anon.toFixed(1)}, Pss_Anon ${s.pssAnon.toFixed(1)}, Pss_File ${s.pssFile.toFixed(1)})`

/** Where a process's resident memory is, from /proc/<pid>/smaps (one entry per mapping), MiB. */
export interface SmapsBreakdown {
  /** the node executable's resident pages (code, read-only data: ICU, built-in modules' source) */
  readonly nodeBinary: number
  /** other file-backed mappings (libc, libstdc++, native addons) */
  readonly otherFiles: number
  /** glibc's main arena (`[heap]`): native allocations of node, V8 (compiler zones), OpenSSL, addons */
  readonly brkHeap: number
  /** anonymous mappings of ≤ 256 KiB: V8's heap pages (regular pages are 256 KiB) and small mmaps */
  readonly anonSmall: number
  /** larger anonymous mappings: glibc thread arenas, thread stacks, V8 code/large-object space, big mmaps */
  readonly anonLarge: number
  /**
   * Of the anonymous mappings (both sizes), those starting on a 256 KiB boundary: V8's heap (its regular
   * pages and large-object chunks are allocated 256 KiB-aligned; node's V8 has no pointer-compression
   * cage, so each is a mapping of its own unless adjacent ones merged). The rest of the small ones is
   * mostly glibc's mmapped allocations (every malloc ≥ `MALLOC_MMAP_THRESHOLD_`: I/O buffers, compiler
   * zones). A heuristic: an unrelated mapping is aligned by chance 1 time in 64.
   */
  readonly anonV8Aligned: number
  /** pages given back with MADV_FREE that the kernel has not reclaimed yet: still counted in RSS */
  readonly lazyFree: number
  readonly mappings: number
  readonly threads: number
}

export const smapsBreakdownOf = (pid: number): SmapsBreakdown => {
  const text = fs.readFileSync(`/proc/${pid}/smaps`, "utf8")
  const exe = fs.readlinkSync(`/proc/${pid}/exe`)
  const kb = { nodeBinary: 0, otherFiles: 0, brkHeap: 0, anonSmall: 0, anonLarge: 0, anonV8Aligned: 0, lazyFree: 0 }
  let current: "nodeBinary" | "otherFiles" | "brkHeap" | "anonSmall" | "anonLarge" | undefined
  let aligned = false
  let mappings = 0
  for (const line of text.split("\n")) {
    const header = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \d+\s*(.*)$/.exec(line)
    if (header !== null) {
      mappings++
      const size = (parseInt(header[2]!, 16) - parseInt(header[1]!, 16)) / 1024
      const name = header[3]!
      current = name === exe
        ? "nodeBinary"
        : name === "[heap]"
        ? "brkHeap"
        : name.startsWith("/")
        ? "otherFiles"
        : size <= 256
        ? "anonSmall"
        : "anonLarge"
      aligned = (current === "anonSmall" || current === "anonLarge") && parseInt(header[1]!.slice(-5), 16) % 0x40000 === 0
      continue
    }
    const rss = /^Rss:\s+(\d+) kB$/.exec(line)
    if (rss !== null && current !== undefined) {
      kb[current] += Number(rss[1])
      if (aligned) kb.anonV8Aligned += Number(rss[1])
    }
    const lazy = /^LazyFree:\s+(\d+) kB$/.exec(line)
    if (lazy !== null) kb.lazyFree += Number(lazy[1])
  }
  const mib = (k: number) => k / 1024
  return {
    nodeBinary: mib(kb.nodeBinary),
    otherFiles: mib(kb.otherFiles),
    brkHeap: mib(kb.brkHeap),
    anonSmall: mib(kb.anonSmall),
    anonLarge: mib(kb.anonLarge),
    anonV8Aligned: mib(kb.anonV8Aligned),
    lazyFree: mib(kb.lazyFree),
    mappings,
    threads: fs.readdirSync(`/proc/${pid}/task`).length
  }
}
