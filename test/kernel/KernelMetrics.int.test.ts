// Kernel metrics at their call sites (src/observability/Metrics.ts): bai_kernels{state} follows the
// registry, a create records every bai_kernel_start_phase_seconds phase once, the reconciler's pod
// watch marks bai_kube_watch_last_event_timestamp_seconds{resource="kernel-pods"}. The metric
// registry is per process (shared by the tests of this file), so counts are compared before/after.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Metric } from "effect"
import { inject } from "vitest"
import { KernelLifecycle } from "../../src/kernel/KernelLifecycle.ts"
import type { TestbedEnv } from "../testbed/env.ts"
import { eventually, kubectl, lifecycleLayer, makeSite, pythonConfig, takeEvent } from "./KernelLifecycleSupport.ts"

const env: TestbedEnv = inject("testbed")

const series = (id: string, attributes: Record<string, string>) =>
  Metric.snapshot.pipe(
    Effect.map((all) =>
      all.find((m) => m.id === id && Object.entries(attributes).every(([k, v]) => m.attributes?.[k] === v))
    )
  )
const gauge = (id: string, attributes: Record<string, string>) =>
  Effect.map(series(id, attributes), (m) => (m?.type === "Gauge" ? Number(m.state.value) : undefined))
const histogramCount = (id: string, attributes: Record<string, string>) =>
  Effect.map(series(id, attributes), (m) => (m?.type === "Histogram" ? m.state.count : 0))

const PHASES = ["scheduled", "running", "runner-ready", "total"] as const

describe("kernel metrics", () => {
  it.live("bai_kernels by state, start phases once per create, kernel pod watch events", () =>
    Effect.gen(function*() {
      const site = yield* makeSite(env)
      yield* Effect.gen(function*() {
        const lifecycle = yield* KernelLifecycle
        const phasesBefore = yield* Effect.forEach(PHASES, (phase) => histogramCount("bai_kernel_start_phase_seconds", { phase }))
        assert.strictEqual(yield* gauge("bai_kernels", { state: "running" }), 0)

        const kid = crypto.randomUUID()
        yield* lifecycle.create(kid, pythonConfig(env))
        assert.strictEqual(yield* gauge("bai_kernels", { state: "running" }), 1)
        assert.strictEqual(yield* gauge("bai_kernels", { state: "creating" }), 0)
        const phasesAfter = yield* Effect.forEach(PHASES, (phase) => histogramCount("bai_kernel_start_phase_seconds", { phase }))
        assert.deepStrictEqual(phasesAfter.map((n, i) => n - phasesBefore[i]!), [1, 1, 1, 1])
        // the same id again: no new create, no phase recorded
        yield* lifecycle.create(kid, pythonConfig(env))
        assert.deepStrictEqual(
          yield* Effect.forEach(PHASES, (phase) => histogramCount("bai_kernel_start_phase_seconds", { phase })),
          phasesAfter
        )

        // the reconciler's watch sees the pod deleted by someone else
        const before = (yield* gauge("bai_kube_watch_last_event_timestamp_seconds", { resource: "kernel-pods" })) ?? 0
        yield* kubectl(env, ["-n", site.kubeNs, "delete", "pod", `kernel-${kid}`, "--wait=false"])
        yield* takeEvent(site, "kernel_terminated", kid)
        const after = (yield* gauge("bai_kube_watch_last_event_timestamp_seconds", { resource: "kernel-pods" })) ?? 0
        assert.isAbove(after, before)
        assert.strictEqual(yield* eventually(gauge("bai_kernels", { state: "running" }), (n) => n === 0, 30), 0)
        assert.strictEqual(yield* gauge("bai_kernels", { state: "terminating" }), 0)
      }).pipe(Effect.provide(lifecycleLayer(site, { withReconciler: true })))
    }).pipe(Effect.scoped), { timeout: 180_000 })
})
