// StatsCollector on the testbed: real kubelet summaries (through the API server node proxy), real Redis,
// the manager's side played by Python (python3-redis + msgpack.unpackb), kubectl as the observer.
import { assert, describe, it } from "@effect/vitest"
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { randomUUID } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { Effect, Fiber, Metric, Queue, References, Schedule } from "effect"
import { inject } from "vitest"
import { type KernelInfo, KernelTable } from "../../src/kernel/KernelTable.ts"
import { KubeClient } from "../../src/kube/KubeClient.ts"
import { Redis } from "../../src/manager/Redis.ts"
import { decode } from "../../src/codec/Msgpack.ts"
import { KubeletSummary } from "../../src/stats/KubeletSummary.ts"
import { KernelMetrics, NodeMetrics } from "../../src/stats/StatFormat.ts"
import { listWorkerNodes, StatsCollector, writeFailuresTotal } from "../../src/stats/StatsCollector.ts"
import { redisServer } from "../manager/RedisServer.ts"
import { freshKubeNamespace, type TestbedEnv } from "../testbed/env.ts"
import { RunnerClient } from "../testbed/runnerClient.ts"

const env: TestbedEnv = inject("testbed")
const exec = promisify(execFile)
const INTERVAL = 1

const kubectl = (...args: Array<string>) =>
  Effect.promise(() => exec(env.kubectl, ["--kubeconfig", env.kubeconfig, ...args], { maxBuffer: 64 << 20 }).then((r) => r.stdout))
const apply = (manifest: unknown) =>
  Effect.gen(function*() {
    const file = path.join(env.stateDir, `stats-${randomUUID()}.json`)
    fs.writeFileSync(file, JSON.stringify(manifest))
    yield* kubectl("apply", "-f", file).pipe(Effect.ensuring(Effect.sync(() => fs.rmSync(file, { force: true }))))
  })
const summaryOf = (node: string) =>
  kubectl("get", "--raw", `/api/v1/nodes/${node}/proxy/stats/summary`).pipe(Effect.map((s) => JSON.parse(s) as any))

const agentLabel = "i-stats-test"
const kernelPod = (ns: string, kid: string, node: string) => ({
  apiVersion: "v1",
  kind: "Pod",
  metadata: {
    name: `kernel-${kid}`,
    namespace: ns,
    labels: { "app.kubernetes.io/managed-by": "bai-k8s-agent", "backend.ai/kernel-id": kid, "backend.ai/agent-id": agentLabel }
  },
  spec: {
    nodeName: node,
    restartPolicy: "Never",
    imagePullSecrets: [{ name: env.registrySecret }],
    containers: [{
      name: "kernel",
      image: `${env.registry.host}/lablup/python:3.6-ubuntu18.04`,
      ports: [{ containerPort: 2000, name: "repl-in" }, { containerPort: 2001, name: "repl-out" }],
      volumeMounts: [{ name: "work", mountPath: "/home/work" }]
    }],
    volumes: [{ name: "work", hostPath: { path: workDir(ns, kid), type: "DirectoryOrCreate" } }]
  }
})
const workDir = (ns: string, kid: string) => path.join(env.scratchRoot, ns, kid, "work")
const kernelService = (ns: string, kid: string) => ({
  apiVersion: "v1",
  kind: "Service",
  metadata: { name: `kernel-${kid}`, namespace: ns },
  spec: {
    type: "NodePort",
    selector: { "backend.ai/kernel-id": kid },
    ports: [{ name: "repl-in", port: 2000, targetPort: 2000 }, { name: "repl-out", port: 2001, targetPort: 2001 }]
  }
})

const kernelInfo = (ns: string, kid: string, podUid: string): KernelInfo => ({
  kernelId: kid,
  namespace: ns,
  objectName: `kernel-${kid}`,
  podUid,
  status: "running",
  kernelHost: "",
  replInPort: 0,
  replOutPort: 0,
  servicePorts: [],
  canonicalImage: "lablup/python:3.6-ubuntu18.04",
  image: "lablup/python:3.6-ubuntu18.04",
  resourceSpec: "",
  scratchDir: workDir(ns, kid),
  idleTimeout: 0,
  lastUsed: 0
})

/** Kernel pods bound to the testbed nodes, Running; returns their pod uids. */
const startKernels = (ns: string, kids: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    for (const [i, kid] of kids.entries()) yield* apply(kernelPod(ns, kid, env.nodes[i % env.nodes.length]!.name))
    const uids: Array<string> = []
    for (const kid of kids) {
      const pod = yield* kubectl("-n", ns, "get", "pod", `kernel-${kid}`, "-o", "json").pipe(
        Effect.map((s) => JSON.parse(s) as any),
        Effect.filterOrFail((p) => p.status?.phase === "Running"),
        Effect.delay("200 millis"),
        Effect.eventually,
        Effect.timeout("60 seconds"),
        Effect.orDie
      )
      uids.push(pod.metadata.uid)
    }
    return uids
  })

/** The Python reader: one parsed JSON line per rewrite of the agent key. */
const pythonReader = (redisAddr: string, agentId: string, kids: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const lines = yield* Queue.unbounded<any>()
    const script = fileURLToPath(new URL("./stat_reader.py", import.meta.url))
    const child: ChildProcess = yield* Effect.acquireRelease(
      Effect.sync(() => spawn("/usr/bin/python3", [script, redisAddr, agentId, ...kids], { stdio: ["pipe", "pipe", "inherit"] })),
      (c) => Effect.sync(() => void c.kill("SIGKILL"))
    )
    let partial = ""
    child.stdout!.on("data", (chunk: Buffer) => {
      partial += chunk.toString("utf8")
      const parts = partial.split("\n")
      partial = parts.pop()!
      for (const line of parts) Queue.offerUnsafe(lines, JSON.parse(line))
    })
    return lines
  })

const within = (v: string | null, lo: number, hi: number, tol: number, what: string) => {
  assert.isNotNull(v, what)
  const x = Number(v)
  assert.isTrue(x >= Math.min(lo, hi) - tol && x <= Math.max(lo, hi) + tol, `${what}: ${x} not within [${lo}, ${hi}] ± ${tol}`)
}

const collectorFor = (redisAddr: string, agentId: string, kernels: ReadonlyArray<KernelInfo> = []) =>
  Effect.gen(function*() {
    const kube = yield* KubeClient.make({ kubeconfig: env.kubeconfig, requestTimeoutSeconds: 10 })
    const registry = yield* KernelTable.make
    for (const k of kernels) yield* registry.upsert(k)
    const redis = yield* Redis.make({ addr: redisAddr })
    const summaries = yield* KubeletSummary.make().pipe(Effect.provideService(KubeClient, kube))
    const collector = yield* StatsCollector.make({
      agentId,
      intervalSeconds: INTERVAL,
      ttlSeconds: 30,
      concurrency: 8,
      // the testbed's nodes (a shared testbed may hold other tests' fake nodes)
      nodes: Effect.succeed(env.nodes.map((n) => n.name)),
      kernels: registry.list
    }).pipe(
      Effect.provideService(Redis, redis),
      Effect.provideService(KubeletSummary, summaries)
    )
    const loop = yield* Effect.forkScoped(StatsCollector.loop(collector, INTERVAL))
    const workers = yield* listWorkerNodes(kube, "").pipe(Effect.orDie)
    for (const n of env.nodes) assert.include(workers, n.name)
    return { registry, redis, collector, loop }
  })

const nextLineAfter = (lines: Queue.Dequeue<any>, t: number) =>
  Queue.take(lines).pipe(
    Effect.repeat({ until: (l) => l.t >= t }),
    Effect.timeout("30 seconds"),
    Effect.orDie
  )

describe("StatsCollector", () => {
  it.live("writes <agent_id> and <kernel_id> every cycle with the kubelet's numbers; finalize keeps the last stat", () =>
    Effect.gen(function*() {
      const ns = yield* Effect.promise(() => freshKubeNamespace(env, "stats"))
      const kids = [randomUUID(), randomUUID()]
      yield* apply(kernelService(ns, kids[0]!))
      const uids = yield* startKernels(ns, kids)
      fs.writeFileSync(path.join(workDir(ns, kids[0]!), "data.bin"), Buffer.alloc(12345, 1))
      const agentId = `i-stats-${randomUUID().slice(0, 8)}`
      const { collector, redis } = yield* collectorFor(env.redis, agentId, kids.map((kid, i) => kernelInfo(ns, kid, uids[i]!)))
      const lines = yield* pythonReader(env.redis, agentId, kids)

      // CPU and network traffic in kernel 0 (through its NodePort, which the testbed kubelet counts)
      const svc = JSON.parse(yield* kubectl("-n", ns, "get", "service", `kernel-${kids[0]}`, "-o", "json"))
      const port = (name: string) => svc.spec.ports.find((p: any) => p.name === name).nodePort as number
      const runner = yield* Effect.acquireRelease(
        Effect.sync(() => new RunnerClient(env.nodes[0]!.ip, port("repl-in"), port("repl-out"))),
        (c) => Effect.sync(() => c.close())
      )

      // every cycle: both keys decode, every metric present, strings
      const netSeen = { rx: 0, tx: 0, idle: [] as Array<string> }
      const noteNet = (line: any) => {
        netSeen.rx = Math.max(netSeen.rx, Number(line.kernels[kids[0]!]?.net_rx.current ?? 0))
        netSeen.tx = Math.max(netSeen.tx, Number(line.kernels[kids[0]!]?.net_tx.current ?? 0))
        for (const k of ["net_rx", "net_tx"]) {
          const v = line.kernels[kids[1]!]?.[k].current
          if (v !== undefined && !netSeen.idle.includes(v)) netSeen.idle.push(v)
        }
      }
      const first = yield* nextLineAfter(lines, 0)
      // the code goes in only once a cycle has stored its counters: bytes counted before the collector's
      // first reading never show as a rate (under load the first cycle can come after the send)
      yield* Effect.promise(() => runner.send("code", "import time\nt = time.time()\nwhile time.time() - t < 3: pass\nprint('x' * 100000)"))
      const busy = yield* Effect.promise(() => runner.collect(["finished"])).pipe(Effect.forkScoped)
      for (let i = 0; i < 3; i++) {
        const line = i === 0 ? first : yield* nextLineAfter(lines, 0)
        noteNet(line)
        assert.strictEqual(line.agent_type, "string")
        assert.deepStrictEqual(Object.keys(line.agent.node).sort(), NodeMetrics.map((m) => m.key).sort())
        for (const m of NodeMetrics) assert.deepStrictEqual(Object.keys(line.agent.devices[m.key]).sort(), env.nodes.map((n) => n.name).sort())
        assert.isString(line.cpu_cur_pct)
        assert.isString(line.mem_cur_bytes)
        // a key with no expiry answers TTL -1: require 0 < ttl <= 30
        assert.isAbove(line.agent_ttl, 0, "agent key has no expiry")
        assert.isAtMost(line.agent_ttl, 30)
        for (const kid of kids) {
          const stat = line.kernels[kid]
          assert.isNotNull(stat, `kernel ${kid} missing`)
          assert.deepStrictEqual(Object.keys(stat).sort(), KernelMetrics.map((m) => m.key).sort())
          for (const m of KernelMetrics) {
            assert.isString(stat[m.key].current)
            assert.strictEqual(stat[m.key].unit_hint, m.unitHint)
            for (const s of m.stats) assert.isString(stat[m.key][`stats.${s}`])
          }
          assert.isAbove(line.kernel_ttls[kid], 0, `kernel key ${kid} has no expiry`)
          assert.isAtMost(line.kernel_ttls[kid], 30)
        }
      }
      yield* Fiber.join(busy)
      // every cycle up to two after the output left: its rate shows in one of them
      const joined = Date.now() / 1000
      yield* Queue.take(lines).pipe(
        Effect.tap((l) => Effect.sync(() => noteNet(l))),
        Effect.repeat({ until: (l) => l.t >= joined + 2 * INTERVAL + 0.3 }),
        Effect.timeout("30 seconds"),
        Effect.orDie
      )

      // the same numbers as the Summary API at that moment: A (kubectl) ≤ the stat's reading ≤ B (kubectl)
      const nodes = env.nodes.map((n) => n.name)
      const before = yield* Effect.forEach(nodes, summaryOf)
      const tA = Date.now() / 1000
      const line = yield* nextLineAfter(lines, tA + 2 * INTERVAL + 0.3)
      const after = yield* Effect.forEach(nodes, summaryOf)
      const sum = (docs: Array<any>, f: (d: any) => number) => docs.reduce((a, d) => a + f(d), 0)
      const podOf = (doc: any, kid: string) => doc.pods.find((p: any) => p.podRef.name === `kernel-${kid}` && p.podRef.namespace === ns)
      within(line.agent.node.mem.current, sum(before, (d) => d.node.memory.workingSetBytes), sum(after, (d) => d.node.memory.workingSetBytes), 2 << 20, "node mem")
      assert.strictEqual(
        Number(line.agent.node.mem.capacity),
        sum(after, (d) => d.node.memory.workingSetBytes + d.node.memory.availableBytes)
      )
      within(line.agent.node.disk.current, sum(before, (d) => d.node.fs.usedBytes), sum(after, (d) => d.node.fs.usedBytes), 0, "node disk")
      for (const [i, node] of nodes.entries()) {
        within(line.agent.devices.mem[node].current, before[i].node.memory.workingSetBytes, after[i].node.memory.workingSetBytes, 2 << 20, `mem of ${node}`)
      }
      for (const [i, kid] of kids.entries()) {
        const a = podOf(before[i % nodes.length], kid)
        const b = podOf(after[i % nodes.length], kid)
        const stat = line.kernels[kid]
        within(stat.cpu_used.current, a.cpu.usageCoreNanoSeconds / 1e6, b.cpu.usageCoreNanoSeconds / 1e6, 0.001, `cpu_used of ${kid}`)
        within(stat.mem.current, a.memory.workingSetBytes, b.memory.workingSetBytes, 2 << 20, `mem of ${kid}`)
        within(stat.io_scratch_size.current, a.volume[0].usedBytes, b.volume[0].usedBytes, 0, `scratch of ${kid}`)
        assert.strictEqual(stat.io_read.current, "0")
        assert.strictEqual(stat.cpu_util.capacity, "1000")
        // net_* current is a rate (bytes/s over the last window): no traffic meanwhile → exactly 0
        if (a.network.rxBytes === b.network.rxBytes) assert.strictEqual(stat.net_rx.current, "0")
        if (a.network.txBytes === b.network.txBytes) assert.strictEqual(stat.net_tx.current, "0")
      }
      assert.isAtLeast(Number(line.kernels[kids[0]!].io_scratch_size.current), 12345)
      // the busy loop showed up as utilization and the output as traffic at some point
      const k0 = line.kernels[kids[0]!]
      // (the machine is shared and loaded: only require clearly more than an idle runner's ~0)
      assert.isAbove(Number(k0.cpu_util["stats.max"]), 50, "cpu_util max (msec/s) after a 3 s busy loop")
      assert.isAbove(Number(k0.cpu_used.current), 100)
      // the code went in and the 100,000 x's came out through kernel 0's NodePort: some cycle showed
      // each as a rate above zero (and the bytes the kubelet counted cover the output); kernel 1 had
      // no traffic, its rates stayed 0
      assert.isAbove(netSeen.rx, 0, "net_rx of the kernel that was sent code never rose above 0")
      assert.isAbove(netSeen.tx, 0, "net_tx of the kernel that printed 100,000 bytes never rose above 0")
      assert.isAtLeast(podOf(after[0], kids[0]!).network.txBytes, 100_000)
      assert.deepStrictEqual(netSeen.idle, ["0"])

      // finalize: the last stat stays for 5 minutes; later cycles do not rewrite it
      const lastWritten = decode((yield* redis.getBuffer(kids[0]!))!) as any
      yield* collector.finalize(kids[0]!)
      const ttl1 = (yield* redis.command("TTL", kids[0]!)) as number
      assert.isAbove(ttl1, 290)
      assert.deepStrictEqual(Object.keys(decode((yield* redis.getBuffer(kids[0]!))!) as any).sort(), Object.keys(lastWritten).sort())
      const later = yield* nextLineAfter(lines, Date.now() / 1000 + 2 * INTERVAL + 0.3)
      assert.isAbove(later.kernel_ttls[kids[0]!], 290)
      assert.isAbove(later.kernel_ttls[kids[1]!], 0)
      assert.isAtMost(later.kernel_ttls[kids[1]!], 30)
      yield* kubectl("delete", "namespace", ns, "--wait=false")
    }).pipe(Effect.provideService(References.MinimumLogLevel, "Warn")), { timeout: 120_000 })

  it.live("Redis restarted mid-run: the loop keeps going and writes again once Redis is back", () =>
    Effect.gen(function*() {
      const server = yield* redisServer
      const agentId = `i-stats-${randomUUID().slice(0, 8)}`
      const { loop, redis } = yield* collectorFor(server.addr, agentId)
      const present = redis.getBuffer(agentId).pipe(Effect.flatMap((v) => (v !== undefined ? Effect.succeed(v) : Effect.fail("absent"))))
      yield* present.pipe(Effect.delay("200 millis"), Effect.eventually)
      const failuresBefore = (yield* Metric.value(writeFailuresTotal)).count
      yield* server.kill
      // the loop goes on while Redis is away: two failed writes counted (a bounded wait, no sleep)
      const failuresDuring = yield* Metric.value(writeFailuresTotal).pipe(
        Effect.map((v) => Number(v.count)),
        Effect.repeat({ until: (n) => n - Number(failuresBefore) >= 2, schedule: Schedule.spaced("100 millis") }),
        Effect.timeout("30 seconds")
      )
      assert.isAtLeast(failuresDuring - Number(failuresBefore), 2)
      yield* server.start // empty: nothing saved
      yield* present.pipe(Effect.delay("200 millis"), Effect.eventually, Effect.timeout("20 seconds"))
      assert.isUndefined(loop.pollUnsafe(), "the loop is still running")
    }).pipe(Effect.provideService(References.MinimumLogLevel, "None")), { timeout: 60_000 })
})

