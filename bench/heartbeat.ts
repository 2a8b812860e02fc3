/**
 * `node bench/run.ts heartbeat [--env .testbed/dev/env.json] [--window 30] [--nodes 200] [--pods 5000]`
 *
 * Heartbeat cost against a real kube-apiserver (a running testbed: `node test/testbed/cli.ts up`).
 * Two cluster sizes, measured the same way: 2 fake Ready nodes with 50 foreign pods, then
 * `--nodes` nodes with `--pods` pods (requests, bound to the nodes), all written through the API in
 * a fresh namespace and removed afterwards. For each size a separate agent process (this file with
 * `--agent`) runs NodeResources + ImageRegistry + Heartbeat (interval 3 s) and reports:
 *   - initial list time, the agent's CPU and RSS over a steady `--window` of heartbeats;
 *   - heartbeat assembly: `Heartbeat.assemble` (what each beat does; the snapshot is cached) and the
 *     cold path after a cluster change (computeSnapshot over all nodes/pods + agent_info + msgpack).
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as k8s from "@kubernetes/client-node"
import { Clock, Console, Context, Effect, Layer } from "effect"
import { spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { AgentConfig, decodeConfigText } from "../src/config/AgentConfig.ts"
import { KubeClient } from "../src/kube/KubeClient.ts"
import { computeSnapshot, nodeState, NodeResources, podState, reservedAmounts } from "../src/kube/NodeResources.ts"
import { MemoryRelease } from "../src/observability/MemoryRelease.ts"
import { EventPublisher } from "../src/manager/EventPublisher.ts"
import { computePluginsOf, Heartbeat, resourceSlotsOf } from "../src/manager/Heartbeat.ts"
import { ImageRegistry } from "../src/images/ImageRegistry.ts"
import { ManagerConfig } from "../src/manager/ManagerConfig.ts"
import { Registration } from "../src/manager/Registration.ts"
import * as Msgpack from "../src/codec/Msgpack.ts"
import type { TestbedEnv } from "../test/testbed/env.ts"
import { ensureNamespace } from "../test/testbed/controlplane.ts"
import { dockerConfigJson } from "../test/testbed/registry.ts"
import { foreignPod } from "./fakeNodes.ts"

const argValue = (flag: string): string | undefined => {
  const i = process.argv.indexOf(flag)
  return i >= 0 ? process.argv[i + 1] : undefined
}
const argNumber = (flag: string, fallback: number): number => Number(argValue(flag) ?? fallback)

interface AgentReport {
  readonly nodes: number
  readonly pods: number
  readonly syncMillis: number
  readonly assembleMicros: number
  readonly coldMicros: number
  readonly coldComputeMicros: number
  readonly heartbeatBytes: number
  readonly cpuPercent: number
  readonly cpuMillisPerBeat: number
  readonly rssMiB: number
  readonly heapMiB: number
  readonly beats: number
}

const median = (xs: Array<number>) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

// ---------------------------------------------------------------------------------------------
// The agent side (child process)

const agentMain = Effect.gen(function*() {
  const configFile = argValue("--agent")!
  const window = argNumber("--window", 30)
  const loaded = yield* decodeConfigText(configFile, fs.readFileSync(configFile, "utf8"), {}, os.hostname())
  const t0 = yield* Clock.currentTimeMillis
  const Config = AgentConfig.fromLoaded(loaded)
  const Kube = Layer.merge(KubeClient.layer, MemoryRelease.layer).pipe(Layer.provideMerge(Config))
  const Deps = Layer.mergeAll(
    NodeResources.layer,
    ImageRegistry.layer,
    EventPublisher.layer({ eventAddr: "127.0.0.1:1", agentId: loaded.agentId, sendTimeoutMillis: 1 }),
    Layer.succeed(Registration, Registration.of({ markRunning: Effect.void, awaitRunning: Effect.void, asserted: Effect.succeed("running") })),
    ManagerConfig.layerTest({ rpcHost: "127.0.0.1" })
  ).pipe(Layer.provideMerge(Kube))
  const ctx = yield* Layer.build(Heartbeat.layer.pipe(Layer.provideMerge(Deps)))
  const resources = Context.get(ctx, NodeResources)
  const heartbeat = Context.get(ctx, Heartbeat)
  const kube = Context.get(ctx, KubeClient)
  yield* resources.synced
  const syncMillis = (yield* Clock.currentTimeMillis) - t0
  const snapshot = yield* resources.snapshot

  // cold path inputs: the same objects the agent holds, listed once more
  const nodes = (yield* kube.core("list", (api) => api.listNode({ labelSelector: loaded.config.kubernetes["node-selector"] }))).items
    .map((n) => nodeState(n as never)!)
  const pods = (yield* kube.core("list", (api) => api.listPodForAllNamespaces({ fieldSelector: "spec.nodeName!=" }))).items
    .map((p) => podState(p as never, loaded.agentId)).filter((p) => p !== undefined)
  const reserved = reservedAmounts(loaded.config.resource)

  const time = <A>(n: number, f: () => A) => {
    const samples: Array<number> = []
    for (let i = 0; i < n; i++) {
      const a = process.hrtime.bigint()
      f()
      samples.push(Number(process.hrtime.bigint() - a) / 1000)
    }
    return median(samples)
  }
  const assembleSamples: Array<number> = []
  for (let i = 0; i < 200; i++) {
    const a = process.hrtime.bigint()
    yield* heartbeat.assemble
    assembleSamples.push(Number(process.hrtime.bigint() - a) / 1000)
  }
  const info = yield* heartbeat.assemble
  const coldComputeMicros = time(50, () => computeSnapshot(nodes, pods, reserved))
  const coldMicros = time(50, () => {
    const s = computeSnapshot(nodes, pods, reserved)
    return Msgpack.encode([{ ...info, resource_slots: resourceSlotsOf(s), compute_plugins: computePluginsOf(s) } as never])
  })
  const heartbeatBytes = Msgpack.encode([info as never]).length

  // steady state: heartbeats every 3 s for `window` seconds
  ;(globalThis as { gc?: () => void }).gc?.()
  const sentBefore = yield* heartbeat.sent
  const cpu0 = process.cpuUsage()
  const w0 = process.hrtime.bigint()
  yield* Effect.sleep(`${window} seconds`)
  const cpu = process.cpuUsage(cpu0)
  const wall = Number(process.hrtime.bigint() - w0) / 1e6
  const beats = (yield* heartbeat.sent) - sentBefore
  ;(globalThis as { gc?: () => void }).gc?.()
  const mem = process.memoryUsage()
  const report: AgentReport = {
    nodes: snapshot.workers.length,
    pods: pods.length,
    syncMillis,
    assembleMicros: median(assembleSamples),
    coldMicros,
    coldComputeMicros,
    heartbeatBytes,
    cpuPercent: ((cpu.user + cpu.system) / 1000 / wall) * 100,
    cpuMillisPerBeat: beats > 0 ? (cpu.user + cpu.system) / 1000 / beats : 0,
    rssMiB: mem.rss / 2 ** 20,
    heapMiB: mem.heapUsed / 2 ** 20,
    beats
  }
  yield* Console.log(`REPORT ${JSON.stringify(report)}`)
}).pipe(Effect.scoped)

// ---------------------------------------------------------------------------------------------
// The cluster side (parent)

const fakeNode = (name: string, label: Record<string, string>, i: number): k8s.V1Node => {
  const now = new Date()
  const allocatable = { cpu: "16", memory: "64Gi", pods: "110", "nvidia.com/gpu": i % 4 === 0 ? "2" : "0" }
  return {
    metadata: { name, labels: label },
    spec: { taints: [{ key: "bai-bench/fake-node", value: "true", effect: "PreferNoSchedule" }] },
    status: {
      capacity: allocatable,
      allocatable,
      conditions: [{ type: "Ready", status: "True", reason: "KubeletReady", message: "bench", lastHeartbeatTime: now, lastTransitionTime: now }],
      addresses: [{ type: "InternalIP", address: `10.253.${Math.floor(i / 250)}.${(i % 250) + 1}` }]
    }
  }
}

const runAgent = (configFile: string, window: number) =>
  Effect.callback<AgentReport, Error>((resume) => {
    const self = fileURLToPath(import.meta.url)
    const child = spawn(process.execPath, ["--expose-gc", self, "--agent", configFile, "--window", String(window)], {
      stdio: ["ignore", "pipe", "inherit"]
    })
    let out = ""
    child.stdout.on("data", (b: Buffer) => (out += b.toString()))
    child.on("exit", (code) => {
      const line = out.split("\n").find((l) => l.startsWith("REPORT "))
      if (line === undefined) resume(Effect.fail(new Error(`agent process exited ${code} without a report:\n${out.slice(-2000)}`)))
      else resume(Effect.succeed(JSON.parse(line.slice(7)) as AgentReport))
    })
    return Effect.sync(() => void child.kill("SIGKILL"))
  })

const parentMain = Effect.gen(function*() {
  const envFile = argValue("--env") ?? path.resolve(fileURLToPath(new URL("../.testbed/dev/env.json", import.meta.url)))
  const env = JSON.parse(fs.readFileSync(envFile, "utf8")) as TestbedEnv
  const window = argNumber("--window", 30)
  const bigNodes = argNumber("--nodes", 200)
  const bigPods = argNumber("--pods", 5000)
  const run = randomBytes(3).toString("hex")
  const label = { "bai-bench/heartbeat": run }
  const ns = `bench-hb-${run}`
  const kc = new k8s.KubeConfig()
  kc.loadFromFile(env.kubeconfig)
  const core = kc.makeApiClient(k8s.CoreV1Api)
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "bai-bench-hb-"))
  const configFile = path.join(tmp, "agent.toml")
  fs.writeFileSync(configFile, `
[etcd]
namespace = "bench"
[agent]
id = "i-bench-${run}"
rpc-listen-addr = "127.0.0.1:6001"
[kubernetes]
kubeconfig = "${env.kubeconfig}"
namespace = "${ns}"
node-selector = "bai-bench/heartbeat=${run}"
registry = { url = "${env.registry.url}", pull-secret = "${env.registrySecret}" }
[logging]
level = "WARNING"
[debug]
heartbeat-interval = 3
`)

  yield* Effect.addFinalizer(() =>
    Effect.promise(async () => {
      console.error(`cleaning up: pods and namespace ${ns}, nodes labelled ${run}`)
      await core.deleteCollectionNamespacedPod({ namespace: ns, gracePeriodSeconds: 0 }).catch(() => undefined)
      await core.deleteNamespace({ name: ns }).catch(() => undefined)
      await core.deleteCollectionNode({ labelSelector: `bai-bench/heartbeat=${run}` }).catch(() => undefined)
      fs.rmSync(tmp, { recursive: true, force: true })
    })
  )
  yield* Effect.promise(() => ensureNamespace(core, ns, env.registrySecret, dockerConfigJson(env.registry)))

  let nodesMade = 0
  let podsMade = 0
  const grow = (nodes: number, pods: number) =>
    Effect.gen(function*() {
      const t0 = yield* Clock.currentTimeMillis
      yield* Effect.forEach(Array.from({ length: nodes - nodesMade }, (_, k) => nodesMade + k), (i) =>
        Effect.promise(async () => {
          const body = fakeNode(`bench-${run}-${i}`, label, i)
          await core.createNode({ body })
          const read = await core.readNode({ name: body.metadata!.name! })
          if (!(read.status?.conditions ?? []).some((c) => c.type === "Ready")) {
            read.status = body.status!
            await core.replaceNodeStatus({ name: body.metadata!.name!, body: read })
          }
        }), { concurrency: 16, discard: true })
      nodesMade = nodes
      yield* Effect.forEach(Array.from({ length: pods - podsMade }, (_, k) => podsMade + k), (i) =>
        Effect.promise(() =>
          core.createNamespacedPod({
            namespace: ns,
            body: foreignPod(`tenant-${i}`, `bench-${run}-${i % nodes}`)
          })
        ), { concurrency: 16, discard: true })
      podsMade = pods
      yield* Console.error(`cluster: ${nodes} fake nodes, ${pods} pods (written in ${((yield* Clock.currentTimeMillis) - t0) / 1000} s)`)
    })

  yield* grow(2, 50)
  const small = yield* runAgent(configFile, window)
  yield* grow(bigNodes, bigPods)
  const big = yield* runAgent(configFile, window)

  const rows: Array<[string, (r: AgentReport) => string]> = [
    ["worker nodes / foreign pods", (r) => `${r.nodes} / ${r.pods}`],
    ["initial list+watch sync (ms)", (r) => r.syncMillis.toFixed(0)],
    ["Heartbeat.assemble, median (µs)", (r) => r.assembleMicros.toFixed(1)],
    ["cold: computeSnapshot (µs)", (r) => r.coldComputeMicros.toFixed(0)],
    ["cold: snapshot+agent_info+msgpack (µs)", (r) => r.coldMicros.toFixed(0)],
    ["heartbeat message size (bytes)", (r) => String(r.heartbeatBytes)],
    [`agent CPU over ${window} s (%)`, (r) => r.cpuPercent.toFixed(2)],
    ["agent CPU per beat (ms)", (r) => r.cpuMillisPerBeat.toFixed(2)],
    ["agent RSS after GC (MiB)", (r) => r.rssMiB.toFixed(1)],
    ["agent heap used (MiB)", (r) => r.heapMiB.toFixed(1)]
  ]
  const ratio = (a: number, b: number) => (a > 0 ? `${(b / a).toFixed(1)}×` : "-")
  const ratios: Record<string, string> = {
    [rows[2]![0]]: ratio(small.assembleMicros, big.assembleMicros),
    [rows[3]![0]]: ratio(small.coldComputeMicros, big.coldComputeMicros),
    [rows[4]![0]]: ratio(small.coldMicros, big.coldMicros),
    [rows[5]![0]]: ratio(small.heartbeatBytes, big.heartbeatBytes),
    [rows[6]![0]]: ratio(small.cpuPercent, big.cpuPercent),
    [rows[8]![0]]: ratio(small.rssMiB, big.rssMiB),
    [rows[9]![0]]: ratio(small.heapMiB, big.heapMiB)
  }
  yield* Console.log(`\nheartbeat benchmark (node ${process.versions.node}, ${os.cpus().length} CPUs)`)
  yield* Console.log(`${"".padEnd(40)} ${"small".padStart(12)} ${"large".padStart(12)} ${"ratio".padStart(8)}`)
  for (const [name, f] of rows) {
    yield* Console.log(`${name.padEnd(40)} ${f(small).padStart(12)} ${f(big).padStart(12)} ${(ratios[name] ?? "").padStart(8)}`)
  }
}).pipe(Effect.scoped)

const main: Effect.Effect<void, unknown> = argValue("--agent") !== undefined ? agentMain : parentMain
NodeRuntime.runMain(main)
