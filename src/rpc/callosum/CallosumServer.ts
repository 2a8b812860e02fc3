/**
 * The manager-facing RPC server for manager 25.15 / 26.x: Callosum 1.0.3 over a ZeroMQ ROUTER
 * (contract §1), serving {@link CallosumHandlers}.
 *
 * - PING is answered with PONG by the reader itself, before anything else is queued behind a handler
 *   (the manager drops a connection whose PONG takes > 5 s);
 * - every FUNCTION runs in its own fiber (`ExitOrderedAsyncScheduler` semantics: nothing is ordered
 *   by `okey`); its reply echoes `(meth, okey, seq)`;
 * - a handler's failure is a FAILURE reply `[exception name, repr, traceback]`; an unknown method is a
 *   FAILURE too (`NotImplementedError`) and the loop keeps serving (the Python agent's loop dies there);
 * - CANCEL is ignored like the Python agent does (the manager has already given up; a late reply is
 *   dropped on its side); malformed messages are dropped with a warning, or answered with a FAILURE
 *   when their header was readable;
 * - one writer fiber sends (zeromq.js allows one send at a time); closing the scope stops reading, lets
 *   in-flight handlers finish for `shutdownGrace`, flushes replies, then closes the socket.
 */
import { Cause, Context, Duration, Effect, Fiber, FiberSet, Layer, Option, Pull, Queue, Schema } from "effect"
import * as Zmq from "zeromq"
import { hasPython } from "../../domain/Errors.ts"
import { trackRpc } from "../../observability/Metrics.ts"
import { type CurveConfigError, ZAP_DOMAIN, zapHandler } from "./Curve.ts"
import { failureFrames, MessageType, parse, pythonRepr, resultFrames, type CallosumRequest } from "./Frames.ts"

/** One method: positional and keyword arguments (decoded with the manager's ext types) in, result out. */
export type CallosumMethod = (
  args: ReadonlyArray<unknown>,
  kwargs: Readonly<Record<string, unknown>>
) => Effect.Effect<unknown, unknown>

/** The methods a Callosum server serves, by name. */
export class CallosumHandlers extends Context.Service<CallosumHandlers, ReadonlyMap<string, CallosumMethod>>()(
  "bai-agent/rpc/callosum/CallosumHandlers"
) {
  static readonly layerOf = (methods: Readonly<Record<string, CallosumMethod>>): Layer.Layer<CallosumHandlers> =>
    Layer.succeed(CallosumHandlers, new Map(Object.entries(methods)))
}

/** A FAILURE the handler chose (e.g. a bad argument): the manager sees this exception. */
export class CallosumFailure extends Schema.TaggedError<CallosumFailure>()("CallosumFailure", {
  exception: Schema.String,
  message: Schema.String
}) {}

export interface CallosumServerOptions {
  /** ZeroMQ endpoint to bind, e.g. `tcp://0.0.0.0:6001` (`tcp://127.0.0.1:*` picks a free port). */
  readonly bind: string
  /** Largest accepted message. Default 64 MiB. */
  readonly maxMessageBytes?: number
  /** How long in-flight requests may run on shutdown. Default 10 s. */
  readonly shutdownGrace?: Duration.Input
  /** Socket linger on close. Default 100 ms (callosum's `zmq.LINGER: 100`). */
  readonly lingerMillis?: number
  /** CURVE: the agent's secret key and the client (manager) public keys allowed, all Z85. */
  readonly curve?: { readonly secretKey: string; readonly allowedClientKeys: ReadonlyArray<string> }
}

export class CallosumServerError extends Schema.TaggedError<CallosumServerError>()("CallosumServerError", {
  reason: Schema.Literals(["Bind"]),
  endpoint: Schema.String,
  cause: Schema.Defect()
}) {}

/** What the manager gets for a failed handler. */
export const failureOf = (method: string, cause: Cause.Cause<unknown>): { name: string; repr: string; traceback: string } => {
  const error = Cause.findErrorOption(cause)
  if (Option.isSome(error)) {
    const e = error.value
    if (e instanceof CallosumFailure) return { name: e.exception, repr: pythonRepr(e.exception, [e.message]), traceback: "" }
    if (hasPython(e)) {
      const name = e.python.name.split(".").pop() ?? e.python.name
      return { name, repr: pythonRepr(name, e.python.args), traceback: "" }
    }
    const tag = typeof e === "object" && e !== null && "_tag" in e ? String((e as { _tag: unknown })._tag) : "RuntimeError"
    const message = e instanceof Error ? e.message : String(e)
    return { name: tag, repr: pythonRepr(tag, [message]), traceback: "" }
  }
  return { name: "RuntimeError", repr: pythonRepr("RuntimeError", [`internal error in ${method}`]), traceback: "" }
}

export class CallosumServer extends Context.Service<CallosumServer, {
  /** The bound endpoint (with the real port when `:*` was asked for). */
  readonly endpoint: string
  /** Requests currently being handled. */
  readonly inFlight: Effect.Effect<number>
}>()("bai-agent/rpc/callosum/CallosumServer") {
  static readonly make = Effect.fnUntraced(function*(options: CallosumServerOptions) {
    const handlers = yield* CallosumHandlers
    const maxBytes = options.maxMessageBytes ?? 64 * 1024 * 1024
    const shutdownGrace = options.shutdownGrace ?? Duration.seconds(10)
    const tracked = new Map([...handlers].map(([name, h]) => [name, { handler: h, track: trackRpc(name) }]))

    const curve = options.curve
    // the ZAP handler must be up before the first handshake
    if (curve !== undefined) yield* zapHandler(new Set(curve.allowedClientKeys))
    const socket = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: async () => {
          const s = new Zmq.Router({
            linger: options.lingerMillis ?? 100,
            maxMessageSize: maxBytes,
            sendTimeout: 0,
            ...(curve === undefined ? {} : { curveServer: true, curveSecretKey: curve.secretKey, zapDomain: ZAP_DOMAIN })
          })
          try {
            await s.bind(options.bind)
          } catch (cause) {
            s.close()
            throw cause
          }
          return s
        },
        catch: (cause) => new CallosumServerError({ reason: "Bind", endpoint: options.bind, cause })
      }),
      (s) => Effect.sync(() => s.close())
    )
    const endpoint = socket.lastEndpoint ?? options.bind
    yield* Effect.logInfo("Callosum RPC server listening").pipe(Effect.annotateLogs({ endpoint, curve: curve !== undefined }))

    const replies = yield* Queue.unbounded<ReadonlyArray<Buffer>, Cause.Done>()
    const inflight = yield* FiberSet.make<void, never>()

    // --- writer: the only fiber that sends (see AiozmqServer: with sendTimeout 0 a ROUTER send settles at once)
    const sendBatch = (batch: ReadonlyArray<ReadonlyArray<Buffer>>): Promise<number> =>
      Promise.allSettled(batch.map((frames) => socket.send(frames as Array<Buffer>))).then((r) =>
        r.filter((x) => x.status === "rejected").length
      )
    const writer = yield* Queue.takeAll(replies).pipe(
      Effect.flatMap((batch) =>
        Effect.tryPromise(() => sendBatch(batch)).pipe(
          Effect.flatMap((failed) => (failed === 0 ? Effect.void : Effect.logWarning(`callosum: ${failed} replies not sent`))),
          Effect.catch((error) => Effect.logWarning("callosum: replies not sent", error))
        )
      ),
      Effect.forever,
      Effect.catchCause((cause) =>
        Cause.hasInterruptsOnly(cause) || Pull.isDoneCause(cause) ? Effect.void : Effect.logError("callosum: writer stopped", cause)
      ),
      Effect.forkScoped
    )

    const enqueue = (frames: ReadonlyArray<Buffer>) => Effect.sync(() => void Queue.offerUnsafe(replies, frames))

    const fail = (request: CallosumRequest, failure: { name: string; repr: string; traceback: string }) =>
      enqueue(failureFrames(request, failure))

    const serve = (request: CallosumRequest): Effect.Effect<void> => {
      const entry = tracked.get(request.method)
      if (entry === undefined) {
        return Effect.logWarning(`callosum: unknown method ${request.method}`).pipe(
          Effect.andThen(fail(request, {
            name: "NotImplementedError",
            repr: pythonRepr("NotImplementedError", [`${request.method} is not implemented by this agent`]),
            traceback: ""
          }))
        )
      }
      return Effect.matchCauseEffect(Effect.suspend(() => entry.handler(request.args, request.kwargs)).pipe(entry.track), {
        onFailure: (cause) =>
          Cause.hasInterruptsOnly(cause)
            ? Effect.void
            : (Option.isNone(Cause.findErrorOption(cause))
              ? Effect.logError(`callosum: handler ${request.method} failed unexpectedly`, cause)
              : Effect.logInfo(`callosum: ${request.method} failed: ${failureOf(request.method, cause).repr}`)).pipe(
                Effect.andThen(fail(request, failureOf(request.method, cause)))
              ),
        onSuccess: (value) =>
          Effect.try(() => resultFrames(request, value)).pipe(
            Effect.flatMap(enqueue),
            Effect.catch((e) =>
              Effect.logError(`callosum: result of ${request.method} not encodable`, e).pipe(
                Effect.andThen(fail(request, {
                  name: "RuntimeError",
                  repr: pythonRepr("RuntimeError", [`the agent produced a result of ${request.method} it cannot encode`]),
                  traceback: ""
                }))
              )
            )
          )
      })
    }

    const dispatch = (frames: ReadonlyArray<Buffer>): Effect.Effect<void> => {
      const parsed = parse(frames, maxBytes)
      switch (parsed._tag) {
        case "Ping":
          return enqueue(parsed.reply)
        case "Request": {
          const { request } = parsed
          if (request.type === MessageType.FUNCTION) return FiberSet.run(inflight, serve(request)).pipe(Effect.asVoid)
          if (request.type === MessageType.CANCEL) return Effect.logDebug(`callosum: CANCEL of ${request.method}#${request.seq} ignored`)
          return Effect.logWarning(`callosum: message type ${request.type} ignored`)
        }
        case "Invalid":
          return Effect.logWarning(`callosum: invalid message dropped: ${parsed.reason}`).pipe(
            Effect.andThen(
              parsed.request !== undefined && parsed.request.type === MessageType.FUNCTION
                ? fail(parsed.request, { name: "TypeError", repr: pythonRepr("TypeError", [parsed.reason]), traceback: "" })
                : Effect.void
            )
          )
      }
    }

    const reader = yield* Effect.tryPromise(() => socket.receive()).pipe(
      Effect.flatMap(dispatch),
      Effect.forever,
      Effect.catchCause((cause) => (socket.closed ? Effect.void : Effect.logError("callosum: receive loop stopped", cause))),
      Effect.forkScoped
    )

    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        yield* Fiber.interrupt(reader)
        const pending = yield* FiberSet.size(inflight)
        if (pending > 0) {
          yield* Effect.logInfo(`callosum: waiting for ${pending} in-flight request(s)`)
          const done = yield* FiberSet.awaitEmpty(inflight).pipe(Effect.timeoutOption(shutdownGrace))
          if (Option.isNone(done)) yield* Effect.logWarning("callosum: in-flight requests cut off at shutdown")
          yield* FiberSet.clear(inflight)
        }
        yield* Queue.end(replies)
        yield* Fiber.await(writer).pipe(Effect.timeoutOption(Duration.seconds(2)))
        yield* Effect.logInfo("Callosum RPC server stopped").pipe(Effect.annotateLogs({ endpoint }))
      })
    )

    return CallosumServer.of({ endpoint, inFlight: FiberSet.size(inflight) })
  })

  /** The server, bound for the layer's lifetime. Requires {@link CallosumHandlers}. */
  static readonly layer = (options: CallosumServerOptions): Layer.Layer<CallosumServer, CallosumServerError | CurveConfigError, CallosumHandlers> =>
    Layer.effect(CallosumServer, CallosumServer.make(options))
}
