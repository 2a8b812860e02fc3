/**
 * The one RPC server core both manager contracts are served through; a wire (aiozmq for manager
 * 19.06, Callosum for 25.15 / 26.x) is an adapter that only reads and writes frames.
 *
 * The core owns:
 * - the ZeroMQ ROUTER (bound for the scope, `sendTimeout: 0`: a reply is sent synchronously by the
 *   fiber that produced it — a ROUTER never blocks, a peer over its high-water mark loses the
 *   message as with the Python servers) and an optional ZAP handler on its context;
 * - one reader fiber that drains the socket per wake-up (bounded batches) and hands each message to
 *   the wire's `dispatch`;
 * - admission: each request runs in its own fiber, within per-peer bounds (requests and bytes in
 *   flight); a request over them is refused at once;
 * - the request lifecycle ({@link ServerCore.call}): wire arguments → the method's argument binding
 *   and schema → its handler (tracked: `bai_rpc_requests_total`, `bai_rpc_duration_seconds`) → its
 *   result schema → the wire's reply encoding, with ONE error mapping: a failure carrying a Python
 *   exception is answered with it, an interruption is not answered, anything else is a defect
 *   (counted, logged, answered `RuntimeError`), as is a result outside its schema or one the wire
 *   cannot encode;
 * - graceful shutdown: stop reading, let in-flight requests finish for `shutdownGrace` (their
 *   replies are sent as they finish), then close the socket with the wire's linger.
 */
import { Cause, Duration, Effect, Exit, Fiber, FiberSet, Metric, Option, Result, Schema, type Scope } from "effect"
import * as Zmq from "zeromq"
import { hasPython, type PythonError, runtimeError } from "../../domain/Errors.ts"
import {
  rpcDroppedTotal,
  rpcErrorRepliesTotal,
  rpcHandlerDefectsTotal,
  rpcMessagesReceivedTotal,
  trackRpc
} from "../../observability/Metrics.ts"

/** What a request is answered with: a value, or a Python exception. */
export type Reply =
  | { readonly _tag: "Value"; readonly value: unknown }
  | { readonly _tag: "Error"; readonly error: PythonError }

const valueReply = (value: unknown): Reply => ({ _tag: "Value", value })
const errorReply = (error: PythonError): Reply => ({ _tag: "Error", error })

/** One method as the core serves it: the contract's argument and result handling around its handler. */
export interface ServedMethod {
  readonly name: string
  /**
   * The wire's positional and keyword arguments → the handler's arguments, or the exception for bad
   * ones. Synchronous (the contract's Schemas need no services): no fiber steps on the hot path.
   */
  readonly decodeArgs: (args: unknown, kwargs: unknown) => Result.Result<ReadonlyArray<unknown>, PythonError>
  readonly handler: (...args: ReadonlyArray<any>) => Effect.Effect<unknown, unknown>
  /** The handler's value → what the wire encodes (the result schema, synchronous); a failure is a defect. */
  readonly encodeSuccess: (value: unknown) => Exit.Exit<unknown, unknown>
  /** `bai_rpc_requests_total{method,outcome}` and `bai_rpc_duration_seconds` around the handler. */
  readonly track: <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
}

/** A method whose handler takes the wire's arguments as they are and whose result is not re-encoded. */
export const servedAsIs = (
  name: string,
  handler: (args: ReadonlyArray<unknown>, kwargs: Readonly<Record<string, unknown>>) => Effect.Effect<unknown, unknown>
): ServedMethod => ({
  name,
  decodeArgs: (args, kwargs) => Result.succeed([args, kwargs]),
  handler,
  encodeSuccess: Exit.succeed,
  track: trackRpc(name)
})

/** The socket could not be opened or bound. */
export class RouterBindError extends Schema.TaggedError<RouterBindError>()("RouterBindError", {
  endpoint: Schema.String,
  cause: Schema.Defect()
}) {}

export interface ServerCoreOptions {
  /** Log prefix and log annotation: `aiozmq`, `callosum`. */
  readonly wire: string
  /** ZeroMQ endpoint to bind (`tcp://127.0.0.1:*` picks a free port). */
  readonly bind: string
  /** ROUTER options of the wire (linger, maxMessageSize, CURVE, ZAP domain). */
  readonly socket: Omit<Zmq.SocketOptions<Zmq.Router>, "sendTimeout" | "context">
  /**
   * A ZAP handler (RFC 27) answering each handshake, bound before the ROUTER in `context` (a ZAP
   * handler is one per context; absent: the default context): the request frames → the reply frames
   * and whether it was a refusal worth a warning (said once per `key`).
   */
  readonly zap?: {
    readonly context?: Zmq.Context
    readonly answer: (request: ReadonlyArray<Buffer>) => { readonly reply: Array<Buffer>; readonly refused?: { readonly key: string; readonly log: string } }
  }
  /** Requests one peer (one ZeroMQ routing id) may have in flight. */
  readonly maxInFlightPerPeer: number
  /** Bytes of the requests one peer may have in flight (a lone request is always admitted). */
  readonly maxInFlightBytesPerPeer: number
  /** How long in-flight requests may run on shutdown. */
  readonly shutdownGrace: Duration.Input
}

/** One request as the core tracks it: where the reply goes and what it belongs to. */
export interface RequestRef {
  readonly method: string
  /** Log annotations of this request (e.g. `reqId`, `seq`), added only where it logs. */
  readonly annotations: Readonly<Record<string, unknown>>
}

export interface ServerCore {
  /** The bound endpoint (with the real port when `:*` was asked for). */
  readonly endpoint: string
  /** Requests currently being handled. */
  readonly inFlight: Effect.Effect<number>
  /** Sends one reply now (synchronously); failures are counted and reported per batch. */
  readonly send: (frames: Array<Buffer>) => void
  /**
   * Runs a request in its own fiber if `peer` is within its bounds; otherwise returns why it was
   * refused (the wire answers that as it answers an error) and runs nothing.
   */
  readonly admit: (peer: string, bytes: number, serve: Effect.Effect<void>) => Effect.Effect<unknown> | string
  /**
   * The request lifecycle: `method`'s argument decoding, handler, result encoding, then `reply`
   * (the wire's encoding of a {@link Reply}; it may throw for a value it cannot encode, which is
   * answered with a `RuntimeError` instead). Interrupted: no reply.
   */
  readonly call: (
    ref: RequestRef,
    method: ServedMethod,
    args: unknown,
    kwargs: unknown,
    reply: (reply: Reply) => Array<Buffer>
  ) => Effect.Effect<void>
  /** Answers an error without running anything (unknown method, bad frames, refused admission). */
  readonly fail: (reply: (reply: Reply) => Array<Buffer>, error: PythonError) => Effect.Effect<void>
  /** A message that could not be served at all: counted in `bai_rpc_dropped_total` and logged. */
  readonly dropped: (reason: string) => Effect.Effect<void>
}

const MAX_BATCH = 256

/**
 * Opens the server and starts reading: every received message goes to `dispatch` (which may use the
 * core it is given). Closed with the scope, gracefully.
 */
export const makeServerCore = Effect.fnUntraced(function*(
  options: ServerCoreOptions,
  dispatch: (core: ServerCore) => (frames: ReadonlyArray<Buffer>) => Effect.Effect<unknown>
): Effect.fn.Return<ServerCore, RouterBindError, Scope.Scope> {
  const wire = options.wire
  const bindSocket = <S extends { bind: (endpoint: string) => Promise<void>; close: () => void }>(make: () => S, endpoint: string) =>
    Effect.acquireRelease(
      Effect.tryPromise({
        try: async () => {
          const s = make()
          try {
            await s.bind(endpoint)
          } catch (cause) {
            s.close()
            throw cause
          }
          return s
        },
        catch: (cause) => new RouterBindError({ endpoint, cause })
      }),
      (s) => Effect.sync(() => s.close())
    )

  // the ZAP handler must be up before the first handshake
  const zap = options.zap
  if (zap !== undefined) {
    const handler = yield* bindSocket(
      () => new Zmq.Reply({ linger: 0, ...(zap.context === undefined ? {} : { context: zap.context }) }),
      "inproc://zeromq.zap.01"
    )
    // only the first refusal per key is logged (a scanner must not flood the log)
    const refusedLogged = new Set<string>()
    yield* Effect.tryPromise(() => handler.receive()).pipe(
      Effect.flatMap((request) => {
        const { reply, refused } = zap.answer(request)
        const log = refused === undefined || refusedLogged.has(refused.key) || refusedLogged.size >= 1024
          ? Effect.void
          : Effect.sync(() => refusedLogged.add(refused.key)).pipe(Effect.andThen(Effect.logWarning(`${wire}: ${refused.log}`)))
        return log.pipe(Effect.andThen(Effect.tryPromise(() => handler.send(reply))), Effect.ignore)
      }),
      Effect.forever,
      Effect.catchCause((cause) =>
        handler.closed || Cause.hasInterruptsOnly(cause) ? Effect.void : Effect.logError(`${wire}: ZAP handler stopped`, cause)
      ),
      Effect.forkScoped
    )
  }

  const socket = yield* bindSocket(
    () => new Zmq.Router({ ...options.socket, sendTimeout: 0, ...(zap?.context === undefined ? {} : { context: zap.context }) }),
    options.bind
  )
  const endpoint = socket.lastEndpoint ?? options.bind
  const inflight = yield* FiberSet.make<void, never>()

  // --- replies are sent by the fiber that produced them, at once (see the top); the returned
  // promise is already settled, only a rejection is looked at
  let sendFailures = 0
  const sendFailed = () => {
    sendFailures++
  }
  const send = (frames: Array<Buffer>): void => {
    if (socket.closed) {
      sendFailures++
      return
    }
    try {
      socket.send(frames).then(undefined, sendFailed)
    } catch {
      sendFailures++
    }
  }
  const reportSendFailures: Effect.Effect<void> = Effect.suspend(() => {
    if (sendFailures === 0) return Effect.void
    const failed = sendFailures
    sendFailures = 0
    return Effect.logWarning(`${wire}: ${failed} replies not sent`)
  })

  const annotate = (ref: RequestRef) => Effect.annotateLogs({ rpc: ref.method, ...ref.annotations })

  const answer = (reply: (r: Reply) => Array<Buffer>, r: Reply): Effect.Effect<void> => {
    send(reply(r))
    return r._tag === "Error" ? Metric.update(rpcErrorRepliesTotal, 1) : Effect.void
  }
  const fail = (reply: (r: Reply) => Array<Buffer>, error: PythonError) => answer(reply, errorReply(error))

  const defect = (ref: RequestRef, reply: (r: Reply) => Array<Buffer>, log: string, cause: unknown, message: string) =>
    Metric.update(rpcHandlerDefectsTotal, 1).pipe(
      Effect.andThen(Effect.logError(`${wire}: ${log}`, cause)),
      annotate(ref),
      Effect.andThen(fail(reply, runtimeError(message)))
    )

  const sendValue = (ref: RequestRef, reply: (r: Reply) => Array<Buffer>, value: unknown): Effect.Effect<void> => {
    let frames: Array<Buffer>
    try {
      frames = reply(valueReply(value))
    } catch (cause) {
      return Effect.logError(`${wire}: result of ${ref.method} not encodable`, cause).pipe(
        annotate(ref),
        Effect.andThen(fail(reply, runtimeError(`the agent produced a result of ${ref.method} it cannot encode`)))
      )
    }
    send(frames)
    return Effect.void
  }

  const handlerFailed = (ref: RequestRef, reply: (r: Reply) => Array<Buffer>, cause: Cause.Cause<unknown>): Effect.Effect<void> => {
    if (Cause.hasInterruptsOnly(cause)) return Effect.void // cancelled: no reply, like the Python servers
    const error = Cause.findErrorOption(cause)
    if (Option.isSome(error) && hasPython(error.value)) return fail(reply, error.value.python)
    return defect(ref, reply, `handler ${ref.method} failed unexpectedly`, cause, `internal error in ${ref.method}: ${String(Cause.squash(cause))}`)
  }

  const call = (
    ref: RequestRef,
    method: ServedMethod,
    args: unknown,
    kwargs: unknown,
    reply: (r: Reply) => Array<Buffer>
  ): Effect.Effect<void> => {
    const decoded = method.decodeArgs(args, kwargs)
    if (Result.isFailure(decoded)) return fail(reply, decoded.failure)
    const handlerArgs = decoded.success
    return Effect.matchCauseEffect(Effect.suspend(() => method.handler(...handlerArgs)).pipe(method.track), {
      onFailure: (cause) => handlerFailed(ref, reply, cause),
      onSuccess: (result) => {
        const encoded = method.encodeSuccess(result)
        return Exit.isSuccess(encoded)
          ? sendValue(ref, reply, encoded.value)
          : defect(ref, reply, `handler ${ref.method} returned a value outside its schema`, encoded.cause, `internal error in ${ref.method}: invalid result`)
      }
    })
  }

  // per peer (ROUTER routing id): requests and bytes in flight; entries go when they reach zero
  const maxInFlight = options.maxInFlightPerPeer
  const maxInFlightBytes = options.maxInFlightBytesPerPeer
  const perPeer = new Map<string, { count: number; bytes: number }>()
  const release = (peer: string, bytes: number): void => {
    const entry = perPeer.get(peer)
    if (entry === undefined) return
    entry.count--
    entry.bytes -= bytes
    if (entry.count <= 0) perPeer.delete(peer)
  }
  const admit = (peer: string, bytes: number, serve: Effect.Effect<void>): Effect.Effect<unknown> | string => {
    const entry = perPeer.get(peer) ?? { count: 0, bytes: 0 }
    if (entry.count >= maxInFlight || (entry.count > 0 && entry.bytes + bytes > maxInFlightBytes)) {
      return `too many requests in flight from this peer (${entry.count} requests, ${entry.bytes} bytes; ` +
        `at most ${maxInFlight} and ${maxInFlightBytes} bytes): retry when some are answered`
    }
    entry.count++
    entry.bytes += bytes
    perPeer.set(peer, entry)
    // released by an observer of the request's fiber, however it ends (called at once when the
    // fiber already finished during the fork): no `ensuring` region in every request
    return Effect.map(FiberSet.run(inflight, serve), (fiber) => {
      fiber.addObserver(() => release(peer, bytes))
      return fiber
    })
  }

  const dropped = (reason: string) =>
    Metric.update(rpcDroppedTotal, 1).pipe(Effect.andThen(Effect.logWarning(`${wire}: ${reason}`)))

  const core: ServerCore = { endpoint, inFlight: FiberSet.size(inflight), send, admit, call, fail, dropped }
  const onMessage = dispatch(core)

  // --- reader: the only fiber that receives. Each wake-up drains the socket: after the first
  // message (a waiting receive), the messages already queued (`readable`: ZMQ_EVENTS has POLLIN) are
  // read synchronously, so a burst costs one fiber resumption instead of one per message (bounded
  // per batch so that a flood cannot starve the other fibers). Asking `readable` instead of reading
  // until EAGAIN spares a sequential caller an exception per request. While draining, the receive
  // timeout is 0: zeromq.js then reads at once instead of asking ZMQ_EVENTS again (each ask is a
  // poll(2) of libzmq's mailbox), so a drained message costs one ZMQ_EVENTS, not two.
  const waitTimeout = socket.receiveTimeout
  const drain = async (): Promise<Array<Array<Buffer>>> => {
    const batch = [await socket.receive()]
    if (!socket.readable) return batch
    socket.receiveTimeout = 0
    try {
      do {
        batch.push(await socket.receive())
      } while (batch.length < MAX_BATCH && socket.readable)
    } finally {
      if (!socket.closed) socket.receiveTimeout = waitTimeout
    }
    return batch
  }
  const dispatchBatch = (batch: ReadonlyArray<ReadonlyArray<Buffer>>): Effect.Effect<void> =>
    Metric.update(rpcMessagesReceivedTotal, batch.length).pipe(
      Effect.andThen(Effect.forEach(batch, onMessage, { discard: true })),
      Effect.andThen(reportSendFailures)
    )
  const reader = yield* Effect.tryPromise(drain).pipe(
    Effect.flatMap(dispatchBatch),
    Effect.forever,
    Effect.catchCause((cause) => (socket.closed ? Effect.void : Effect.logError(`${wire}: receive loop stopped`, cause))),
    Effect.forkScoped
  )

  // --- graceful shutdown (runs before the fibers above are interrupted and the socket closes)
  yield* Effect.addFinalizer(() =>
    Effect.gen(function*() {
      yield* Fiber.interrupt(reader)
      const pending = yield* FiberSet.size(inflight)
      if (pending > 0) {
        yield* Effect.logInfo(`${wire}: waiting for ${pending} in-flight request(s)`)
        const done = yield* FiberSet.awaitEmpty(inflight).pipe(Effect.timeoutOption(options.shutdownGrace))
        if (Option.isNone(done)) yield* Effect.logWarning(`${wire}: in-flight requests cut off at shutdown`)
        yield* FiberSet.clear(inflight)
      }
      yield* reportSendFailures
      yield* Effect.logInfo(`${wire} RPC server stopped`).pipe(Effect.annotateLogs({ endpoint }))
    })
  )
  yield* Effect.logInfo(`${wire} RPC server listening`).pipe(Effect.annotateLogs({ endpoint }))
  return core
})
