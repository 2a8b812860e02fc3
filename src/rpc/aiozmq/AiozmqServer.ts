/**
 * The manager-facing RPC server: aiozmq framing over a ZeroMQ ROUTER (spec §1.1), serving
 * {@link AgentRpcHandlers}.
 *
 * - one reader fiber receives; each request runs in its own fiber (a slow `execute` never blocks a
 *   `ping`); one writer fiber drains the reply queue (zeromq.js allows one send at a time);
 * - bad input never stops the server: malformed messages are dropped with a warning, or answered
 *   with an error when their `req_id` is readable;
 * - closing the scope stops reading, lets in-flight requests finish for `shutdownGrace`, flushes
 *   replies, then closes the socket with a 200 ms linger (like aiozmq).
 */
import { Cause, Clock, Context, Duration, Effect, Exit, Fiber, FiberSet, Layer, Metric, Option, Pull, Queue, Schema } from "effect"
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
import { encodeReplyHeader, parseRequest, type Request } from "./Frames.ts"

/** Options of {@link AiozmqServer.layer}. */
export interface AiozmqServerOptions {
  /** ZeroMQ endpoint to bind, e.g. `tcp://10.0.0.5:6001` (`tcp://127.0.0.1:*` picks a free port). */
  readonly bind: string
  /** Largest accepted request (all frames together). Default 64 MiB. */
  readonly maxFrameBytes?: number
  /** How long in-flight requests may run on shutdown. Default 10 s. */
  readonly shutdownGrace?: Duration.Input
  /** Socket linger on close. Default 200 ms (aiozmq). */
  readonly lingerMillis?: number
}

/** The socket could not be opened or bound. */
export class AiozmqServerError extends Schema.TaggedError<AiozmqServerError>()("AiozmqServerError", {
  reason: Schema.Literals(["Bind"]),
  endpoint: Schema.String,
  cause: Schema.Defect()
}) {}

const requestsTotal = Metric.counter("bai_agent_rpc_requests_total", { description: "RPC requests received" })
const errorRepliesTotal = Metric.counter("bai_agent_rpc_error_replies_total", { description: "RPC error replies sent" })
const droppedTotal = Metric.counter("bai_agent_rpc_dropped_total", { description: "RPC messages dropped as malformed" })
const defectsTotal = Metric.counter("bai_agent_rpc_handler_defects_total", { description: "RPC handlers that died" })

type Reply = { readonly isError: false; readonly value: unknown } | { readonly isError: true; readonly error: PythonError }

const okReply = (value: unknown): Reply => ({ isError: false, value })
const errReply = (error: PythonError): Reply => ({ isError: true, error })

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
    const shutdownGrace = options.shutdownGrace ?? Duration.seconds(10)
    const linger = options.lingerMillis ?? 200

    const compiled = new Map<string, CompiledRpc>()
    for (const [name, rpc] of Object.entries(AgentRpcs) as ReadonlyArray<[string, AnyAgentRpc]>) {
      compiled.set(name, {
        rpc,
        decodeArgs: Schema.decodeUnknownEffect(rpc.args),
        encodeSuccess: Schema.encodeEffect(rpc.success),
        handler: handlers[name as keyof typeof handlers] as (...args: ReadonlyArray<any>) => Effect.Effect<unknown, unknown>
      })
    }

    const socket = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: async () => {
          const s = new Zmq.Router({ linger, maxMessageSize: maxFrameBytes })
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

    const replies = yield* Queue.unbounded<ReadonlyArray<Buffer>, Cause.Done>()
    const inflight = yield* FiberSet.make<void, never>()

    // --- writer: the only fiber that sends
    const writer = yield* Queue.take(replies).pipe(
      Effect.flatMap((frames) =>
        Effect.tryPromise(() => socket.send(frames as Array<Buffer>)).pipe(
          Effect.catch((error) => Effect.logWarning("aiozmq: reply not sent", error))
        )
      ),
      Effect.forever,
      // ends (Done) when the queue is ended at shutdown
      Effect.catchCause((cause) =>
        Cause.hasInterruptsOnly(cause) || Pull.isDoneCause(cause) ? Effect.void : Effect.logError("aiozmq: writer stopped", cause)
      ),
      Effect.forkScoped
    )

    const sendReply = Effect.fnUntraced(function*(pre: ReadonlyArray<Buffer>, reqId: number, reply: Reply) {
      let isError = reply.isError
      let body: Buffer
      if (reply.isError) {
        body = Msgpack.encode(toErrorBody(reply.error))
      } else {
        const encoded = yield* Effect.exit(Msgpack.encodeEffect(reply.value))
        if (Exit.isSuccess(encoded)) {
          body = encoded.value
        } else {
          yield* Effect.logError("aiozmq: result not encodable", encoded.cause)
          isError = true
          body = Msgpack.encode(toErrorBody(runtimeError("the agent produced a result it cannot encode")))
        }
      }
      if (isError) yield* Metric.update(errorRepliesTotal, 1)
      const now = yield* Clock.currentTimeMillis
      const header = encodeReplyHeader({ pid, rnd, reqId, timestamp: now / 1000, isError })
      yield* Queue.offer(replies, [...pre, header, body])
    })

    const runHandler = Effect.fnUntraced(function*(compiledRpc: CompiledRpc, request: Request) {
      const args = yield* Effect.exit(Msgpack.decodeEffect(request.args))
      const kwargs = yield* Effect.exit(Msgpack.decodeEffect(request.kwargs))
      if (Exit.isFailure(args) || Exit.isFailure(kwargs)) {
        return errReply(parametersError("cannot unpack the arguments"))
      }
      const bound = bindArguments(compiledRpc.rpc, args.value, kwargs.value)
      if (typeof bound === "string") return errReply(parametersError(bound))
      const decoded = yield* Effect.exit(compiledRpc.decodeArgs(bound))
      if (Exit.isFailure(decoded)) {
        const error = Cause.findErrorOption(decoded.cause)
        return errReply(parametersError(Option.isSome(error) ? error.value.message : "invalid arguments"))
      }
      const result = yield* Effect.exit(Effect.suspend(() => compiledRpc.handler(...decoded.value)))
      if (Exit.isFailure(result)) {
        if (Cause.hasInterruptsOnly(result.cause)) return undefined // cancelled: no reply, like aiozmq
        const error = Cause.findErrorOption(result.cause)
        if (Option.isSome(error) && hasPython(error.value)) return errReply(error.value.python)
        yield* Metric.update(defectsTotal, 1)
        yield* Effect.logError(`aiozmq: handler ${request.method} failed unexpectedly`, result.cause)
        return errReply(runtimeError(`internal error in ${request.method}: ${String(Cause.squash(result.cause))}`))
      }
      const encoded = yield* Effect.exit(compiledRpc.encodeSuccess(result.value))
      if (Exit.isFailure(encoded)) {
        yield* Metric.update(defectsTotal, 1)
        yield* Effect.logError(`aiozmq: handler ${request.method} returned a value outside its schema`, encoded.cause)
        return errReply(runtimeError(`internal error in ${request.method}: invalid result`))
      }
      return okReply(encoded.value)
    })

    const serve = (request: Request): Effect.Effect<void> => {
      const compiledRpc = compiled.get(request.method)
      const reply = compiledRpc === undefined
        ? Effect.succeed<Reply | undefined>(errReply(notFoundError(request.method)))
        : runHandler(compiledRpc, request)
      return reply.pipe(
        Effect.flatMap((r) => (r === undefined ? Effect.void : sendReply(request.pre, request.reqId, r))),
        Effect.annotateLogs({ rpc: request.method, reqId: request.reqId })
      )
    }

    const dispatch = Effect.fnUntraced(function*(frames: ReadonlyArray<Buffer>) {
      yield* Metric.update(requestsTotal, 1)
      const parsed = parseRequest(frames, maxFrameBytes)
      if (parsed._tag === "Request") {
        yield* FiberSet.run(inflight, serve(parsed))
        return
      }
      yield* Metric.update(droppedTotal, 1)
      yield* Effect.logWarning(`aiozmq: malformed request: ${parsed.reason}`)
      if (parsed.reqId !== undefined && parsed.pre.length > 0) {
        yield* sendReply(parsed.pre, parsed.reqId, errReply(parametersError(parsed.reason)))
      }
    })

    // --- reader: the only fiber that receives
    const reader = yield* Effect.tryPromise(() => socket.receive()).pipe(
      Effect.flatMap(dispatch),
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
        yield* Queue.end(replies)
        yield* Fiber.await(writer).pipe(Effect.timeoutOption(Duration.seconds(2)))
        yield* Effect.logInfo("aiozmq RPC server stopped").pipe(Effect.annotateLogs({ endpoint }))
      })
    )

    return AiozmqServer.of({ endpoint, inFlight: FiberSet.size(inflight) })
  })

  /** The server, bound for the layer's lifetime. Requires {@link AgentRpcHandlers}. */
  static readonly layer = (options: AiozmqServerOptions): Layer.Layer<AiozmqServer, AiozmqServerError, AgentRpcHandlers> =>
    Layer.effect(AiozmqServer, AiozmqServer.make(options))
}
