// Real resource usage of runner process trees from /proc, and the kubelet Summary API document.
import * as fs from "node:fs"
import * as path from "node:path"

const CLK_TCK = 100 // Linux USER_HZ on every supported architecture

interface ProcInfo { readonly ppid: number; readonly cpuTicks: number }

const readProc = (pid: number): ProcInfo | undefined => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    // after "comm)": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime
    return { ppid: Number(f[1]), cpuTicks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]) }
  } catch { return undefined }
}

const rssBytes = (pid: number): number => {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))
    return m ? Number(m[1]) * 1024 : 0
  } catch { return 0 }
}

/** The pid and all its live descendants. */
export const processTree = (root: number): Array<number> => {
  const children = new Map<number, Array<number>>()
  for (const name of fs.readdirSync("/proc")) {
    const pid = Number(name)
    if (!Number.isInteger(pid)) continue
    const info = readProc(pid)
    if (info === undefined) continue
    const list = children.get(info.ppid) ?? []
    list.push(pid)
    children.set(info.ppid, list)
  }
  const out: Array<number> = []
  const stack = [root]
  while (stack.length > 0) {
    const pid = stack.pop()!
    out.push(pid)
    stack.push(...(children.get(pid) ?? []))
  }
  return out
}

export interface TreeUsage { readonly cpuNs: number; readonly rssBytes: number; readonly pids: number }

/** CPU time (utime+stime of live processes + cutime+cstime of reaped children) and RSS of a tree. */
export const treeUsage = (root: number): TreeUsage => {
  let ticks = 0
  let rss = 0
  let pids = 0
  for (const pid of processTree(root)) {
    const info = readProc(pid)
    if (info === undefined) continue
    ticks += info.cpuTicks
    rss += rssBytes(pid)
    pids++
  }
  return { cpuNs: (ticks * 1e9) / CLK_TCK, rssBytes: rss, pids }
}

/** Bytes used under `dir` (apparent sizes; stops counting after `maxEntries`). */
export const duBytes = (dir: string, maxEntries = 20_000): number => {
  let total = 0
  let seen = 0
  const stack = [dir]
  while (stack.length > 0 && seen < maxEntries) {
    const d = stack.pop()!
    let entries: Array<fs.Dirent>
    try { entries = fs.readdirSync(d, { withFileTypes: true }) } catch { continue }
    for (const e of entries) {
      seen++
      const p = path.join(d, e.name)
      if (e.isDirectory()) stack.push(p)
      else if (e.isFile()) { try { total += fs.statSync(p).size } catch { /* raced */ } }
    }
  }
  return total
}

/** Keeps the previous CPU sample per key to turn cumulative CPU time into a nanocore rate. */
export class CpuRate {
  private readonly last = new Map<string, { t: number; cpuNs: number; rate: number }>()
  update(key: string, cpuNs: number, nowNs = Number(process.hrtime.bigint())): number {
    const prev = this.last.get(key)
    if (prev !== undefined && nowNs - prev.t < 5e8) return Math.round(prev.rate) // too close to the last sample
    const rate = prev !== undefined ? Math.max(0, ((cpuNs - prev.cpuNs) / (nowNs - prev.t)) * 1e9) : 0
    this.last.set(key, { t: nowNs, cpuNs, rate })
    return Math.round(rate)
  }
  forget(key: string): void { this.last.delete(key) }
}

export interface PodUsageInput {
  readonly name: string
  readonly namespace: string
  readonly uid: string
  readonly startTime: string
  readonly containers: ReadonlyArray<string>
  readonly usage: TreeUsage
  readonly cpuNanoCores: number
  readonly rxBytes: number
  readonly txBytes: number
  readonly workDir: string | undefined
  readonly workVolume: string | undefined
  readonly workBytes: number
  readonly logBytes: number
  /** When the pod's numbers were sampled (RFC 3339); default: the document's time (now). */
  readonly sampledAt?: string
}

export interface NodeUsageInput {
  readonly nodeName: string
  readonly startTime: string
  readonly memoryCapacity: number
  readonly fsRoot: string
  /** When the node's numbers were sampled (RFC 3339); default: the document's time (now). */
  readonly sampledAt?: string
  /**
   * Memory of the node's own processes (kubelet, runtime) in the node's working set beside its pods':
   * a real node's is never 0, even with no pods. Default 0.
   */
  readonly systemBytes?: number
}

/** A kubelet `/stats/summary` document (the subset of stats/v1alpha1 kubelet 1.20 fills). */
export const summary = (node: NodeUsageInput, pods: ReadonlyArray<PodUsageInput>): unknown => {
  const now = new Date().toISOString()
  const nodeTime = node.sampledAt ?? now
  const fsStat = fs.statfsSync(node.fsRoot)
  const fsCapacity = fsStat.blocks * fsStat.bsize
  const fsAvailable = fsStat.bavail * fsStat.bsize
  const fsOf = (used: number, time = now) => ({ time, availableBytes: fsAvailable, capacityBytes: fsCapacity, usedBytes: used })
  const cpuOf = (nano: number, total: number, time = now) => ({ time, usageNanoCores: nano, usageCoreNanoSeconds: Math.round(total) })
  const memOf = (rss: number, time = now) => ({
    time, availableBytes: Math.max(0, node.memoryCapacity - rss), usageBytes: rss, workingSetBytes: rss, rssBytes: rss,
    pageFaults: 0, majorPageFaults: 0,
  })
  const netOf = (rx: number, tx: number, time = now) => ({
    time, name: "eth0", rxBytes: rx, rxErrors: 0, txBytes: tx, txErrors: 0,
    interfaces: [{ name: "eth0", rxBytes: rx, rxErrors: 0, txBytes: tx, txErrors: 0 }],
  })
  const sum = (f: (p: PodUsageInput) => number) => pods.reduce((a, p) => a + f(p), 0)
  return {
    node: {
      nodeName: node.nodeName,
      systemContainers: [],
      startTime: node.startTime,
      cpu: cpuOf(sum((p) => p.cpuNanoCores), sum((p) => p.usage.cpuNs), nodeTime),
      memory: memOf((node.systemBytes ?? 0) + sum((p) => p.usage.rssBytes), nodeTime),
      network: netOf(sum((p) => p.rxBytes), sum((p) => p.txBytes), nodeTime),
      fs: fsOf(sum((p) => p.workBytes + p.logBytes), nodeTime),
      runtime: { imageFs: fsOf(0, nodeTime) },
      rlimit: { time: nodeTime, maxpid: 4194304, curproc: sum((p) => p.usage.pids) },
    },
    pods: pods.map((p) => {
      const t = p.sampledAt ?? now
      return {
        podRef: { name: p.name, namespace: p.namespace, uid: p.uid },
        startTime: p.startTime,
        containers: p.containers.map((c, i) => ({
          name: c, startTime: p.startTime,
          cpu: cpuOf(i === 0 ? p.cpuNanoCores : 0, i === 0 ? p.usage.cpuNs : 0, t),
          memory: memOf(i === 0 ? p.usage.rssBytes : 0, t),
          rootfs: { ...fsOf(i === 0 ? p.workBytes : 0, t), inodesUsed: 0 },
          logs: { ...fsOf(i === 0 ? p.logBytes : 0, t), inodesUsed: 1 },
        })),
        cpu: cpuOf(p.cpuNanoCores, p.usage.cpuNs, t),
        memory: memOf(p.usage.rssBytes, t),
        network: netOf(p.rxBytes, p.txBytes, t),
        volume: p.workVolume !== undefined ? [{ ...fsOf(p.workBytes, t), name: p.workVolume }] : [],
        "ephemeral-storage": fsOf(p.workBytes + p.logBytes, t),
        process_stats: { process_count: p.usage.pids },
      }
    }),
  }
}
