// Bring-up and tear-down of a whole testbed instance (all daemons on loopback), used by cli.ts,
// dev.ts and globalSetup.ts.
import { spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as k8s from "@kubernetes/client-node"
import { coreApi, ensureNamespace, makePki, startApiserver, startControllers, waitApiserver, writeKubeconfig } from "./controlplane.ts"
import { seedEtcd, startEtcd, startRedis, waitEtcd, waitRedis } from "./datastores.ts"
import type { TestbedEnv } from "./env.ts"
import { defaultNodes, GPU_TAINT, type KubeletConfig, type NodeSpec, realNodeNodes } from "./nodes.ts"
import { envFileOf, k8sBinDir, kubectlPath, stateDirOf, testbedDir } from "./paths.ts"
import { freePort, isPortFree, requireFree, waitUntil } from "./ports.ts"
import { assertAlive, type Daemon, isRunning, spawnDaemon, stopDaemons } from "./processes.ts"
import { buildImages, pauseArchive, pushImages, SIGTERM_IMAGE } from "./realnode/images.ts"
import { buildKrunnerDir, KRUNNER_PYTHON_VERSION } from "./realnode/krunner.ts"
import {
  claimRealNode, importPause, KUBELET_PORT, PAUSE_REF, POD_CIDR, REAL_NODE_DAEMONS, REAL_NODE_NAME, realNodePaths, startContainerd,
  startKubelet, startKubeProxy, stopRealNode, waitContainerd, waitRealNodeReady,
} from "./realnode/node.ts"
import { dockerConfigJson, seedImages, seedRegistry, startRegistry, waitRegistry } from "./registry.ts"

export const KUBE_NAMESPACE = "backend-ai"
export const REGISTRY_SECRET = "backend-ai-registry-secret"

/** Fixed endpoints of the dev testbed (config/halfstack.toml points at these). */
export const DEV = {
  etcd: 8120, redis: 8110, registry: 5050, eventAddr: 5002, etcdNamespace: "local", ipPrefix: "127.0.0",
  registryUser: "testbed", registryPassword: "testbed-secret", watcherToken: "testbed-watcher-token",
} as const

export interface UpOptions {
  readonly name: string
  readonly mode: "dev" | "test"
  readonly log?: (line: string) => void
  /** containerd + a real kubelet/kube-proxy node where non-GPU kernels land (root, cgroup v1) */
  readonly realNode?: boolean
  /** Run the real 19.06 kernel runner for python kernels (see nodes.ts KubeletConfig.realRunner). */
  readonly realRunner?: { readonly src: string; readonly python: string } | undefined
}

const k8sBuilt = (): boolean => fs.existsSync(k8sBinDir) && fs.readdirSync(k8sBinDir).some((f) => f.startsWith(".done-"))

/** Runs prereqs.sh: installs the Debian packages the testbed needs when missing (fast when present). */
export const ensurePrerequisites = (log: (line: string) => void, groups: ReadonlyArray<string> = ["testbed"]): Promise<void> =>
  new Promise((resolve, reject) => {
    const child = spawn("bash", [path.join(testbedDir, "prereqs.sh"), ...groups], { stdio: ["ignore", "pipe", "pipe"] })
    let err = ""
    child.stdout.on("data", (b: Buffer) => { for (const l of b.toString().split("\n")) if (l !== "") log(l) })
    child.stderr.on("data", (b: Buffer) => { err += b.toString() })
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(err.trim() || `prereqs.sh failed with exit code ${code}`))))
  })

/** Installs missing prerequisites, then runs build-k8s.sh (a no-op when cached), forwarding progress lines. */
export const buildKubernetes = async (log: (line: string) => void, realNode = false): Promise<void> => {
  await ensurePrerequisites(log, realNode ? ["testbed", "realnode"] : ["testbed"])
  await buildK8sBinaries(log)
}

const buildK8sBinaries = (log: (line: string) => void): Promise<void> =>
  new Promise((resolve, reject) => {
    if (k8sBuilt()) { resolve(); return }
    log("Kubernetes binaries not built yet: running test/testbed/build-k8s.sh (once, several minutes)")
    const child = spawn("bash", [path.join(testbedDir, "build-k8s.sh")], { stdio: ["ignore", "pipe", "pipe"] })
    const forward = (b: Buffer) => { for (const l of b.toString().split("\n")) if (l.startsWith("[k8s] ")) log(l) }
    child.stdout.on("data", forward)
    child.stderr.on("data", forward)
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`build-k8s.sh failed with exit code ${code}`))))
  })

/** Node IPs of a test-mode testbed: 127.0.<k>.2/.3 with <k> picked so nothing listens there yet. */
const pickIpPrefix = async (kubeletPort: number): Promise<string> => {
  for (let i = 0; i < 50; i++) {
    const k = 1 + ((process.pid + i * 7) % 250)
    const prefix = `127.0.${k}`
    if ((await isPortFree(kubeletPort, `${prefix}.2`)) && (await isPortFree(kubeletPort, `${prefix}.3`))) return prefix
  }
  throw new Error("testbed: no free loopback /24 for node IPs")
}

const envFromDisk = (stateDir: string): TestbedEnv | undefined => {
  try { return JSON.parse(fs.readFileSync(envFileOf(stateDir), "utf8")) as TestbedEnv } catch { return undefined }
}

export const isUp = (stateDir: string): boolean => envFromDisk(stateDir)?.pids.some(isRunning) ?? false

export const up = async (opts: UpOptions): Promise<TestbedEnv> => {
  const log = opts.log ?? ((l: string) => console.log(l))
  const stateDir = stateDirOf(opts.name)
  if (isUp(stateDir)) throw new Error(`testbed ${opts.name} is already up (state ${stateDir}); run \`npm run testbed -- down\` first`)
  const realNode = opts.realNode === true
  await buildKubernetes(log, realNode)
  const t0 = performance.now()
  const dev = opts.mode === "dev"
  if (dev) {
    await requireFree([
      { what: "agent etcd", port: DEV.etcd }, { what: "redis", port: DEV.redis },
      { what: "registry", port: DEV.registry }, { what: "manager event address", port: DEV.eventAddr },
    ])
  }
  const ports = {
    etcd: dev ? DEV.etcd : await freePort(), etcdPeer: await freePort(), redis: dev ? DEV.redis : await freePort(),
    registry: dev ? DEV.registry : await freePort(), eventAddr: dev ? DEV.eventAddr : await freePort(),
    k8sEtcd: await freePort(), k8sEtcdPeer: await freePort(), apiserver: await freePort(), kubelet: await freePort(),
  }
  const ipPrefix = dev ? DEV.ipPrefix : await pickIpPrefix(ports.kubelet)
  const realSpec: NodeSpec = {
    name: REAL_NODE_NAME, ip: `${ipPrefix}.9`, cpu: os.cpus().length, memory: `${Math.floor(os.totalmem() / 2 ** 20)}Mi`, gpu: 0, pods: 30, real: true,
  }
  const nodes = realNode ? realNodeNodes(ipPrefix, realSpec) : defaultNodes(ipPrefix)
  const simulated = nodes.filter((n) => n.real !== true)
  for (const n of simulated) if (!(await isPortFree(ports.kubelet, n.ip))) throw new Error(`testbed: ${n.ip}:${ports.kubelet} is taken`)
  if (realNode && !(await isPortFree(KUBELET_PORT, realSpec.ip))) throw new Error(`testbed: ${realSpec.ip}:${KUBELET_PORT} is taken`)

  fs.rmSync(stateDir, { recursive: true, force: true })
  const dirs = {
    log: path.join(stateDir, "log"), data: path.join(stateDir, "data"), pki: path.join(stateDir, "pki"),
    scratch: path.join(stateDir, "scratches"), vfolders: path.join(stateDir, "vfolders"), pods: path.join(stateDir, "pods"),
  }
  for (const d of Object.values(dirs)) fs.mkdirSync(d, { recursive: true })
  const kubeconfig = path.join(stateDir, "kubeconfig")
  const registryPassword = dev ? DEV.registryPassword : randomBytes(9).toString("base64url")
  const watcherToken = dev ? DEV.watcherToken : randomBytes(12).toString("hex")
  const etcdNamespace = dev ? DEV.etcdNamespace : "testbed"
  const daemons: Array<Daemon> = []
  let token = ""
  const rn = realNodePaths(stateDir)
  const realNodeEnv = realNode
    ? {
      name: REAL_NODE_NAME, ip: realSpec.ip, kubeletPort: KUBELET_PORT, containerdSock: rn.containerdSock, krunnerRoot: rn.krunner,
      krunnerPythonVersion: KRUNNER_PYTHON_VERSION, sigtermImage: `${SIGTERM_IMAGE.repo}:${SIGTERM_IMAGE.tag}`, podCidr: POD_CIDR,
    }
    : undefined
  const step = (what: string) => log(`[testbed] ${((performance.now() - t0) / 1000).toFixed(1)}s ${what}`)

  const env = (extra: Partial<TestbedEnv> = {}): TestbedEnv => ({
    name: opts.name, mode: opts.mode,
    etcd: `127.0.0.1:${ports.etcd}`, etcdNamespace, redis: `127.0.0.1:${ports.redis}`,
    registry: { url: `http://127.0.0.1:${ports.registry}`, host: `127.0.0.1:${ports.registry}`, username: DEV.registryUser, password: registryPassword },
    registrySecret: REGISTRY_SECRET, kubeconfig, apiserver: `https://127.0.0.1:${ports.apiserver}`, apiserverToken: token,
    kubectl: kubectlPath, namespace: KUBE_NAMESPACE, nodes, kubeletPort: ports.kubelet,
    eventAddr: `127.0.0.1:${ports.eventAddr}`, scratchRoot: dirs.scratch, vfolderMount: dirs.vfolders, watcherToken,
    stateDir, images: {}, pids: daemons.map((d) => ({ name: d.name, pid: d.pid, startTicks: d.startTicks, log: d.log })),
    startedAt: new Date().toISOString(), bringUpSeconds: 0, realRunner: opts.realRunner?.src, ...(realNodeEnv !== undefined ? { realNode: realNodeEnv } : {}), ...extra,
  })
  const save = (e: TestbedEnv) => fs.writeFileSync(envFileOf(stateDir), `${JSON.stringify(e, null, 2)}\n`)

  // the real node's images are built once per machine (cached); started now, awaited when the registry is up
  const built = realNode ? buildImages(log) : undefined
  built?.catch(() => undefined) // awaited below; a failure there is reported from the await
  try {
    if (realNode) {
      await claimRealNode(stateDir, async (stale) => { log(`[testbed] cleaning up the real node of a dead testbed (${stale})`); await down(stale) })
      step("host state saved, real-node lock taken")
    }
    // stage 1: independent daemons
    const k8sEtcd = startEtcd("k8s-etcd", path.join(dirs.data, "k8s-etcd"), ports.k8sEtcd, ports.k8sEtcdPeer, dirs.log)
    daemons.push(k8sEtcd)
    token = makePki(dirs.pki).token
    const apiserver = startApiserver(stateDir, ports.k8sEtcd, ports.apiserver, realNode ? ["--enable-admission-plugins=ExtendedResourceToleration"] : [])
    daemons.push(apiserver)
    const etcd = startEtcd("etcd", path.join(dirs.data, "etcd"), ports.etcd, ports.etcdPeer, dirs.log)
    const redis = startRedis(path.join(dirs.data, "redis"), ports.redis, dirs.log)
    const registry = startRegistry(stateDir, ports.registry, DEV.registryUser, registryPassword)
    daemons.push(etcd, redis, registry.daemon)
    const containerd = realNode ? startContainerd(stateDir, registry.info.host) : undefined
    if (containerd !== undefined) daemons.push(containerd)
    save(env())
    writeKubeconfig(kubeconfig, ports.apiserver, token)
    step("started etcd, redis, registry, k8s etcd, kube-apiserver")

    await Promise.all([waitEtcd(etcd, ports.etcd), waitRedis(redis, ports.redis), waitRegistry(registry.daemon, registry.info), waitEtcd(k8sEtcd, ports.k8sEtcd)])
    const images = await seedRegistry(registry.info)
    if (built !== undefined && containerd !== undefined) {
      const b = await built
      // the seeded python tags become the real images; the other seeded images stay tiny
      Object.assign(images, await pushImages(b, registry.info))
      buildKrunnerDir(rn.krunner, b, [...new Set(seedImages.map((i) => i.labels["ai.backend.base-distro"] ?? "ubuntu16.04"))])
      await waitContainerd(containerd, rn.containerdSock)
      const archive = path.join(rn.dir, "pause.tar")
      await pauseArchive(b, archive, PAUSE_REF)
      await importPause(rn.containerdSock, archive)
      step("real node: images pushed, krunner dir ready, containerd up with the pause image")
    }
    await seedEtcd(`127.0.0.1:${ports.etcd}`, etcdNamespace, {
      redis: `127.0.0.1:${ports.redis}`, eventAddr: `127.0.0.1:${ports.eventAddr}`, registry: registry.info,
      vfolderMount: dirs.vfolders, watcherToken,
    })
    step(`etcd, redis, registry ready; seeded ${Object.keys(images).length} images and /sorna/${etcdNamespace}/`)

    await waitApiserver(apiserver, ports.apiserver, token)
    step("kube-apiserver ready")
    daemons.push(...startControllers(stateDir, kubeconfig))
    const kubeletConfig: KubeletConfig = {
      kubeconfig, nodes: simulated, port: ports.kubelet, certFile: path.join(dirs.pki, "kubelet.crt"), keyFile: path.join(dirs.pki, "kubelet.key"),
      registry: registry.info, podsDir: dirs.pods, realRunner: opts.realRunner,
    }
    fs.writeFileSync(path.join(stateDir, "kubelet.json"), JSON.stringify(kubeletConfig, null, 2))
    const kubelet = spawnDaemon("kubelet", process.execPath, [path.join(testbedDir, "kubelet.ts"), path.join(stateDir, "kubelet.json")], dirs.log)
    daemons.push(kubelet)
    save(env({ images }))
    step("started kube-controller-manager, kube-scheduler, simulated kubelet")

    const realDaemons: Array<Daemon> = []
    if (realNode) {
      const o = { stateDir, kubeconfig, ip: realSpec.ip }
      realDaemons.push(startKubelet(o), startKubeProxy(o))
      daemons.push(...realDaemons)
      save(env({ images }))
      step("real node: kubelet and kube-proxy started")
    }

    const core = coreApi(kubeconfig)
    await ensureNamespace(core, KUBE_NAMESPACE, REGISTRY_SECRET, dockerConfigJson(registry.info))
    step(`namespace ${KUBE_NAMESPACE} with ${REGISTRY_SECRET} ready`)
    await waitUntil("simulated nodes Ready", async () => {
      for (const d of daemons) assertAlive(d)
      const list = await core.listNode()
      const ready = list.items.filter((n) => n.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True"))
      return simulated.every((n) => ready.some((r) => r.metadata?.name === n.name))
    }, 30_000, 200)
    if (realNode) {
      for (const n of simulated.filter((x) => x.gpu > 0)) {
        await core.patchNode({ name: n.name, body: { spec: { taints: [GPU_TAINT] } } }, k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch))
      }
      await waitRealNodeReady(core, realSpec.ip, [...realDaemons, ...daemons.filter((d) => d.name === "containerd")], step)
    }
    const final = env({ images, bringUpSeconds: Number(((performance.now() - t0) / 1000).toFixed(1)) })
    save(final)
    step(`up: ${nodes.map((n) => `${n.name}@${n.ip}`).join(", ")} Ready`)
    return final
  } catch (e) {
    log(`[testbed] bring-up failed, stopping what was started (logs in ${dirs.log})`)
    if (realNode) {
      const left = await stopRealNode(stateDir, daemons)
      if (left.length > 0) log(`[testbed] host state NOT fully restored:\n${left.join("\n")}`)
    }
    await stopDaemons(daemons)
    throw e
  }
}

/** Stops every process of the testbed in `stateDir` (by pid); `remove` also deletes the state dir. */
export const down = async (stateDir: string, remove = false, log: (l: string) => void = (l) => console.error(l)): Promise<boolean> =>
  (await downChecked(stateDir, remove, log)).found

/**
 * `down`, also saying what of the host state the real node could not restore (empty without a real
 * node): the host snapshot taken before bring-up compared with the host after tear-down.
 */
export const downChecked = async (stateDir: string, remove = false, log: (l: string) => void = (l) => console.error(l)): Promise<{ found: boolean; hostDiff: Array<string> }> => {
  const env = envFromDisk(stateDir)
  const hasRealNode = fs.existsSync(realNodePaths(stateDir).hostBefore)
  if (env === undefined && !hasRealNode) return { found: false, hostDiff: [] }
  let hostDiff: Array<string> = []
  if (env?.realNode !== undefined || hasRealNode) {
    // first: nothing may restart pods while they are removed, and the host is restored before the control plane goes
    hostDiff = await stopRealNode(stateDir, env?.pids ?? [])
    if (hostDiff.length > 0) log(`[testbed] host state NOT fully restored after the real node:\n${hostDiff.join("\n")}`)
  }
  if (env !== undefined) await stopDaemons([...env.pids].filter((p) => !(REAL_NODE_DAEMONS as ReadonlyArray<string>).includes(p.name)).reverse())
  if (remove) fs.rmSync(stateDir, { recursive: true, force: true })
  return { found: true, hostDiff }
}

export const status = (stateDir: string): string => {
  const env = envFromDisk(stateDir)
  if (env === undefined) return `no testbed in ${stateDir}`
  return env.pids.map((p) => `${p.name.padEnd(24)} pid ${String(p.pid).padEnd(8)} ${isRunning(p) ? "running" : "STOPPED"}`).join("\n")
}

/** Human-readable endpoint list; the kubeconfig path is on a line of its own (last line). */
export const describe = (e: TestbedEnv): string => [
  `etcd (agent)      ${e.etcd}  namespace ${e.etcdNamespace}`,
  `redis             ${e.redis}`,
  `registry          ${e.registry.url}  user ${e.registry.username} password ${e.registry.password}`,
  `kube-apiserver    ${e.apiserver}`,
  `nodes             ${e.nodes.map((n) => `${n.name} ${n.ip} (cpu ${n.cpu}, mem ${n.memory}, gpu ${n.gpu})`).join("; ")}  kubelet port ${e.kubeletPort}`,
  `event address     ${e.eventAddr}`,
  ...(e.realNode !== undefined
    ? [`real node         ${e.realNode.name} ${e.realNode.ip} (kubelet :${e.realNode.kubeletPort}, containerd ${e.realNode.containerdSock})`,
      `krunner volume    hostPath ${e.realNode.krunnerRoot}  python-version ${e.realNode.krunnerPythonVersion}`]
    : []),
  `scratch root      ${e.scratchRoot}`,
  `kubectl           ${e.kubectl}`,
  `env.json          ${envFileOf(e.stateDir)}`,
  `bring-up          ${e.bringUpSeconds} s`,
  "kubeconfig:",
  e.kubeconfig,
].join("\n")
