/**
 * The manager-facing RPC server: aiozmq framing over a ZeroMQ ROUTER (spec §1.1), serving
 * {@link AgentRpcHandlers}.
 *
 * - one reader fiber receives, draining the socket per wake-up; each request runs in its own fiber
 *   (a slow `execute` never blocks a `ping`) and sends its reply itself, synchronously
 *   (`sendTimeout: 0`: no writer fiber, no scheduler hop);
 * - bad input never stops the server: malformed messages are dropped with a warning, or answered
 *   with an error when their `req_id` is readable;
 * - closing the scope stops reading, lets in-flight requests finish for `shutdownGrace` (their
 *   replies are sent as they finish), then closes the socket with a 200 ms linger (like aiozmq).
 */
import { Cause, Clock, Context, Duration, Effect, Fiber, FiberSet, Layer, Metric, Option, Schema } from "effect"
import {
  rpcDroppedTotal,
  rpcErrorRepliesTotal,
  rpcHandlerDefectsTotal,
  rpcMessagesReceivedTotal,
  trackRpc
} from "../../observability/Metrics.ts"
import * as Zmq from "zeromq"
import {
  hasPython,
  notFoundError,
  parametersError,
  type PythonError,
  runtimeError,
  toErrorBody
} from "../../domain/Errors.ts"
import { AgentRpcHandlers, AgentRpcs, type AnyAgentRpc } from "../AgentRpcs.ts"
import * as Msgpack from "../msgpack/Msgpack.ts"
import { parseAllowedPeers, peerAllowed } from "./Allowlist.ts"
import { encodeReplyHeader, parseRequest, type Request } from "./Frames.ts"

/** Options of {@link AiozmqServer.layer}. */
export interface AiozmqServerOptions {
  /** ZeroMQ endpoint to bind, e.g. `tcp://10.0.0.5:6001` (`tcp://127.0.0.1:*` picks a free port). */
  readonly bind: string
  /**
   * Largest accepted request (all frames together). Default 64 MiB. A bigger request is answered
   * with `ParametersError` on the same connection; a single frame over twice this size makes libzmq
   * drop the connection instead (ZMQ_MAXMSGSIZE: the bytes would have to be held to be answered).
   */
  readonly maxFrameBytes?: number
  /** Requests one peer (one ZeroMQ connection) may have in flight; more are refused at once. Default 1024. */
  readonly maxInFlightPerPeer?: number
  /** Bytes of the requests one peer may have in flight. Default 4 × `maxFrameBytes`. */
  readonly maxInFlightBytesPerPeer?: number
  /**
   * Manager addresses allowed to connect (IPs or CIDR blocks, IPv4 or IPv6). Absent or empty:
   * everyone. Enforced by a ZeroMQ ZAP handler during the handshake, before any request is read.
   */
  readonly allowedPeers?: ReadonlyArray<string>
  /** Most msgpack values in one request's arguments. Default {@link Msgpack.DEFAULT_MAX_ELEMENTS}. */
  readonly maxElements?: number
  /** How long in-flight requests may run on shutdown. Default 10 s. */
  readonly shutdownGrace?: Duration.Input
  /** Socket linger on close. Default 200 ms (aiozmq). */
  readonly lingerMillis?: number
}

/** The socket could not be opened or bound (or the allowlist is not valid). */
export class AiozmqServerError extends Schema.TaggedError<AiozmqServerError>()("AiozmqServerError", {
  reason: Schema.Literals(["Bind", "Allowlist"]),
  endpoint: Schema.String,
  cause: Schema.Defect()
}) {
  /** `cannot bind tcp://127.0.0.1:6001: address already in use` (what an operator needs to read). */
  override get message(): string {
    const cause = this.cause
    const detail = cause instanceof Error ? cause.message : String(cause)
    const lowered = detail.length > 0 ? detail[0]!.toLowerCase() + detail.slice(1) : "unknown error"
    return this.reason === "Bind" ? `cannot bind ${this.endpoint}: ${lowered}` : `rpc-allowed-peers: ${detail}`
  }
}

const ZAP_ENDPOINT = "inproc://zeromq.zap.01"
const ZAP_DOMAIN = "bai-agent-rpc"

const requestsTotal = rpcMessagesReceivedTotal
const errorRepliesTotal = rpcErrorRepliesTotal
const droppedTotal = rpcDroppedTotal
const defectsTotal = rpcHandlerDefectsTotal

/** Binds keyword arguments to positions after the positional ones, like `inspect.Signature.bind`. */
const bindArguments = (rpc: AnyAgentRpc, args: unknown, kwargs: unknown): ReadonlyArray<unknown> | string => {
  if (!Array.isArray(args)) return "arguments are not a sequence"
  if (kwargs === null || typeof kwargs !== "object" || Array.isArray(kwargs) || kwargs instanceof Uint8Array) {
    return "keyword arguments are not a mapping"
  }
  const names = Object.keys(kwargs)
  if (names.length === 0) return args
  const out = [...args]
  const kw = kwargs as Record<string, unknown>
  for (const name of names) {
    const index = rpc.params.indexOf(name)
    if (index < 0) return `got an unexpected keyword argument '${name}'`
    if (index < args.length) return `multiple values for argument '${name}'`
  }
  for (let i = args.length; i < rpc.params.length; i++) {
    const name = rpc.params[i]!
    if (!(name in kw)) break
    out.push(kw[name])
  }
  if (out.length !== args.length + names.length) return "keyword arguments leave a gap in the positional arguments"
  return out
}

interface CompiledRpc {
  readonly rpc: AnyAgentRpc
  readonly decodeArgs: (u: unknown) => Effect.Effect<ReadonlyArray<unknown>, Schema.SchemaError>
  readonly encodeSuccess: (a: unknown) => Effect.Effect<unknown, Schema.SchemaError>
  readonly handler: (...args: ReadonlyArray<any>) => Effect.Effect<unknown, unknown>
  /** `bai_rpc_requests_total{method,outcome}` and `bai_rpc_duration_seconds` around the handler. */
  readonly track: <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
}

export class AiozmqServer extends Context.Service<AiozmqServer, {
  /** The bound endpoint (with the real port when `:*` was asked for). */
  readonly endpoint: string
  /** Requests currently being handled. */
  readonly inFlight: Effect.Effect<number>
}>()("bai-agent/rpc/aiozmq/AiozmqServer") {
  static readonly make = Effect.fnUntraced(function*(options: AiozmqServerOptions) {
    const handlers = yield* AgentRpcHandlers
    const maxFrameBytes = options.maxFrameBytes ?? 64 * 1024 * 1024
    const maxInFlight = options.maxInFlightPerPeer ?? 1024
    const maxInFlightBytes = options.maxInFlightBytesPerPeer ?? 4 * maxFrameBytes
    const decodeOptions = { maxElements: options.maxElements ?? Msgpack.DEFAULT_MAX_ELEMENTS }
    const allowed = options.allowedPeers === undefined || options.allowedPeers.length === 0
      ? undefined
      : parseAllowedPeers(options.allowedPeers)
    if (typeof allowed === "string") {
      return yield* new AiozmqServerError({ reason: "Allowlist", endpoint: options.bind, cause: new Error(allowed) })
    }
    const shutdownGrace = options.shutdownGrace ?? Duration.seconds(10)
    const linger = options.lingerMillis ?? 200
    const maxBatch = 256

    const compiled = new Map<string, CompiledRpc>()
    for (const [name, rpc] of Object.entries(AgentRpcs) as ReadonlyArray<[string, AnyAgentRpc]>) {
      compiled.set(name, {
        rpc,
        decodeArgs: Schema.decodeUnknownEffect(rpc.args),
        encodeSuccess: Schema.encodeEffect(rpc.success),
        handler: handlers[name as keyof typeof handlers] as (...args: ReadonlyArray<any>) => Effect.Effect<unknown, unknown>,
        track: trackRpc(name)
      })
    }

    // With an allowlist, the socket gets its own ZeroMQ context whose ZAP handler (a REP socket on
    // inproc://zeromq.zap.01, one per context) answers each handshake: 200 for listed addresses,
    // 400 for everyone else (libzmq then closes the connection before any message is read).
    const zap = allowed === undefined ? undefined : yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: async () => {
          const context = new Zmq.Context()
          const handler = new Zmq.Reply({ context, linger: 0 })
          try {
            await handler.bind(ZAP_ENDPOINT)
          } catch (cause) {
            handler.close()
            throw cause
          }
          return { context, handler }
        },
        catch: (cause) => new AiozmqServerError({ reason: "Bind", endpoint: ZAP_ENDPOINT, cause })
      }),
      ({ handler }) => Effect.sync(() => handler.close())
    )
    // only the first refusal per address is logged (a scanner must not flood the log)
    const refusedLogged = new Set<string>()
    if (zap !== undefined && allowed !== undefined) {
      const answer = (frames: ReadonlyArray<Buffer>): Effect.Effect<void> => {
        // [version, request id, domain, address, identity, mechanism, ...credentials]
        const requestId = frames[1] ?? Buffer.alloc(0)
        const address = frames[3]?.toString("latin1") ?? ""
        const ok = frames[0]?.toString("latin1") === "1.0" && peerAllowed(allowed, address)
        const reply = [Buffer.from("1.0"), requestId, Buffer.from(ok ? "200" : "400"), Buffer.from(ok ? "OK" : "address not allowed"), Buffer.alloc(0), Buffer.alloc(0)]
        const log = ok || refusedLogged.has(address) || refusedLogged.size >= 1024
          ? Effect.void
          : Effect.sync(() => refusedLogged.add(address)).pipe(
            Effect.andThen(Effect.logWarning("aiozmq: connection refused: address not in agent.rpc-allowed-peers")),
            Effect.annotateLogs({ peer: address })
          )
        return log.pipe(Effect.andThen(Effect.tryPromise(() => zap.handler.send(reply))), Effect.ignore)
      }
      yield* Effect.tryPromise(() => zap.handler.receive()).pipe(
        Effect.flatMap(answer),
        Effect.forever,
        Effect.catchCause((cause) => (zap.handler.closed ? Effect.void : Effect.logError("aiozmq: ZAP handler stopped", cause))),
        Effect.forkScoped
      )
    }

    const socket = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: async () => {
          const s = new Zmq.Router({
            linger,
            // libzmq drops a peer that sends a frame over this; up to it, an oversized request is answered
            maxMessageSize: 2 * maxFrameBytes,
            sendTimeout: 0,
            ...(zap === undefined ? {} : { context: zap.context, zapDomain: ZAP_DOMAIN })
          })
          try {
            await s.bind(options.bind)
          } catch (cause) {
            s.close()
            throw cause
          }
          return s
        },
        catch: (cause) => new AiozmqServerError({ reason: "Bind", endpoint: options.bind, cause })
      }),
      (s) => Effect.sync(() => s.close())
    )
    const endpoint = socket.lastEndpoint ?? options.bind
    yield* Effect.logInfo("aiozmq RPC server listening").pipe(Effect.annotateLogs({ endpoint }))

    const pid = process.pid & 0xffff
    const rnd = Math.floor(Math.random() * 0x10000)
    const clock = yield* Clock.Clock

    const inflight = yield* FiberSet.make<void, never>()

    // --- replies are sent by the fiber that produced them, at once: with `sendTimeout: 0`
    // zeromq.js sends synchronously (no poller, so never "busy"; a ROUTER never blocks: a peer over
    // its high-water mark loses the message, as with aiozmq), so no writer fiber and no scheduler
    // hop is needed between a handler's result and the wire. The returned promise is already
    // settled; only a rejection is looked at.
    let sendFailures = 0
    const sendFailed = () => {
      sendFailures++
    }
    const sendNow = (frames: Array<Buffer>): void => {
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
      return Effect.logWarning(`aiozmq: ${failed} replies not sent`)
    })

    // The hot path below builds as few effects as it can: synchronous steps (msgpack, argument
    // binding, reply framing) are plain functions; log annotations are added only where a request
    // logs (errors), not to every request.
    const annotate = (request: { readonly method: string; readonly reqId: number }) =>
      Effect.annotateLogs({ rpc: request.method, reqId: request.reqId })

    const enqueueReply = (pre: ReadonlyArray<Buffer>, reqId: number, isError: boolean, body: Buffer): Effect.Effect<void> => {
      const header = encodeReplyHeader({ pid, rnd, reqId, timestamp: clock.currentTimeMillisUnsafe() / 1000, isError })
      sendNow([...pre, header, body])
      return isError ? Metric.update(errorRepliesTotal, 1) : Effect.void
    }

    const sendError = (pre: ReadonlyArray<Buffer>, reqId: number, error: PythonError): Effect.Effect<void> =>
      enqueueReply(pre, reqId, true, Msgpack.encode(toErrorBody(error)))

    const sendValue = (request: Request, value: unknown): Effect.Effect<void> => {
      const encoded = Msgpack.encodeResult(value)
      if (encoded.ok) return enqueueReply(request.pre, request.reqId, false, encoded.value)
      return Effect.logError(`aiozmq: result not encodable: ${encoded.message}`).pipe(
        annotate(request),
        Effect.andThen(sendError(request.pre, request.reqId, runtimeError("the agent produced a result it cannot encode")))
      )
    }

    const handlerFailed = (request: Request, cause: Cause.Cause<unknown>): Effect.Effect<void> => {
      if (Cause.hasInterruptsOnly(cause)) return Effect.void // cancelled: no reply, like aiozmq
      const error = Cause.findErrorOption(cause)
      if (Option.isSome(error) && hasPython(error.value)) return sendError(request.pre, request.reqId, error.value.python)
      return Metric.update(defectsTotal, 1).pipe(
        Effect.andThen(Effect.logError(`aiozmq: handler ${request.method} failed unexpectedly`, cause)),
        annotate(request),
        Effect.andThen(
          sendError(request.pre, request.reqId, runtimeError(`internal error in ${request.method}: ${String(Cause.squash(cause))}`))
        )
      )
    }

    const resultInvalid = (request: Request, cause: Cause.Cause<unknown>): Effect.Effect<void> =>
      Metric.update(defectsTotal, 1).pipe(
        Effect.andThen(Effect.logError(`aiozmq: handler ${request.method} returned a value outside its schema`, cause)),
        annotate(request),
        Effect.andThen(sendError(request.pre, request.reqId, runtimeError(`internal error in ${request.method}: invalid result`)))
      )

    /** One request, in its own fiber: arguments → handler → result → reply. */
    const serve = (request: Request): Effect.Effect<void> => {
      const compiledRpc = compiled.get(request.method)
      if (compiledRpc === undefined) return sendError(request.pre, request.reqId, notFoundError(request.method))
      const args = Msgpack.decodeResult(request.args, decodeOptions)
      const kwargs = Msgpack.decodeResult(request.kwargs, decodeOptions)
      if (!args.ok || !kwargs.ok) return sendError(request.pre, request.reqId, parametersError("cannot unpack the arguments"))
      const bound = bindArguments(compiledRpc.rpc, args.value, kwargs.value)
      if (typeof bound === "string") return sendError(request.pre, request.reqId, parametersError(bound))
      return Effect.matchCauseEffect(compiledRpc.decodeArgs(bound), {
        onFailure: (cause) => {
          const error = Cause.findErrorOption(cause)
          return sendError(request.pre, request.reqId, parametersError(Option.isSome(error) ? error.value.message : "invalid arguments"))
        },
        onSuccess: (decoded) =>
          Effect.matchCauseEffect(Effect.suspend(() => compiledRpc.handler(...decoded)).pipe(compiledRpc.track), {
            onFailure: (cause) => handlerFailed(request, cause),
            onSuccess: (result) =>
              Effect.matchCauseEffect(compiledRpc.encodeSuccess(result), {
                onFailure: (cause) => resultInvalid(request, cause),
                onSuccess: (value) => sendValue(request, value)
              })
          })
      })
    }

    // per peer (ROUTER routing id): requests and bytes in flight; entries go when they reach zero
    const perPeer = new Map<string, { count: number; bytes: number }>()
    const release = (peer: string, bytes: number) =>
      Effect.sync(() => {
        const entry = perPeer.get(peer)
        if (entry === undefined) return
        entry.count--
        entry.bytes -= bytes
        if (entry.count <= 0) perPeer.delete(peer)
      })

    const dispatch = (frames: ReadonlyArray<Buffer>): Effect.Effect<void> => {
      const parsed = parseRequest(frames, maxFrameBytes)
      if (parsed._tag === "Request") {
        const peer = parsed.pre[0]?.toString("latin1") ?? ""
        let bytes = 0
        for (const f of frames) bytes += f.length
        const entry = perPeer.get(peer) ?? { count: 0, bytes: 0 }
        if (entry.count >= maxInFlight || (entry.count > 0 && entry.bytes + bytes > maxInFlightBytes)) {
          return sendError(
              parsed.pre,
              parsed.reqId,
              runtimeError(
                `too many requests in flight from this peer (${entry.count} requests, ${entry.bytes} bytes; ` +
                  `at most ${maxInFlight} and ${maxInFlightBytes} bytes): retry when some are answered`
              )
            )
        }
        entry.count++
        entry.bytes += bytes
        perPeer.set(peer, entry)
        return FiberSet.run(inflight, serve(parsed).pipe(Effect.ensuring(release(peer, bytes))))
      }
      return Metric.update(droppedTotal, 1).pipe(
        Effect.andThen(Effect.logWarning(`aiozmq: malformed request: ${parsed.reason}`)),
        Effect.andThen(
          parsed.reqId !== undefined && parsed.pre.length > 0
            ? sendError(parsed.pre, parsed.reqId, parametersError(parsed.reason))
            : Effect.void
        )
      )
    }

    // --- reader: the only fiber that receives. Each wake-up drains the socket: after the first
    // message (a waiting receive), `receiveTimeout = 0` makes zeromq.js read synchronously until
    // EAGAIN, so a burst costs one fiber resumption instead of one per message (bounded per batch
    // so that a flood cannot starve the other fibers).
    const drain = async (): Promise<Array<Array<Buffer>>> => {
      const batch = [await socket.receive()]
      socket.receiveTimeout = 0
      try {
        while (batch.length < maxBatch) batch.push(await socket.receive())
      } catch (error) {
        if ((error as { code?: unknown } | null)?.code !== "EAGAIN") throw error
      } finally {
        if (!socket.closed) socket.receiveTimeout = -1
      }
      return batch
    }
    const dispatchBatch = (batch: ReadonlyArray<ReadonlyArray<Buffer>>): Effect.Effect<void> =>
      Metric.update(requestsTotal, batch.length).pipe(
        Effect.andThen(Effect.forEach(batch, dispatch, { discard: true })),
        Effect.andThen(reportSendFailures)
      )
    const reader = yield* Effect.tryPromise(drain).pipe(
      Effect.flatMap(dispatchBatch),
      Effect.forever,
      Effect.catchCause((cause) =>
        socket.closed ? Effect.void : Effect.logError("aiozmq: receive loop stopped", cause)
      ),
      Effect.forkScoped
    )

    // --- graceful shutdown (runs before the fibers above are interrupted and the socket closes)
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        yield* Fiber.interrupt(reader)
        const pending = yield* FiberSet.size(inflight)
        if (pending > 0) {
          yield* Effect.logInfo(`aiozmq: waiting for ${pending} in-flight request(s)`)
          const done = yield* FiberSet.awaitEmpty(inflight).pipe(Effect.timeoutOption(shutdownGrace))
          if (Option.isNone(done)) yield* Effect.logWarning("aiozmq: in-flight requests cut off at shutdown")
          yield* FiberSet.clear(inflight)
        }
        yield* reportSendFailures
        yield* Effect.logInfo("aiozmq RPC server stopped").pipe(Effect.annotateLogs({ endpoint }))
      })
    )

    return AiozmqServer.of({ endpoint, inFlight: FiberSet.size(inflight) })
  })

  /** The server, bound for the layer's lifetime. Requires {@link AgentRpcHandlers}. */
  static readonly layer = (options: AiozmqServerOptions): Layer.Layer<AiozmqServer, AiozmqServerError, AgentRpcHandlers> =>
    Layer.effect(AiozmqServer, AiozmqServer.make(options))
}
