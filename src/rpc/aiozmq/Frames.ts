/**
 * aiozmq RPC framing (spec §1.1; aiozmq `rpc/rpc.py`).
 *
 * Request  (DEALER → ROUTER): [...routing, header(16 = `=HHLd`), method name, msgpack args, msgpack kwargs]
 * Response (ROUTER → DEALER): [...routing, header(17 = `=HHLd?`), msgpack body]
 *
 * `=` is native byte order with standard sizes; every deployment is little-endian (x86-64, arm64),
 * so this module writes and reads little-endian.
 */

export const REQUEST_HEADER_BYTES = 16
export const REPLY_HEADER_BYTES = 17

/** The four numbers of a request header. */
export interface RequestHeader {
  readonly pid: number
  readonly rnd: number
  readonly reqId: number
  /** unix time in seconds (float) */
  readonly timestamp: number
}

/** The numbers of a reply header. */
export interface ReplyHeader extends RequestHeader {
  readonly isError: boolean
}

export const encodeRequestHeader = (h: RequestHeader): Buffer => {
  const b = Buffer.allocUnsafe(REQUEST_HEADER_BYTES)
  b.writeUInt16LE(h.pid & 0xffff, 0)
  b.writeUInt16LE(h.rnd & 0xffff, 2)
  b.writeUInt32LE(h.reqId >>> 0, 4)
  b.writeDoubleLE(h.timestamp, 8)
  return b
}

export const decodeRequestHeader = (b: Uint8Array): RequestHeader | undefined => {
  if (b.length !== REQUEST_HEADER_BYTES) return undefined
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength)
  return { pid: v.getUint16(0, true), rnd: v.getUint16(2, true), reqId: v.getUint32(4, true), timestamp: v.getFloat64(8, true) }
}

export const encodeReplyHeader = (h: ReplyHeader): Buffer => {
  const b = Buffer.allocUnsafe(REPLY_HEADER_BYTES)
  b.writeUInt16LE(h.pid & 0xffff, 0)
  b.writeUInt16LE(h.rnd & 0xffff, 2)
  b.writeUInt32LE(h.reqId >>> 0, 4)
  b.writeDoubleLE(h.timestamp, 8)
  b.writeUInt8(h.isError ? 1 : 0, 16)
  return b
}

export const decodeReplyHeader = (b: Uint8Array): ReplyHeader | undefined => {
  if (b.length !== REPLY_HEADER_BYTES) return undefined
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength)
  const flag = v.getUint8(16)
  if (flag > 1) return undefined
  return {
    pid: v.getUint16(0, true),
    rnd: v.getUint16(2, true),
    reqId: v.getUint32(4, true),
    timestamp: v.getFloat64(8, true),
    isError: flag === 1
  }
}

/** A well-formed request, its payload frames still msgpack. */
export interface Request {
  readonly _tag: "Request"
  readonly pre: ReadonlyArray<Buffer>
  readonly reqId: number
  readonly method: string
  readonly args: Buffer
  readonly kwargs: Buffer
}

/** A request that cannot be served. With a readable `reqId` it is answered with an error. */
export interface Malformed {
  readonly _tag: "Malformed"
  readonly pre: ReadonlyArray<Buffer>
  readonly reqId: number | undefined
  readonly reason: string
}

const utf8 = new TextDecoder("utf-8", { fatal: true })

/**
 * A method name's UTF-8 text, or `undefined` when it is not UTF-8. Names are short ASCII in
 * practice: those are read as latin1 (the same text for bytes < 0x80) without the decoder's call.
 */
const methodName = (frame: Buffer): string | undefined => {
  if (frame.length <= 64) {
    let ascii = true
    for (let i = 0; i < frame.length; i++) {
      if (frame[i]! >= 0x80) {
        ascii = false
        break
      }
    }
    if (ascii) return frame.toString("latin1")
  }
  try {
    return utf8.decode(frame)
  } catch {
    return undefined
  }
}

/**
 * Splits a multipart message received on the ROUTER socket. `frames[0]` is the peer's routing id;
 * like aiozmq, the last four frames are the request and everything before them is routing.
 */
export const parseRequest = (frames: ReadonlyArray<Buffer>, maxFrameBytes: number): Request | Malformed => {
  let total = 0
  for (const f of frames) total += f.length
  if (frames.length < 5) {
    return { _tag: "Malformed", pre: [], reqId: undefined, reason: `expected at least 5 frames, got ${frames.length}` }
  }
  const n = frames.length
  const pre = frames.slice(0, n - 4)
  const header = frames[n - 4]!
  if (header.length !== REQUEST_HEADER_BYTES) {
    return { _tag: "Malformed", pre, reqId: undefined, reason: `bad header length ${header.length}` }
  }
  // only the request id matters to the server (the header's other fields are the caller's): read
  // it in place rather than decoding the whole header into an object (a DataView per request)
  const reqId = header.readUInt32LE(4)
  if (total > maxFrameBytes) {
    return { _tag: "Malformed", pre, reqId, reason: `request of ${total} bytes exceeds the ${maxFrameBytes}-byte limit` }
  }
  const method = methodName(frames[n - 3]!)
  if (method === undefined) return { _tag: "Malformed", pre, reqId, reason: "method name is not UTF-8" }
  return { _tag: "Request", pre, reqId, method, args: frames[n - 2]!, kwargs: frames[n - 1]! }
}
