/**
 * `node bench/run.ts lifecycle [--env .testbed/dev/env.json] [--kernels 50] [--concurrency 10]`
 *
 * create → Running → destroy for N kernels, C at a time, through KernelLifecycle against a running
 * testbed (`node test/testbed/cli.ts up`): real kube-apiserver, scheduler and simulated kubelet.
 * An independent pod watch (not the agent's) timestamps each pod's ADDED and first Running event, so
 * each create splits into: agent before the pod exists (validation, scratch dir, ports, POST),
 * cluster (ADDED → Running: scheduling, kubelet), and agent after Running (runner status ping, ready
 * mark; the ConfigMap/Service POSTs overlap the cluster phase). Agent overhead = total − cluster.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import type * as k8s from "@kubernetes/client-node"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { Clock, Console, Effect, Stream } from "effect"
import { KernelLifecycle } from "../src/kernel/KernelLifecycle.ts"
import { KubeClient } from "../src/kube/KubeClient.ts"
import { lifecycleLayer, makeSite, pythonConfig } from "../test/kernel/KernelLifecycleSupport.ts"
import { readEnvFile } from "../test/testbed/env.ts"

const argValue = (flag: string): string | undefined => {
  const i = process.argv.indexOf(flag)
  return i >= 0 ? process.argv[i + 1] : undefined
}
const KERNELS = Number(argValue("--kernels") ?? 50)
const CONCURRENCY = Number(argValue("--concurrency") ?? 10)
const envFile = argValue("--env") ?? path.resolve(fileURLToPath(new URL("../.testbed/dev/env.json", import.meta.url)))

interface Sample {
  readonly start: number
  readonly created: number
  readonly destroyed: number
  podAdded?: number
  podRunning?: number
}

const stats = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  const pick = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN
  const mean = s.reduce((a, b) => a + b, 0) / Math.max(1, s.length)
  return `p50 ${pick(0.5).toFixed(0).padStart(6)} ms  p90 ${pick(0.9).toFixed(0).padStart(6)} ms  max ${pick(1).toFixed(0).padStart(6)} ms  mean ${mean.toFixed(0).padStart(6)} ms`
}

const main = Effect.gen(function*() {
  const env = readEnvFile(envFile)
  const site = yield* makeSite(env, { createTimeout: 300 })
  const kube = yield* KubeClient.make({ kubeconfig: env.kubeconfig, requestTimeoutSeconds: 10 })
  const seen = new Map<string, { added?: number; running?: number }>()
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

  const samples = yield* Effect.gen(function*() {
    const lifecycle = yield* KernelLifecycle
    const ids = Array.from({ length: KERNELS }, () => crypto.randomUUID())
    const t0 = yield* Clock.currentTimeMillis
    const out = yield* Effect.forEach(ids, (kid) =>
      Effect.gen(function*() {
        const start = yield* Clock.currentTimeMillis
        yield* lifecycle.create(kid, pythonConfig(env))
        const created = yield* Clock.currentTimeMillis
        yield* lifecycle.destroy(kid, "user-requested")
        const destroyed = yield* Clock.currentTimeMillis
        return [kid, { start, created, destroyed } as Sample] as const
      }), { concurrency: CONCURRENCY })
    const wall = (yield* Clock.currentTimeMillis) - t0
    return { out, wall }
  }).pipe(Effect.provide(lifecycleLayer(site)))

  const rows = samples.out.map(([kid, s]) => ({ ...s, podAdded: seen.get(kid)?.added, podRunning: seen.get(kid)?.running }))
  const complete = rows.filter((r) => r.podAdded !== undefined && r.podRunning !== undefined)
  const total = rows.map((r) => r.created - r.start)
  const beforePod = complete.map((r) => r.podAdded! - r.start)
  const cluster = complete.map((r) => r.podRunning! - r.podAdded!)
  const afterRunning = complete.map((r) => r.created - r.podRunning!)
  const overhead = complete.map((r) => r.created - r.start - (r.podRunning! - r.podAdded!))
  const destroy = rows.map((r) => r.destroyed - r.created)
  yield* Console.log(`lifecycle: ${KERNELS} kernels, ${CONCURRENCY} at a time, wall ${(samples.wall / 1000).toFixed(1)} s (${(KERNELS / (samples.wall / 1000)).toFixed(2)} kernels/s)`)
  yield* Console.log(`  create total               ${stats(total)}`)
  yield* Console.log(`    agent, before pod exists ${stats(beforePod)}`)
  yield* Console.log(`    cluster, ADDED→Running   ${stats(cluster)}`)
  yield* Console.log(`    agent, Running→returned  ${stats(afterRunning)}`)
  yield* Console.log(`  agent overhead (total−cluster) ${stats(overhead)}`)
  yield* Console.log(`  destroy (objects gone, event sent) ${stats(destroy)}`)
  yield* Console.log(`  (${complete.length}/${rows.length} pods seen ADDED and Running by the observer watch)`)
}).pipe(Effect.scoped)

NodeRuntime.runMain(main)
