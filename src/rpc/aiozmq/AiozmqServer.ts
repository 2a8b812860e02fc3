/**
 * The manager-facing RPC server of manager 19.06: the aiozmq wire (framing, msgpack, allowlist)
 * over the one server core (`contract/ServerCore.ts`), serving {@link AgentRpcs} with
 * {@link AgentRpcHandlers}. Argument errors are aiozmq's `ParametersError`, unknown methods its
 * `NotFoundError`.
 *
 * - one reader fiber receives, draining the socket per wake-up; each request runs in its own fiber
 *   (a slow `execute` never blocks a `ping`) and sends its reply itself, synchronously
 *   (`sendTimeout: 0`: no writer fiber, no scheduler hop);
 * - bad input never stops the server: malformed messages are dropped with a warning, or answered
 *   with an error when their `req_id` is readable;
 * - closing the scope stops reading, lets in-flight requests finish for `shutdownGrace` (their
 *   replies are sent as they finish), then closes the socket with a 200 ms linger (like aiozmq).
 */
import { Clock, Context, Duration, Effect, Layer, Schema } from "effect"
import * as Zmq from "zeromq"
import { notFoundError, parametersError, runtimeError, toErrorBody } from "../../domain/Errors.ts"
import { AgentRpcHandlers, AgentRpcs } from "../AgentRpcs.ts"
import { servedMethods } from "../contract/Contract.ts"
import { makeServerCore, type Reply, type ServerCore } from "../contract/ServerCore.ts"
import * as Msgpack from "../../codec/Msgpack.ts"
import { parseAllowedPeers, peerAllowed } from "../../config/Allowlist.ts"
import { encodeReplyHeader, parseRequest } from "./Frames.ts"

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

const ZAP_DOMAIN = "bai-agent-rpc"

export class AiozmqServer extends Context.Service<AiozmqServer, {
  /** The bound endpoint (with the real port when `:*` was asked for). */
  readonly endpoint: string
  /** Requests currently being handled. */
  readonly inFlight: Effect.Effect<number>
}>()("bai-agent/rpc/aiozmq/AiozmqServer") {
  static readonly make = Effect.fnUntraced(function*(options: AiozmqServerOptions) {
    const handlers = yield* AgentRpcHandlers
    const maxFrameBytes = options.maxFrameBytes ?? 64 * 1024 * 1024
    const decodeOptions = { maxElements: options.maxElements ?? Msgpack.DEFAULT_MAX_ELEMENTS }
    const allowed = options.allowedPeers === undefined || options.allowedPeers.length === 0
      ? undefined
      : parseAllowedPeers(options.allowedPeers)
    if (typeof allowed === "string") {
      return yield* new AiozmqServerError({ reason: "Allowlist", endpoint: options.bind, cause: new Error(allowed) })
    }
    const methods = servedMethods(AgentRpcs, handlers, parametersError)
    const pid = process.pid & 0xffff
    const rnd = Math.floor(Math.random() * 0x10000)
    const clock = yield* Clock.Clock

    /** The wire's encoding of a reply to `request` (aiozmq: header with the error flag, msgpack body). */
    const replyTo = (pre: ReadonlyArray<Buffer>, reqId: number) => (reply: Reply): Array<Buffer> => {
      const isError = reply._tag === "Error"
      const body = isError ? Msgpack.encode(toErrorBody(reply.error)) : Msgpack.encode(reply.value)
      const header = encodeReplyHeader({ pid, rnd, reqId, timestamp: clock.currentTimeMillisUnsafe() / 1000, isError })
      return [...pre, header, body]
    }

    /** One message from the reader: admitted and served in its own fiber, or answered / dropped at once. */
    const dispatch = (core: ServerCore) => (frames: ReadonlyArray<Buffer>): Effect.Effect<unknown> => {
      const parsed = parseRequest(frames, maxFrameBytes)
      if (parsed._tag !== "Request") {
        return core.dropped(`malformed request: ${parsed.reason}`).pipe(
          Effect.andThen(
            parsed.reqId !== undefined && parsed.pre.length > 0
              ? core.fail(replyTo(parsed.pre, parsed.reqId), parametersError(parsed.reason))
              : Effect.void
          )
        )
      }
      const reply = replyTo(parsed.pre, parsed.reqId)
      const method = methods.get(parsed.method)
      if (method === undefined) return core.fail(reply, notFoundError(parsed.method))
      let bytes = 0
      for (const f of frames) bytes += f.length
      const args = Msgpack.decodeResult(parsed.args, decodeOptions)
      const kwargs = Msgpack.decodeResult(parsed.kwargs, decodeOptions)
      const serve = !args.ok || !kwargs.ok
        ? core.fail(reply, parametersError("cannot unpack the arguments"))
        : core.call({ method: parsed.method, annotations: { reqId: parsed.reqId } }, method, args.value, kwargs.value, reply)
      const admitted = core.admit(parsed.pre[0]?.toString("latin1") ?? "", bytes, serve)
      return typeof admitted === "string" ? core.fail(reply, runtimeError(admitted)) : admitted
    }

    // With an allowlist, the socket gets its own ZeroMQ context whose ZAP handler answers each
    // handshake: 200 for listed addresses, 400 for everyone else (libzmq then closes the connection
    // before any message is read).
    const zap = allowed === undefined ? undefined : {
      context: new Zmq.Context(),
      answer: (frames: ReadonlyArray<Buffer>) => {
        // [version, request id, domain, address, identity, mechanism, ...credentials]
        const address = frames[3]?.toString("latin1") ?? ""
        const ok = frames[0]?.toString("latin1") === "1.0" && peerAllowed(allowed, address)
        return {
          reply: [Buffer.from("1.0"), frames[1] ?? Buffer.alloc(0), Buffer.from(ok ? "200" : "400"), Buffer.from(ok ? "OK" : "address not allowed"), Buffer.alloc(0), Buffer.alloc(0)],
          ...(ok ? {} : { refused: { key: address, log: `connection refused: address ${address} not in agent.rpc-allowed-peers` } })
        }
      }
    }
    const core = yield* makeServerCore({
      wire: "aiozmq",
      bind: options.bind,
      socket: {
        linger: options.lingerMillis ?? 200,
        // libzmq drops a peer that sends a frame over this; up to it, an oversized request is answered
        maxMessageSize: 2 * maxFrameBytes,
        ...(zap === undefined ? {} : { zapDomain: ZAP_DOMAIN })
      },
      ...(zap === undefined ? {} : { zap }),
      maxInFlightPerPeer: options.maxInFlightPerPeer ?? 1024,
      maxInFlightBytesPerPeer: options.maxInFlightBytesPerPeer ?? 4 * maxFrameBytes,
      shutdownGrace: options.shutdownGrace ?? Duration.seconds(10)
    }, dispatch).pipe(
      Effect.mapError((e) => new AiozmqServerError({ reason: "Bind", endpoint: e.endpoint, cause: e.cause }))
    )
    return AiozmqServer.of({ endpoint: core.endpoint, inFlight: core.inFlight })
  })

  /** The server, bound for the layer's lifetime. Requires {@link AgentRpcHandlers}. */
  static readonly layer = (options: AiozmqServerOptions): Layer.Layer<AiozmqServer, AiozmqServerError, AgentRpcHandlers> =>
    Layer.effect(AiozmqServer, AiozmqServer.make(options))
}
