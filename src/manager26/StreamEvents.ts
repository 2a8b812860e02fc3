/**
 * The event channel of manager 25.15 / 26.x (contract §3.1): `XADD events MAXLEN ~ 128 * name <name>
 * source <agent id> args <ai.backend.common.msgpack(args tuple)> metadata <json>` in Redis DB 4
 * (etcd `config/redis`, `override_configs.stream` when set).
 *
 * It is an {@link EventPublisher}, so the shared core (lifecycle, heartbeat) publishes through it
 * unchanged; the 19.06 events it gets are translated to the 26.x ones ({@link translate}):
 *
 *   instance_started               → (held) agent_started("self-started"), sent after the first heartbeat
 *   instance_heartbeat(info)       → agent_heartbeat(AgentInfo) (§4.1: ResourceSlot pickle, slot units, …)
 *   instance_terminated(reason)    → agent_terminated(reason)
 *   kernel_preparing/creating(kid) → kernel_preparing/creating(kid, sid, "", {})
 *   kernel_started(kid)            → dropped: `create_kernels` sends kernel_started(kid, sid, "", creation_info)
 *   kernel_terminated(kid, r, ec)  → kernel_terminated(kid, sid, r, ec)
 *   anything else (already 26-shaped, e.g. image_pull_finished) → as is
 *
 * `publish` never blocks: events go to a bounded in-process queue drained in order by one writer
 * fiber that retries an XADD until Redis takes it (`Schedule`, capped back-off); a full queue drops
 * the event with a warning (counted). At shutdown what is queued is flushed for at most 2 s.
 */
import { Cause, Context, Deferred, Effect, Layer, Metric, Queue, Ref, Schedule } from "effect"
import * as zlib from "node:zlib"
import { eventsDroppedTotal, eventsPublishedTotal } from "../observability/Metrics.ts"
import { type AgentEvent, type AgentInfo, EventPublisher } from "../manager/EventPublisher.ts"
import type { RedisShape } from "../manager/Redis.ts"
import { PyFloat } from "../codec/Msgpack.ts"
import * as Bai from "../codec/bai/BaiMsgpack.ts"
import { Sessions } from "./Sessions.ts"

const STREAM_KEY = "events"
const STREAM_MAXLEN = 128
const METADATA = JSON.stringify({ request_id: null, user: null, triggered_user: null })

/** `zlib.compress(msgpack.packb([]))`: the heartbeat's `images` (unused by the 26.8 manager). */
export const EMPTY_IMAGES = zlib.deflateSync(Buffer.from([0x90]))

/** Node's `process.arch` as Backend.AI names it. */
const architectureOf = (arch: string): string => (arch === "x64" ? "x86_64" : arch === "arm64" ? "aarch64" : arch)

/** 19.06 `agent_info` → 26.x `AgentInfo.model_dump()` (contract §4.1). */
const agentInfo26 = (info: AgentInfo, options: { readonly architecture: string; readonly publicKey: Uint8Array | null }) => {
  const slots = Object.fromEntries(Object.entries(info.resource_slots).map(([slot, [, amount]]) => [slot, amount]))
  const units = Object.fromEntries(Object.entries(info.resource_slots).map(([slot, [unit]]) => [slot, unit]))
  return {
    ip: info.ip,
    region: info.region,
    scaling_group: info.scaling_group ?? "default",
    addr: info.addr,
    public_key: options.publicKey,
    public_host: info.ip,
    available_resource_slots: Bai.resourceSlotExt(slots),
    slot_key_and_units: units,
    version: info.version,
    compute_plugins: info.compute_plugins,
    images: EMPTY_IMAGES,
    images_opts: { compression: "zlib" },
    architecture: options.architecture,
    auto_terminate_abusing_kernel: false
  }
}

/** What the stream gets for one core event (possibly nothing, possibly two). */
export const translate = (
  event: AgentEvent,
  ctx: {
    readonly sessionOf: (kernelId: string) => string
    readonly architecture: string
    readonly publicKey: Uint8Array | null
    /** instance_started was seen and agent_started not yet sent */
    readonly holdStarted: boolean
  }
): { readonly out: ReadonlyArray<{ readonly name: string; readonly args: ReadonlyArray<unknown> }>; readonly holdStarted: boolean } => {
  const a = event.args
  const kid = typeof a[0] === "string" ? a[0] : ""
  switch (event.name) {
    case "instance_started":
      return { out: [], holdStarted: true }
    case "instance_heartbeat": {
      const hb = { name: "agent_heartbeat", args: [agentInfo26(a[0] as unknown as AgentInfo, ctx)] }
      return ctx.holdStarted
        ? { out: [hb, { name: "agent_started", args: ["self-started"] }], holdStarted: false }
        : { out: [hb], holdStarted: false }
    }
    case "instance_terminated":
      return { out: [{ name: "agent_terminated", args: [a[0] ?? "shutdown"] }], holdStarted: ctx.holdStarted }
    case "kernel_preparing":
    case "kernel_creating":
      return a.length === 1
        ? { out: [{ name: event.name, args: [kid, ctx.sessionOf(kid), "", {}] }], holdStarted: ctx.holdStarted }
        : { out: [event], holdStarted: ctx.holdStarted }
    case "kernel_started":
      return a.length === 1 ? { out: [], holdStarted: ctx.holdStarted } : { out: [event], holdStarted: ctx.holdStarted }
    case "kernel_terminated":
      return a.length === 3
        ? { out: [{ name: event.name, args: [kid, ctx.sessionOf(kid), a[1], a[2]] }], holdStarted: ctx.holdStarted }
        : { out: [event], holdStarted: ctx.holdStarted }
    default:
      return { out: [event], holdStarted: ctx.holdStarted }
  }
}

export interface StreamEventsOptions {
  readonly agentId: string
  /** Redis DB 4 (the `stream` role). */
  readonly redis: RedisShape
  readonly architecture?: string
  /** Z85 public key when CURVE is on. */
  readonly publicKey?: Uint8Array | null
  /** Default 1024. */
  readonly queueCapacity?: number
}

export class StreamEvents extends Context.Service<StreamEvents, {
  /** Publishes an already 26-shaped event (name and args as the manager's `serialize()`). */
  readonly publish26: (name: string, args: ReadonlyArray<unknown>) => Effect.Effect<void>
}>()("bai-agent/manager26/StreamEvents") {
  /** Both services: the core's {@link EventPublisher} (translating) and {@link StreamEvents}. Needs {@link Sessions}. */
  static readonly make = Effect.fnUntraced(function*(options: StreamEventsOptions) {
    const sessions = yield* Sessions
    const queue = yield* Queue.dropping<{ readonly name: string; readonly fields: Buffer }>(options.queueCapacity ?? 1024)
    const hold = yield* Ref.make(false)
    let dropped = 0
    let failing = false
    const architecture = options.architecture ?? architectureOf(process.arch)
    const publicKey = options.publicKey ?? null

    const drop = (why: string, name: string) =>
      Effect.suspend(() => {
        dropped++
        return Metric.update(eventsDroppedTotal, 1).pipe(Effect.andThen(Effect.logWarning(`event ${name} dropped: ${why}`)))
      })

    const enqueue = (name: string, args: ReadonlyArray<unknown>): Effect.Effect<void> =>
      Effect.try(() => Bai.encode(args)).pipe(
        Effect.flatMap((fields) => Queue.offer(queue, { name, fields })),
        Effect.flatMap((accepted) => (accepted ? Effect.void : drop("queue full", name))),
        Effect.catch((e) => drop(`not encodable: ${String(e)}`, name))
      )

    const xadd = (item: { readonly name: string; readonly fields: Buffer }) =>
      options.redis.command(
        "XADD",
        STREAM_KEY,
        "MAXLEN",
        "~",
        STREAM_MAXLEN,
        "*",
        "name",
        item.name,
        "source",
        options.agentId,
        "args",
        item.fields,
        "metadata",
        METADATA
      )

    const send = (item: { readonly name: string; readonly fields: Buffer }) =>
      xadd(item).pipe(
        Effect.tapError((e) =>
          Effect.suspend(() => {
            if (failing) return Effect.void
            failing = true
            return Effect.logWarning(`event stream: XADD failed (${e.reason}: ${e.message}); retrying`)
          })
        ),
        Effect.retry(Schedule.min([Schedule.exponential("100 millis"), Schedule.spaced("2 seconds")])),
        Effect.tap(() =>
          Effect.suspend(() => {
            if (!failing) return Metric.update(eventsPublishedTotal, 1)
            failing = false
            return Metric.update(eventsPublishedTotal, 1).pipe(Effect.andThen(Effect.logInfo("event stream: Redis takes events again")))
          })
        )
      )

    yield* Effect.addFinalizer(() =>
      Queue.clear(queue).pipe(
        Effect.flatMap((left) => Effect.forEach(left, (item) => xadd(item).pipe(Effect.ignore), { discard: true })),
        Effect.timeoutOption("2 seconds"),
        Effect.asVoid
      )
    )
    yield* Queue.take(queue).pipe(
      Effect.flatMap(send),
      Effect.forever,
      Effect.catchCause((cause) => (Cause.hasInterruptsOnly(cause) ? Effect.void : Effect.logError("event stream writer stopped", cause))),
      Effect.forkScoped
    )

    /** The 26.x events one core event becomes (none for a suppressed kernel_terminated). */
    const translated = (event: AgentEvent): Effect.Effect<ReadonlyArray<{ readonly name: string; readonly args: ReadonlyArray<unknown> }>> =>
      Effect.gen(function*() {
        const kid = event.args.length > 0 && typeof event.args[0] === "string" ? event.args[0] : undefined
        const sid = kid === undefined ? "" : yield* sessions.sessionOf(kid)
        if (kid !== undefined && event.name === "kernel_terminated") {
          const suppressed = yield* sessions.suppressed(kid)
          yield* sessions.forget(kid)
          if (suppressed) return []
        }
        const holdStarted = yield* Ref.get(hold)
        const result = translate(event, { sessionOf: () => sid, architecture, publicKey, holdStarted })
        yield* Ref.set(hold, result.holdStarted)
        return result.out
      })

    const publish = (event: AgentEvent): Effect.Effect<void> =>
      translated(event).pipe(Effect.flatMap((out) => Effect.forEach(out, (e) => enqueue(e.name, e.args), { discard: true })))

    // What the manager must hear (kernel_terminated, kernel/LiveKernels): never queued behind the
    // dropping queue — written straight to the stream with the same endless retry, one write per key
    // at a time; the returned effect completes once Redis took it.
    const scope = yield* Effect.scope
    const durablePending = new Map<string, Deferred.Deferred<void>>()
    const publishDurable = (key: string, event: AgentEvent): Effect.Effect<Effect.Effect<void>> =>
      Effect.suspend(() => {
        const pending = durablePending.get(key)
        if (pending !== undefined) return Effect.succeed(Deferred.await(pending))
        const sent = Deferred.makeUnsafe<void>()
        durablePending.set(key, sent)
        const write = translated(event).pipe(
          Effect.flatMap((out) =>
            Effect.forEach(out, (e) =>
              Effect.try(() => Bai.encode(e.args)).pipe(
                Effect.matchEffect({
                  onFailure: (error) => drop(`not encodable: ${String(error)}`, e.name),
                  onSuccess: (fields) => send({ name: e.name, fields })
                })
              ), { discard: true })
          ),
          Effect.ensuring(Effect.sync(() => durablePending.delete(key)).pipe(Effect.andThen(Deferred.succeed(sent, undefined))))
        )
        return Effect.forkIn(write, scope).pipe(Effect.as(Deferred.await(sent)))
      })

    const publisher = EventPublisher.of({
      publish,
      publishDurable,
      pendingDurable: Effect.sync(() => durablePending.size),
      dropped: Effect.sync(() => dropped),
      connected: options.redis.status.pipe(Effect.map((s) => s === "ready"))
    })
    return { publisher, stream: StreamEvents.of({ publish26: enqueue }) }
  })

  /** {@link EventPublisher} + {@link StreamEvents} for the layer's lifetime. */
  static readonly layer = (options: StreamEventsOptions): Layer.Layer<EventPublisher | StreamEvents, never, Sessions> =>
    Layer.effectContext(
      Effect.map(StreamEvents.make(options), ({ publisher, stream }) =>
        Context.make(EventPublisher, publisher).pipe(Context.add(StreamEvents, stream))
      )
    )
}

/** A Python float timestamp (seconds) for event args. */
export const timestamp = (millis: number): PyFloat => new PyFloat(millis / 1000)
