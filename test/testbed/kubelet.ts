// Simulated kubelet for every testbed node, in one process: `node kubelet.ts <config.json>`.
// Registers the Nodes and heartbeats them; for pods the real scheduler bound to them it resolves the
// image against the testbed registry (ErrImagePull/ImagePullBackOff when missing), starts a runner
// process and marks the pod Running: the real 19.06 runner in its own network and mount namespace
// (sandbox.py) when `config.realRunner` is set and the container runs `-m ai.backend.kernel python`,
// otherwise the simulator runner.ts; confirms graceful deletions; reports exits of
// restartPolicy=Never pods; plays kube-proxy for NodePort Services (proxy.ts) and the pod network (each
// pod's own loopback podIP answers on its container ports: podAddress); serves the kubelet API
// the API server proxies to (/stats/summary, /containerLogs, /healthz) over HTTPS on each node IP.
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as https from "node:https"
import { stripTypeScriptTypes } from "node:module"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import * as readline from "node:readline"
import * as k8s from "@kubernetes/client-node"
import { type KubeletConfig, memoryBytes, type NodeSpec } from "./nodes.ts"
import { listenPodAddress, NodePortProxy, type Target } from "./proxy.ts"
import { resolveImage } from "./registry.ts"
import { CpuRate, duBytes, type PodUsageInput, processTree, summary, treeUsage } from "./stats.ts"

const config = JSON.parse(fs.readFileSync(process.argv[2]!, "utf8")) as KubeletConfig
const kc = new k8s.KubeConfig()
kc.loadFromFile(config.kubeconfig)
const core = kc.makeApiClient(k8s.CoreV1Api)
const startTime = new Date().toISOString()
const log = (msg: string): void => { console.log(`${new Date().toISOString()} ${msg}`) }
const code = (e: unknown): number | undefined => (e as { code?: number }).code
const nodesByName = new Map(config.nodes.map((n) => [n.name, n]))

// ---- nodes -----------------------------------------------------------------------------------------
const nodeStatus = (n: NodeSpec): k8s.V1NodeStatus => {
  const capacity: Record<string, string> = {
    cpu: String(n.cpu), memory: n.memory, pods: String(n.pods), "ephemeral-storage": "100Gi",
    ...(n.gpu > 0 ? { "nvidia.com/gpu": String(n.gpu) } : {}),
  }
  const now = new Date()
  const cond = (type: string, status: string, reason: string) =>
    ({ type, status, reason, message: "testbed kubelet", lastHeartbeatTime: now, lastTransitionTime: new Date(startTime) })
  return {
    capacity, allocatable: capacity,
    addresses: [{ type: "InternalIP", address: n.ip }, { type: "Hostname", address: n.name }],
    daemonEndpoints: { kubeletEndpoint: { Port: config.port } },
    conditions: [
      cond("MemoryPressure", "False", "KubeletHasSufficientMemory"), cond("DiskPressure", "False", "KubeletHasNoDiskPressure"),
      cond("PIDPressure", "False", "KubeletHasSufficientPID"), cond("Ready", "True", "KubeletReady"),
    ],
    nodeInfo: {
      kubeletVersion: "v1.20.2", kubeProxyVersion: "v1.20.2", containerRuntimeVersion: "testbed://1",
      architecture: "amd64", operatingSystem: "linux", osImage: "bai-k8s-agent testbed", kernelVersion: "",
      bootID: "", machineID: n.name, systemUUID: n.name,
    },
  }
}

const registerNode = async (n: NodeSpec): Promise<void> => {
  for (let attempt = 0; attempt < 10; attempt++) {
    let node: k8s.V1Node
    try {
      node = await core.readNode({ name: n.name })
    } catch (e) {
      if (code(e) !== 404) throw e
      node = await core.createNode({
        body: { metadata: { name: n.name, labels: { "kubernetes.io/hostname": n.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "backend.ai/testbed": "true" } } },
      })
    }
    node.status = nodeStatus(n)
    try { await core.replaceNodeStatus({ name: n.name, body: node }); return } catch (e) { if (code(e) !== 409) throw e }
  }
}

// ---- pods ------------------------------------------------------------------------------------------
interface PodState {
  pod: k8s.V1Pod
  readonly node: NodeSpec
  readonly podIP: string
  readonly logDir: string
  workDir: string | undefined
  workVolume: string | undefined
  runner: ChildProcess | undefined
  ports: Map<number, number> // container port → local port of the runner (runner.ts)
  /** Unix socket of the pod's sandbox (real runner): every container port is reached through it. */
  sandboxSocket: string | undefined
  /** Stops the listeners of the pod's own address (podIP:containerPort), once the runner started. */
  closePodAddress: (() => void) | undefined
  rx: number
  tx: number
  restarts: number
  lastTerminated: k8s.V1ContainerStateTerminated | undefined
  startedAt: Date | undefined
  stopping: boolean
  retry: NodeJS.Timeout | undefined
}

const pods = new Map<string, PodState>() // by uid

/**
 * A pod's address: reachable from this host like a pod network routed to the node, and unique per
 * testbed: `127.<24 + 8·node index + (seq >> 8 & 7)>.<the third octet of the testbed's node IPs>.<seq>`
 * (node IPs are `127.0.<k>.2/.3`, k differs between testbeds running side by side).
 */
const podIPOf = (node: NodeSpec, seq: number): string =>
  `127.${24 + 8 * config.nodes.indexOf(node) + ((seq >> 8) & 7)}.${node.ip.split(".")[2]}.${seq & 255}`
const chains = new Map<string, Promise<void>>()
const cpuRate = new CpuRate()
let ipSeq = 2

/** Runs pod handlers one at a time per pod uid. */
const serial = (uid: string, f: () => Promise<void>): void => {
  const next = (chains.get(uid) ?? Promise.resolve()).then(f).catch((e) => log(`pod ${uid}: ${String(e?.body ?? e?.message ?? e)}`))
  chains.set(uid, next)
}

/** Read-modify-replace of a pod's status, retried on conflicts; gives up when the pod is gone. */
const writeStatus = async (st: PodState, mutate: (s: k8s.V1PodStatus) => k8s.V1PodStatus): Promise<void> => {
  const { name, namespace, uid } = st.pod.metadata!
  for (let i = 0; i < 8; i++) {
    let pod: k8s.V1Pod
    try { pod = await core.readNamespacedPod({ name: name!, namespace: namespace! }) } catch (e) { if (code(e) === 404) return; throw e }
    if (pod.metadata?.uid !== uid || pod.metadata?.deletionTimestamp) return
    pod.status = mutate(pod.status ?? {})
    try { st.pod = await core.replaceNamespacedPodStatus({ name: name!, namespace: namespace!, body: pod }); return } catch (e) {
      if (code(e) !== 409) throw e
    }
  }
}

/** Posts a kubelet-style Event about the pod (best effort, like the real kubelet's recorder). */
const podEvent = (st: PodState, type: "Normal" | "Warning", reason: string, message: string): void => {
  const { name, namespace, uid } = st.pod.metadata!
  const now = new Date()
  core.createNamespacedEvent({
    namespace: namespace!,
    body: {
      metadata: { generateName: `${name}.`, namespace: namespace! },
      involvedObject: { kind: "Pod", name: name!, namespace: namespace!, uid: uid!, apiVersion: "v1", fieldPath: "spec.containers{" + st.pod.spec!.containers[0]!.name + "}" },
      reason, message, type, count: 1, firstTimestamp: now, lastTimestamp: now,
      source: { component: "kubelet", host: st.node.name }, reportingComponent: "kubelet", reportingInstance: st.node.name,
    },
  }).catch(() => undefined)
}

const conditions = (ready: boolean): Array<k8s.V1PodCondition> => {
  const t = new Date()
  const c = (type: string, ok: boolean) => ({ type, status: ok ? "True" : "False", lastTransitionTime: t, ...(ok ? {} : { reason: "ContainersNotReady" }) })
  return [c("Initialized", true), c("Ready", ready), c("ContainersReady", ready), c("PodScheduled", true)]
}

const baseStatus = (st: PodState, s: k8s.V1PodStatus): k8s.V1PodStatus => ({
  ...s, hostIP: st.node.ip, podIP: st.podIP, podIPs: [{ ip: st.podIP }], startTime: s.startTime ?? new Date(), qosClass: s.qosClass ?? "BestEffort",
})

const workVolumeOf = (pod: k8s.V1Pod): { name: string; hostPath: string } | undefined => {
  for (const c of pod.spec?.containers ?? []) {
    for (const m of c.volumeMounts ?? []) {
      if (m.mountPath.replace(/\/+$/, "") !== "/home/work") continue
      const v = pod.spec?.volumes?.find((x) => x.name === m.name)
      if (v?.hostPath?.path) return { name: v.name, hostPath: path.join(v.hostPath.path, m.subPath ?? "") }
    }
  }
  return undefined
}

const startPod = async (st: PodState): Promise<void> => {
  const pod = st.pod
  const containers = pod.spec!.containers
  const missing: Array<string> = []
  for (const c of containers) if ((await resolveImage(config.registry, c.image ?? "").catch(() => undefined)) === undefined) missing.push(c.image ?? "")
  if (missing.length > 0) return imagePullFailed(st, missing)
  for (const c of containers) podEvent(st, "Normal", "Pulled", `Container image "${c.image}" already present on machine`)
  const vol = workVolumeOf(pod)
  st.workVolume = vol?.name
  st.workDir = vol?.hostPath ?? path.join(st.logDir, "work")
  fs.mkdirSync(st.workDir, { recursive: true })
  await launchRunner(st)
}

const imagePullFailed = async (st: PodState, missing: ReadonlyArray<string>): Promise<void> => {
  const waiting = (reason: string, message: string) => (s: k8s.V1PodStatus): k8s.V1PodStatus => ({
    ...baseStatus(st, s), phase: "Pending", conditions: conditions(false),
    containerStatuses: st.pod.spec!.containers.map((c) => ({
      name: c.name, image: c.image ?? "", imageID: "", ready: false, started: false, restartCount: 0,
      state: { waiting: missing.includes(c.image ?? "") ? { reason, message } : { reason: "ContainerCreating" } },
    })),
  })
  const image = missing[0]!
  const pullError = `rpc error: code = NotFound desc = failed to pull and unpack image "${image}": manifest unknown`
  podEvent(st, "Warning", "Failed", `Failed to pull image "${image}": ${pullError}`)
  podEvent(st, "Warning", "Failed", "Error: ErrImagePull")
  await writeStatus(st, waiting("ErrImagePull", pullError))
  await new Promise((r) => setTimeout(r, 1500))
  if (st.stopping) return
  podEvent(st, "Normal", "BackOff", `Back-off pulling image "${image}"`)
  await writeStatus(st, waiting("ImagePullBackOff", `Back-off pulling image "${image}"`))
  st.retry = setTimeout(() => serial(st.pod.metadata!.uid!, () => (st.stopping ? Promise.resolve() : startPod(st))), 10_000)
}

const containerEnv = (c: k8s.V1Container, st: PodState): Record<string, string> => {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin", HOSTNAME: st.pod.metadata!.name!,
    KUBERNETES_SERVICE_HOST: "10.96.0.1", KUBERNETES_SERVICE_PORT: "443",
  }
  for (const e of c.env ?? []) {
    if (e.value !== undefined) env[e.name] = e.value
    else if (e.valueFrom?.fieldRef?.fieldPath === "metadata.name") env[e.name] = st.pod.metadata!.name!
    else if (e.valueFrom?.fieldRef?.fieldPath === "metadata.namespace") env[e.name] = st.pod.metadata!.namespace!
    else if (e.valueFrom?.fieldRef?.fieldPath === "status.podIP") env[e.name] = st.podIP
    else if (e.valueFrom?.fieldRef?.fieldPath === "spec.nodeName") env[e.name] = st.node.name
  }
  // The runner runs on this host, not in the image: preload libraries the pod expects from its volumes
  // (e.g. /opt/kernel/libbaihook.so from the krunner volume) do not exist here, and ld.so would print an
  // error for every process. Keep only the ones that exist on the host.
  if (env.LD_PRELOAD !== undefined) {
    const kept = env.LD_PRELOAD.split(/[:\s]+/).filter((lib) => lib !== "" && fs.existsSync(lib))
    if (kept.length > 0) env.LD_PRELOAD = kept.join(":")
    else delete env.LD_PRELOAD
  }
  return env
}

/** A ConfigMap a pod's volume names, read as the kubelet's volume manager does: a missing, non-optional
 *  ConfigMap keeps the container from starting until it exists (the agent may create it beside the pod),
 *  polled here for up to 60 s; optional or still missing → undefined. */
const readVolumeConfigMap = async (name: string, namespace: string, optional: boolean): Promise<k8s.V1ConfigMap | undefined> => {
  for (let i = 0; ; i++) {
    const cm = await core.readNamespacedConfigMap({ name, namespace }).catch(() => undefined)
    if (cm !== undefined || optional || i >= 300) return cm
    await new Promise((r) => setTimeout(r, 200))
  }
}

/** KEY=VALUE lines of a ConfigMap key mounted at /home/config/environ.txt (spec §8.7), if any. */
const environTxt = async (c: k8s.V1Container, st: PodState): Promise<Record<string, string>> => {
  const mount = c.volumeMounts?.find((m) => m.mountPath === "/home/config/environ.txt")
  const source = st.pod.spec?.volumes?.find((v) => v.name === mount?.name)?.configMap
  const cmName = source?.name
  if (mount === undefined || cmName === undefined) return {}
  const cm = await readVolumeConfigMap(cmName, st.pod.metadata!.namespace!, source?.optional === true)
  const text = cm?.data?.[mount.subPath ?? "environ.txt"] ?? cm?.data?.environ ?? ""
  const env: Record<string, string> = {}
  for (const line of text.split("\n")) {
    const eq = line.indexOf("=")
    if (eq > 0) env[line.slice(0, eq).trim()] = line.slice(eq + 1)
  }
  return env
}

/** The runner arguments after the interpreter when the container runs `… -m ai.backend.kernel python
 *  [runtime path]` (KernelObjects' args, possibly behind the jail) and the real runner is enabled. */
const realRunnerArgs = (c: k8s.V1Container): Array<string> | undefined => {
  if (config.realRunner === undefined) return undefined
  const argv = [...(c.command ?? []), ...(c.args ?? [])]
  const i = argv.findIndex((a, j) => a === "-m" && argv[j + 1] === "ai.backend.kernel")
  if (i < 0 || argv[i + 2] !== "python") return undefined
  const args = argv.slice(i, i + 4)
  // the image's runtime path (label ai.backend.runtime-path) names a file of the image; the host's
  // interpreter stands in for it when the host lacks it
  if (args[3] !== undefined && !fs.existsSync(args[3])) args[3] = config.realRunner.python
  return args
}

/** Writes the files of every ConfigMap volume the container mounts at /home/config (whole volume,
 *  `items` honoured) or at /home/config/<file> (subPath) into `dir`, as the kubelet projects them. */
const projectConfigMaps = async (c: k8s.V1Container, st: PodState, dir: string): Promise<void> => {
  fs.rmSync(dir, { recursive: true, force: true })
  fs.mkdirSync(dir, { recursive: true })
  for (const m of c.volumeMounts ?? []) {
    const mountPath = path.posix.normalize(m.mountPath)
    if (mountPath !== "/home/config" && path.posix.dirname(mountPath) !== "/home/config") continue
    const cmName = st.pod.spec?.volumes?.find((v) => v.name === m.name)?.configMap
    if (cmName?.name === undefined) continue
    const cm = await readVolumeConfigMap(cmName.name, st.pod.metadata!.namespace!, cmName.optional === true)
    const data = cm?.data ?? {}
    const files: Array<[string, string]> = cmName.items !== undefined
      ? cmName.items.filter((it) => data[it.key] !== undefined).map((it) => [it.path, data[it.key]!])
      : Object.entries(data)
    for (const [file, text] of files) {
      const target = mountPath === "/home/config" ? file : m.subPath === file ? path.posix.basename(mountPath) : undefined
      // only plain file names: a hostile item path must not escape the config dir
      if (target === undefined || target !== path.posix.basename(target) || target === "." || target === "..") continue
      fs.writeFileSync(path.join(dir, target), text)
    }
  }
}

/** Host paths of the hostPath volumes the container mounts below /home/work (vfolders). */
const workSubMounts = (c: k8s.V1Container, st: PodState): Array<{ host: string; target: string; readOnly: boolean }> => {
  const out: Array<{ host: string; target: string; readOnly: boolean }> = []
  for (const m of c.volumeMounts ?? []) {
    const target = path.posix.normalize(m.mountPath)
    if (!target.startsWith("/home/work/")) continue
    const v = st.pod.spec?.volumes?.find((x) => x.name === m.name)
    if (v?.hostPath?.path) out.push({ host: path.join(v.hostPath.path, m.subPath ?? ""), target, readOnly: m.readOnly === true })
  }
  return out
}

/** A Unix socket path short enough for sun_path (108 bytes) for the pod's sandbox. */
const sandboxSocketPath = (st: PodState): string => {
  const name = `${st.pod.metadata!.uid!.slice(0, 13)}.sock`
  const p = path.join(config.podsDir, name)
  return Buffer.byteLength(p) < 100 ? p : path.join(os.tmpdir(), `bai-tb-${process.pid}-${name}`)
}

const CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/** Starts the real runner in its sandbox: `unshare --net --mount` (plus `--user --map-root-user`
 *  when not root) running sandbox.py, which prints {"ready": true} once its Unix socket listens. */
const spawnRealRunner = async (st: PodState, main: k8s.V1Container, args: ReadonlyArray<string>): Promise<ChildProcess> => {
  const real = config.realRunner!
  const configDir = path.join(st.logDir, "config")
  await projectConfigMaps(main, st, configDir)
  const env: Record<string, string> = {
    ...containerEnv(main, st), PATH: CONTAINER_PATH, HOME: "/home/work", SHELL: "/bin/bash", USER: "root",
  }
  for (const e of main.env ?? []) if (e.name === "PATH" && e.value !== undefined) env.PATH = e.value
  st.sandboxSocket = sandboxSocketPath(st)
  const sandboxConfig = {
    workDir: st.workDir, configDir, socket: st.sandboxSocket, runnerSrc: real.src, python: real.python, args, env,
    log: path.join(st.logDir, `${main.name}.log`), mounts: workSubMounts(main, st),
    // raised CPU priority against the runner's hard-coded 10 s ipykernel start-up wait (sandbox.py)
    nice: Number(process.env.BAI_REAL_RUNNER_NICE ?? "-10") || 0,
  }
  const userns = process.getuid?.() === 0 ? [] : ["--user", "--map-root-user"]
  return spawn("unshare", [...userns, "--net", "--mount", "--propagation", "private", real.python,
    path.join(import.meta.dirname, "sandbox.py"), JSON.stringify(sandboxConfig)], { cwd: st.logDir, stdio: ["ignore", "pipe", "inherit"] })
}

/**
 * The simulator runner as plain JavaScript, its types stripped once here: started from runner.ts,
 * every runner process would start node's TypeScript loader to strip them itself, ~45 ms of CPU of
 * the ~110 ms a runner takes to answer (measured with getrusage over 10 starts) — spent on the cores
 * the agent under test shares with the simulated nodes, which a real cluster's runners do not. The one
 * bare import (zeromq) is resolved here, as the file is written outside the source tree.
 */
const simulatorRunner = (() => {
  const source = fs.readFileSync(path.join(import.meta.dirname, "runner.ts"), "utf8")
  const js = stripTypeScriptTypes(source).replace(/from "zeromq"/, `from ${JSON.stringify(import.meta.resolve("zeromq"))}`)
  const file = path.join(path.dirname(config.podsDir), `runner-${process.pid}.mjs`)
  fs.writeFileSync(file, js)
  process.once("exit", () => fs.rmSync(file, { force: true }))
  return file
})()

const launchRunner = async (st: PodState): Promise<void> => {
  const main = st.pod.spec!.containers[0]!
  for (const c of st.pod.spec!.containers) fs.appendFileSync(path.join(st.logDir, `${c.name}.log`), "")
  const realArgs = realRunnerArgs(main)
  st.sandboxSocket = undefined
  const runner = realArgs !== undefined
    ? await spawnRealRunner(st, main, realArgs)
    : spawn(process.execPath, [simulatorRunner], {
      cwd: st.workDir, stdio: ["ignore", "pipe", "inherit"],
      env: { ...(await environTxt(main, st)), ...containerEnv(main, st), BAI_RUNNER_LOG: path.join(st.logDir, `${main.name}.log`) },
    })
  st.runner = runner
  st.ports = new Map()
  const lines = readline.createInterface({ input: runner.stdout! })
  const ready = new Promise<boolean>((resolve) => {
    lines.on("line", (line) => {
      try {
        const msg = JSON.parse(line) as { ready?: boolean; replIn?: number; replOut?: number; service?: { port: number; local: number } }
        if (msg.ready === true) resolve(true)
        if (msg.replIn !== undefined && msg.replOut !== undefined) {
          st.ports.set(2000, msg.replIn); st.ports.set(2001, msg.replOut); resolve(true)
        }
        if (msg.service !== undefined) st.ports.set(msg.service.port, msg.service.local)
      } catch { log(`runner ${runner.pid}: ${line}`) }
    })
    runner.once("exit", () => resolve(false))
  })
  runner.once("exit", (exitCode, signal) => serial(st.pod.metadata!.uid!, () => runnerExited(st, runner, exitCode ?? 128 + (signal === "SIGKILL" ? 9 : 15))))
  if (!(await ready)) return
  podAddress(st)
  podEvent(st, "Normal", "Started", `Started container ${main.name} (runner pid ${runner.pid})`)
  st.startedAt = new Date()
  const started = st.startedAt
  await writeStatus(st, (s) => ({
    ...baseStatus(st, s), phase: "Running", conditions: conditions(true),
    containerStatuses: st.pod.spec!.containers.map((c) => ({
      name: c.name, image: c.image ?? "", imageID: `testbed://${c.image}`, containerID: `testbed://${st.pod.metadata!.uid}/${c.name}`,
      ready: true, started: true, restartCount: st.restarts, state: { running: { startedAt: started } },
      ...(st.lastTerminated !== undefined ? { lastState: { terminated: st.lastTerminated } } : {}),
    })),
  }))
}

const runnerExited = async (st: PodState, runner: ChildProcess, exitCode: number): Promise<void> => {
  if (st.runner !== runner) return
  st.runner = undefined
  if (st.stopping) return
  const policy = st.pod.spec?.restartPolicy ?? "Always"
  const terminated = { exitCode, reason: exitCode === 0 ? "Completed" : "Error", startedAt: st.startedAt ?? new Date(), finishedAt: new Date(), containerID: `testbed://${st.pod.metadata!.uid}` }
  if (policy === "Never" || (policy === "OnFailure" && exitCode === 0)) {
    await writeStatus(st, (s) => ({
      ...baseStatus(st, s), phase: exitCode === 0 ? "Succeeded" : "Failed", conditions: conditions(false),
      containerStatuses: st.pod.spec!.containers.map((c) => ({
        name: c.name, image: c.image ?? "", imageID: `testbed://${c.image}`, ready: false, started: false, restartCount: st.restarts,
        state: { terminated },
      })),
    }))
    return
  }
  st.restarts++
  st.lastTerminated = terminated
  await new Promise((r) => setTimeout(r, 1000))
  if (!st.stopping) await launchRunner(st)
}

/** SIGKILLs the runner and every descendant (children run in their own process groups). */
const killRunner = (st: PodState): void => {
  const r = st.runner
  st.runner = undefined
  if (r?.pid === undefined) return
  for (const pid of processTree(r.pid).reverse()) { try { process.kill(pid, "SIGKILL") } catch { /* gone */ } }
}

const stopPod = (uid: string): void => {
  const st = pods.get(uid)
  if (st === undefined) return
  st.stopping = true
  if (st.retry !== undefined) clearTimeout(st.retry)
  killRunner(st)
  if (st.sandboxSocket !== undefined) fs.rmSync(st.sandboxSocket, { force: true })
  st.closePodAddress?.()
  cpuRate.forget(uid)
  pods.delete(uid)
}

const onPod = async (type: string, pod: k8s.V1Pod): Promise<void> => {
  const uid = pod.metadata!.uid!
  const node = nodesByName.get(pod.spec?.nodeName ?? "")
  if (type === "DELETED" || node === undefined) { stopPod(uid); return }
  const { name, namespace } = pod.metadata!
  if (pod.metadata!.deletionTimestamp) {
    stopPod(uid)
    await core.deleteNamespacedPod({ name: name!, namespace: namespace!, body: { gracePeriodSeconds: 0, preconditions: { uid } } })
      .catch((e) => { if (code(e) !== 404 && code(e) !== 409) throw e })
    return
  }
  const existing = pods.get(uid)
  if (existing !== undefined) { existing.pod = pod; return }
  if (pod.status?.phase === "Succeeded" || pod.status?.phase === "Failed") return
  const seq = ipSeq++
  const st: PodState = {
    pod, node, podIP: podIPOf(node, seq),
    logDir: path.join(config.podsDir, `${namespace}_${name}_${uid}`),
    workDir: undefined, workVolume: undefined, runner: undefined, ports: new Map(), sandboxSocket: undefined, closePodAddress: undefined,
    rx: 0, tx: 0, restarts: 0, lastTerminated: undefined, startedAt: undefined, stopping: false, retry: undefined,
  }
  fs.mkdirSync(st.logDir, { recursive: true })
  pods.set(uid, st)
  await startPod(st)
}

// ---- kube-proxy ------------------------------------------------------------------------------------
const matches = (selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean =>
  selector !== undefined && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels?.[k] === v)

/** Where a connection to the pod's `containerPort` goes: its sandbox, or the runner's local port. */
const podTarget = (st: PodState, containerPort: number | undefined): Target | undefined => {
  if (st.runner === undefined) return undefined
  const sock = st.sandboxSocket
  if (sock !== undefined && containerPort !== undefined && containerPort > 0 && containerPort < 65536) {
    const connectTo = containerPort
    return { podUid: st.pod.metadata!.uid!, connect: () => { const s = net.connect(sock); s.write(`${connectTo}\n`); return s } }
  }
  const local = containerPort !== undefined ? st.ports.get(containerPort) : undefined
  return local !== undefined ? { podUid: st.pod.metadata!.uid!, port: local } : undefined
}

const resolveTarget = (svc: k8s.V1Service, port: k8s.V1ServicePort): Target | undefined => {
  for (const st of pods.values()) {
    if (st.runner === undefined || st.pod.metadata?.namespace !== svc.metadata?.namespace) continue
    if (!matches(svc.spec?.selector, st.pod.metadata?.labels)) continue
    let containerPort: number | undefined
    const tp = port.targetPort ?? port.port
    if (typeof tp === "number" || /^\d+$/.test(String(tp))) containerPort = Number(tp)
    else {
      for (const c of st.pod.spec!.containers) containerPort ??= c.ports?.find((p) => p.name === tp)?.containerPort
    }
    const target = podTarget(st, containerPort)
    if (target !== undefined) return target
  }
  return undefined
}

const countBytes = (uid: string, rx: number, tx: number): void => {
  const st = pods.get(uid)
  if (st !== undefined) { st.rx += rx; st.tx += tx }
}

/** The pod's own address answers on its declared container ports and those its runner reported. */
const podAddress = (st: PodState): void => {
  if (st.closePodAddress !== undefined) return
  const declared = st.pod.spec!.containers.flatMap((c) => (c.ports ?? []).filter((p) => (p.protocol ?? "TCP") === "TCP").map((p) => p.containerPort))
  st.closePodAddress = listenPodAddress(st.podIP, [...declared, ...st.ports.keys()], (port) => podTarget(st, port), countBytes, log)
}

const proxy = new NodePortProxy(config.nodes.map((n) => n.ip), resolveTarget, countBytes, log)

// ---- kubelet API -----------------------------------------------------------------------------------
const podUsage = (st: PodState): PodUsageInput => {
  const usage = st.runner?.pid !== undefined ? treeUsage(st.runner.pid) : { cpuNs: 0, rssBytes: 0, pids: 0 }
  const uid = st.pod.metadata!.uid!
  let logBytes = 0
  try { for (const f of fs.readdirSync(st.logDir)) if (f.endsWith(".log")) logBytes += fs.statSync(path.join(st.logDir, f)).size } catch { /* none */ }
  return {
    name: st.pod.metadata!.name!, namespace: st.pod.metadata!.namespace!, uid,
    startTime: (st.startedAt ?? new Date()).toISOString(), containers: st.pod.spec!.containers.map((c) => c.name),
    usage, cpuNanoCores: cpuRate.update(uid, usage.cpuNs), rxBytes: st.rx, txBytes: st.tx,
    workDir: st.workDir, workVolume: st.workVolume, workBytes: st.workDir !== undefined ? duBytes(st.workDir) : 0, logBytes,
  }
}

const nodeSummary = (n: NodeSpec): unknown =>
  summary(
    // the node's own processes: this simulator's (a node with no pods yet still uses memory)
    { nodeName: n.name, startTime, memoryCapacity: memoryBytes(n.memory), fsRoot: config.podsDir, systemBytes: process.memoryUsage.rss() },
    [...pods.values()].filter((p) => p.node === n && p.runner !== undefined).map(podUsage),
  )

const containerLog = (n: NodeSpec, url: URL, res: import("node:http").ServerResponse): void => {
  const [, , namespace, name, container] = url.pathname.split("/").map(decodeURIComponent)
  const st = [...pods.values()].find((p) => p.node === n && p.pod.metadata?.namespace === namespace && p.pod.metadata?.name === name)
  const file = st !== undefined ? path.join(st.logDir, `${container}.log`) : undefined
  if (file === undefined || !fs.existsSync(file)) { res.writeHead(404).end(`container ${namespace}/${name}/${container} not found\n`); return }
  let text = fs.readFileSync(file)
  const tailLines = url.searchParams.get("tailLines")
  if (tailLines !== null) {
    const lines = text.toString("utf8").split(/(?<=\n)/)
    text = Buffer.from(lines.slice(Math.max(0, lines.length - Number(tailLines))).join(""))
  }
  const limit = url.searchParams.get("limitBytes")
  if (limit !== null) text = text.subarray(0, Number(limit))
  res.writeHead(200, { "content-type": "text/plain; charset=utf-8" })
  if (url.searchParams.get("follow") !== "true") { res.end(text); return }
  res.write(text)
  let offset = fs.statSync(file).size
  const timer = setInterval(() => {
    if (!pods.has(st!.pod.metadata!.uid!)) { clearInterval(timer); res.end(); return }
    const size = fs.statSync(file).size
    if (size > offset) { res.write(fs.readFileSync(file).subarray(offset, size)); offset = size }
  }, 200)
  res.on("close", () => clearInterval(timer))
}

const serveNode = (n: NodeSpec): https.Server => {
  const server = https.createServer({ cert: fs.readFileSync(config.certFile), key: fs.readFileSync(config.keyFile) }, (req, res) => {
    const url = new URL(req.url ?? "/", "https://kubelet")
    try {
      if (url.pathname === "/healthz") res.end("ok")
      else if (url.pathname === "/stats/summary") { res.writeHead(200, { "content-type": "application/json" }); res.end(JSON.stringify(nodeSummary(n))) }
      else if (url.pathname.startsWith("/containerLogs/")) containerLog(n, url, res)
      else res.writeHead(404).end("404 page not found\n")
    } catch (e) { res.writeHead(500).end(String(e)) }
  })
  server.listen(config.port, n.ip)
  return server
}

// ---- watches ---------------------------------------------------------------------------------------
const watch = new k8s.Watch(kc)

const watchLoop = async <T extends { metadata?: k8s.V1ObjectMeta }>(
  what: string, apiPath: string, list: () => Promise<{ items: Array<T>; metadata?: k8s.V1ListMeta }>,
  onList: (items: Array<T>) => void, onEvent: (type: string, obj: T) => void,
): Promise<void> => {
  const start = async (): Promise<void> => {
    try {
      const l = await list()
      onList(l.items)
      await watch.watch(apiPath, { resourceVersion: l.metadata?.resourceVersion, allowWatchBookmarks: true },
        (type, obj: T) => { if (type !== "BOOKMARK" && type !== "ERROR") onEvent(type, obj) },
        (err) => { if (err && !shuttingDown) log(`${what} watch ended: ${String(err)}`); if (!shuttingDown) setTimeout(() => void start(), 200) })
    } catch (e) {
      log(`${what} list failed: ${String(e)}`)
      if (!shuttingDown) setTimeout(() => void start(), 1000)
    }
  }
  await start()
}

let shuttingDown = false
const shutdown = (): void => {
  shuttingDown = true
  for (const uid of [...pods.keys()]) stopPod(uid)
  proxy.close()
  process.exit(0)
}
process.on("SIGTERM", shutdown)
process.on("SIGINT", shutdown)

for (const n of config.nodes) await registerNode(n)
const servers = config.nodes.map(serveNode)
void servers
// sample CPU time every second so usageNanoCores is a recent rate
setInterval(() => {
  for (const st of pods.values()) if (st.runner?.pid !== undefined) cpuRate.update(st.pod.metadata!.uid!, treeUsage(st.runner.pid).cpuNs)
}, 1000)
setInterval(() => { for (const n of config.nodes) registerNode(n).catch((e) => log(`heartbeat ${n.name}: ${String(e)}`)) }, 15_000)

await watchLoop<k8s.V1Service>("services", "/api/v1/services", () => core.listServiceForAllNamespaces(),
  (items) => proxy.reset(items), (type, svc) => (type === "DELETED" ? proxy.remove(svc) : proxy.upsert(svc)))
await watchLoop<k8s.V1Pod>("pods", "/api/v1/pods", () => core.listPodForAllNamespaces(),
  (items) => {
    const present = new Set(items.map((p) => p.metadata!.uid!))
    for (const uid of pods.keys()) if (!present.has(uid)) serial(uid, async () => stopPod(uid)) // deleted while not watching
    for (const p of items) serial(p.metadata!.uid!, () => onPod("ADDED", p))
  },
  (type, pod) => serial(pod.metadata!.uid!, () => onPod(type, pod)))
log(`testbed kubelet ready: ${config.nodes.map((n) => `${n.name}@${n.ip}:${config.port}`).join(", ")}`)
