/**
 * `node bench/run.ts lifecycle [--env .testbed/dev/env.json] [--kernels 50] [--concurrency 10] [--floor-beside]`
 *
 * create → Running → destroy for N kernels, C at a time, through KernelLifecycle against a running
 * testbed (`node test/testbed/cli.ts up`): real kube-apiserver, scheduler and simulated kubelet.
 * An independent pod watch (not the agent's) timestamps each pod's ADDED and first Running event, so
 * each create splits into: agent before the pod exists (validation, scratch dir, ports, POST),
 * cluster (ADDED → Running: scheduling, kubelet), and agent after Running (runner status ping, ready
 * mark; the ConfigMap/Service POSTs overlap the cluster phase). Agent overhead = total − cluster.
 *
 * The runner's own part is probed directly, as bench/execute.ts does: right after each create
 * returns, a fresh PUSH/PULL pair (not the agent's) connects to the kernel's repl ports and times a
 * `status` round trip (connect, handshake, the runner's answer; see probeRunner) — what the agent's readiness ping
 * costs the runner, not the agent. Agent own time = total − cluster − that runner probe.
 * (The testbed's kubelet marks a pod Running only once its runner has bound its ports, so no runner
 * start-up is hidden after Running here; with a runner that is still starting, the probe would
 * have to start at Running: it cannot, without stealing the agent's replies from the runner's PUSH.)
 *
 * Where the agent's time goes: the bench installs a tracer that records every span carrying a
 * `kernelId` attribute (`KernelLifecycle.create`, `CreateFlow.<stage>`) and prints, per stage, when
 * it started and ended (ms from the create call, p50) and its duration (p50, p90), beside the
 * observer's ADDED and Running. An agent without those spans prints only the observer's rows.
 *
 * The floor, in the same run and at the same concurrency: a bare client-node createNamespacedPod +
 * merge patch of a pod no node runs (the two API round trips a create cannot avoid), plus the
 * runner probe (the third one). Measured after the creates (a quiet cluster) and, with
 * `--floor-beside`, beside each create (sent at the same moment as it: the same two round trips
 * under the load the creates make, plus their own; that pod has no scheduler, so nothing else is
 * done for it).
 *
 * Where the box's time goes while the creates run (Linux): the CPU of every process as a share of
 * one core (one that ended counts with the one that reaped it: the runners that ended, with the
 * kubelet simulator), and the event-loop delay of this process (agent, observer, probes).
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as k8s from "@kubernetes/client-node"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { monitorEventLoopDelay } from "node:perf_hooks"
import { fileURLToPath } from "node:url"
import { Clock, Console, Effect, Fiber, Stream, Tracer } from "effect"
import * as Zmq from "zeromq"
import { KernelLifecycle } from "../src/kernel/KernelLifecycle.ts"
import { KubeClient } from "../src/kube/KubeClient.ts"
import { lifecycleLayer, makeSite, pythonConfig } from "../test/kernel/KernelLifecycleSupport.ts"
import { readEnvFile } from "../test/testbed/env.ts"
import { cpuSecondsOf } from "./smaps.ts"

const argValue = (flag: string): string | undefined => {
  const i = process.argv.indexOf(flag)
  return i >= 0 ? process.argv[i + 1] : undefined
}
const KERNELS = Number(argValue("--kernels") ?? 50)
const CONCURRENCY = Number(argValue("--concurrency") ?? 10)
/** Also a bare create + patch beside each create (50 more pods through the API server during the run). */
const FLOOR_BESIDE = process.argv.includes("--floor-beside")
const envFile = argValue("--env") ?? path.resolve(fileURLToPath(new URL("../.testbed/dev/env.json", import.meta.url)))

interface Sample {
  readonly start: number
  readonly created: number
  readonly destroyed: number
  readonly runnerProbe: number
  podAdded?: number
  podRunning?: number
}

/** A span of one create, in ms of wall time. */
interface SpanTime {
  readonly name: string
  readonly kernelId: string
  readonly start: number
  readonly end: number
}

/** A tracer keeping the spans that carry a `kernelId` attribute, once they end. */
const recordingTracer = (into: Array<SpanTime>) => {
  class Recorded extends Tracer.NativeSpan {
    override end(endTime: bigint, exit: Parameters<Tracer.NativeSpan["end"]>[1]) {
      super.end(endTime, exit)
      const kernelId = this.attributes.get("kernelId")
      if (typeof kernelId === "string") {
        into.push({ name: this.name, kernelId, start: Number(this.startTime) / 1e6, end: Number(endTime) / 1e6 })
      }
    }
  }
  return Tracer.make({ span: (options) => new Recorded(options) })
}

const pickP = (xs: ReadonlyArray<number>, p: number) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN
}

const stats = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  const pick = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN
  const mean = s.reduce((a, b) => a + b, 0) / Math.max(1, s.length)
  return `p50 ${pick(0.5).toFixed(0).padStart(6)} ms  p90 ${pick(0.9).toFixed(0).padStart(6)} ms  max ${pick(1).toFixed(0).padStart(6)} ms  mean ${mean.toFixed(0).padStart(6)} ms`
}

/**
 * A `status` round trip to a runner on fresh sockets (ms), connect included. The runner's repl-out
 * PUSH round-robins between the agent's PULL and ours, so `status` is sent in pairs (one answer
 * each way once both are attached; the agent drops the one nobody waits for), repeated every 20 ms
 * until one reaches us.
 */
const probeRunner = (host: string, replIn: number, replOut: number) =>
  Effect.acquireUseRelease(
    Effect.sync(() => ({ push: new Zmq.Push({ linger: 0, sendTimeout: 0 }), pull: new Zmq.Pull({ linger: 0 }) })),
    ({ pull, push }) => {
      const t0 = performance.now()
      pull.connect(`tcp://${host}:${replOut}`)
      push.connect(`tcp://${host}:${replIn}`)
      const answered: Effect.Effect<number, unknown> = Effect.tryPromise(() => pull.receive()).pipe(
        Effect.flatMap(([type]) => (type?.toString() === "status" ? Effect.sync(() => performance.now() - t0) : answered))
      )
      const ask = Effect.tryPromise(async () => {
        await push.send(["status", ""]).catch(() => undefined)
        await push.send(["status", ""]).catch(() => undefined)
      }).pipe(Effect.andThen(Effect.sleep("20 millis")), Effect.forever)
      return Effect.raceFirst(answered, ask).pipe(Effect.timeout("10 seconds"))
    },
    ({ pull, push }) => Effect.sync(() => { push.close(); pull.close() })
  )

/** CPU seconds per process (own + reaped children), by pid, with its command (Linux `/proc`; empty elsewhere). */
const processTicks = (): Map<number, { readonly comm: string; readonly seconds: number }> => {
  const out = new Map<number, { readonly comm: string; readonly seconds: number }>()
  let pids: Array<string> = []
  try {
    pids = fs.readdirSync("/proc").filter((d) => /^\d+$/.test(d))
  } catch {
    return out
  }
  for (const pid of pids) {
    try {
      const argv = fs.readFileSync(`/proc/${pid}/cmdline`, "latin1").split("\0").filter((a) => a !== "")
      // the program and, for an interpreter, its script (a kernel thread has no command line)
      const name = argv.slice(0, 2).map((a) => path.basename(a)).join(" ") || `pid ${pid}`
      out.set(Number(pid), { comm: name, seconds: cpuSecondsOf(Number(pid), { reaped: true }) })
    } catch {
      // ended meanwhile
    }
  }
  return out
}

/** The CPU each process used between two `processTicks`, in % of one core over `wallMs`, largest first. */
const boxCpu = (before: ReturnType<typeof processTicks>, after: ReturnType<typeof processTicks>, wallMs: number, self: number) => {
  const byName = new Map<string, number>()
  for (const [pid, p] of after) {
    if (pid === process.pid) continue
    const used = (p.seconds - (before.get(pid)?.seconds ?? 0)) * 1000
    if (used > 0) byName.set(p.comm, (byName.get(p.comm) ?? 0) + used)
  }
  byName.set("this process (agent, observer, probes)", self)
  return [...byName.entries()].sort((a, b) => b[1] - a[1]).map(([name, ms]) => ({ name, pct: (100 * ms) / wallMs }))
}

/** The floor: bare createNamespacedPod + merge patch (a pod no node selects, so nothing runs it). */
const floorPod = (kube: KubeClient["Service"], namespace: string, options: { readonly keep?: boolean } = {}) =>
  Effect.gen(function*() {
    const name = `floor-${crypto.randomUUID().slice(0, 8)}`
    const t0 = performance.now()
    yield* kube.core("floor create pod", (api) =>
      api.createNamespacedPod({
        namespace,
        body: {
          metadata: { name, labels: { "bench/floor": "true" } },
          spec: {
            nodeSelector: { "bench/no-such-node": "true" },
            // beside a create: no scheduler takes it (no failed attempt written back beside the creates)
            ...(options.keep === true ? { schedulerName: "bench-no-scheduler" } : {}),
            containers: [{ name: "main", image: "floor" }]
          }
        }
      }))
    yield* kube.core("floor patch pod", (api) =>
      api.patchNamespacedPod(
        { name, namespace, body: { metadata: { annotations: { "bench/ready": new Date().toISOString() } } } },
        k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch)
      ))
    const elapsed = performance.now() - t0
    if (options.keep === true) return elapsed
    yield* kube.core("floor delete pod", (api) => api.deleteNamespacedPod({ name, namespace, gracePeriodSeconds: 0 })).pipe(Effect.ignore)
    return elapsed
  })

const main = Effect.gen(function*() {
  const env = readEnvFile(envFile)
  const site = yield* makeSite(env, { createTimeout: 300 })
  const kube = yield* KubeClient.make({ kubeconfig: env.kubeconfig, requestTimeoutSeconds: 10 })
  const seen = new Map<string, { added?: number; running?: number }>()
  const spans: Array<SpanTime> = []
  // the observer's own watch
  yield* kube.watch<k8s.V1Pod>(`/api/v1/namespaces/${site.kubeNs}/pods`, {}).pipe(
    Stream.runForEach((e) =>
      Clock.currentTimeMillis.pipe(Effect.map((now) => {
        const kid = e.object?.metadata?.labels?.["backend.ai/kernel-id"]
        if (kid === undefined) return
        const s = seen.get(kid) ?? {}
        if (s.added === undefined && (e.type === "ADDED" || e.type === "MODIFIED")) s.added = now
        if (s.running === undefined && e.object.status?.phase === "Running") s.running = now
        seen.set(kid, s)
      }))
    ),
    Effect.ignore,
    Effect.forkScoped
  )
  yield* Effect.sleep("500 millis")

  const loopDelay = monitorEventLoopDelay({ resolution: 10 })
  const ticksBefore = processTicks()
  const cpuBefore = process.cpuUsage()
  const boxStart = performance.now()
  loopDelay.enable()
  const underLoad: Array<number> = []
  const samples = yield* Effect.gen(function*() {
    const lifecycle = yield* KernelLifecycle
    const ids = Array.from({ length: KERNELS }, () => crypto.randomUUID())
    const t0 = yield* Clock.currentTimeMillis
    const out = yield* Effect.forEach(ids, (kid) =>
      Effect.gen(function*() {
        const start = yield* Clock.currentTimeMillis
        // the floor beside this create: the same two round trips, sent at the same moment
        const beside = FLOOR_BESIDE ? yield* floorPod(kube, site.kubeNs, { keep: true }).pipe(Effect.forkChild) : undefined
        const result = yield* lifecycle.create(kid, pythonConfig(env))
        if (beside !== undefined) underLoad.push(yield* Fiber.join(beside))
        const created = yield* Clock.currentTimeMillis
        const runnerProbe = yield* probeRunner(result.kernel_host, result.repl_in_port, result.repl_out_port)
        const beforeDestroy = yield* Clock.currentTimeMillis
        yield* lifecycle.destroy(kid, "user-requested")
        const destroyed = yield* Clock.currentTimeMillis
        return [kid, { start, created, destroyed: destroyed - beforeDestroy + created, runnerProbe } as Sample] as const
      }), { concurrency: CONCURRENCY })
    const wall = (yield* Clock.currentTimeMillis) - t0
    return { out, wall }
  }).pipe(Effect.provide(lifecycleLayer(site)), Effect.provideService(Tracer.Tracer, recordingTracer(spans)))

  loopDelay.disable()
  const boxWall = performance.now() - boxStart
  const cpuSelf = process.cpuUsage(cpuBefore)
  const box = boxCpu(ticksBefore, processTicks(), boxWall, (cpuSelf.user + cpuSelf.system) / 1000)
  yield* kube.core("floor delete pods", (api) =>
    api.deleteCollectionNamespacedPod({ namespace: site.kubeNs, labelSelector: "bench/floor=true", gracePeriodSeconds: 0 })).pipe(Effect.ignore)
  // the floor, right after, at the same concurrency
  const floor = yield* Effect.forEach(Array.from({ length: KERNELS }), () => floorPod(kube, site.kubeNs), { concurrency: CONCURRENCY })

  const rows = samples.out.map(([kid, s]) => ({ ...s, podAdded: seen.get(kid)?.added, podRunning: seen.get(kid)?.running }))
  const complete = rows.filter((r) => r.podAdded !== undefined && r.podRunning !== undefined)
  const total = rows.map((r) => r.created - r.start)
  const beforePod = complete.map((r) => r.podAdded! - r.start)
  const cluster = complete.map((r) => r.podRunning! - r.podAdded!)
  const afterRunning = complete.map((r) => r.created - r.podRunning!)
  const overhead = complete.map((r) => r.created - r.start - (r.podRunning! - r.podAdded!))
  const runner = rows.map((r) => r.runnerProbe)
  const own = complete.map((r) => r.created - r.start - (r.podRunning! - r.podAdded!) - r.runnerProbe)
  const floorTotal = floor.map((f, i) => f + (runner[i % runner.length] ?? 0))
  const destroy = rows.map((r) => r.destroyed - r.created)
  yield* Console.log(`lifecycle: ${KERNELS} kernels, ${CONCURRENCY} at a time, wall ${(samples.wall / 1000).toFixed(1)} s (${(KERNELS / (samples.wall / 1000)).toFixed(2)} kernels/s)`)
  yield* Console.log(`  create total               ${stats(total)}`)
  yield* Console.log(`    agent, before pod exists ${stats(beforePod)}`)
  yield* Console.log(`    cluster, ADDED→Running   ${stats(cluster)}`)
  yield* Console.log(`    agent, Running→returned  ${stats(afterRunning)}`)
  yield* Console.log(`    runner status, direct probe ${stats(runner)}`)
  yield* Console.log(`  agent overhead (total−cluster) ${stats(overhead)}`)
  yield* Console.log(`  agent own time ${stats(own)}   (total − cluster − runner probe)`)
  yield* Console.log(`  floor: bare createNamespacedPod + patch ${stats(floor)}`)
  yield* Console.log(`  floor + runner probe (3 round trips) ${stats(floorTotal)}`)
  if (FLOOR_BESIDE) yield* Console.log(`  floor beside each create (sent with it)  ${stats(underLoad)}`)
  yield* Console.log(`  destroy (objects gone, event sent) ${stats(destroy)}`)
  yield* Console.log(`  (${complete.length}/${rows.length} pods seen ADDED and Running by the observer watch)`)
  // the event loop's delay beyond the sampling timer's own 10 ms
  const lag = (p: number) => Math.max(0, loopDelay.percentile(p) / 1e6 - 10).toFixed(1)
  yield* Console.log(`  this process's event loop during the creates: delay p50 ${lag(50)} ms  p90 ${lag(90)} ms  p99 ${lag(99)} ms  max ${Math.max(0, loopDelay.max / 1e6 - 10).toFixed(1)} ms`)
  if (box.length > 1) {
    const total = box.reduce((a, b) => a + b.pct, 0)
    yield* Console.log(`  the box's CPU during the creates (${(boxWall / 1000).toFixed(1)} s, ${os.availableParallelism()} cores): ${total.toFixed(0)} % of one core in all`)
    for (const b of box.slice(0, 8)) yield* Console.log(`    ${b.pct.toFixed(0).padStart(5)} %  ${b.name}`)
  }
  // the stages: first occurrence of each span per create, relative to the create call
  const startOf = new Map<string, (typeof rows)[number]>(rows.map((r, i) => [samples.out[i]![0], r]))
  const stages = new Map<string, Array<{ from: number; to: number }>>()
  for (const sp of spans) {
    const r = startOf.get(sp.kernelId)
    if (r === undefined || (sp.start < r.start - 5) || sp.start > r.created + 5) continue
    const list = stages.get(sp.name) ?? []
    list.push({ from: sp.start - r.start, to: sp.end - r.start })
    stages.set(sp.name, list)
  }
  const line = (label: string, xs: ReadonlyArray<{ from: number; to: number }>) =>
    Console.log(
      `    ${label.padEnd(32)} at ${pickP(xs.map((x) => x.from), 0.5).toFixed(1).padStart(7)} → ${pickP(xs.map((x) => x.to), 0.5).toFixed(1).padStart(7)}` +
        `  took p50 ${pickP(xs.map((x) => x.to - x.from), 0.5).toFixed(1).padStart(6)}  p90 ${pickP(xs.map((x) => x.to - x.from), 0.9).toFixed(1).padStart(6)} ms  (n=${xs.length})`
    )
  yield* Console.log(`  stages (ms from the create call, p50 start → p50 end; duration p50, p90):`)
  const ordered = [...stages.entries()].sort((a, b) => pickP(a[1].map((x) => x.from), 0.5) - pickP(b[1].map((x) => x.from), 0.5))
  for (const [name, xs] of ordered) yield* line(name, xs)
  yield* line("observer: pod ADDED → Running", complete.map((r) => ({ from: r.podAdded! - r.start, to: r.podRunning! - r.start })))
  yield* line("create returned", rows.map((r) => ({ from: r.created - r.start, to: r.created - r.start })))
  // the critical path, per create: each gap between two consecutive points of one create (p50, p90)
  const point = (kid: string, name: string, edge: "start" | "end") => {
    const sp = spans.find((x) => x.kernelId === kid && x.name === name)
    return sp === undefined ? undefined : edge === "start" ? sp.start : sp.end
  }
  const later = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined ? undefined : Math.max(a, b))
  const chain: ReadonlyArray<readonly [string, (kid: string, r: (typeof rows)[number]) => number | undefined]> = [
    ["create call", (_, r) => r.start],
    ["pod POST sent", (kid) => point(kid, "CreateFlow.podPost", "start")],
    ["pod POST answered", (kid) => point(kid, "CreateFlow.podPost", "end")],
    ["observer: pod Running", (_, r) => r.podRunning],
    ["agent: pod Running seen", (kid) => point(kid, "CreateFlow.waitRunning", "end")],
    ["runner status sent", (kid) => point(kid, "CreateFlow.runnerStatus", "start")],
    // the later of the two: what the create waits for (the patch's answer when, as in main, the patch
    // follows the runner's answer; 64a20ea, reverted, sent it beside the status question)
    ["status answered + ready patch answered", (kid) => later(point(kid, "CreateFlow.runnerStatus", "end"), point(kid, "CreateFlow.readyPatch", "end"))],
    ["create returned", (_, r) => r.created]
  ]
  if (spans.length > 0) {
    // the ready patch and the runner's answer: which one the create waited for
    const patchLast = samples.out.filter(([kid]) => {
      const status = point(kid, "CreateFlow.runnerStatus", "end")
      const patch = point(kid, "CreateFlow.readyPatch", "end")
      return status !== undefined && patch !== undefined && patch > status
    }).length
    const patchStartGaps = samples.out.flatMap(([kid]) => {
      const status = point(kid, "CreateFlow.runnerStatus", "start")
      const patch = point(kid, "CreateFlow.readyPatch", "start")
      return status === undefined || patch === undefined ? [] : [patch - status]
    })
    yield* Console.log(`  ready patch sent p50 ${pickP(patchStartGaps, 0.5).toFixed(1)} ms after the runner status question; answered after the runner's answer in ${patchLast} of ${samples.out.length} creates`)
    yield* Console.log(`  critical path, per create (gap from the previous point; p50, p90 ms):`)
    for (let i = 1; i < chain.length; i++) {
      const gaps = samples.out.flatMap(([kid], j) => {
        const r = rows[j]!
        const a = chain[i - 1]![1](kid, r)
        const b = chain[i]![1](kid, r)
        return a === undefined || b === undefined ? [] : [b - a]
      })
      yield* Console.log(`    ${`${chain[i - 1]![0]} → ${chain[i]![0]}`.padEnd(52)} p50 ${pickP(gaps, 0.5).toFixed(1).padStart(7)}  p90 ${pickP(gaps, 0.9).toFixed(1).padStart(7)}`)
    }
  }
}).pipe(Effect.scoped)

NodeRuntime.runMain(main)
