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
 * - the request lifecycle, admission bounds, metrics, sending and shutdown are the one server core's
 *   (`contract/ServerCore.ts`); this file is the wire: framing, the manager's codec, CURVE.
 */
import { Context, Duration, Effect, Layer, Schema } from "effect"
import { type PythonError } from "../../domain/Errors.ts"
import { type AnyContractMethod, type DescribeRefusal, servedMethods } from "../contract/Contract.ts"
import { makeServerCore, type Reply, type ServedMethod, servedAsIs, type ServerCore } from "../contract/ServerCore.ts"
import { type CurveConfigError, ZAP_DOMAIN, zapReply } from "./Curve.ts"
import { type CallosumRequest, failureFrames, MessageType, parse, pythonRepr, resultFrames } from "./Frames.ts"

/** A method without a contract: positional and keyword arguments (decoded with the manager's ext types) in, result out. */
export type CallosumMethod = (
  args: ReadonlyArray<unknown>,
  kwargs: Readonly<Record<string, unknown>>
) => Effect.Effect<unknown, unknown>

/** A bad argument list, as Callosum's Python side raises it: a `TypeError` FAILURE. */
export const typeError = (message: string): PythonError => ({ name: "TypeError", args: [message] })

/** The methods a Callosum server serves, by name, as the server core runs them. */
export class CallosumHandlers extends Context.Service<CallosumHandlers, ReadonlyMap<string, ServedMethod>>()(
  "bai-agent/rpc/callosum/CallosumHandlers"
) {
  /**
   * A contract's methods with their handlers (`contract/Contract.ts` `servedMethods`): arguments bound
   * and decoded by the contract, a refusal answered with a `TypeError` FAILURE.
   */
  static readonly fromContract = (
    contract: Readonly<Record<string, AnyContractMethod>>,
    handlers: Readonly<Record<string, (...args: ReadonlyArray<any>) => Effect.Effect<unknown, unknown>>>,
    options?: { readonly ignoreKeyword?: string; readonly describeRefusal?: DescribeRefusal }
  ): ReadonlyMap<string, ServedMethod> => servedMethods(contract, handlers, typeError, options)

  /** Methods taking the wire's arguments as they are, with no contract (tests of the wire). */
  static readonly fromMethods = (methods: Readonly<Record<string, CallosumMethod>>): ReadonlyMap<string, ServedMethod> =>
    new Map(Object.entries(methods).map(([name, h]) => [name, servedAsIs(name, h)]))

  static readonly layerOf = (methods: Readonly<Record<string, CallosumMethod>>): Layer.Layer<CallosumHandlers> =>
    Layer.succeed(CallosumHandlers, CallosumHandlers.fromMethods(methods))
}

/** A FAILURE the handler chose (e.g. a bad argument): the manager sees this exception. */
export class CallosumFailure extends Schema.TaggedError<CallosumFailure>()("CallosumFailure", {
  exception: Schema.String,
  message: Schema.String
}) {
  /** The Python exception the reply carries (what the server core answers a failure with). */
  get python(): PythonError {
    return { name: this.exception, args: [this.message] }
  }
}

/** A Python exception as a Callosum FAILURE's meta: `[name, repr, traceback]` (the name without its module). */
const failureOf = (error: PythonError): { name: string; repr: string; traceback: string } => {
  const name = error.name.split(".").pop() ?? error.name
  return { name, repr: pythonRepr(name, error.args), traceback: "" }
}

export interface CallosumServerOptions {
  /** ZeroMQ endpoint to bind, e.g. `tcp://0.0.0.0:6001` (`tcp://127.0.0.1:*` picks a free port). */
  readonly bind: string
  /** Largest accepted message. Default 64 MiB. */
  readonly maxMessageBytes?: number
  /** Requests one peer (one ZeroMQ connection) may have in flight; more are refused at once. Default 1024. */
  readonly maxInFlightPerPeer?: number
  /** Bytes of the requests one peer may have in flight. Default 4 × `maxMessageBytes`. */
  readonly maxInFlightBytesPerPeer?: number
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

export class CallosumServer extends Context.Service<CallosumServer, {
  /** The bound endpoint (with the real port when `:*` was asked for). */
  readonly endpoint: string
  /** Requests currently being handled. */
  readonly inFlight: Effect.Effect<number>
}>()("bai-agent/rpc/callosum/CallosumServer") {
  static readonly make = Effect.fnUntraced(function*(options: CallosumServerOptions) {
    const methods = yield* CallosumHandlers
    const maxBytes = options.maxMessageBytes ?? 64 * 1024 * 1024
    const curve = options.curve

    /** The wire's encoding of a reply: RESULT with the value, or FAILURE `[name, repr, traceback]`. */
    const replyTo = (request: CallosumRequest) => (reply: Reply): Array<Buffer> =>
      reply._tag === "Value" ? [...resultFrames(request, reply.value)] : [...failureFrames(request, failureOf(reply.error))]

    const dispatch = (core: ServerCore) => (frames: ReadonlyArray<Buffer>): Effect.Effect<unknown> => {
      const parsed = parse(frames, maxBytes)
      switch (parsed._tag) {
        case "Ping":
          // answered by the reader itself, before anything queued behind a handler (the manager
          // drops a connection whose PONG takes > 5 s)
          core.send([...parsed.reply])
          return Effect.void
        case "Request": {
          const { request } = parsed
          if (request.type === MessageType.CANCEL) return Effect.logDebug(`callosum: CANCEL of ${request.method}#${request.seq} ignored`)
          if (request.type !== MessageType.FUNCTION) return Effect.logWarning(`callosum: message type ${request.type} ignored`)
          const reply = replyTo(request)
          const method = methods.get(request.method)
          if (method === undefined) {
            return Effect.logWarning(`callosum: unknown method ${request.method}`).pipe(
              Effect.andThen(core.fail(reply, { name: "NotImplementedError", args: [`${request.method} is not implemented by this agent`] }))
            )
          }
          let bytes = 0
          for (const f of frames) bytes += f.length
          const serve = core.call({ method: request.method, annotations: { seq: request.seq } }, method, request.args, request.kwargs, reply)
          const admitted = core.admit(request.pre[0]?.toString("latin1") ?? "", bytes, serve)
          return typeof admitted === "string" ? core.fail(reply, { name: "RuntimeError", args: [admitted] }) : admitted
        }
        case "Invalid":
          return core.dropped(`invalid message dropped: ${parsed.reason}`).pipe(
            Effect.andThen(
              parsed.request !== undefined && parsed.request.type === MessageType.FUNCTION
                ? core.fail(replyTo(parsed.request), { name: "TypeError", args: [parsed.reason] })
                : Effect.void
            )
          )
      }
    }

    const allowedKeys = new Set(curve?.allowedClientKeys ?? [])
    const core = yield* makeServerCore({
      wire: "callosum",
      bind: options.bind,
      socket: {
        linger: options.lingerMillis ?? 100,
        maxMessageSize: maxBytes,
        ...(curve === undefined ? {} : { curveServer: true, curveSecretKey: curve.secretKey, zapDomain: ZAP_DOMAIN })
      },
      // the ZAP handler lives in the default ZeroMQ context, where the ROUTER is
      ...(curve === undefined ? {} : {
        zap: {
          answer: (request: ReadonlyArray<Buffer>) => {
            const reply = zapReply(request, allowedKeys)
            return reply[2]!.toString() === "200"
              ? { reply }
              : { reply, refused: { key: request[3]?.toString("latin1") ?? "", log: "CURVE: a client with an unknown key was refused" } }
          }
        }
      }),
      maxInFlightPerPeer: options.maxInFlightPerPeer ?? 1024,
      maxInFlightBytesPerPeer: options.maxInFlightBytesPerPeer ?? 4 * maxBytes,
      shutdownGrace: options.shutdownGrace ?? Duration.seconds(10)
    }, dispatch).pipe(
      Effect.mapError((e) => new CallosumServerError({ reason: "Bind", endpoint: e.endpoint, cause: e.cause }))
    )
    return CallosumServer.of({ endpoint: core.endpoint, inFlight: core.inFlight })
  })

  /** The server, bound for the layer's lifetime. Requires {@link CallosumHandlers}. */
  static readonly layer = (options: CallosumServerOptions): Layer.Layer<CallosumServer, CallosumServerError | CurveConfigError, CallosumHandlers> =>
    Layer.effect(CallosumServer, CallosumServer.make(options))
}
