/**
 * The agent's life as the manager sees it (spec §3.1): once everything is up (after
 * `Registration.markRunning`), `instance_heartbeat(agent_info)` every `debug.heartbeat-interval`
 * (default 3 s; the first one at once), `instance_started` right after the first beat that was
 * sent (fidelity-19.06 §2.1 "Ordering"), and
 * `instance_terminated('shutdown')` from the layer's finalizer — before the EventPublisher (a
 * dependency, so released after this layer) closes its socket.
 *
 * Beats run one after another in one fiber (`Schedule.fixed`: a slow beat delays the next, never
 * overlaps it); a failing beat is counted (`bai_heartbeats_failed_total`), logged and skipped — the
 * loop never dies. `agent_info` (spec §3.1, with K1's omissions fixed): ip, region, addr
 * (`tcp://host:port`), scaling_group, version, resource_slots `{slot: [unit, decimal string]}`
 * from NodeResources, compute_plugins (with a per-node breakdown) and images (ImageRegistry).
 */
import { Cause, Context, Duration, Effect, Layer, Metric, Schedule, Schema } from "effect"
import { AgentConfig } from "../config/AgentConfig.ts"
import { formatHostPort } from "../domain/Units.ts"
import { formatAmounts, NodeResources, type ResourceSnapshot, SLOT_DEFS } from "../kube/NodeResources.ts"
import { heartbeatsFailedTotal as heartbeatsFailed, heartbeatsSentTotal as heartbeatsSent } from "../observability/Metrics.ts"
import type { PyValue } from "../codec/Msgpack.ts"
import { VERSION } from "../version.ts"
import { AgentEvents, type AgentInfo, EventPublisher } from "./EventPublisher.ts"
import { ImageRegistry } from "../images/ImageRegistry.ts"
import { ManagerConfig } from "./ManagerConfig.ts"
import { Registration } from "./Registration.ts"

export class HeartbeatError extends Schema.TaggedError<HeartbeatError>()("HeartbeatError", {
  reason: Schema.Literals(["NotReady", "Timeout"]),
  message: Schema.String
}) {}

export interface HeartbeatShape {
  /** The current `agent_info` (what the next beat sends). */
  readonly assemble: Effect.Effect<AgentInfo, HeartbeatError>
  readonly sent: Effect.Effect<number>
  readonly failed: Effect.Effect<number>
}

export interface HeartbeatOptions {
  readonly interval: Duration.Input
  readonly rpcAddr: { readonly host: string; readonly port: number }
  readonly region: string
  readonly scalingGroup: string
}

/** `{slot: [unit, decimal]}` of the snapshot's available amounts. */
export const resourceSlotsOf = (s: ResourceSnapshot): AgentInfo["resource_slots"] => {
  const formatted = formatAmounts(s.available)
  return Object.fromEntries(SLOT_DEFS.map((d) => [d.slot, [d.unit, formatted[d.slot]!] as const]))
}

/** compute_plugins: K2-style `cpu` entry plus a `kubernetes` entry with the per-node breakdown. */
export const computePluginsOf = (s: ResourceSnapshot): AgentInfo["compute_plugins"] => ({
  cpu: { version: VERSION, agent_version: VERSION, machine: "Kubernetes", os_type: "Kubernetes" },
  kubernetes: {
    version: VERSION,
    workers: s.workers.length,
    largest_placeable: formatAmounts(s.largestPlaceable),
    excluded_nodes: [...s.excluded],
    nodes: s.workers.map((w): PyValue => ({
      name: w.name,
      internal_ip: w.internalIP ?? null,
      allocatable: formatAmounts(w.allocatable),
      requested: formatAmounts(w.requested),
      largest_placeable: formatAmounts(w.free)
    }))
  }
})

export class Heartbeat extends Context.Service<Heartbeat, HeartbeatShape>()("bai-agent/manager/Heartbeat") {
  static readonly make = Effect.fnUntraced(function*(options: HeartbeatOptions) {
    const publisher = yield* EventPublisher
    const resources = yield* NodeResources
    const images = yield* ImageRegistry
    const registration = yield* Registration
    const interval = Duration.fromInputUnsafe(options.interval)
    const addr = `tcp://${formatHostPort(options.rpcAddr)}`
    let sent = 0
    let failed = 0
    // agent_info parts derived from a snapshot are recomputed only when the snapshot changed
    let memo: { snapshot: ResourceSnapshot; slots: AgentInfo["resource_slots"]; plugins: AgentInfo["compute_plugins"] } | undefined

    const assemble = Effect.gen(function*() {
      const snapshot = yield* resources.snapshot.pipe(
        Effect.mapError((e) => new HeartbeatError({ reason: "NotReady", message: e.message }))
      )
      if (memo === undefined || memo.snapshot !== snapshot) {
        memo = { snapshot, slots: resourceSlotsOf(snapshot), plugins: computePluginsOf(snapshot) }
      }
      const info: AgentInfo = {
        ip: options.rpcAddr.host,
        region: options.region,
        addr,
        scaling_group: options.scalingGroup,
        version: VERSION,
        resource_slots: memo.slots,
        compute_plugins: memo.plugins,
        images: yield* images.packed
      }
      return info
    })

    let lastFailure: string | undefined
    const beat = assemble.pipe(
      Effect.timeoutOrElse({
        duration: interval,
        orElse: () => Effect.fail(new HeartbeatError({ reason: "Timeout", message: `agent_info not assembled within ${Duration.format(interval)}` }))
      }),
      Effect.flatMap((info) => publisher.publish(AgentEvents.instanceHeartbeat(info))),
      Effect.tap(() =>
        Effect.suspend(() => {
          sent++
          if (lastFailure !== undefined) {
            lastFailure = undefined
            return Metric.update(heartbeatsSent, 1).pipe(Effect.andThen(Effect.logInfo("heartbeats resumed")))
          }
          return Metric.update(heartbeatsSent, 1)
        })
      ),
      Effect.as(true),
      Effect.catchCause((cause) =>
        Cause.hasInterruptsOnly(cause) ? Effect.interrupt : Effect.suspend(() => {
          failed++
          const message = Cause.pretty(cause).split("\n")[0] ?? "unknown"
          const first = lastFailure !== message
          lastFailure = message
          return Metric.update(heartbeatsFailed, 1).pipe(
            Effect.andThen(first ? Effect.logWarning(`heartbeat skipped: ${message}`) : Effect.logDebug(`heartbeat skipped: ${message}`)),
            Effect.as(false)
          )
        })
      )
    )

    let started = false
    // registered before the loop is forked, so it runs after the loop was interrupted
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() =>
        started
          ? publisher.publish(AgentEvents.instanceTerminated("shutdown")).pipe(
            Effect.andThen(Effect.logInfo("instance_terminated('shutdown') sent"))
          )
          : Effect.void
      )
    )
    // the first successful beat precedes instance_started (as the 19.06 Docker agent: its heartbeat
    // timer fires before `instance_started`): manager 19.06 refreshes addr, region, version,
    // compute_plugins and config/resource_slots only on a heartbeat from an agent it does not hold
    // ALIVE, and instance_started alone flips the row to ALIVE
    let announced = false
    const beatThenAnnounce = beat.pipe(
      Effect.tap((ok) =>
        Effect.suspend(() => {
          if (ok) started = true
          if (!ok || announced) return Effect.void
          announced = true
          return publisher.publish(AgentEvents.instanceStarted()).pipe(
            Effect.andThen(Effect.logInfo(`first heartbeat and instance_started sent; heartbeats every ${Duration.format(interval)} to the manager`))
          )
        })
      )
    )
    yield* Effect.gen(function*() {
      yield* registration.awaitRunning
      yield* beatThenAnnounce.pipe(Effect.repeat(Schedule.fixed(interval)))
    }).pipe(Effect.forkScoped)

    return Heartbeat.of({
      assemble,
      sent: Effect.sync(() => sent),
      failed: Effect.sync(() => failed)
    })
  })

  /** Needs EventPublisher, NodeResources, ImageRegistry, Registration, ManagerConfig, AgentConfig. */
  static readonly layer = Layer.effect(
    Heartbeat,
    Effect.gen(function*() {
      const { config, region } = yield* AgentConfig
      const manager = yield* ManagerConfig
      return yield* Heartbeat.make({
        interval: Duration.seconds(config.debug["heartbeat-interval"]),
        rpcAddr: manager.rpcAddr,
        region,
        scalingGroup: config.agent["scaling-group"]
      })
    })
  )
}
