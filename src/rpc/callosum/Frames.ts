/**
 * Callosum 1.0.3 RPC framing over ZeroMQ (contract §1.2–§1.4; callosum `lower/zeromq.py`,
 * `rpc/message.py`):
 *
 *   ROUTER receives / sends  [routing id, b"UPPER", header, body]
 *   keep-alive               [routing id, b"PING", h, b]  →  [routing id, b"PONG", h, b]
 *   header  msgpack {type, meth, okey, seq, zip}   (okey str or bin, echoed as received)
 *   body    msgpack {meta: bin, body: bin | nil}; a FUNCTION's inner body is
 *           ai.backend.common.msgpack({"args": [...], "kwargs": {...}})
 *
 * Pure functions; nothing here throws past its return value.
 */
import { createRequire } from "node:module"
import * as Bai from "../../codec/bai/BaiMsgpack.ts"
import * as Msgpack from "../../codec/Msgpack.ts"

/** `callosum.rpc.message.RPCMessageTypes`. */
export const MessageType = {
  NULL: 0,
  FUNCTION: 1,
  RESULT: 2,
  FAILURE: 3,
  ERROR: 4,
  CANCEL: 5,
  CANCELLED: 6
} as const

const SnappyJS = createRequire(import.meta.url)("snappyjs") as { uncompress: (b: Uint8Array) => Uint8Array }

export const UPPER = Buffer.from("UPPER")
export const PING = Buffer.from("PING")
export const PONG = Buffer.from("PONG")

/** A request as read from the wire. */
export interface CallosumRequest {
  readonly pre: ReadonlyArray<Buffer>
  readonly type: number
  readonly method: string
  /** The order key exactly as decoded (string or bytes); echoed in the reply. */
  readonly okey: string | Uint8Array
  readonly seq: number
  /** FUNCTION only: positional and keyword arguments. */
  readonly args: ReadonlyArray<unknown>
  readonly kwargs: Readonly<Record<string, unknown>>
}

export type Parsed =
  | { readonly _tag: "Ping"; readonly reply: ReadonlyArray<Buffer> }
  | { readonly _tag: "Request"; readonly request: CallosumRequest }
  /** Unusable; `request` is set when the header was readable (the reply can then be a FAILURE). */
  | { readonly _tag: "Invalid"; readonly reason: string; readonly request?: CallosumRequest }

const isRecord = (u: unknown): u is Record<string, unknown> =>
  u !== null && typeof u === "object" && !Array.isArray(u) && !(u instanceof Uint8Array) && Object.getPrototypeOf(u) === Object.prototype

/** Reads one multipart message received by the ROUTER. */
export const parse = (frames: ReadonlyArray<Buffer>, maxBytes: number): Parsed => {
  if (frames.length < 4) return { _tag: "Invalid", reason: `${frames.length} frames` }
  const pre = frames.slice(0, frames.length - 3)
  const [kind, rawHeader, rawBody] = frames.slice(frames.length - 3) as [Buffer, Buffer, Buffer]
  if (kind.equals(PING)) return { _tag: "Ping", reply: [...pre, PONG, rawHeader, rawBody] }
  if (!kind.equals(UPPER)) return { _tag: "Invalid", reason: `message kind ${JSON.stringify(kind.subarray(0, 16).toString("latin1"))}` }
  let size = 0
  for (const f of frames) size += f.length
  let header: unknown
  try {
    header = Msgpack.decode(rawHeader)
  } catch (e) {
    return { _tag: "Invalid", reason: `header: ${e instanceof Error ? e.message : String(e)}` }
  }
  if (!isRecord(header)) return { _tag: "Invalid", reason: "header is not a map" }
  const { type, meth, okey, seq, zip } = header
  if (typeof type !== "number" || typeof meth !== "string" || typeof seq !== "number" || !Number.isInteger(seq)) {
    return { _tag: "Invalid", reason: "header lacks type/meth/seq" }
  }
  if (typeof okey !== "string" && !(okey instanceof Uint8Array)) return { _tag: "Invalid", reason: "header okey is not str or bin" }
  const base: CallosumRequest = { pre, type, method: meth, okey, seq, args: [], kwargs: {} }
  if (size > maxBytes) return { _tag: "Invalid", reason: `message of ${size} bytes is over the limit`, request: base }
  if (type !== MessageType.FUNCTION) return { _tag: "Request", request: base }
  let outer: unknown
  try {
    // `zip` compresses the whole body frame (callosum `RPCMessage.encode`), python-snappy raw format
    outer = Msgpack.decode(zip === true ? SnappyJS.uncompress(rawBody) : rawBody)
  } catch (e) {
    return { _tag: "Invalid", reason: `body: ${e instanceof Error ? e.message : String(e)}`, request: base }
  }
  if (!isRecord(outer) || !(outer["body"] instanceof Uint8Array)) return { _tag: "Invalid", reason: "body has no bin `body`", request: base }
  let inner: unknown
  try {
    inner = Bai.decode(outer["body"])
  } catch (e) {
    return { _tag: "Invalid", reason: `arguments: ${e instanceof Error ? e.message : String(e)}`, request: base }
  }
  if (!isRecord(inner)) return { _tag: "Invalid", reason: "arguments are not a map", request: base }
  const args = inner["args"] ?? []
  const kwargs = inner["kwargs"] ?? {}
  if (!Array.isArray(args)) return { _tag: "Invalid", reason: "args is not a sequence", request: base }
  if (!isRecord(kwargs)) return { _tag: "Invalid", reason: "kwargs is not a mapping", request: base }
  return { _tag: "Request", request: { ...base, args, kwargs } }
}

const replyHeader = (request: CallosumRequest, type: number): Buffer =>
  Msgpack.encode({ type, meth: request.method, okey: request.okey, seq: request.seq, zip: false })

/** RESULT meta: `msgpack([])` (callosum `ResultMetadata()` has no fields). */
const RESULT_META = Msgpack.encode([])

/** `[rid, UPPER, header, {meta: c4 01 90, body: bin(value)}]`. Throws when the value cannot be encoded. */
export const resultFrames = (request: CallosumRequest, value: unknown): ReadonlyArray<Buffer> => [
  ...request.pre,
  UPPER,
  replyHeader(request, MessageType.RESULT),
  Msgpack.encode({ meta: RESULT_META, body: Bai.encode(value) })
]

/** `[rid, UPPER, header(FAILURE), {meta: msgpack([name, repr, traceback]), body: nil}]`. */
export const failureFrames = (
  request: CallosumRequest,
  failure: { readonly name: string; readonly repr: string; readonly traceback: string }
): ReadonlyArray<Buffer> => [
  ...request.pre,
  UPPER,
  replyHeader(request, MessageType.FAILURE),
  Msgpack.encode({ meta: Msgpack.encode([failure.name, failure.repr, failure.traceback]), body: null })
]

/** A Python-looking `repr` of an exception: `Name('a', 1)`. */
export const pythonRepr = (name: string, args: ReadonlyArray<unknown>): string => {
  const one = (a: unknown): string =>
    typeof a === "string"
      ? `'${a.replace(/\\/g, "\\\\").replace(/'/g, "\\'").replace(/\n/g, "\\n")}'`
      : a === null || a === undefined
      ? "None"
      : typeof a === "boolean"
      ? (a ? "True" : "False")
      : Array.isArray(a)
      ? `(${a.map(one).join(", ")}${a.length === 1 ? "," : ""})`
      : String(a)
  return `${name}(${args.map(one).join(", ")})`
}
