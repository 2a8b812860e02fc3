/**
 * Events to manager 19.06 (spec §1.2, §3.1): a ZeroMQ PUSH socket connected to the manager's
 * `event_addr`, one 3-frame message per event: `[event name, agent id, msgpack(args tuple)]`.
 *
 * `publish` never blocks and never fails: events go to an in-process queue drained by one writer
 * fiber. The writer first waits for the event address (it may come from etcd later), then
 * connects; ZeroMQ reconnects by itself. The socket queues only on a completed connection
 * (`immediate`), so while the manager is away a send fails after `sendTimeoutMillis`: an ordinary
 * event (heartbeat, kernel_started…) is then dropped with a warning and counted, as is one that
 * finds `queueCapacity` ordinary events already waiting.
 *
 * `publishDurable` is for what the manager must hear (`kernel_terminated`, see kernel/LiveKernels):
 * never dropped, retried until a connected socket takes it, one pending per key.
 */
import { Cause, Context, Deferred, Duration, Effect, Layer, Metric, Queue, Schedule } from "effect"
import * as Zmq from "zeromq"
import { AgentConfig } from "../config/AgentConfig.ts"
import { eventsDroppedTotal as droppedTotal, eventsPublishedTotal as publishedTotal } from "../observability/Metrics.ts"
import * as Msgpack from "../codec/Msgpack.ts"
import type { PyValue } from "../codec/Msgpack.ts"
import { ManagerConfig } from "./ManagerConfig.ts"

/** One event: its name and positional arguments (Python values, see {@link Msgpack.encode}). */
export interface AgentEvent {
  readonly name: string
  readonly args: ReadonlyArray<PyValue>
}

/** The heartbeat payload (spec §3.1). */
export interface AgentInfo {
  readonly ip: string
  readonly region: string
  /** `tcp://host:port` the manager dials for RPC */
  readonly addr: string
  /** `{slot: [unit, decimal string]}`, e.g. `{cpu: ["count", "4"], mem: ["bytes", "8589934592"]}` */
  readonly resource_slots: { readonly [slot: string]: readonly [string, string] }
  readonly version: string
  readonly compute_plugins: { readonly [plugin: string]: PyValue }
  /** snappy raw block of msgpack `[[repo_tag, digest], ...]`, sent as bin */
  readonly images: Uint8Array
  readonly scaling_group?: string
}

/** Typed constructors of the K1 events (spec §3.1). */
export const AgentEvents = {
  instanceStarted: (): AgentEvent => ({ name: "instance_started", args: [] }),
  instanceHeartbeat: (info: AgentInfo): AgentEvent => ({ name: "instance_heartbeat", args: [info as unknown as PyValue] }),
  instanceTerminated: (reason: string): AgentEvent => ({ name: "instance_terminated", args: [reason] }),
  kernelPreparing: (kernelId: string): AgentEvent => ({ name: "kernel_preparing", args: [kernelId] }),
  kernelCreating: (kernelId: string): AgentEvent => ({ name: "kernel_creating", args: [kernelId] }),
  kernelStarted: (kernelId: string): AgentEvent => ({ name: "kernel_started", args: [kernelId] }),
  kernelTerminated: (kernelId: string, reason: string, exitCode: number | null): AgentEvent => ({
    name: "kernel_terminated",
    args: [kernelId, reason, exitCode]
  })
} as const

/** Options of {@link EventPublisher.layer}. */
export interface EventPublisherOptions<E = never, R = never> {
  /** `host:port` (or a full `tcp://…` endpoint) of the manager's event socket; may wait (etcd). */
  readonly eventAddr: string | Effect.Effect<string, E, R>
  readonly agentId: string
  /** In-process queue of ordinary events not yet handed to ZeroMQ. Default 1024. */
  readonly queueCapacity?: number
  /** ZeroMQ send high-water mark. Default 1000 messages. */
  readonly sendHighWaterMark?: number
  /** How long one send may wait for the manager's connection before it fails. Default 1000 ms. */
  readonly sendTimeoutMillis?: number
  /** Linger on close. Default 50 ms (K1). */
  readonly lingerMillis?: number
  /** Longest pause between two attempts of a durable event. Default 5 s. */
  readonly durableRetryMaxMillis?: number
}

/** The ZeroMQ endpoint for an `event_addr` value. */
const eventEndpoint = (addr: string): string => (addr.includes("://") ? addr : `tcp://${addr}`)

/** One queued message; `durable` ones carry their key and the signal of their hand-off. */
interface Queued {
  readonly name: string
  readonly frames: ReadonlyArray<Buffer>
  readonly durable: { readonly key: string; readonly sent: Deferred.Deferred<void> } | undefined
}

export class EventPublisher extends Context.Service<EventPublisher, {
  /** Queues an event for the manager; returns at once. Dropped (and counted) when the queue is full. */
  publish(event: AgentEvent): Effect.Effect<void>
  /**
   * Queues an event that is never dropped (`kernel_terminated`): at most one per `key` (a kernel id)
   * is pending, so these are bounded by the number of kernels, not by time; a full queue of ordinary
   * events does not refuse it, and a failed send is retried until ZeroMQ takes it. Returns at once
   * with an effect that completes when the event has been handed to a connected manager socket
   * (never, if the publisher closes first: the caller keeps its own record for the next start).
   * A second call for a key still pending returns the first one's hand-off and queues nothing.
   */
  publishDurable(key: string, event: AgentEvent): Effect.Effect<Effect.Effect<void>>
  /** Events dropped so far (by this publisher). */
  readonly dropped: Effect.Effect<number>
  /** Durable events not yet handed to ZeroMQ. */
  readonly pendingDurable: Effect.Effect<number>
  /** Whether the socket has been connected to the manager's address (readiness). */
  readonly connected: Effect.Effect<boolean>
}>()("bai-agent/manager/EventPublisher") {
  static readonly make = Effect.fnUntraced(function*<E = never, R = never>(options: EventPublisherOptions<E, R>) {
    const agentId = Buffer.from(options.agentId, "utf8")
    const capacity = options.queueCapacity ?? 1024
    // ordinary and durable events share one FIFO (their relative order is kept); only ordinary ones
    // count against `capacity`, durable ones are bounded by their keys
    const queue = yield* Queue.unbounded<Queued>()
    let ordinaryQueued = 0
    const durablePending = new Map<string, Deferred.Deferred<void>>()
    let dropped = 0

    const drop = (why: string, event: string) =>
      Effect.suspend(() => {
        dropped++
        return Metric.update(droppedTotal, 1).pipe(
          Effect.andThen(Effect.logWarning(`event ${event} dropped: ${why}`))
        )
      })

    const socket = yield* Effect.acquireRelease(
      Effect.sync(() =>
        new Zmq.Push({
          linger: options.lingerMillis ?? 50,
          sendHighWaterMark: options.sendHighWaterMark ?? 1000,
          sendTimeout: options.sendTimeoutMillis ?? 1000,
          // queue only on a completed connection: while the manager is away a send fails (and a
          // durable event stays ours, with its record) instead of waiting in a pipe that dies with
          // the process
          immediate: true
        })
      ),
      (s) => Effect.sync(() => s.close())
    )

    let connected = false
    const connect = Effect.gen(function*() {
      const addr = typeof options.eventAddr === "string" ? options.eventAddr : yield* options.eventAddr
      const endpoint = eventEndpoint(addr)
      yield* Effect.try(() => socket.connect(endpoint))
      connected = true
      yield* Effect.logInfo("event publisher connected").pipe(Effect.annotateLogs({ endpoint }))
    })

    const trySend = (item: Queued) =>
      Effect.tryPromise(() => socket.send(item.frames as Array<Buffer>)).pipe(
        Effect.andThen(Metric.update(publishedTotal, 1))
      )

    const handedOff = (item: Queued) =>
      item.durable === undefined
        ? Effect.void
        : Effect.suspend(() => {
          durablePending.delete(item.durable!.key)
          return Deferred.succeed(item.durable!.sent, undefined)
        })

    const retryMax = Duration.millis(options.durableRetryMaxMillis ?? 5000)
    const durableRetry = Schedule.exponential("100 millis", 2).pipe(
      Schedule.modifyDelay(({ duration }) => Effect.succeed(Duration.min(duration, retryMax)))
    )

    /** Ordinary: one attempt, dropped on failure. Durable: retried until ZeroMQ takes it. */
    const deliver = (item: Queued) =>
      item.durable === undefined
        ? trySend(item).pipe(Effect.catch((error) => drop(`send failed (${String(error.cause ?? error)})`, item.name)))
        : Effect.suspend(() => {
          let attempts = 0
          return trySend(item).pipe(
            Effect.tapError((error) =>
              attempts++ % 20 === 0
                ? Effect.logWarning(`event ${item.name} not sent yet (${String(error.cause ?? error)}); kept and retried`).pipe(
                  Effect.annotateLogs({ key: item.durable!.key })
                )
                : Effect.void
            ),
            Effect.retry(durableRetry),
            Effect.andThen(handedOff(item))
          )
        })

    const take = Queue.take(queue).pipe(
      Effect.tap((item) => Effect.sync(() => void (item.durable === undefined && ordinaryQueued--)))
    )

    // On close (runs after the writer is interrupted, before the socket closes): hand what is still
    // queued (e.g. instance_terminated from a finalizer) to ZeroMQ, one attempt each, bounded by the
    // linger time. A durable event not sent here is still recorded by its publisher.
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => (connected ? Queue.clear(queue) : Effect.succeed([]))).pipe(
        Effect.flatMap((left) =>
          Effect.forEach(left, (item) => trySend(item).pipe(Effect.andThen(handedOff(item)), Effect.ignore), { discard: true })
        ),
        Effect.timeoutOption(Math.max(options.lingerMillis ?? 50, 500)),
        Effect.asVoid
      )
    )

    // --- the writer: address first, then drain forever
    yield* connect.pipe(
      Effect.andThen(take.pipe(Effect.flatMap(deliver), Effect.forever)),
      Effect.catchCause((cause) =>
        Cause.hasInterruptsOnly(cause) ? Effect.void : Effect.logError("event publisher stopped", cause)
      ),
      Effect.forkScoped
    )

    const frames = (event: AgentEvent) =>
      Msgpack.encodeEffect(event.args).pipe(
        Effect.map((body): ReadonlyArray<Buffer> => [Buffer.from(event.name, "ascii"), agentId, body])
      )

    const publish = (event: AgentEvent): Effect.Effect<void> =>
      frames(event).pipe(
        Effect.flatMap((f) =>
          Effect.suspend(() => {
            if (ordinaryQueued >= capacity) return drop("queue full", event.name)
            ordinaryQueued++
            return Queue.offer(queue, { name: event.name, frames: f, durable: undefined })
          })
        ),
        Effect.asVoid,
        Effect.catch((error) => drop(`not encodable: ${error.message}`, event.name))
      )

    const publishDurable = (key: string, event: AgentEvent): Effect.Effect<Effect.Effect<void>> =>
      frames(event).pipe(
        Effect.flatMap((f) =>
          Effect.suspend(() => {
            const pending = durablePending.get(key)
            if (pending !== undefined) return Effect.succeed(Deferred.await(pending))
            const sent = Deferred.makeUnsafe<void>()
            durablePending.set(key, sent)
            return Queue.offer(queue, { name: event.name, frames: f, durable: { key, sent } }).pipe(
              Effect.as(Deferred.await(sent))
            )
          })
        ),
        // an event that cannot be encoded will not be sent by any retry: nothing to wait for
        Effect.catch((error) => drop(`not encodable: ${error.message}`, event.name).pipe(Effect.as(Effect.void)))
      )

    return EventPublisher.of({
      publish,
      publishDurable,
      dropped: Effect.sync(() => dropped),
      pendingDurable: Effect.sync(() => durablePending.size),
      connected: Effect.sync(() => connected)
    })
  })

  /** The publisher for the layer's lifetime. */
  static readonly layer = <E = never, R = never>(
    options: EventPublisherOptions<E, R>
  ): Layer.Layer<EventPublisher, never, Exclude<R, never>> => Layer.effect(EventPublisher, EventPublisher.make(options))

  /** Records published events in memory (tests of code that publishes). */
  static readonly layerTest = (sink: Array<AgentEvent>): Layer.Layer<EventPublisher> =>
    Layer.succeed(
      EventPublisher,
      EventPublisher.of({
        publish: (event) => Effect.sync(() => void sink.push(event)),
        publishDurable: (_key, event) => Effect.sync(() => void sink.push(event)).pipe(Effect.as(Effect.void)),
        dropped: Effect.succeed(0),
        pendingDurable: Effect.succeed(0),
        connected: Effect.succeed(true)
      })
    )
}

/**
 * EventPublisher connected to etcd `nodes/manager/event_addr` (waits for the manager, see
 * ManagerConfig.eventAddr). Needs ManagerConfig and AgentConfig.
 */
export const EventPublisherFromEtcd: Layer.Layer<EventPublisher, never, ManagerConfig | AgentConfig> = Layer.unwrap(
  Effect.gen(function*() {
    const manager = yield* ManagerConfig
    const { agentId } = yield* AgentConfig
    return EventPublisher.layer({ eventAddr: manager.eventAddr, agentId })
  })
)
