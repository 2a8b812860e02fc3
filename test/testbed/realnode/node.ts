// The real node: containerd (+ runc, CNI bridge) and the real kubelet + kube-proxy 1.20 for one node
// whose IP is on loopback, joined to the testbed's control plane. Recipe and the four fixes from
// ../shared/testbed/real-node/notes.md:
//   1. containerd CRI `restrict_oom_score_adj = true` (the sandbox's root lacks CAP_SYS_RESOURCE: without
//      it every pod sandbox fails in runc with "can't get final child's PID from pipe: EOF");
//   2. kubelet 1.20 refuses a loopback --node-ip and publishes no address: one PATCH of the node status
//      with InternalIP (it sticks: the kubelet's failing setter never rewrites addresses);
//   3. kube-proxy --nodeport-addresses matches interface addresses: the node IP is added to `lo` (/32);
//   4. kubelet --containerd=<socket> so cAdvisor's containerd factory finds the pods' network stats.
// One real node per machine (cgroups, the nftables ruleset, /run/containerd and /var/log/pods are
// host-global): a lock file in /run names the testbed holding it. Host state is snapshotted before
// anything starts and restored by `stopRealNode`, also after a failed bring-up.
import { execFile, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { promisify } from "node:util"
import * as k8s from "@kubernetes/client-node"
import { k8sBinDir } from "../paths.ts"
import { waitUntil } from "../ports.ts"
import { assertAlive, type Daemon, isAlive, isRunning, spawnDaemon, stopDaemons } from "../processes.ts"
import { diffHost, type HostSnapshot, restoreHost, snapshotHost } from "./host.ts"

const run = promisify(execFile)

export const REAL_NODE_NAME = "tb-real-node"
export const REAL_NODE_LABEL = "testbed.backend.ai/real-node"
export const BRIDGE = "tbreal0"
export const POD_CIDR = "10.244.200.0/24"
export const PAUSE_REF = "testbed.local/pause:3.4.1"
export const LOCK_FILE = "/run/bai-testbed-realnode.json"
export const KUBELET_PORT = 10250
/** names of the real node's daemons in env.pids (stopped first, in this order) */
export const REAL_NODE_DAEMONS = ["kube-proxy", "kubelet-real", "containerd"] as const

export interface RealNodePaths {
  readonly dir: string
  readonly containerdSock: string
  readonly kubeletDir: string
  readonly hostBefore: string
  readonly krunner: string
  readonly logDir: string
}

export const realNodePaths = (stateDir: string): RealNodePaths => {
  const dir = path.join(stateDir, "realnode")
  return {
    dir, containerdSock: path.join(dir, "containerd", "containerd.sock"), kubeletDir: path.join(dir, "kubelet"),
    hostBefore: path.join(dir, "host-before.json"), krunner: path.join(dir, "krunner"), logDir: path.join(stateDir, "log"),
  }
}

interface Lock { readonly stateDir: string; readonly pid: number }
const readLock = (): Lock | undefined => { try { return JSON.parse(fs.readFileSync(LOCK_FILE, "utf8")) as Lock } catch { return undefined } }

/**
 * Takes the machine's real-node lock and snapshots the host. A lock left by a testbed whose owner
 * died is cleaned up first (its host snapshot restored) by `reapStale`, passed in by the caller.
 */
export const claimRealNode = async (stateDir: string, reap: (staleStateDir: string) => Promise<void>): Promise<HostSnapshot> => {
  const held = readLock()
  if (held !== undefined && held.stateDir !== stateDir) {
    if (isAlive(held.pid)) throw new Error(`testbed: the real node is in use by the testbed in ${held.stateDir} (pid ${held.pid}); one real node per machine`)
    await reap(held.stateDir)
  }
  for (const p of ["/run/containerd"]) if (fs.existsSync(p)) throw new Error(`testbed: ${p} exists: another containerd runs on this machine; the real node needs it for itself`)
  const p = realNodePaths(stateDir)
  fs.mkdirSync(p.dir, { recursive: true })
  const before = snapshotHost()
  fs.writeFileSync(p.hostBefore, JSON.stringify(before, null, 2))
  fs.writeFileSync(LOCK_FILE, JSON.stringify({ stateDir, pid: process.pid } satisfies Lock))
  return before
}

export const startContainerd = (stateDir: string, registryHost: string): Daemon => {
  const p = realNodePaths(stateDir)
  const c = path.join(p.dir, "containerd")
  const certs = path.join(p.dir, "certs.d")
  fs.mkdirSync(c, { recursive: true })
  fs.mkdirSync(path.join(certs, registryHost), { recursive: true })
  fs.writeFileSync(path.join(certs, registryHost, "hosts.toml"),
    `server = "http://${registryHost}"\n[host."http://${registryHost}"]\n  capabilities = ["pull", "resolve"]\n`)
  fs.mkdirSync(path.join(p.dir, "cni", "net.d"), { recursive: true })
  fs.writeFileSync(path.join(p.dir, "cni", "net.d", "10-testbed.conflist"), JSON.stringify({
    cniVersion: "0.4.0", name: "testbed-real", plugins: [
      { type: "bridge", bridge: BRIDGE, isGateway: true, ipMasq: false, hairpinMode: true,
        ipam: { type: "host-local", ranges: [[{ subnet: POD_CIDR }]], routes: [{ dst: "0.0.0.0/0" }], dataDir: path.join(p.dir, "cni", "ipam") } },
      { type: "portmap", capabilities: { portMappings: true } },
    ],
  }, null, 2))
  const q = JSON.stringify
  fs.writeFileSync(path.join(c, "config.toml"), [
    "version = 2",
    `root = ${q(path.join(c, "root"))}`,
    `state = ${q(path.join(c, "state"))}`,
    "[grpc]", `  address = ${q(p.containerdSock)}`,
    "[ttrpc]", `  address = ${q(`${p.containerdSock}.ttrpc`)}`,
    "[plugins]",
    '  [plugins."io.containerd.grpc.v1.cri"]',
    "    disable_apparmor = true",
    "    netns_mounts_under_state_dir = true",
    "    restrict_oom_score_adj = true",
    `    sandbox_image = ${q(PAUSE_REF)}`,
    '    stream_server_address = "127.0.0.1"',
    '    stream_server_port = "0"',
    '    [plugins."io.containerd.grpc.v1.cri".cni]',
    '      bin_dir = "/usr/lib/cni"',
    `      conf_dir = ${q(path.join(p.dir, "cni", "net.d"))}`,
    '    [plugins."io.containerd.grpc.v1.cri".containerd]',
    '      snapshotter = "overlayfs"',
    '      default_runtime_name = "runc"',
    '      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
    '        runtime_type = "io.containerd.runc.v2"',
    '        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]',
    "          SystemdCgroup = false",
    '    [plugins."io.containerd.grpc.v1.cri".registry]',
    `      config_path = ${q(certs)}`,
    '  [plugins."io.containerd.internal.v1.opt"]',
    `    path = ${q(path.join(c, "opt"))}`,
    "",
  ].join("\n"))
  return spawnDaemon("containerd", "containerd", ["--config", path.join(c, "config.toml")], p.logDir)
}

const ctr = (sock: string, args: ReadonlyArray<string>) => run("ctr", ["-a", sock, ...args], { maxBuffer: 16 << 20 })

export const waitContainerd = (d: Daemon, sock: string): Promise<void> =>
  waitUntil("containerd", async () => { assertAlive(d); await ctr(sock, ["version"]); return true }, 30_000, 100)

export const importPause = async (sock: string, archive: string): Promise<void> => {
  await ctr(sock, ["-n", "k8s.io", "image", "import", archive])
}

export interface RealKubeletOptions {
  readonly stateDir: string
  readonly kubeconfig: string
  readonly ip: string
}

export const startKubelet = (o: RealKubeletOptions): Daemon => {
  const p = realNodePaths(o.stateDir)
  fs.mkdirSync(p.kubeletDir, { recursive: true })
  const resolv = path.join(p.dir, "resolv.conf")
  fs.writeFileSync(resolv, "nameserver 127.0.0.1\n")
  const config = path.join(p.dir, "kubelet-config.yaml")
  fs.writeFileSync(config, [
    "apiVersion: kubelet.config.k8s.io/v1beta1",
    "kind: KubeletConfiguration",
    `address: ${o.ip}`,
    `port: ${KUBELET_PORT}`,
    "readOnlyPort: 0",
    `healthzBindAddress: ${o.ip}`,
    "healthzPort: 10248",
    "authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}",
    "authorization: {mode: AlwaysAllow}",
    "cgroupDriver: cgroupfs",
    "failSwapOn: false",
    `resolvConf: ${JSON.stringify(resolv)}`,
    "clusterDomain: cluster.local",
    "maxPods: 30",
    "serializeImagePulls: false",
    "nodeStatusUpdateFrequency: 3s",
    "evictionHard: {memory.available: \"100Mi\", nodefs.available: \"2%\", imagefs.available: \"2%\"}",
    "imageGCHighThresholdPercent: 99",
    "imageGCLowThresholdPercent: 98",
    `volumePluginDir: ${JSON.stringify(path.join(p.dir, "volume-plugins"))}`,
    "",
  ].join("\n"))
  return spawnDaemon("kubelet-real", path.join(k8sBinDir, "kubelet"), [
    `--config=${config}`, `--kubeconfig=${o.kubeconfig}`, "--container-runtime=remote",
    `--container-runtime-endpoint=unix://${p.containerdSock}`, `--root-dir=${p.kubeletDir}`, `--cert-dir=${path.join(p.kubeletDir, "pki")}`,
    `--hostname-override=${REAL_NODE_NAME}`, `--node-ip=${o.ip}`, `--node-labels=${REAL_NODE_LABEL}=true`,
    `--pod-infra-container-image=${PAUSE_REF}`, `--containerd=${p.containerdSock}`, "--v=2",
  ], p.logDir)
}

export const startKubeProxy = (o: RealKubeletOptions): Daemon => {
  const p = realNodePaths(o.stateDir)
  // kube-proxy matches --nodeport-addresses against interface addresses (fix 3)
  const has = spawnSync("ip", ["-o", "addr", "show", "dev", "lo"], { encoding: "utf8" }).stdout.includes(`inet ${o.ip}/32`)
  if (!has) { const r = spawnSync("ip", ["addr", "add", `${o.ip}/32`, "dev", "lo"], { encoding: "utf8" }); if (r.status !== 0) throw new Error(`ip addr add ${o.ip}/32 dev lo: ${r.stderr}`) }
  // the bridge's pods reach nothing but each other and the host (no masquerade; mangle runs before kube-proxy's filter)
  for (const rule of [["-i", BRIDGE, "!", "-o", BRIDGE], ["-o", BRIDGE, "!", "-i", BRIDGE]]) {
    const r = spawnSync("iptables", ["-t", "mangle", "-A", "FORWARD", ...rule, "-j", "DROP"], { encoding: "utf8" })
    if (r.status !== 0) throw new Error(`iptables -t mangle -A FORWARD ${rule.join(" ")}: ${r.stderr}`)
  }
  return spawnDaemon("kube-proxy", path.join(k8sBinDir, "kube-proxy"), [
    `--kubeconfig=${o.kubeconfig}`, `--hostname-override=${REAL_NODE_NAME}`, "--proxy-mode=iptables",
    `--bind-address=${o.ip}`, `--healthz-bind-address=${o.ip}:10256`, `--metrics-bind-address=${o.ip}:10249`,
    `--nodeport-addresses=${o.ip}/32`, `--cluster-cidr=${POD_CIDR}`, "--conntrack-max-per-core=0", "--conntrack-min=0",
    "--conntrack-tcp-timeout-established=0", "--conntrack-tcp-timeout-close-wait=0", "--v=2",
  ], p.logDir)
}

/** Waits for the node object, gives it its InternalIP (fix 2), then waits for Ready and a healthy kube-proxy. */
export const waitRealNodeReady = async (core: k8s.CoreV1Api, ip: string, daemons: ReadonlyArray<Daemon>, step: (s: string) => void): Promise<void> => {
  const alive = () => { for (const d of daemons) assertAlive(d) }
  await waitUntil(`node ${REAL_NODE_NAME} registered`, async () => { alive(); await core.readNode({ name: REAL_NODE_NAME }); return true }, 60_000, 200)
  step(`${REAL_NODE_NAME} registered`)
  await waitUntil(`node ${REAL_NODE_NAME} InternalIP`, async () => {
    alive()
    const n = await core.readNodeStatus({ name: REAL_NODE_NAME })
    if (n.status?.addresses?.some((a) => a.type === "InternalIP" && a.address === ip)) return true
    await core.patchNodeStatus({
      name: REAL_NODE_NAME,
      body: { status: { addresses: [{ type: "InternalIP", address: ip }, { type: "Hostname", address: REAL_NODE_NAME }] } },
    }, k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch))
    return false
  }, 30_000, 200)
  await waitUntil(`node ${REAL_NODE_NAME} Ready`, async () => {
    alive()
    const n = await core.readNode({ name: REAL_NODE_NAME })
    return n.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false
  }, 60_000, 200)
  step(`${REAL_NODE_NAME} Ready`)
  await waitUntil("kube-proxy healthz", async () => { alive(); return (await fetch(`http://${ip}:10256/healthz`)).status === 200 }, 30_000, 200)
}

/** Host pids whose argv holds `arg` as one whole argument (containerd shims: `-address <socket>`). */
const pidsWithArg = (arg: string): Array<number> => {
  const out: Array<number> = []
  for (const d of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue
    try { if (fs.readFileSync(`/proc/${d}/cmdline`, "utf8").split("\0").includes(arg)) out.push(Number(d)) } catch { /* gone */ }
  }
  return out
}

/**
 * Stops the real node of the testbed in `stateDir` and restores the host from its snapshot: kubelet
 * and kube-proxy first (nothing restarts pods), then every container through containerd, containerd,
 * leftover shims (found by their exact `-address <our socket>` argument, killed by pid), then mounts,
 * network, firewall, cgroups, hard-coded paths and sysctls. Returns what still differs from the snapshot.
 */
export const stopRealNode = async (stateDir: string, pids: ReadonlyArray<{ name: string; pid: number; startTicks?: number }>): Promise<Array<string>> => {
  const p = realNodePaths(stateDir)
  const byName = (n: string) => pids.filter((x) => x.name === n)
  await stopDaemons([...byName("kube-proxy"), ...byName("kubelet-real")])
  const containerd = byName("containerd").filter(isRunning)
  if (containerd.length > 0 && fs.existsSync(p.containerdSock)) {
    const lines = async (args: ReadonlyArray<string>) =>
      (await ctr(p.containerdSock, args).catch(() => ({ stdout: "" }))).stdout.split("\n").filter((l) => l !== "")
    for (const ns of await lines(["namespaces", "ls", "-q"])) {
      for (const t of await lines(["-n", ns, "tasks", "ls", "-q"])) await ctr(p.containerdSock, ["-n", ns, "tasks", "kill", "-s", "SIGKILL", t]).catch(() => undefined)
      await waitUntil(`containerd tasks of ${ns} deleted`, async () => {
        const left = await lines(["-n", ns, "tasks", "ls", "-q"])
        for (const t of left) await ctr(p.containerdSock, ["-n", ns, "tasks", "delete", "-f", t]).catch(() => undefined)
        return left.length === 0
      }, 10_000, 100).catch(() => undefined)
      for (const c of await lines(["-n", ns, "containers", "ls", "-q"])) await ctr(p.containerdSock, ["-n", ns, "containers", "delete", c]).catch(() => undefined)
    }
  }
  await stopDaemons(containerd)
  for (const pid of pidsWithArg(p.containerdSock)) { try { process.kill(pid, "SIGKILL") } catch { /* gone */ } }
  await waitUntil("containerd shims gone", async () => pidsWithArg(p.containerdSock).length === 0, 10_000, 50).catch(() => undefined)
  let problems: Array<string> = []
  if (fs.existsSync(p.hostBefore)) {
    const before = JSON.parse(fs.readFileSync(p.hostBefore, "utf8")) as HostSnapshot
    problems = restoreHost(before, { ownedMountRoots: [p.dir], bridge: BRIDGE })
    problems.push(...diffHost(before, snapshotHost()))
    fs.rmSync(p.hostBefore)
  }
  if (readLock()?.stateDir === stateDir) fs.rmSync(LOCK_FILE, { force: true })
  return problems
}
