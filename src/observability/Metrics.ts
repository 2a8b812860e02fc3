/**
 * Every Prometheus metric of the agent, in one place (names `bai_*`). Services import the metric
 * they record from here; `/metrics` on the internal port (src/http/InternalHttp.ts) renders Effect's
 * global metric registry with `PrometheusMetrics`.
 *
 * Labels are set per update with `Metric.withAttributes`, or with the helpers below:
 *
 *   yield* trackRpc("create_kernel")(handler(...))            // bai_rpc_requests_total + duration
 *   yield* Metric.update(heartbeatsSentTotal, 1)
 *   yield* setKernelsByState({ running: 3, pending: 1 })
 *   yield* recordKernelStartPhase("scheduled", seconds)
 *   yield* markWatchEvent("pods")                              // age gauge derived at scrape time
 */
import { Clock, Duration, Effect, Exit, Metric } from "effect"

// ---------------------------------------------------------------------------------------------
// RPC (manager → agent)

/** One per answered RPC request, labels `method` and `outcome` (`ok` | `error` | `defect`). */
export const rpcRequestsTotal = Metric.counter("bai_rpc_requests_total", {
  description: "RPC requests answered, by method and outcome (ok, error, defect)",
  incremental: true
})

/** Handler time per request in seconds, labels `method` and `outcome`. */
export const rpcDurationSeconds = Metric.histogram("bai_rpc_duration_seconds", {
  description: "RPC handler duration in seconds, by method and outcome",
  boundaries: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]
})

/** Messages received on the RPC socket (before decoding; no labels). */
export const rpcMessagesReceivedTotal = Metric.counter("bai_rpc_messages_received_total", {
  description: "RPC messages received on the ROUTER socket",
  incremental: true
})
/** Error replies sent (any exception body). */
export const rpcErrorRepliesTotal = Metric.counter("bai_rpc_error_replies_total", {
  description: "RPC error replies sent",
  incremental: true
})
/** Malformed messages dropped without an answer. */
export const rpcDroppedTotal = Metric.counter("bai_rpc_dropped_total", {
  description: "RPC messages dropped as malformed",
  incremental: true
})
/** Handlers that died (defects, answered as RuntimeError). */
export const rpcHandlerDefectsTotal = Metric.counter("bai_rpc_handler_defects_total", {
  description: "RPC handlers that died",
  incremental: true
})

export type RpcOutcome = "ok" | "error" | "defect"

/**
 * Records `bai_rpc_requests_total{method,outcome}` and `bai_rpc_duration_seconds{method,outcome}`
 * around a handler. Interruption is not counted (the caller went away).
 */
export const trackRpc = (method: string) => {
  // the labelled metrics of this method, built once (not on every call: this wraps the RPC hot path)
  const labelled = (outcome: RpcOutcome) => ({
    count: Metric.withAttributes(rpcRequestsTotal, { method, outcome }),
    duration: Metric.withAttributes(rpcDurationSeconds, { method, outcome })
  })
  const byOutcome = { ok: labelled("ok"), error: labelled("error"), defect: labelled("defect") }
  return <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.flatMap(Clock.currentTimeNanos, (start) =>
      Effect.onExit(self, (exit) => {
        const outcome: RpcOutcome | undefined = Exit.isSuccess(exit)
          ? "ok"
          : exit.cause.reasons.some((r) => r._tag === "Fail")
          ? "error"
          : exit.cause.reasons.some((r) => r._tag === "Die")
          ? "defect"
          : undefined
        if (outcome === undefined) return Effect.void
        const m = byOutcome[outcome]
        return Effect.flatMap(Clock.currentTimeNanos, (end) =>
          Metric.update(m.count, 1).pipe(Effect.andThen(Metric.update(m.duration, Number(end - start) / 1e9)))
        )
      })
    )
}

// ---------------------------------------------------------------------------------------------
// Events and heartbeats (agent → manager)

export const eventsPublishedTotal = Metric.counter("bai_events_published_total", {
  description: "events handed to ZeroMQ",
  incremental: true
})
export const eventsDroppedTotal = Metric.counter("bai_events_dropped_total", {
  description: "events dropped (queue full, send timeout, unencodable)",
  incremental: true
})
export const heartbeatsSentTotal = Metric.counter("bai_heartbeats_sent_total", {
  description: "instance_heartbeat events handed to the publisher"
})
export const heartbeatsFailedTotal = Metric.counter("bai_heartbeats_failed_total", {
  description: "heartbeats skipped because agent_info could not be assembled"
})

// ---------------------------------------------------------------------------------------------
// Kernels

/** Kernels known to the agent, label `state` (e.g. pending, running, terminating). */
export const kernelsByState = Metric.gauge("bai_kernels", {
  description: "kernels known to this agent, by state"
})

/** Sets `bai_kernels{state}` for every given state (states absent from `counts` are left as they are). */
export const setKernelsByState = (counts: Readonly<Record<string, number>>): Effect.Effect<void> =>
  Effect.forEach(
    Object.entries(counts),
    ([state, n]) => Metric.update(Metric.withAttributes(kernelsByState, { state }), n),
    { discard: true }
  )

/**
 * The phases of a kernel start. The label `phase` names the phase that was *reached*; the value is
 * the time since the previous one: `scheduled` = accepted→scheduled (pod bound to a node),
 * `running` = scheduled→running (containers started), `runner-ready` = running→runner answered,
 * `total` = accepted→runner-ready.
 */
export type KernelStartPhase = "scheduled" | "running" | "runner-ready" | "total"

export const kernelStartPhaseSeconds = Metric.histogram("bai_kernel_start_phase_seconds", {
  description: "kernel start time per phase in seconds (phase: scheduled, running, runner-ready, total)",
  boundaries: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600]
})

export const recordKernelStartPhase = (phase: KernelStartPhase, duration: Duration.Input): Effect.Effect<void> =>
  Metric.update(
    Metric.withAttributes(kernelStartPhaseSeconds, { phase }),
    Duration.toMillis(Duration.fromInputUnsafe(duration)) / 1000
  )

export const kernelsCreatedTotal = Metric.counter("bai_kernels_created_total", {
  description: "create_kernel calls that succeeded",
  incremental: true
})
export const kernelsTerminatedTotal = Metric.counter("bai_kernels_terminated_total", {
  description: "kernels terminated, label reason",
  incremental: true
})

/** `bai_kernels_terminated_total{reason}`: one `kernel_terminated` sent to the manager. */
export const countKernelTerminated = (reason: string) =>
  Metric.update(Metric.withAttributes(kernelsTerminatedTotal, { reason }), 1)

// ---------------------------------------------------------------------------------------------
// Memory (src/observability/MemoryRelease.ts)

/** Times V8 was asked to give back the memory a burst left unused (LowMemoryNotification). */
export const memoryReleasesTotal = Metric.counter("bai_memory_releases_total", {
  description: "times V8 was asked to give back unused memory after a burst (start-up, relists)",
  incremental: true
})

// ---------------------------------------------------------------------------------------------
// Kubernetes watches

/** Watch (re)starts after the first, label `resource` (e.g. pods, nodes). */
export const kubeWatchRestartsTotal = Metric.counter("bai_kube_watch_restarts_total", {
  description: "Kubernetes watch restarts, by resource",
  incremental: true
})

/** Unix time (seconds) of the last event of a watch, label `resource`. */
export const kubeWatchLastEventTimestampSeconds = Metric.gauge("bai_kube_watch_last_event_timestamp_seconds", {
  description: "Unix time of the last event received on a Kubernetes watch, by resource"
})

/**
 * Seconds since the last event of a watch, label `resource`. Not set by services: the `/metrics`
 * handler derives it from {@link kubeWatchLastEventTimestampSeconds} at scrape time
 * ({@link refreshDerivedMetrics}).
 */
export const kubeWatchLastEventAgeSeconds = Metric.gauge("bai_kube_watch_last_event_age_seconds", {
  description: "seconds since the last event received on a Kubernetes watch, by resource"
})

/** Call on every watch event (ADDED/MODIFIED/DELETED/BOOKMARK) of `resource`. */
export const markWatchEvent = (resource: string): Effect.Effect<void> =>
  Clock.currentTimeMillis.pipe(
    Effect.flatMap((now) => Metric.update(Metric.withAttributes(kubeWatchLastEventTimestampSeconds, { resource }), now / 1000))
  )

/** Call each time a watch of `resource` is restarted (not for the first start). */
export const markWatchRestart = (resource: string): Effect.Effect<void> =>
  Metric.update(Metric.withAttributes(kubeWatchRestartsTotal, { resource }), 1)

// ---------------------------------------------------------------------------------------------
// Stats (recorded by src/stats/StatsCollector.ts)

export const statsCycleSeconds = Metric.histogram("bai_stats_cycle_seconds", {
  description: "duration of one statistics cycle (summaries, formatting, Redis write)",
  boundaries: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10]
})
export const statsNodeFailuresTotal = Metric.counter("bai_stats_node_failures_total", {
  description: "kubelet summaries that failed or timed out"
})
export const statsSummaryReadsTotal = Metric.counter("bai_stats_summary_reads_total", {
  description: "kubelet summaries requested (each node every stats.summary-interval, failed ones every cycle)"
})
export const statsWriteFailuresTotal = Metric.counter("bai_stats_write_failures_total", {
  description: "statistics cycles whose Redis write failed"
})
export const statsCyclesTotal = Metric.counter("bai_stats_cycles_total", { description: "statistics cycles run" })

// ---------------------------------------------------------------------------------------------
// Scrape-time derivations

/**
 * Updates metrics computed from others at scrape time: `bai_kube_watch_last_event_age_seconds`
 * from `bai_kube_watch_last_event_timestamp_seconds`. Called by the `/metrics` handler.
 */
export const refreshDerivedMetrics: Effect.Effect<void> = Effect.gen(function*() {
  const now = (yield* Clock.currentTimeMillis) / 1000
  const snapshot = yield* Metric.snapshot
  for (const m of snapshot) {
    if (m.id !== "bai_kube_watch_last_event_timestamp_seconds" || m.type !== "Gauge") continue
    const value = Number((m.state as { readonly value: number | bigint }).value)
    if (value <= 0) continue
    const attributes = m.attributes ?? {}
    yield* Metric.update(Metric.withAttributes(kubeWatchLastEventAgeSeconds, attributes), Math.max(0, now - value))
  }
})

/**
 * Metrics without labels, read once at start so that `/metrics` shows them at 0 before their first
 * update (labelled series appear when first recorded).
 */
export const registerUnlabelled: Effect.Effect<void> = Effect.all([
  // the rpc* counters join this list once src/rpc/aiozmq/AiozmqServer.ts imports them from here
  Metric.value(eventsPublishedTotal),
  Metric.value(eventsDroppedTotal),
  Metric.value(heartbeatsSentTotal),
  Metric.value(heartbeatsFailedTotal),
  Metric.value(kernelsCreatedTotal),
  Metric.value(statsCycleSeconds),
  Metric.value(statsCyclesTotal),
  Metric.value(statsNodeFailuresTotal),
  Metric.value(statsSummaryReadsTotal),
  Metric.value(statsWriteFailuresTotal)
], { discard: true })
