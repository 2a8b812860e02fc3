/**
 * Events to manager 19.06 (spec §1.2, §3.1): a ZeroMQ PUSH socket connected to the manager's
 * `event_addr`, one 3-frame message per event: `[event name, agent id, msgpack(args tuple)]`.
 *
 * `publish` never blocks and never fails: events go to a bounded in-process queue drained by one
 * writer fiber. The writer first waits for the event address (it may come from etcd later), then
 * connects; ZeroMQ reconnects by itself and buffers up to `sendHighWaterMark` messages. When both
 * buffers are full (manager away for long) events are dropped with a warning and counted.
 */
import { Cause, Context, Effect, Layer, Metric, Queue } from "effect"
import * as Zmq from "zeromq"
import * as Msgpack from "../rpc/msgpack/Msgpack.ts"
import type { PyValue } from "../rpc/msgpack/Msgpack.ts"

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
  /** In-process queue of events not yet handed to ZeroMQ. Default 1024. */
  readonly queueCapacity?: number
  /** ZeroMQ send high-water mark. Default 1000 messages. */
  readonly sendHighWaterMark?: number
  /** How long one send may wait when ZeroMQ's buffer is full before the event is dropped. Default 1000 ms. */
  readonly sendTimeoutMillis?: number
  /** Linger on close. Default 50 ms (K1). */
  readonly lingerMillis?: number
}

import { eventsDroppedTotal as droppedTotal, eventsPublishedTotal as publishedTotal } from "../observability/Metrics.ts"

/** The ZeroMQ endpoint for an `event_addr` value. */
export const eventEndpoint = (addr: string): string => (addr.includes("://") ? addr : `tcp://${addr}`)

export class EventPublisher extends Context.Service<EventPublisher, {
  /** Queues an event for the manager; returns at once. */
  publish(event: AgentEvent): Effect.Effect<void>
  /** Events dropped so far (by this publisher). */
  readonly dropped: Effect.Effect<number>
  /** Whether the socket has been connected to the manager's address (readiness). */
  readonly connected: Effect.Effect<boolean>
}>()("bai-agent/registry/EventPublisher") {
  static readonly make = Effect.fnUntraced(function*<E = never, R = never>(options: EventPublisherOptions<E, R>) {
    const agentId = Buffer.from(options.agentId, "utf8")
    const queue = yield* Queue.dropping<ReadonlyArray<Buffer>>(options.queueCapacity ?? 1024)
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
          sendTimeout: options.sendTimeoutMillis ?? 1000
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

    const send = (frames: ReadonlyArray<Buffer>) =>
      Effect.tryPromise(() => socket.send(frames as Array<Buffer>)).pipe(
        Effect.flatMap(() => Metric.update(publishedTotal, 1)),
        Effect.catch((error) => drop(`send failed (${String(error.cause ?? error)})`, frames[0]!.toString()))
      )

    // On close (runs after the writer is interrupted, before the socket closes): hand what is still
    // queued (e.g. instance_terminated from a finalizer) to ZeroMQ, bounded by the linger time.
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => (connected ? Queue.clear(queue) : Effect.succeed([]))).pipe(
        Effect.flatMap((left) => Effect.forEach(left, send, { discard: true })),
        Effect.timeoutOption(Math.max(options.lingerMillis ?? 50, 500)),
        Effect.asVoid
      )
    )

    // --- the writer: address first, then drain forever
    yield* connect.pipe(
      Effect.andThen(Queue.take(queue).pipe(Effect.flatMap(send), Effect.forever)),
      Effect.catchCause((cause) =>
        Cause.hasInterruptsOnly(cause) ? Effect.void : Effect.logError("event publisher stopped", cause)
      ),
      Effect.forkScoped
    )

    const publish = (event: AgentEvent): Effect.Effect<void> =>
      Msgpack.encodeEffect(event.args).pipe(
        Effect.flatMap((body) => Queue.offer(queue, [Buffer.from(event.name, "ascii"), agentId, body])),
        Effect.flatMap((accepted) => (accepted ? Effect.void : drop("queue full", event.name))),
        Effect.catch((error) => drop(`not encodable: ${error.message}`, event.name))
      )

    return EventPublisher.of({ publish, dropped: Effect.sync(() => dropped), connected: Effect.sync(() => connected) })
  })

  /** The publisher for the layer's lifetime. */
  static readonly layer = <E = never, R = never>(
    options: EventPublisherOptions<E, R>
  ): Layer.Layer<EventPublisher, never, Exclude<R, never>> => Layer.effect(EventPublisher, EventPublisher.make(options))

  /** Records published events in memory (tests of code that publishes). */
  static readonly layerTest = (sink: Array<AgentEvent>): Layer.Layer<EventPublisher> =>
    Layer.succeed(
      EventPublisher,
      EventPublisher.of({ publish: (event) => Effect.sync(() => void sink.push(event)), dropped: Effect.succeed(0), connected: Effect.succeed(true) })
    )
}

