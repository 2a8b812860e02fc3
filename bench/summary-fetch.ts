/**
 * `node bench/run.ts summary-fetch [--env <env.json>] [--fetches 400] [--rounds 3] [--concurrency 8] [--warmup 200]
 *   [--baseline <other tree>/src/stats/KubeletSummary.ts] [--only current|baseline] [--floor] [--credentials] [--kernel-pods 5]`
 *
 * The agent's cost of ONE kubelet Summary read (issue 17 goal 4: the stats loop reads every node's
 * `/api/v1/nodes/{n}/proxy/stats/summary` through the API server every 2 s, so at 200 nodes it makes
 * 100 reads a second). In process: `KubeletSummary.make` of this tree (and of `--baseline`'s file)
 * against a running testbed (`TESTBED_NAME=x node test/testbed/cli.ts up`; `--env` or
 * `BAI_TESTBED_ENV` names its env.json, default the dev testbed), through the real API server's node
 * proxy to two fake nodes whose kubelet is bench/stats-kubelet.ts in its own process (its CPU is not
 * counted): one with 0 pods, one with 25 (the 5,000 pods / 200 nodes shape, pods of another tenant
 * as `--foreign-pods` of bench/memory.ts makes them). Each measurement is `--fetches` reads of one node,
 * `--concurrency` at a time, after a warm-up; it prints this process's CPU µs per read
 * (process.cpuUsage: the request, TLS, the response, JSON.parse, the projection, Effect), the GC pause
 * µs per read (PerformanceObserver "gc") and the latency p50 / p90. The implementations alternate
 * (which goes first flips every round) under the same noise; `--rounds` rounds, medians compared.
 *
 * `--baseline`: a KubeletSummary.ts of another checkout (e.g. `git show main:src/stats/KubeletSummary.ts
 * > /tmp/base/KubeletSummary.ts`). It is copied next to this file (bench/.baseline-<pid>/, removed at
 * the end) with its relative imports pointed at this tree's src/stats/, so both use the same effect
 * and KubeClient instances.
 *
 * `--kernel-pods K`: K of the 25-pod node's pods are in a kernels' namespace and every read asks for that
 * namespace only (`fetch(node, namespaces)`, as the stats loop does: 5 of 25 at 1,000 kernels on 200
 * nodes); a baseline file without the cut parses all 25 (the stats loop then drops the others).
 *
 * `--floor`: also, once per round and node, the same reads as bare `https.request`s on a keep-alive
 * agent (the body dropped, no parsing, no Effect): what Node's HTTPS client alone costs per read.
 *
 * `--credentials`: also the cost of `kube.config.applyToHTTPSOptions` alone (what main's fetch called
 * per read) for the testbed's token user, a client-certificate user (CA, certificate and key files) and
 * an in-cluster-shaped token-file user with and without its CA file, µs per call.
 *
 * Benchmarks run under the machine-wide lock: `flock /work/bench.lock node bench/run.ts summary-fetch …`.
 * The fake Nodes are deleted at the end.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as k8s from "@kubernetes/client-node"
import { randomUUID } from "node:crypto"
import * as fs from "node:fs"
import * as https from "node:https"
import * as os from "node:os"
import * as path from "node:path"
import * as diagnostics from "node:diagnostics_channel"
import { PerformanceObserver } from "node:perf_hooks"
import { fileURLToPath, pathToFileURL } from "node:url"
import { Console, Effect, Schema } from "effect"
import { KubeClient } from "../src/kube/KubeClient.ts"
import * as Current from "../src/stats/KubeletSummary.ts"
import { readEnvFile } from "../test/testbed/env.ts"
import { FOREIGN_CONTAINER, registerStatsKubeletNode, startStatsKubelets } from "./fakeNodes.ts"

const argString = (flag: string): string | undefined => {
  const i = process.argv.indexOf(flag)
  return i >= 0 ? process.argv[i + 1] : undefined
}
const argNumber = (flag: string, fallback: number): number => {
  const v = argString(flag)
  return v === undefined ? fallback : Number(v)
}
const FETCHES = argNumber("--fetches", 400)
const ROUNDS = argNumber("--rounds", 3)
const CONCURRENCY = argNumber("--concurrency", 8)
const WARMUP = argNumber("--warmup", 200)
const BASELINE = argString("--baseline")
const ONLY = argString("--only")
const CREDENTIALS = process.argv.includes("--credentials")
const FLOOR = process.argv.includes("--floor")
const repoRoot = fileURLToPath(new URL("..", import.meta.url))
const envFile = argString("--env") ?? process.env.BAI_TESTBED_ENV ?? path.join(repoRoot, ".testbed/dev/env.json")
const PODS_PER_NODE = 25
/** Of the 25-pod node's pods, how many are in the kernels' namespace; with any, reads ask for that namespace only. */
const KERNEL_PODS = argNumber("--kernel-pods", 0)
const KERNELS_NS = "bench-sf-kernels"
const NAMESPACES = KERNEL_PODS > 0 ? new Set([KERNELS_NS]) : undefined

class BenchError extends Schema.TaggedError<BenchError>()("BenchError", { message: Schema.String }) {}

type Fetch = (node: string, namespaces?: ReadonlySet<string>) => Effect.Effect<Current.Summary, unknown>
type Make = (options?: { readonly timeoutSeconds?: number; readonly maxSockets?: number }) => Effect.Effect<{ readonly fetch: Fetch }, unknown, KubeClient>

/** `file` copied into bench/.baseline-<pid>/ with its relative imports resolved against this tree's src/stats/. */
const importBaseline = (file: string) =>
  Effect.gen(function*() {
    const dir = yield* Effect.acquireRelease(
      Effect.sync(() => fs.mkdtempSync(path.join(repoRoot, "bench", ".baseline-"))),
      (d) => Effect.sync(() => fs.rmSync(d, { recursive: true, force: true }))
    )
    const here = new URL("../src/stats/KubeletSummary.ts", import.meta.url)
    const source = fs.readFileSync(file, "utf8").replace(/(from\s+")(\.{1,2}\/[^"]+)(")/g, (_m, a: string, spec: string, b: string) => `${a}${new URL(spec, here).href}${b}`)
    const copy = path.join(dir, "KubeletSummary.ts")
    fs.writeFileSync(copy, source)
    const mod = (yield* Effect.promise(() => import(pathToFileURL(copy).href))) as { KubeletSummary: { make: Make } }
    return mod.KubeletSummary.make
  })

const percentile = (sorted: ReadonlyArray<number>, p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
const median = (xs: ReadonlyArray<number>): number => percentile([...xs].sort((a, b) => a - b), 50)

let gcMs = 0
new PerformanceObserver((l) => {
  for (const e of l.getEntries()) gcMs += e.duration
}).observe({ entryTypes: ["gc"] })

/** TCP connections this process opened (a keep-alive pool that works opens none in the steady state). */
let connections = 0
diagnostics.subscribe("net.client.socket", () => void connections++)

interface Point { readonly cpuUs: number; readonly systemUs: number; readonly gcUs: number; readonly p50: number; readonly p90: number; readonly connections: number }

/** `FETCHES` reads of `node`, CONCURRENCY at a time: CPU and GC µs per read, latency percentiles (ms). */
const measure = (fetch: Fetch, node: string, pods: number, cuts: boolean) =>
  Effect.gen(function*() {
    // with NAMESPACES, this tree's fetch gives the kernel pods only, an older file's all of them
    const want = NAMESPACES !== undefined && pods > 0 && cuts ? KERNEL_PODS : pods
    const check = (s: Current.Summary) =>
      s.node.nodeName === node && (s.pods?.length ?? 0) === want
        ? Effect.void
        : Effect.fail(new BenchError({ message: `${node}: summary of ${s.node.nodeName} with ${s.pods?.length ?? 0} pods` }))
    // warm-up: connections, JIT (the first round's points are otherwise the cold code's)
    yield* Effect.forEach(Array.from({ length: Math.max(4 * CONCURRENCY, WARMUP) }), () => fetch(node, NAMESPACES).pipe(Effect.flatMap(check)), { concurrency: CONCURRENCY, discard: true })
    const latencies: Array<number> = []
    const gc0 = gcMs
    const connections0 = connections
    const cpu0 = process.cpuUsage()
    yield* Effect.forEach(Array.from({ length: FETCHES }), () =>
      Effect.suspend(() => {
        const t0 = performance.now()
        return fetch(node, NAMESPACES).pipe(Effect.flatMap(check), Effect.tap(() => Effect.sync(() => void latencies.push(performance.now() - t0))))
      }), { concurrency: CONCURRENCY, discard: true })
    const cpu = process.cpuUsage(cpu0)
    const sorted = latencies.sort((a, b) => a - b)
    return { cpuUs: (cpu.user + cpu.system) / FETCHES, systemUs: cpu.system / FETCHES, gcUs: ((gcMs - gc0) * 1000) / FETCHES, p50: percentile(sorted, 50), p90: percentile(sorted, 90), connections: connections - connections0 } satisfies Point
  })

/**
 * The floor: the same reads as bare `https.request`s on a keep-alive agent, 8 at a time, the body
 * gathered and dropped (no parsing, no Effect): CPU µs per read.
 */
const floor = (env: { readonly apiserver: string; readonly apiserverToken: string }, node: string) =>
  Effect.promise(async () => {
    const server = new URL(env.apiserver)
    const agent = new https.Agent({ keepAlive: true, maxSockets: CONCURRENCY, rejectUnauthorized: false })
    const options = {
      agent, hostname: server.hostname, port: Number(server.port), path: `/api/v1/nodes/${node}/proxy/stats/summary`,
      headers: { authorization: `Bearer ${env.apiserverToken}`, accept: "application/json" }
    }
    const get = () =>
      new Promise<void>((resolve, reject) => {
        const req = https.request(options, (res) => {
          res.on("data", () => {})
          res.on("end", () => process.nextTick(resolve))
        })
        req.on("error", reject)
        req.end()
      })
    const run = async (count: number) => {
      let i = 0
      await Promise.all(Array.from({ length: CONCURRENCY }, async () => { while (i++ < count) await get() }))
    }
    await run(WARMUP)
    const cpu0 = process.cpuUsage()
    await run(FETCHES)
    const cpu = process.cpuUsage(cpu0)
    agent.destroy()
    return (cpu.user + cpu.system) / FETCHES
  })

/** µs per `applyToHTTPSOptions` call of a kubeconfig (what the fetch of main does per read). */
const credentialsCost = (kubeconfig: string, calls: number) =>
  Effect.promise(async () => {
    const kc = new k8s.KubeConfig()
    kc.loadFromFile(kubeconfig)
    for (let i = 0; i < 200; i++) await kc.applyToHTTPSOptions({} as https.RequestOptions)
    const cpu0 = process.cpuUsage()
    for (let i = 0; i < calls; i++) await kc.applyToHTTPSOptions({} as https.RequestOptions)
    const cpu = process.cpuUsage(cpu0)
    return (cpu.user + cpu.system) / calls
  })

const program = Effect.gen(function*() {
  const env = yield* Effect.try({ try: () => readEnvFile(envFile), catch: (e) => new BenchError({ message: `${envFile}: ${String(e)}` }) })
  const kube = yield* KubeClient.make({ kubeconfig: env.kubeconfig, requestTimeoutSeconds: 10 })
  const run = randomUUID().slice(0, 6)
  const nodes = [
    { name: `bench-sf-${run}-0`, pods: [] as Array<{ name: string; namespace: string; uid: string; container: string }> },
    {
      name: `bench-sf-${run}-25`,
      pods: Array.from({ length: PODS_PER_NODE }, (_, i) => ({
        name: `tenant-${i}`, namespace: i < KERNEL_PODS ? KERNELS_NS : "bench-sf-tenants", uid: randomUUID(), container: FOREIGN_CONTAINER
      }))
    }
  ]
  const dir = yield* Effect.acquireRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "bench-summary-fetch-"))),
    (d) => Effect.sync(() => fs.rmSync(d, { recursive: true, force: true }))
  )
  const ports = yield* startStatsKubelets(env.stateDir, dir, nodes)
  for (const { name } of nodes) yield* registerStatsKubeletNode(kube, name, ports[name]!)

  const impls: Array<{ readonly name: string; readonly make: Make }> = []
  if (ONLY !== "baseline") impls.push({ name: "current", make: Current.KubeletSummary.make as Make })
  if (BASELINE !== undefined && ONLY !== "current") impls.push({ name: "baseline", make: yield* importBaseline(BASELINE) })
  const made = yield* Effect.forEach(impls, (i) => i.make().pipe(Effect.provideService(KubeClient, kube), Effect.map((s) => ({ name: i.name, fetch: s.fetch }))))

  yield* Console.log(
    `summary-fetch: ${FETCHES} reads per point, concurrency ${CONCURRENCY}, ${ROUNDS} rounds, through ${env.apiserver}'s node proxy (Node ${process.version}; load ${os.loadavg().map((l) => l.toFixed(2)).join(" ")})`
  )
  const points = new Map<string, Array<Point>>()
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? made : [...made].reverse()
    for (const impl of order) {
      for (const node of nodes) {
        const p = yield* measure(impl.fetch, node.name, node.pods.length, impl.name === "current")
        const key = `${impl.name} ${String(node.pods.length).padStart(2)} pods`
        points.set(key, [...(points.get(key) ?? []), p])
        if (FLOOR && impl === order[order.length - 1]) {
          const us = yield* floor(env, node.name)
          const floorKey = `floor ${String(node.pods.length).padStart(2)} pods`
          points.set(floorKey, [...(points.get(floorKey) ?? []), { cpuUs: us, systemUs: 0, gcUs: 0, p50: 0, p90: 0, connections: 0 }])
          yield* Console.log(`  round ${r + 1} ${floorKey}: ${us.toFixed(0)} CPU µs/read (bare https.request, no parsing)`)
        }
        yield* Console.log(`  round ${r + 1} ${key}: ${p.cpuUs.toFixed(0)} CPU µs/read (system ${p.systemUs.toFixed(0)}), GC ${p.gcUs.toFixed(0)} µs/read, p50 ${p.p50.toFixed(2)} ms, p90 ${p.p90.toFixed(2)} ms, ${p.connections} new connections`)
      }
    }
  }
  yield* Console.log(`medians (load ${os.loadavg().map((l) => l.toFixed(2)).join(" ")}):`)
  for (const [key, ps] of points) {
    yield* Console.log(
      `  ${key}: ${median(ps.map((p) => p.cpuUs)).toFixed(0)} CPU µs/read (${ps.map((p) => p.cpuUs.toFixed(0)).join(", ")}), GC ${median(ps.map((p) => p.gcUs)).toFixed(0)} µs/read, p50 ${median(ps.map((p) => p.p50)).toFixed(2)} ms`
    )
  }
  for (const node of nodes) {
    const pods = String(node.pods.length).padStart(2)
    const c = points.get(`current ${pods} pods`), b = points.get(`baseline ${pods} pods`)
    if (c !== undefined && b !== undefined) {
      yield* Console.log(`  current / baseline, ${pods} pods: CPU per read ${(median(c.map((p) => p.cpuUs)) / median(b.map((p) => p.cpuUs))).toFixed(2)}x`)
    }
  }

  if (CREDENTIALS) {
    const pki = path.join(env.stateDir, "pki")
    const kubeconfig = (name: string, cluster: object, user: object) => {
      const file = path.join(dir, name)
      fs.writeFileSync(file, JSON.stringify({
        apiVersion: "v1", kind: "Config", "current-context": "c",
        clusters: [{ name: "k", cluster: { server: env.apiserver, ...cluster } }],
        users: [{ name: "u", user }],
        contexts: [{ name: "c", context: { cluster: "k", user: "u" } }]
      }))
      return file
    }
    const ca = { "certificate-authority": path.join(pki, "apiserver.crt") }
    const tokenFile = path.join(dir, "token")
    fs.writeFileSync(tokenFile, env.apiserverToken)
    const cost = (file: string) => credentialsCost(file, 5000).pipe(Effect.map((us) => `${us.toFixed(1)}`))
    yield* Console.log([
      "applyToHTTPSOptions alone, CPU µs per call:",
      `  token user (the testbed's): ${yield* cost(env.kubeconfig)}`,
      `  client-certificate user (CA, certificate and key files): ${yield* cost(kubeconfig("cert", ca, { "client-certificate": path.join(pki, "kubelet.crt"), "client-key": path.join(pki, "kubelet.key") }))}`,
      `  token-file user with a CA file (in-cluster shape): ${yield* cost(kubeconfig("in-cluster", ca, { "auth-provider": { name: "tokenFile", config: { tokenFile } } }))}`,
      `  the same without the CA file (what the fetch asks per read for such a user): ${yield* cost(kubeconfig("in-cluster-bare", {}, { "auth-provider": { name: "tokenFile", config: { tokenFile } } }))}`
    ].join("\n"))
  }
}).pipe(Effect.scoped)

NodeRuntime.runMain(program)
