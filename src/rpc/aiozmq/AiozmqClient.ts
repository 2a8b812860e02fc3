/**
 * An aiozmq RPC client (the manager's side of spec §1.1): a DEALER socket, a `req_id` counter and
 * one pending `Deferred` per request; one reader fiber and one writer fiber. Used by the benchmark,
 * the tests and agentctl.
 *
 *   const client = yield* AiozmqClient.make({ connect: "tcp://127.0.0.1:6001" })   // scoped
 *   const pong = yield* client.invoke(AgentRpcs.ping, "hello")                       // typed
 *   const raw  = yield* client.call("ping", ["hello"])                               // untyped
 */
import { Clock, Context, Deferred, Duration, Effect, Layer, Queue, Schema } from "effect"
import * as Zmq from "zeromq"
import type { AnyAgentRpc } from "../AgentRpcs.ts"
import * as Msgpack from "../../codec/Msgpack.ts"
import { decodeReplyHeader, encodeRequestHeader } from "./Frames.ts"

/** Options of {@link AiozmqClient.make}. */
export interface AiozmqClientOptions {
  /** Endpoint of the server, e.g. `tcp://127.0.0.1:6001`. */
  readonly connect: string
  /** Default per-call timeout (none when absent). */
  readonly timeout?: Duration.Input
  /** Linger on close. Default 1000 ms (like the manager). */
  readonly lingerMillis?: number
}

/** The server answered with an exception (`[exc_type, args, repr]`). */
export class AiozmqRemoteError extends Schema.TaggedError<AiozmqRemoteError>()("AiozmqRemoteError", {
  method: Schema.String,
  excType: Schema.String,
  args: Schema.Array(Schema.Unknown),
  repr: Schema.String
}) {}

/** The call could not be made or its answer not understood. */
export class AiozmqClientError extends Schema.TaggedError<AiozmqClientError>()("AiozmqClientError", {
  method: Schema.String,
  reason: Schema.Literals(["Timeout", "Closed", "Transport", "Encode", "Decode"]),
  message: Schema.String
}) {}

type Outcome = { readonly isError: boolean; readonly body: unknown }

const ErrorBody = Schema.Tuple([Schema.String, Schema.Array(Schema.Unknown), Schema.String])
const decodeErrorBody = Schema.decodeUnknownEffect(ErrorBody)

/** The client interface (one connected DEALER). */
export interface AiozmqClientShape {
  /** Calls `method(*args)`; the result is the msgpack-decoded body. */
  readonly call: (
    method: string,
    args: ReadonlyArray<unknown>,
    options?: { readonly timeout?: Duration.Input }
  ) => Effect.Effect<unknown, AiozmqRemoteError | AiozmqClientError>
  /** Calls a contract method: arguments encoded and the result decoded with its Schemas. */
  readonly invoke: <R extends AnyAgentRpc>(
    rpc: R,
    ...args: R["args"]["Type"]
  ) => Effect.Effect<R["success"]["Type"], AiozmqRemoteError | AiozmqClientError>
  /** Requests sent and not answered yet. */
  readonly pending: Effect.Effect<number>
}

export class AiozmqClient extends Context.Service<AiozmqClient, AiozmqClientShape>()("bai-agent/rpc/aiozmq/AiozmqClient") {
  /** A connected client, closed with the enclosing scope. */
  static readonly make = Effect.fnUntraced(function*(options: AiozmqClientOptions) {
    const socket = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const s = new Zmq.Dealer({ linger: options.lingerMillis ?? 1000 })
        s.connect(options.connect)
        return s
      }),
      (s) => Effect.sync(() => s.close())
    )
    const pid = process.pid & 0xffff
    const rnd = Math.floor(Math.random() * 0x10000)
    const pendingCalls = new Map<number, Deferred.Deferred<Outcome, AiozmqClientError>>()
    let counter = 0

    const outgoing = yield* Queue.unbounded<ReadonlyArray<Buffer>>()
    yield* Queue.take(outgoing).pipe(
      Effect.flatMap((frames) =>
        Effect.tryPromise(() => socket.send(frames as Array<Buffer>)).pipe(
          Effect.catch((error) => Effect.logWarning("aiozmq client: request not sent", error))
        )
      ),
      Effect.forever,
      Effect.forkScoped
    )

    yield* Effect.tryPromise(() => socket.receive()).pipe(
      Effect.flatMap((frames) =>
        Effect.suspend(() => {
          const header = frames.length === 2 ? decodeReplyHeader(frames[0]!) : undefined
          if (header === undefined) return Effect.logWarning(`aiozmq client: malformed reply (${frames.length} frames)`)
          const deferred = pendingCalls.get(header.reqId)
          if (deferred === undefined) return Effect.logDebug(`aiozmq client: unknown answer id ${header.reqId}`)
          pendingCalls.delete(header.reqId)
          return Msgpack.decodeEffect(frames[1]!).pipe(
            Effect.matchEffect({
              onFailure: (e) =>
                Deferred.fail(deferred, new AiozmqClientError({ method: "?", reason: "Decode", message: e.message })),
              onSuccess: (body) => Deferred.succeed(deferred, { isError: header.isError, body })
            })
          )
        })
      ),
      Effect.forever,
      Effect.catchCause((cause) => (socket.closed ? Effect.void : Effect.logError("aiozmq client: receive loop stopped", cause))),
      Effect.ensuring(
        Effect.forEach(pendingCalls.values(), (d) =>
          Deferred.fail(d, new AiozmqClientError({ method: "?", reason: "Closed", message: "client closed" }))
        )
      ),
      Effect.forkScoped
    )

    const call = Effect.fnUntraced(function*(
      method: string,
      args: ReadonlyArray<unknown>,
      callOptions?: { readonly timeout?: Duration.Input }
    ) {
      const bargs = yield* Msgpack.encodeEffect(args).pipe(
        Effect.mapError((e) => new AiozmqClientError({ method, reason: "Encode", message: e.message }))
      )
      counter = counter >= 0xffffffff ? 1 : counter + 1
      const reqId = counter
      const now = yield* Clock.currentTimeMillis
      const deferred = yield* Deferred.make<Outcome, AiozmqClientError>()
      pendingCalls.set(reqId, deferred)
      const header = encodeRequestHeader({ pid, rnd, reqId, timestamp: now / 1000 })
      yield* Queue.offer(outgoing, [header, Buffer.from(method, "utf8"), bargs, EMPTY_MAP])
      const timeout = callOptions?.timeout ?? options.timeout
      const awaited = Deferred.await(deferred).pipe(Effect.ensuring(Effect.sync(() => pendingCalls.delete(reqId))))
      const outcome = yield* (timeout === undefined
        ? awaited
        : awaited.pipe(
          Effect.timeoutOrElse({
            duration: timeout,
            orElse: () =>
              Effect.fail(
                new AiozmqClientError({ method, reason: "Timeout", message: `no answer within ${Duration.format(Duration.fromInputUnsafe(timeout))}` })
              )
          })
        ))
      if (!outcome.isError) return outcome.body
      const body = yield* decodeErrorBody(outcome.body).pipe(
        Effect.mapError(() => new AiozmqClientError({ method, reason: "Decode", message: "malformed error body" }))
      )
      return yield* new AiozmqRemoteError({ method, excType: body[0], args: body[1], repr: body[2] })
    })

    const invoke = <R extends AnyAgentRpc>(rpc: R, ...args: R["args"]["Type"]) =>
      Schema.encodeEffect(rpc.args)(args).pipe(
        Effect.mapError((e) => new AiozmqClientError({ method: rpc.name, reason: "Encode", message: e.message })),
        Effect.flatMap((encoded) => call(rpc.name, encoded as ReadonlyArray<unknown>)),
        Effect.flatMap((body) =>
          Schema.decodeUnknownEffect(rpc.success)(body).pipe(
            Effect.mapError((e) => new AiozmqClientError({ method: rpc.name, reason: "Decode", message: e.message }))
          )
        )
      ) as Effect.Effect<R["success"]["Type"], AiozmqRemoteError | AiozmqClientError>

    return AiozmqClient.of({ call, invoke, pending: Effect.sync(() => pendingCalls.size) })
  })

  static readonly layer = (options: AiozmqClientOptions): Layer.Layer<AiozmqClient> =>
    Layer.effect(AiozmqClient, AiozmqClient.make(options))
}

const EMPTY_MAP = Buffer.from([0x80])
