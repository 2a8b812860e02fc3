/**
 * `node bench/run.ts stats [--kernels 1000] [--nodes 4] [--cycles 10] [--interval 2]`
 *
 * One statistics cycle with 1,000 kernel pods, against the dev testbed (`node test/testbed/cli.ts up`;
 * `BAI_TESTBED_ENV=<env.json>` picks another): the real API server node proxy, the real Redis, our
 * StatsCollector as the agent runs it. Reports cycle time, the CPU share of one core at the 2 s cadence
 * (process CPU time over wall time, idle time included) and RSS. Goal: ≤ 5 % of a core.
 *
 * Why the pods are not run by the testbed kubelet: it starts one runner process (a Node.js process,
 * tens of MB) per pod and walks /proc per pod for every summary, which 1,000 pods on this 2-core
 * machine cannot afford. The collector reads only the Summary API and the KernelTable, never Pod
 * objects, so the bench registers `--nodes` simulated Nodes whose kubelet endpoint is a helper process
 * (bench/stats-kubelet.ts: one HTTPS server per node, documents built by the testbed's own `summary()`
 * with synthetic, growing usage), and fills a KernelTable with the 1,000 kernels bound to them.
 * The Nodes are deleted and the Redis keys removed at the end.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { randomUUID } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { Clock, Console, Effect } from "effect"
import { KernelTable } from "../src/kernel/KernelTable.ts"
import { KubeClient } from "../src/kube/KubeClient.ts"
import { Redis } from "../src/manager/Redis.ts"
import { decode } from "../src/codec/Msgpack.ts"
import { KubeletSummary } from "../src/stats/KubeletSummary.ts"
import { type CycleReport, StatsCollector } from "../src/stats/StatsCollector.ts"
import { readEnvFile } from "../test/testbed/env.ts"
import { registerStatsKubeletNode, startStatsKubelets } from "./fakeNodes.ts"

const argValue = (flag: string, fallback: number): number => {
  const i = process.argv.indexOf(flag)
  return i >= 0 && process.argv[i + 1] !== undefined ? Number(process.argv[i + 1]) : fallback
}
const KERNELS = argValue("--kernels", 1000)
const NODES = argValue("--nodes", 4)
const CYCLES = argValue("--cycles", 10)
const INTERVAL = argValue("--interval", 2)
const repoRoot = fileURLToPath(new URL("..", import.meta.url))
const envFile = process.env.BAI_TESTBED_ENV ?? path.join(repoRoot, ".testbed/dev/env.json")

const percentile = (sorted: ReadonlyArray<number>, p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!

const program = Effect.gen(function*() {
  const rssBefore = process.memoryUsage().rss
  const env = yield* Effect.try(() => readEnvFile(envFile))
  const kube = yield* KubeClient.make({ kubeconfig: env.kubeconfig, requestTimeoutSeconds: 10 })
  const run = randomUUID().slice(0, 6)
  const namespace = "bench-stats"
  const nodeNames = Array.from({ length: NODES }, (_, i) => `bench-stats-${run}-${i + 1}`)
  const kernels = Array.from({ length: KERNELS }, (_, i) => ({
    kernelId: randomUUID(),
    node: nodeNames[i % NODES]!,
    podUid: randomUUID()
  }))

  // the simulated kubelets, in their own process
  const dir = yield* Effect.acquireRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "bench-stats-"))),
    (d) => Effect.sync(() => fs.rmSync(d, { recursive: true, force: true }))
  )
  const ports = yield* startStatsKubelets(env.stateDir, dir, nodeNames.map((name) => ({
    name,
    pods: kernels.filter((k) => k.node === name).map((k) => ({ name: `kernel-${k.kernelId}`, namespace, uid: k.podUid }))
  })))

  // Nodes whose kubelet endpoint is that process (removed at the end)
  for (const name of nodeNames) yield* registerStatsKubeletNode(kube, name, ports[name]!)

  const registry = yield* KernelTable.make
  for (const k of kernels) {
    yield* registry.upsert({
      kernelId: k.kernelId,
      namespace,
      objectName: `kernel-${k.kernelId}`,
      podUid: k.podUid,
      status: "running",
      kernelHost: "127.0.0.1",
      replInPort: 0,
      replOutPort: 0,
      servicePorts: [],
      canonicalImage: "lablup/python:3.6-ubuntu18.04",
      image: "lablup/python:3.6-ubuntu18.04",
      resourceSpec: "",
      scratchDir: "",
      idleTimeout: 0,
      lastUsed: 0
    })
  }
  const redis = yield* Redis.make({ addr: env.redis })
  const agentId = `i-bench-stats-${run}`
  yield* Effect.addFinalizer(() =>
    redis.pipeline([["DEL", agentId, ...kernels.map((k) => k.kernelId)]]).pipe(Effect.ignore)
  )
  const summaries = yield* KubeletSummary.make().pipe(Effect.provideService(KubeClient, kube))
  const collector = yield* StatsCollector.make({
    agentId,
    intervalSeconds: INTERVAL,
    ttlSeconds: 30,
    concurrency: 8,
    nodes: Effect.succeed(nodeNames),
    kernels: registry.list
  }).pipe(
    Effect.provideService(Redis, redis),
    Effect.provideService(KubeletSummary, summaries)
  )

  // warm-up (connections, JIT)
  for (let i = 0; i < 3; i++) yield* collector.collectOnce
  const check = yield* collector.collectOnce
  if (!check.written || check.kernels !== KERNELS || check.nodeFailures > 0) {
    return yield* Console.error(`bench: cycle incomplete: ${JSON.stringify(check)}`)
  }

  // measured: CYCLES cycles at the real cadence
  const reports: Array<CycleReport> = []
  const cpu0 = process.cpuUsage()
  const start = yield* Clock.currentTimeMillis
  for (let i = 0; i < CYCLES; i++) {
    reports.push(yield* collector.collectOnce)
    const next = start + (i + 1) * INTERVAL * 1000
    yield* Effect.sleep(`${Math.max(0, next - (yield* Clock.currentTimeMillis))} millis`)
  }
  const wall = (yield* Clock.currentTimeMillis) - start
  const cpu = process.cpuUsage(cpu0)
  const { rss } = process.memoryUsage()
  // retained heap (after a full GC when run with --expose-gc)
  ;(globalThis as { gc?: () => void }).gc?.()
  const { heapUsed } = process.memoryUsage()
  const millis = reports.map((r) => r.millis).sort((a, b) => a - b)
  const sample = decode((yield* redis.getBuffer(kernels[0]!.kernelId))!) as Record<string, unknown>
  const agent = decode((yield* redis.getBuffer(agentId))!) as { devices: { mem: Record<string, unknown> } }

  yield* Console.log([
    `stats bench: ${KERNELS} kernels on ${NODES} nodes, ${CYCLES} cycles every ${INTERVAL} s (Node ${process.version})`,
    `  cycle time     p50 ${percentile(millis, 50)} ms, max ${millis[millis.length - 1]} ms`,
    `  CPU            ${(((cpu.user + cpu.system) / 1000 / wall) * 100).toFixed(2)} % of one core (user ${(cpu.user / 1000).toFixed(0)} ms, system ${(cpu.system / 1000).toFixed(0)} ms over ${(wall / 1000).toFixed(1)} s)`,
    `  RSS            ${(rss / 2 ** 20).toFixed(1)} MiB (${(rssBefore / 2 ** 20).toFixed(1)} MiB at start; JS heap ${(globalThis as { gc?: unknown }).gc !== undefined ? "retained after GC" : "in use"} ${(heapUsed / 2 ** 20).toFixed(1)} MiB)`,
    `  written/cycle  ${reports[0]!.kernels + 1} keys, ${(reports[0]!.bytes / 1024).toFixed(0)} KiB msgpack, all written: ${reports.every((r) => r.written)}`,
    `  check          kernel key has ${Object.keys(sample).length} metrics; agent key has ${Object.keys(agent.devices.mem).length} devices`
  ].join("\n"))
}).pipe(Effect.scoped)

NodeRuntime.runMain(program)
