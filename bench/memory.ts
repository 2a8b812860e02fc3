/**
 * `node bench/run.ts memory [--env .testbed/dev/env.json] [--kernels 0,100,250,500,1000] [--nodes 4] [--foreign-pods 0]
 *                           [--window 20] [--repeat 2] [--settle 8] [--node-args "--max-semi-space-size=1"]
 *                           [--compare "--max-semi-space-size=1"] [--main dist/main.js]
 *                           [--compare-main dist-bench/tsc/main.js] [--agent-env "K=V …"] [--compare-env "K=V …"]
 *                           [--heap-snapshot DIR] [--use-runners] [--stats on|off] [--compare-stats on|off]
 *                           [--agent-config "section.key=value …"] [--compare-config "…"] [--out scale.json]
 *                           [--agent-log DIR]`
 *
 * Memory and loop cost of the REAL agent process (`node dist/main.js -f <config>`, run `npm run build`
 * first; `--main` another build of it) against a running testbed (`node test/testbed/cli.ts up`; `TESTBED_NAME=x` → `--env
 * .testbed/x/env.json`), at each kernel count of `--kernels` (issue 17 goals 2 and 4):
 *
 * - the kernels are real Kubernetes objects of this agent (a ready-marked Pod with the recovery
 *   annotation, its headless Service and ConfigMap, in a fresh namespace), bound to `--nodes` fake
 *   Nodes; the agent process is started after they exist, so it ADOPTS them at start-up as a restarted
 *   agent does: its registry holds N kernels with N runner connections (PUSH + PULL to a sink bound by
 *   this process at <loopback ip>:2000/2001, pod-ip mode: no NodePorts), its stats loop collects N
 *   kernels every 2 s and its heartbeat runs every 3 s. A runner connection's sockets open on its first
 *   use and stay open until the kernel's connection closes, so an adopted kernel nobody calls holds
 *   none; `--use-runners` calls `interrupt_kernel` on every kernel through the agent's RPC port once
 *   its stats are in Redis (each call opens the kernel's sockets: the point is measured with them
 *   all open). The sink counts the agent's connections to its REPL-in port (ZeroMQ accept /
 *   disconnect events): each point reports how many were open at the end of its windows;
 * - the fake Nodes' kubelet endpoint is bench/stats-kubelet.ts (as in the stats bench: the testbed's
 *   simulated kubelet would start a runner process per pod): the API server's node proxy, the Summary
 *   API documents and Redis are real;
 * - a point is measured once Redis holds the stats of all N kernels (the stats loop sees them) plus
 *   `--settle` seconds; then `--repeat` windows of `--window` seconds: the agent's CPU time (utime +
 *   stime of all its threads, /proc/<pid>/stat — process CPU seconds, not wall, so a loaded machine
 *   inflates it less than a wall-clock share) per stats cycle and as a share of one core, the RSS
 *   every second through the windows (mean and maximum: one reading moves by ±20 MiB at 1,000
 *   kernels between two agent processes, not within one) and its peak before them, from the agent's
 *   start through the adoption and the settle (the kernel's high-water mark, VmHWM of /proc/<pid>/status), and at their end /proc/<pid>/smaps_rollup (RSS, anonymous, Pss_Anon, Pss_File) and /proc/<pid>/smaps by mapping (the
 *   node binary, glibc's [heap], V8-page-sized and larger anonymous mappings, mapping and thread counts:
 *   the second table); the V8 heap comes from a `process.report` (`--report-on-signal`, SIGUSR2) at the end of the point.
 * - every point is a fresh agent process (kernels are added between points, never removed).
 * - `--foreign-pods N` (issue 17 goal 4: 200 nodes / 5,000 pods): N pods that are not this agent's
 *   (namespace `<ns>-tenants`, no agent labels, cpu/memory requests: bench/fakeNodes.ts `foreignPod`, as
 *   bench/heartbeat.ts writes them), bound to the fake Nodes round-robin, created once before the first
 *   point: the agent's all-pods informer (the heartbeat's resources) lists them, and each fake kubelet's
 *   Summary document lists them next to the node's kernels with the same shape of stats, so the stats
 *   loop parses them as on a real node. Removed at the end with the namespaces and nodes; the clean-up
 *   waits (bounded) until none of them is left and says so.
 *
 * `--compare-main <file>` measures every point a second time with another build of the agent (e.g. tsc's
 * unbundled output: `tsc -p tsconfig.build.json --outDir dist-bench/tsc`, then `--compare-main
 * dist-bench/tsc/main.js`), with `--compare`'s node args if given, else `--node-args`.
 *
 * `--agent-env` / `--compare-env`: environment variables added to the agent's (e.g. glibc's
 * `MALLOC_ARENA_MAX=2`), for the measured and the comparison runs; a `--compare` set's own `K=V`
 * words are added over `--compare-env` for that set only.
 *
 * `--stats off` runs the measured agents with their stats loop disabled (`[stats] enabled = false`: what is left
 * is the heartbeat side — the node and pod informers, the slot arithmetic, the heartbeat's events, etcd);
 * `--compare-stats on|off` measures every point a second time with the stats loop so (back to back: `--stats off
 * --compare-stats on` alternates stats off / on at every point). Without stats a point is measured once the
 * agent's `/metrics` count the N kernels (`bai_kernels`) and a heartbeat sent after them, instead of their
 * stats in Redis; the stats-cycle column then reads 0.
 *
 * `--agent-config` / `--compare-config`: settings of the agent's config file for the measured and the comparison
 * runs, each `section.key=<TOML value>` (`kubernetes.relist-interval="10s"`), set in (or added to) that section.
 *
 * `--heap-snapshot DIR` writes a V8 heap snapshot of the agent at the end of every point
 * (`--heapsnapshot-signal=SIGUSR1`) to DIR/<kernels>-<n>.heapsnapshot; `node bench/heap-summary.ts FILE`
 * summarises one.
 *
 * `--agent-log DIR` keeps each agent's stdout and stderr in DIR/<kernels>-<n>.stdout / .stderr (with
 * `--node-args "--trace-gc"`: every GC, with the MiB V8 keeps in its page pool, "pooled: N MB").
 *
 * `--out` writes the points as JSON (input of `node bench/scale-svg.ts`).
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as k8s from "@kubernetes/client-node"
import { Console, Effect } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { randomBytes, randomUUID } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as readline from "node:readline"
import { fileURLToPath } from "node:url"
import { Redis as IORedis } from "ioredis"
import * as zmq from "zeromq"
import { encode } from "../src/codec/Msgpack.ts"
import { encodeRequestHeader } from "../src/rpc/aiozmq/Frames.ts"
import { labelsOf, objectName, READY_ANNOTATION, RECOVERY_ANNOTATION, recoveryText } from "../src/kube/KernelObjects.ts"
import { ensureNamespace } from "../test/testbed/controlplane.ts"
import { readEnvFile } from "../test/testbed/env.ts"
import { isPortFree } from "../test/testbed/ports.ts"
import { dockerConfigJson } from "../test/testbed/registry.ts"
import { FOREIGN_CONTAINER, foreignPod, statsKubeletNodeStatus } from "./fakeNodes.ts"
import { cpuSecondsOf, peakRssOf, type Smaps, type SmapsBreakdown, smapsBreakdownOf, smapsOf } from "./smaps.ts"


/**
 * A free port below the kernel's ephemeral range for the agent's listeners: a port from `listen(0)`
 * (what `freePort` gives) could be taken, between its choice and the agent's bind, by one of the 200
 * fake kubelets' `listen(0)` or an outgoing connection (two runs failed "address already in use").
 */
const stablePort = async (taken: Set<number>): Promise<number> => {
  const low = Number(fs.readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0])
  for (let tries = 0; tries < 1000; tries++) {
    const port = 10_000 + Math.floor(Math.random() * (Math.max(low, 10_100) - 10_000))
    if (!taken.has(port) && (await isPortFree(port))) {
      taken.add(port)
      return port
    }
  }
  throw new Error(`no free port in 10000–${low - 1} after 1,000 tries`)
}

const argValue = (flag: string): string | undefined => {
  const i = process.argv.indexOf(flag)
  return i >= 0 ? process.argv[i + 1] : undefined
}
const argNumber = (flag: string, fallback: number): number => Number(argValue(flag) ?? fallback)
const repoRoot = fileURLToPath(new URL("..", import.meta.url))
const POINTS = (argValue("--kernels") ?? "0,100,250,500,1000").split(",").map(Number)
const NODES = argNumber("--nodes", 4)
const FOREIGN_PODS = argNumber("--foreign-pods", 0)
const WINDOW = argNumber("--window", 20)
const REPEAT = argNumber("--repeat", 2)
const SETTLE = argNumber("--settle", 8)
const NODE_ARGS = (argValue("--node-args") ?? "").split(" ").filter((a) => a !== "")
/** a `K=V` word of `--compare` (an environment variable of that set), not a node flag */
const ENV_WORD = /^[A-Za-z_][A-Za-z0-9_]*=/
/**
 * `--compare "<node args>"`: every point is measured twice, with `--node-args` and with these (same kernels, back to back);
 * several sets separated by `;` (`--compare "--max-semi-space-size=4;--max-semi-space-size=8"`): once more per set.
 * A set's `K=V` words are environment variables of that set's agent, added over `--compare-env`
 * (`--compare "MALLOC_ARENA_MAX=2 --max-semi-space-size=4;--max-semi-space-size=4 --memory-saver-mode"`)
 */
const COMPARE = argValue("--compare")?.split(";").map((set) => {
  const words = set.split(" ").filter((a) => a !== "")
  return {
    args: words.filter((w) => !ENV_WORD.test(w)),
    env: Object.fromEntries(words.filter((w) => ENV_WORD.test(w)).map((w) => [w.slice(0, w.indexOf("=")), w.slice(w.indexOf("=") + 1)]))
  }
})
/** `--compare-main <file>`: the comparison runs this entry point instead of `--main` */
const COMPARE_MAIN = argValue("--compare-main")
const HEAP_SNAPSHOT_DIR = argValue("--heap-snapshot")
/** `--agent-log DIR`: each agent's stdout (where `--trace-gc` and other V8 traces go) and stderr to DIR/<kernels>-<n>.{stdout,stderr} */
const AGENT_LOG_DIR = argValue("--agent-log")
const envOf = (flag: string): Readonly<Record<string, string>> =>
  Object.fromEntries((argValue(flag) ?? "").split(" ").filter((a) => a.includes("=")).map((a) => [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)]))
const AGENT_ENV = envOf("--agent-env")
const COMPARE_ENV = envOf("--compare-env")
const USE_RUNNERS = process.argv.includes("--use-runners")
const onOff = (flag: string): boolean | undefined => {
  const v = argValue(flag)
  if (v === undefined) return undefined
  if (v !== "on" && v !== "off") throw new Error(`${flag}: expected on or off, found ${JSON.stringify(v)}`)
  return v === "on"
}
/** `--stats off`: the measured agents run without their stats loop; `--compare-stats`: the comparison runs' setting */
const STATS = onOff("--stats") ?? true
const COMPARE_STATS = onOff("--compare-stats")
/** `section.key=value` words of `--agent-config` / `--compare-config` (TOML values, no spaces) */
const configOf = (flag: string): Readonly<Record<string, string>> =>
  Object.fromEntries((argValue(flag) ?? "").split(" ").filter((a) => a !== "").map((a) => {
    const eq = a.indexOf("=")
    if (eq < 0 || a.lastIndexOf(".", eq) < 0) throw new Error(`${flag}: expected section.key=value, found ${JSON.stringify(a)}`)
    return [a.slice(0, eq), a.slice(eq + 1)]
  }))
const AGENT_CONFIG = configOf("--agent-config")
const COMPARE_CONFIG = configOf("--compare-config")
/** the config text with each `section.key` set to its value: replaced in its section, else added under the section's header (or a new one) */
const withSettings = (text: string, settings: Readonly<Record<string, string>>): string => {
  const lines = text.split("\n")
  for (const [path, value] of Object.entries(settings)) {
    const section = path.slice(0, path.lastIndexOf("."))
    const key = path.slice(path.lastIndexOf(".") + 1)
    const header = lines.indexOf(`[${section}]`)
    if (header < 0) {
      lines.push(`[${section}]`, `${key} = ${value}`)
      continue
    }
    let end = lines.findIndex((l, i) => i > header && l.startsWith("["))
    if (end < 0) end = lines.length
    const at = lines.findIndex((l, i) => i > header && i < end && l.startsWith(`${key} =`))
    if (at >= 0) lines[at] = `${key} = ${value}`
    else lines.splice(header + 1, 0, `${key} = ${value}`)
  }
  return lines.join("\n")
}
const STATS_INTERVAL = 2
const RSS_SAMPLE_MS = 1000
const HEARTBEAT_INTERVAL = 3

export interface Point {
  readonly kernels: number
  readonly nodeArgs: ReadonlyArray<string>
  /** the entry point run, relative to the repository */
  readonly main: string
  /** environment variables added for the agent */
  readonly env: Readonly<Record<string, string>>
  /** the agent's stats loop ran (`--stats`, `--compare-stats`) */
  readonly stats: boolean
  /** settings of the agent's config file (`--agent-config`, `--compare-config`) */
  readonly config: Readonly<Record<string, string>>
  /** agent CPU seconds per stats cycle (2 s), one value per window */
  readonly cpuPerCycleMs: ReadonlyArray<number>
  /** share of one core, one value per window */
  readonly corePercent: ReadonlyArray<number>
  readonly smaps: Smaps
  /** RSS sampled every second through the windows (MiB): mean and maximum */
  readonly rssMean: number
  readonly rssMax: number
  /** the highest RSS (MiB) from the agent's start through the adoption and `--settle`, before the windows (VmHWM) */
  readonly rssStartPeak: number
  readonly breakdown: SmapsBreakdown
  readonly heapUsedMiB: number
  readonly heapTotalMiB: number
  readonly adoptSeconds: number
  /** the agent's connections to the sink's REPL-in port at the end of the windows (one per kernel with open sockets) */
  readonly runnerConnections: number
  /**
   * through the windows, from the agent's /metrics: stats cycles run and node summaries that failed or timed out
   * (a point whose summaries fail measures a loop that did less than its nodes ask)
   */
  readonly statsCycles: number
  readonly summaryFailures: number
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const waitFor = async (what: string, timeoutMs: number, check: () => Promise<boolean> | boolean): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`bench: timed out after ${timeoutMs / 1000} s waiting for ${what}`)
    await sleep(250)
  }
}
const mapLimit = async <A>(items: ReadonlyArray<A>, limit: number, f: (a: A) => Promise<void>): Promise<void> => {
  let next = 0
  await Promise.all(Array.from({ length: limit }, async () => {
    while (next < items.length) await f(items[next++]!)
  }))
}
const exited = (c: ChildProcess, ms: number) =>
  c.exitCode !== null || c.signalCode !== null
    ? Promise.resolve(true)
    : Promise.race([new Promise<boolean>((r) => c.once("exit", () => r(true))), sleep(ms).then(() => false)])

/** the sum of a counter's samples in a Prometheus text exposition (0 when absent) */
const counterOf = (text: string, name: string): number =>
  text.split("\n").filter((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`)).reduce((a, l) => a + Number(l.slice(l.lastIndexOf(" ") + 1)), 0)
const scrape = async (port: number): Promise<string> => {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(10_000) })
  return res.text()
}

const program = Effect.gen(function*() {
  const envFile = argValue("--env") ?? path.join(repoRoot, ".testbed/dev/env.json")
  const env = readEnvFile(envFile)
  const mainJs = path.resolve(argValue("--main") ?? path.join(repoRoot, "dist/main.js"))
  const compareMainJs = COMPARE_MAIN === undefined ? mainJs : path.resolve(COMPARE_MAIN)
  for (const f of [mainJs, compareMainJs]) {
    if (!fs.existsSync(f)) return yield* Console.error(`bench: ${f} missing: run \`npm run build\` first`)
  }
  const kc = new k8s.KubeConfig()
  kc.loadFromFile(env.kubeconfig)
  const core = kc.makeApiClient(k8s.CoreV1Api)
  const run = randomBytes(3).toString("hex")
  const ns = `bench-mem-${run}`
  const tenantNs = `${ns}-tenants`
  const agentId = `i-bench-mem-${run}`
  const label = `bai-bench/memory`
  const nodeNames = Array.from({ length: NODES }, (_, i) => `bench-mem-${run}-${i}`)
  const sinkIp = `127.77.${1 + Math.floor(Math.random() * 250)}.1`
  const tmp = yield* Effect.acquireRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "bai-bench-mem-"))),
    (d) => Effect.sync(() => fs.rmSync(d, { recursive: true, force: true }))
  )
  const redis = yield* Effect.acquireRelease(
    Effect.sync(() => new IORedis(`redis://${env.redis}`, { lazyConnect: false, maxRetriesPerRequest: 2 })),
    (r) => Effect.sync(() => r.disconnect())
  )

  // the runners' side of N connections: one PULL (repl-in, drained) and one PUSH (repl-out, silent)
  const sink = yield* Effect.acquireRelease(
    Effect.promise(async () => {
      const pull = new zmq.Pull()
      const push = new zmq.Push()
      const events = pull.events // monitored from the start
      await pull.bind(`tcp://${sinkIp}:2000`)
      await push.bind(`tcp://${sinkIp}:2001`)
      void (async () => {
        for await (const _ of pull) { /* status keep-alives, interrupts */ }
      })().catch(() => undefined)
      const counts = { peers: 0 }
      void (async () => {
        for await (const e of events) {
          if (e.type === "accept") counts.peers++
          if (e.type === "disconnect") counts.peers--
        }
      })().catch(() => undefined)
      return { pull, push, counts }
    }),
    (s) => Effect.sync(() => { s.pull.close(); s.push.close() })
  )

  /** `interrupt_kernel(kid)` for every kernel over one aiozmq DEALER (frames as src/rpc/aiozmq/Frames.ts). */
  const interruptAll = async (port: number, ids: ReadonlyArray<string>): Promise<void> => {
    const dealer = new zmq.Dealer({ linger: 0 })
    dealer.connect(`tcp://127.0.0.1:${port}`)
    try {
      let answered = 0
      let failed = 0
      const replies = (async () => {
        while (answered < ids.length) {
          const [header] = await dealer.receive()
          answered++
          if (header!.length >= 17 && header![16] !== 0) failed++
        }
      })()
      for (const [i, kid] of ids.entries()) {
        await dealer.send([encodeRequestHeader({ pid: process.pid, rnd: 1, reqId: i + 1, timestamp: Date.now() / 1000 }), "interrupt_kernel", encode([kid]), Buffer.from([0x80])])
      }
      await Promise.race([replies, sleep(120_000).then(() => { throw new Error(`bench: ${answered} of ${ids.length} interrupt_kernel answered`) })])
      if (failed > 0) throw new Error(`bench: ${failed} interrupt_kernel calls failed`)
    } finally {
      dealer.close()
    }
  }

  yield* Effect.addFinalizer(() =>
    Effect.promise(async () => {
      const namespaces = FOREIGN_PODS > 0 ? [ns, tenantNs] : [ns]
      console.error(`cleaning up: namespaces ${namespaces.join(", ")}, nodes ${label}=${run}`)
      for (const name of namespaces) {
        // bound to nodes without a kubelet: only a zero grace period removes them at once
        await core.deleteCollectionNamespacedPod({ namespace: name, gracePeriodSeconds: 0 }).catch(() => undefined)
        await core.deleteNamespace({ name }).catch(() => undefined)
      }
      await core.deleteCollectionNode({ labelSelector: `${label}=${run}` }).catch(() => undefined)
      const gone = (read: Promise<unknown>) => read.then(() => false, (e: unknown) => (e as { code?: number }).code === 404)
      const left = async (): Promise<ReadonlyArray<string>> => {
        const what: Array<string> = []
        for (const name of namespaces) {
          if (!(await gone(core.readNamespace({ name })))) what.push(`namespace ${name}`)
        }
        const nodes = (await core.listNode({ labelSelector: `${label}=${run}` })).items.length
        if (nodes > 0) what.push(`${nodes} nodes`)
        return what
      }
      await waitFor("the clean-up", 300_000, async () => (await left()).length === 0).then(
        () => console.error("cleaned up: no namespace, pod or node of this run is left"),
        async () => console.error(`bench: LEFT after the clean-up: ${(await left()).join(", ")}`)
      )
    })
  )
  yield* Effect.promise(() => ensureNamespace(core, ns, env.registrySecret, dockerConfigJson(env.registry)))
  yield* Effect.promise(() =>
    mapLimit(nodeNames, 4, async (name) => {
      await core.createNode({ body: { metadata: { name, labels: { [label]: run } } } })
    })
  )

  // other tenants' pods, bound round-robin, created once: in the API (the informer) and the kubelets' summaries
  const foreign: Array<{ name: string; node: string; uid: string }> = []
  if (FOREIGN_PODS > 0) {
    const t0 = Date.now()
    // waits for the namespace's default ServiceAccount: a pod created before it is refused
    yield* Effect.promise(() => ensureNamespace(core, tenantNs, env.registrySecret, dockerConfigJson(env.registry)))
    yield* Effect.promise(() =>
      mapLimit(Array.from({ length: FOREIGN_PODS }, (_, i) => i), 32, async (i) => {
        const node = nodeNames[i % NODES]!
        const pod = await core.createNamespacedPod({ namespace: tenantNs, body: foreignPod(`tenant-${i}`, node) })
        foreign.push({ name: pod.metadata!.name!, node, uid: pod.metadata!.uid! })
      })
    )
    yield* Console.error(`[memory] ${FOREIGN_PODS} foreign pods in ${tenantNs} (${((Date.now() - t0) / 1000).toFixed(0)} s)`)
  }

  const taken = new Set<number>()
  const rpcPort = yield* Effect.promise(() => stablePort(taken))
  const watcherPort = yield* Effect.promise(() => stablePort(taken))
  const metricsPort = yield* Effect.promise(() => stablePort(taken))
  fs.mkdirSync(path.join(tmp, "scratches"))
  const configText = (stats: boolean) => `
[etcd]
namespace = "${env.etcdNamespace}"
addr = "${env.etcd}"
[agent]
rpc-listen-addr = { host = "127.0.0.1", port = ${rpcPort} }
id = "${agentId}"
scaling-group = "default"
[container]
port-range = [30000, 31000]
scratch-root = "${path.join(tmp, "scratches")}"
[kubernetes]
namespace = "${ns}"
kubeconfig = "${env.kubeconfig}"
node-selector = "${label}=${run}"
runner-address = "pod-ip"
[kubernetes.registry]
url = "${env.registry.url}"
pull-secret = "${env.registrySecret}"
[kubernetes.krunner-volume]
type = "hostPath"
path = "/opt/backend.ai"
[kubernetes.scratch-volume]
type = "hostPath"
path = "${path.join(tmp, "scratches")}"
[logging]
level = "INFO"
[debug]
heartbeat-interval = "${HEARTBEAT_INTERVAL}s"
[stats]
enabled = ${stats}
interval = "${STATS_INTERVAL}s"
[watcher]
service-addr = { host = "127.0.0.1", port = ${watcherPort} }
[metrics]
service-addr = { host = "127.0.0.1", port = ${metricsPort} }
`
  let configFiles = 0

  // kernels, added point by point
  const kernels: Array<{ kernelId: string; node: string; uid: string }> = []
  const addKernels = (upTo: number) =>
    mapLimit(Array.from({ length: Math.max(0, upTo - kernels.length) }, (_, k) => kernels.length + k), 32, async (i) => {
      const kernelId = randomUUID()
      const name = objectName(kernelId)
      const node = nodeNames[i % NODES]!
      const labels = labelsOf(agentId, kernelId)
      const recovery = recoveryText({
        v: 1,
        runnerAddress: "pod-ip",
        kernelId,
        canonicalImage: "lablup/python:3.6-ubuntu18.04",
        image: "lablup/python:3.6-ubuntu18.04",
        replInPort: 2000,
        replOutPort: 2001,
        servicePorts: [],
        resourceSpec: "",
        scratchDir: path.join(tmp, "scratches", kernelId, "work"),
        idleTimeout: 0
      })
      const tolerations = ["node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"].map((key) => ({ key, operator: "Exists", effect: "NoExecute" }))
      const pod = await core.createNamespacedPod({
        namespace: ns,
        body: {
          metadata: { name, labels, annotations: { [RECOVERY_ANNOTATION]: recovery, [READY_ANNOTATION]: new Date().toISOString() } },
          spec: { nodeName: node, tolerations, containers: [{ name: "kernel", image: "busybox", resources: { requests: { cpu: "10m", memory: "16Mi" } } }] }
        }
      })
      const now = new Date()
      await core.replaceNamespacedPodStatus({
        name,
        namespace: ns,
        body: {
          ...pod,
          status: {
            phase: "Running",
            hostIP: "127.0.0.1",
            podIP: sinkIp,
            startTime: now,
            conditions: [{ type: "Ready", status: "True", lastTransitionTime: now }],
            containerStatuses: [{ name: "kernel", image: "busybox", imageID: "", ready: true, restartCount: 0, started: true, state: { running: { startedAt: now } } }]
          }
        }
      })
      await core.createNamespacedService({ namespace: ns, body: { metadata: { name, labels }, spec: { clusterIP: "None", selector: labels } } })
      await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name, labels }, data: {} } })
      kernels.push({ kernelId, node, uid: pod.metadata!.uid! })
    })

  // the fake nodes' kubelet (restarted per point with the current pods) and their Ready status
  const startKubelets = async (): Promise<ChildProcess> => {
    const cfg = path.join(tmp, "kubelets.json")
    fs.writeFileSync(cfg, JSON.stringify({
      certFile: path.join(env.stateDir, "pki", "kubelet.crt"),
      keyFile: path.join(env.stateDir, "pki", "kubelet.key"),
      fsRoot: tmp,
      nodes: nodeNames.map((name) => ({
        name,
        pods: [
          ...kernels.filter((k) => k.node === name).map((k) => ({ name: objectName(k.kernelId), namespace: ns, uid: k.uid })),
          ...foreign.filter((f) => f.node === name).map((f) => ({ name: f.name, namespace: tenantNs, uid: f.uid, container: FOREIGN_CONTAINER }))
        ]
      }))
    }))
    const child = spawn(process.execPath, [fileURLToPath(new URL("./stats-kubelet.ts", import.meta.url)), cfg], { stdio: ["pipe", "pipe", "inherit"] })
    const ports = await new Promise<Record<string, number>>((resolve) => {
      readline.createInterface({ input: child.stdout! }).once("line", (l) => resolve((JSON.parse(l) as { ports: Record<string, number> }).ports))
    })
    for (const name of nodeNames) {
      for (let attempt = 0;; attempt++) {
        const node = await core.readNode({ name })
        try {
          await core.replaceNodeStatus({ name, body: { ...node, status: statsKubeletNodeStatus(ports[name]!) } })
          break
        } catch (e) {
          if (attempt >= 10) throw e
        }
      }
    }
    return child
  }

  const measure = (
    n: number,
    nodeArgs: ReadonlyArray<string>,
    main: string,
    agentEnv: Readonly<Record<string, string>>,
    stats: boolean,
    settings: Readonly<Record<string, string>>
  ) =>
    Effect.promise(async (): Promise<Point> => {
      const configFile = path.join(tmp, `agent-${configFiles++}.toml`)
      fs.writeFileSync(configFile, withSettings(configText(stats), settings))
      const t0 = Date.now()
      await addKernels(n)
      console.error(`[memory] ${n} kernels in the cluster (${((Date.now() - t0) / 1000).toFixed(0)} s)`)
      const kubelets = await startKubelets()
      // the previous agent's stats keys (same agent id, TTL 30 s) must not count as this one's
      for (let i = 0; i < kernels.length; i += 500) await redis.del(...kernels.slice(i, i + 500).map((k) => k.kernelId))
      await redis.del(agentId)
      const reports = fs.mkdtempSync(path.join(tmp, `reports-${n}-`))
      const snapshotArgs = HEAP_SNAPSHOT_DIR === undefined ? [] : ["--heapsnapshot-signal=SIGUSR1", `--diagnostic-dir=${reports}`]
      const logBase = AGENT_LOG_DIR === undefined ? undefined : path.join(AGENT_LOG_DIR, `${n}-${configFiles - 1}`)
      if (AGENT_LOG_DIR !== undefined) fs.mkdirSync(AGENT_LOG_DIR, { recursive: true })
      const stdoutFd = logBase === undefined ? "ignore" : fs.openSync(`${logBase}.stdout`, "w")
      const agent = spawn(process.execPath, [...nodeArgs, ...snapshotArgs, "--report-on-signal", "--report-signal=SIGUSR2", `--report-directory=${reports}`, main, "-f", configFile], {
        cwd: tmp,
        env: { ...process.env, ...agentEnv },
        stdio: ["ignore", stdoutFd, "pipe"]
      })
      if (typeof stdoutFd === "number") fs.closeSync(stdoutFd)
      if (logBase !== undefined) console.error(`[memory] agent log: ${logBase}.{stdout,stderr}`)
      const stderrFile = logBase === undefined ? undefined : fs.createWriteStream(`${logBase}.stderr`)
      let log = ""
      agent.stderr!.on("data", (b: Buffer) => {
        stderrFile?.write(b)
        log = (log + b.toString()).slice(-20000)
      })
      // the agent's RSS; an agent gone in between says so with its log, not only ESRCH
      const rssNow = (): number => {
        try {
          return smapsOf(agent.pid!).rss
        } catch (e) {
          throw new Error(`agent gone (${String(e)}; exit code ${agent.exitCode}, signal ${agent.signalCode}):\n${log.slice(-3000)}`)
        }
      }
      try {
        const a0 = Date.now()
        // the stats loop has seen every kernel: its per-kernel keys are in Redis (and the agent's key);
        // without it: the agent holds the N kernels and a heartbeat was sent after they were counted
        let startPeak = 0
        let beatsWhenCounted: number | undefined
        await waitFor(`${stats ? "stats of" : "heartbeat with"} ${n} kernels (agent log tail:\n${log.slice(-3000)})`, 300_000, async () => {
          if (agent.exitCode !== null) throw new Error(`agent exited ${agent.exitCode}:\n${log.slice(-3000)}`)
          startPeak = Math.max(startPeak, rssNow())
          if (!stats) {
            const metrics = await scrape(metricsPort).catch(() => "")
            if (metrics === "") return false
            const beats = counterOf(metrics, "bai_heartbeats_sent_total")
            if (beatsWhenCounted === undefined) {
              if (counterOf(metrics, "bai_kernels") === n) beatsWhenCounted = beats
              return false
            }
            return beats > beatsWhenCounted
          }
          if ((await redis.exists(agentId)) === 0) return false
          for (let i = 0; i < kernels.length; i += 500) {
            const ids = kernels.slice(i, i + 500).map((k) => k.kernelId)
            if (ids.length > 0 && (await redis.exists(...ids)) !== ids.length) return false
          }
          return true
        })
        const adoptSeconds = (Date.now() - a0) / 1000
        if (USE_RUNNERS) {
          await interruptAll(rpcPort, kernels.map((k) => k.kernelId))
          console.error(`[memory] interrupt_kernel answered for ${kernels.length} kernels; ${sink.counts.peers} runner connections open`)
        }
        for (const settleEnd = Date.now() + SETTLE * 1000; Date.now() < settleEnd;) {
          await sleep(Math.min(250, settleEnd - Date.now()))
          startPeak = Math.max(startPeak, rssNow())
        }
        // the kernel's own high-water mark of the RSS since the agent started (a peak between two samples included)
        startPeak = Math.max(startPeak, peakRssOf(agent.pid!))
        const cpuPerCycleMs: Array<number> = []
        const corePercent: Array<number> = []
        const rssSamples: Array<number> = []
        const metricsBefore = await scrape(metricsPort)
        for (let r = 0; r < REPEAT; r++) {
          const c0 = cpuSecondsOf(agent.pid!)
          const w0 = process.hrtime.bigint()
          // RSS once a second through the window: one reading at its end is one point of the GC's sawtooth
          const end = Date.now() + WINDOW * 1000
          while (Date.now() < end) {
            await sleep(Math.min(RSS_SAMPLE_MS, end - Date.now()))
            rssSamples.push(rssNow())
          }
          const cpu = cpuSecondsOf(agent.pid!) - c0
          const wall = Number(process.hrtime.bigint() - w0) / 1e9
          cpuPerCycleMs.push((cpu * 1000 * STATS_INTERVAL) / wall)
          corePercent.push((cpu / wall) * 100)
        }
        const metricsAfter = await scrape(metricsPort)
        const statsCycles = counterOf(metricsAfter, "bai_stats_cycles_total") - counterOf(metricsBefore, "bai_stats_cycles_total")
        const summaryFailures = counterOf(metricsAfter, "bai_stats_node_failures_total") - counterOf(metricsBefore, "bai_stats_node_failures_total")
        const smaps = smapsOf(agent.pid!)
        const breakdown = smapsBreakdownOf(agent.pid!)
        const runnerConnections = sink.counts.peers
        agent.kill("SIGUSR2")
        let report: { javascriptHeap: { usedMemory: number; totalMemory: number } } | undefined
        await waitFor("the agent's process report", 30_000, () => {
          const f = fs.readdirSync(reports).find((x) => x.endsWith(".json"))
          if (f === undefined) return false
          try {
            report = JSON.parse(fs.readFileSync(path.join(reports, f), "utf8"))
            return true
          } catch {
            return false // still being written
          }
        })
        const mem = report!
        if (HEAP_SNAPSHOT_DIR !== undefined) {
          agent.kill("SIGUSR1")
          // written synchronously by the agent: complete once the process answers the next report signal
          let snapshot: string | undefined
          await waitFor("the agent's heap snapshot", 300_000, () => {
            snapshot = fs.readdirSync(reports).find((x) => x.endsWith(".heapsnapshot"))
            return snapshot !== undefined
          })
          const before = fs.readdirSync(reports).filter((x) => x.endsWith(".json")).length
          agent.kill("SIGUSR2")
          await waitFor("the report after the heap snapshot", 300_000, () => fs.readdirSync(reports).filter((x) => x.endsWith(".json")).length > before)
          fs.mkdirSync(HEAP_SNAPSHOT_DIR, { recursive: true })
          const dest = path.join(HEAP_SNAPSHOT_DIR, `${n}-${path.basename(main, ".js")}-${path.basename(path.dirname(main))}.heapsnapshot`)
          fs.copyFileSync(path.join(reports, snapshot!), dest)
          console.error(`[memory] heap snapshot: ${dest}`)
        }
        const p: Point = {
          kernels: n,
          nodeArgs,
          main: path.relative(repoRoot, main),
          env: agentEnv,
          stats,
          config: settings,
          cpuPerCycleMs,
          corePercent,
          smaps,
          breakdown,
          rssMean: rssSamples.reduce((a, b) => a + b, 0) / rssSamples.length,
          rssMax: Math.max(...rssSamples),
          rssStartPeak: startPeak,
          heapUsedMiB: mem.javascriptHeap.usedMemory / 2 ** 20,
          heapTotalMiB: mem.javascriptHeap.totalMemory / 2 ** 20,
          adoptSeconds,
          runnerConnections,
          statsCycles,
          summaryFailures
        }
        console.error(`[memory] ${JSON.stringify(p)}`)
        return p
      } finally {
        agent.kill("SIGTERM")
        if (!(await exited(agent, 20_000))) agent.kill("SIGKILL")
        kubelets.kill("SIGTERM")
      }
    })

  const points: Array<Point> = []
  const compared: Array<Point> = []
  for (const n of POINTS) {
    points.push(yield* measure(n, NODE_ARGS, mainJs, AGENT_ENV, STATS, AGENT_CONFIG))
    if (
      COMPARE !== undefined || COMPARE_MAIN !== undefined || argValue("--compare-env") !== undefined || COMPARE_STATS !== undefined ||
      argValue("--compare-config") !== undefined
    ) {
      for (const set of COMPARE ?? [{ args: NODE_ARGS, env: {} }]) {
        compared.push(yield* measure(n, set.args, compareMainJs, { ...COMPARE_ENV, ...set.env }, COMPARE_STATS ?? STATS, COMPARE_CONFIG))
      }
    }
  }

  const med = (xs: ReadonlyArray<number>) => {
    const s = [...xs].sort((a, b) => a - b)
    return (s[Math.floor((s.length - 1) / 2)]! + s[Math.ceil((s.length - 1) / 2)]!) / 2
  }
  yield* Console.log(`\nmemory / scale bench: real agent (node ${process.version}${NODE_ARGS.length > 0 ? ` ${NODE_ARGS.join(" ")}` : ""}), ${NODES} fake nodes, ${FOREIGN_PODS} foreign pods, stats every ${STATS_INTERVAL} s, heartbeat every ${HEARTBEAT_INTERVAL} s, ${REPEAT} × ${WINDOW} s windows, load average ${os.loadavg().map((l) => l.toFixed(1)).join(" ")}`)
  yield* Console.log("| kernels | entry point | env, node args | RSS MiB | RSS mean / max through the windows | RSS peak before them (start-up) | anonymous | file-backed (RSS − anon) | Pss_File | V8 heap used / total MiB | agent CPU ms per 2 s cycle (windows) | % of one core (windows) | adopted + first stats (s) | runner connections open | stats cycles / failed node summaries (windows) |")
  yield* Console.log("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
  for (const p of [...points, ...compared].sort((a, b) => a.kernels - b.kernels)) {
    const env = Object.entries(p.env).map(([k, v]) => `${k}=${v}`)
    yield* Console.log(`| ${p.kernels} | ${p.main} | ${[...env, ...(p.stats ? [] : ["stats off"]), ...Object.entries(p.config).map(([k, v]) => `${k}=${v}`), ...p.nodeArgs].join(" ") || "—"} | ${p.smaps.rss.toFixed(1)} | ${p.rssMean.toFixed(1)} / ${p.rssMax.toFixed(1)} | ${p.rssStartPeak.toFixed(1)} | ${p.smaps.anon.toFixed(1)} | ${(p.smaps.rss - p.smaps.anon).toFixed(1)} | ${p.smaps.pssFile.toFixed(1)} | ${p.heapUsedMiB.toFixed(1)} / ${p.heapTotalMiB.toFixed(1)} | ${p.cpuPerCycleMs.map((x) => x.toFixed(1)).join(", ")} | ${p.corePercent.map((x) => x.toFixed(2)).join(", ")} (median ${med(p.corePercent).toFixed(2)}) | ${p.adoptSeconds.toFixed(0)} | ${p.runnerConnections} | ${p.statsCycles} / ${p.summaryFailures} |`)
  }
  yield* Console.log("\nwhere the RSS is (/proc/<pid>/smaps by mapping, MiB):")
  yield* Console.log("| kernels | entry point | env, node args | node binary | other files | glibc [heap] | anon ≤ 256 KiB (V8 pages) | larger anon (arenas, stacks) | of the anon, 256 KiB-aligned (V8 heap) | LazyFree | mappings | threads |")
  yield* Console.log("|---|---|---|---|---|---|---|---|---|---|---|---|")
  for (const p of [...points, ...compared].sort((a, b) => a.kernels - b.kernels)) {
    const env = Object.entries(p.env).map(([k, v]) => `${k}=${v}`)
    const b = p.breakdown
    yield* Console.log(`| ${p.kernels} | ${p.main} | ${[...env, ...(p.stats ? [] : ["stats off"]), ...Object.entries(p.config).map(([k, v]) => `${k}=${v}`), ...p.nodeArgs].join(" ") || "—"} | ${b.nodeBinary.toFixed(1)} | ${b.otherFiles.toFixed(1)} | ${b.brkHeap.toFixed(1)} | ${b.anonSmall.toFixed(1)} | ${b.anonLarge.toFixed(1)} | ${b.anonV8Aligned.toFixed(1)} | ${b.lazyFree.toFixed(1)} | ${b.mappings} | ${b.threads} |`)
  }
  const out = argValue("--out")
  if (out !== undefined) fs.writeFileSync(out, `${JSON.stringify({ nodeArgs: NODE_ARGS, nodes: NODES, foreignPods: FOREIGN_PODS, loadavg: os.loadavg(), points, compared }, null, 1)}\n`)
}).pipe(Effect.scoped)

NodeRuntime.runMain(program)
