// Host-global state the real node changes (kubelet, kube-proxy, containerd, the CNI bridge plugin), as
// a snapshot taken before bring-up and a restore that puts it back after tear-down or a failed start.
//
// What is covered, and who changes it:
// - sysctls: kubelet sets vm.overcommit_memory, kernel.panic, kernel.panic_on_oops (and checks
//   vm.panic_on_oom, kernel.keys.*); the CNI bridge sets net.ipv4.ip_forward; kube-proxy sets
//   net.ipv4.conf.all.route_localnet and nf_conntrack settings.
// - the nftables ruleset (iptables here is the nft backend): kubelet's KUBE-FIREWALL etc., kube-proxy's
//   KUBE-SERVICES/…, the testbed's FORWARD fence for the bridge. iptables-nft leaves empty tables behind,
//   so the whole ruleset is restored (`nft flush ruleset` + the saved one): only the real node touches it.
// - network links (bridge, veths) and the node IP on `lo`;
// - mounts (kubelet volumes, sandbox netns, container rootfs under /run/containerd);
// - cgroups (kubelet's `kubepods` hierarchy in every v1 controller);
// - host paths containerd 1.6 / kubelet 1.20 / libcni hard-code (/run/containerd, /var/log/pods, …).
import { execFileSync, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"

/** sysctl keys (relative to /proc/sys) compared and restored; whole directories are expanded. */
const SYSCTL_ROOTS = [
  "vm", "kernel/keys", "kernel/panic", "kernel/panic_on_oops", "net/ipv4/ip_forward",
  "net/ipv4/conf/all", "net/ipv4/conf/default", "net/ipv4/conf/lo", "net/bridge", "net/netfilter/nf_conntrack_max",
  "net/netfilter/nf_conntrack_tcp_timeout_established", "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
]
/** counters and write-only knobs: not settings */
const VOLATILE = new Set(["vm/drop_caches", "vm/compact_memory", "vm/stat_refresh", "vm/stat_interval", "vm/nr_pdflush_threads"])

/** Host paths containerd 1.6, kubelet 1.20 and libcni use whatever their configuration says. */
export const HARDCODED_PATHS = [
  "/run/containerd", "/var/log/pods", "/var/log/containers", "/var/lib/cni", "/var/lib/kubelet", "/var/lib/containerd",
  "/usr/libexec/kubernetes", "/etc/kubernetes", "/etc/cni", "/opt/cni", "/run/netns",
] as const

export interface HostSnapshot {
  readonly sysctls: Readonly<Record<string, string>>
  readonly nftRuleset: string
  readonly links: ReadonlyArray<string>
  readonly loAddrs: ReadonlyArray<string>
  readonly mounts: ReadonlyArray<string>
  readonly cgroups: ReadonlyArray<string>
  readonly paths: Readonly<Record<string, boolean>>
}

const readSysctls = (): Record<string, string> => {
  const out: Record<string, string> = {}
  const visit = (rel: string): void => {
    if (VOLATILE.has(rel)) return
    const abs = path.join("/proc/sys", rel)
    let st: fs.Stats
    try { st = fs.statSync(abs) } catch { return }
    if (st.isDirectory()) { for (const e of fs.readdirSync(abs).sort()) visit(`${rel}/${e}`); return }
    if ((st.mode & 0o444) === 0) return
    try { out[rel] = fs.readFileSync(abs, "utf8").trim() } catch { /* not readable */ }
  }
  for (const r of SYSCTL_ROOTS) visit(r)
  return out
}

const nftRuleset = (): string => {
  const r = spawnSync("nft", ["list", "ruleset"], { encoding: "utf8" })
  if (r.error !== undefined || r.status !== 0) throw new Error(`nft list ruleset failed: ${r.error?.message ?? r.stderr}`)
  return r.stdout
}

const links = (): Array<string> =>
  execFileSync("ip", ["-o", "link", "show"], { encoding: "utf8" }).split("\n").filter((l) => l !== "")
    .map((l) => l.split(":")[1]!.trim().replace(/@.*$/, "")).sort()

const loAddrs = (): Array<string> =>
  execFileSync("ip", ["-o", "addr", "show", "dev", "lo"], { encoding: "utf8" }).split("\n").filter((l) => l !== "")
    .map((l) => l.split(/\s+/).slice(2, 4).join(" ")).sort()

/** Mount points of this mount namespace (mountinfo field 5) with their propagation (shared/slave/private). */
export const mountPoints = (): Array<string> =>
  fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n").filter((l) => l !== "").map((l) => {
    const f = l.split(" ")
    const opt = f.slice(6, f.indexOf("-"))
    const prop = opt.some((o) => o.startsWith("shared:")) ? "shared" : opt.some((o) => o.startsWith("master:")) ? "slave" : "private"
    return `${f[4]} ${prop}`
  }).sort()

const cgroupDirs = (): Array<string> => {
  const out: Array<string> = []
  for (const c of fs.readdirSync("/sys/fs/cgroup")) {
    const d = path.join("/sys/fs/cgroup", c)
    try { for (const e of fs.readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) out.push(`${c}/${e.name}`) } catch { /* not a dir */ }
  }
  return out.sort()
}

export const snapshotHost = (): HostSnapshot => ({
  sysctls: readSysctls(),
  nftRuleset: nftRuleset(),
  links: links(),
  loAddrs: loAddrs(),
  mounts: mountPoints(),
  cgroups: cgroupDirs(),
  paths: Object.fromEntries(HARDCODED_PATHS.map((p) => [p, fs.existsSync(p)])),
})

/** Human-readable differences between two snapshots (empty = the same host state). */
export const diffHost = (a: HostSnapshot, b: HostSnapshot): Array<string> => {
  const out: Array<string> = []
  for (const k of new Set([...Object.keys(a.sysctls), ...Object.keys(b.sysctls)])) {
    if (a.sysctls[k] !== b.sysctls[k]) out.push(`sysctl ${k}: ${a.sysctls[k] ?? "(absent)"} -> ${b.sysctls[k] ?? "(absent)"}`)
  }
  if (a.nftRuleset !== b.nftRuleset) out.push(`nft ruleset:\n--- before\n${a.nftRuleset}\n--- after\n${b.nftRuleset}`)
  const sets = (what: string, x: ReadonlyArray<string>, y: ReadonlyArray<string>) => {
    for (const v of y) if (!x.includes(v)) out.push(`${what} added: ${v}`)
    for (const v of x) if (!y.includes(v)) out.push(`${what} removed: ${v}`)
  }
  sets("link", a.links, b.links)
  sets("lo address", a.loAddrs, b.loAddrs)
  sets("mount", a.mounts, b.mounts)
  sets("cgroup", a.cgroups, b.cgroups)
  for (const p of HARDCODED_PATHS) if (a.paths[p] !== b.paths[p]) out.push(`path ${p}: ${a.paths[p] ? "present" : "absent"} -> ${b.paths[p] ? "present" : "absent"}`)
  return out
}

const quiet = (cmd: string, args: ReadonlyArray<string>): void => { spawnSync(cmd, args, { stdio: "ignore" }) }

/** Removes a cgroup directory tree bottom-up (rmdir only: a cgroup with processes stays and is reported). */
const rmCgroupTree = (dir: string): void => {
  let entries: Array<fs.Dirent>
  try { entries = fs.readdirSync(dir, { withFileTypes: true }) } catch { return }
  for (const e of entries) if (e.isDirectory()) rmCgroupTree(path.join(dir, e.name))
  try { fs.rmdirSync(dir) } catch { /* busy or gone */ }
}

export interface RestoreTargets {
  /** directories whose mounts are ours (state dir of the real node) */
  readonly ownedMountRoots: ReadonlyArray<string>
  readonly bridge: string
}

/**
 * Puts the host back the way `before` found it. Every step is independent and idempotent, so it is
 * safe after a partial bring-up and safe to run twice. Returns what could not be restored.
 */
export const restoreHost = (before: HostSnapshot, t: RestoreTargets): Array<string> => {
  // mounts: ours (state dir) and everything under the hard-coded containerd path, deepest first
  const roots = [...t.ownedMountRoots, ...HARDCODED_PATHS.filter((p) => !before.paths[p])]
  const beforeMounts = new Set(before.mounts.map((m) => m.split(" ")[0]))
  const ours = (mp: string) => !beforeMounts.has(mp) && roots.some((r) => mp === r || mp.startsWith(`${r}/`))
  for (let round = 0; round < 3; round++) {
    const now = mountPoints().map((m) => m.split(" ")[0]!).filter(ours).sort().reverse()
    if (now.length === 0) break
    for (const mp of now) quiet("umount", ["-l", mp])
  }
  // network: bridge (veths go with their netns) and the node IP on lo
  if (!before.links.includes(t.bridge)) quiet("ip", ["link", "del", t.bridge])
  for (const a of loAddrs()) if (!before.loAddrs.includes(a)) quiet("ip", ["addr", "del", a.split(" ")[1]!, "dev", "lo"])
  // firewall: the ruleset as it was
  const r1 = spawnSync("nft", ["flush", "ruleset"], { encoding: "utf8" })
  const problems: Array<string> = []
  if (r1.status !== 0) problems.push(`nft flush ruleset: ${r1.stderr}`)
  if (before.nftRuleset.trim() !== "") {
    const r2 = spawnSync("nft", ["-f", "-"], { input: before.nftRuleset, encoding: "utf8" })
    if (r2.status !== 0) problems.push(`nft -f (restore): ${r2.stderr}`)
  }
  // cgroups created since the snapshot (kubepods…)
  for (const c of cgroupDirs()) if (!before.cgroups.includes(c)) rmCgroupTree(path.join("/sys/fs/cgroup", c))
  // hard-coded host paths that did not exist before
  for (const p of HARDCODED_PATHS) if (!before.paths[p]) fs.rmSync(p, { recursive: true, force: true })
  // sysctls last (the bridge/proxy are gone, nothing sets them again)
  const now = readSysctls()
  for (const [k, v] of Object.entries(before.sysctls)) {
    if (now[k] === v) continue
    try { fs.writeFileSync(path.join("/proc/sys", k), v) } catch (e) { problems.push(`sysctl ${k}=${v}: ${(e as Error).message}`) }
  }
  return problems
}
