// size: one Python-semantics msgpack reader and writer with its dialects (19.06 plain, 26.x ext types); every type family's size boundaries read best side by side
/**
 * msgpack with Python semantics (msgpack-python `packb(use_bin_type=True)` /
 * `unpackb(raw=False, strict_map_key=True)`), as used by aiozmq and the manager.
 *
 * - `string` ↔ str family, `Uint8Array` ↔ bin family (never mixed up);
 * - `null`/`undefined` → nil, nil → `null`;
 * - integral safe numbers → the smallest int encoding Python would pick; other numbers → float64;
 *   wrap a value in {@link PyFloat} to force float64 even when it is integral (`1.0` in Python);
 * - `bigint` → int64 / uint64; decoded 64-bit ints outside the safe range come back as `bigint`;
 * - arrays (tuples) ↔ arrays; plain objects and `Map`s → maps; decoded maps are plain objects with
 *   string keys (Python's `strict_map_key`; any other key type is a decode error);
 * - extension types are rejected (aiozmq reserves 123–127 for pickled datetimes; nobody sends them);
 * - the decoder caps nesting depth and the number of values ({@link DecodeOptions}) as well as bytes.
 *
 * Pure functions: the codec is used from inside effects through `Effect.try` ({@link decodeEffect}),
 * or through the non-throwing {@link decodeResult} / {@link encodeResult} on hot paths.
 *
 * The reader and writer are shared with manager 26's `ai.backend.common.msgpack`
 * (`src/codec/bai/BaiMsgpack.ts`) through a {@link Dialect}: what ext types mean, which map
 * keys are allowed, how deep a value may nest and which error class a refusal throws. The default
 * dialect ({@link PYTHON}) is the one above.
 */
import { Effect, Schema } from "effect"

/** A Python `float`: encoded as msgpack float64 even when the value is integral. */
export class PyFloat {
  readonly value: number
  constructor(value: number) {
    this.value = value
  }
}

/** Values the encoder accepts. */
export type PyValue =
  | null
  | undefined
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PyFloat
  | ReadonlyArray<PyValue>
  | ReadonlyMap<string, PyValue>
  | { readonly [key: string]: PyValue }

/** Thrown (only) by {@link decode} / {@link encode}; callers wrap them in `Effect.try`. */
export class MsgpackFormatError extends Error {
  override readonly name: string = "MsgpackFormatError"
}

/** A msgpack ext value to write: `code` and its payload. */
export interface Ext {
  readonly code: number
  readonly data: Uint8Array
}

/**
 * What differs between the msgpack dialects the agent speaks (aiozmq / manager 19.06 and
 * `ai.backend.common.msgpack` of manager 26): everything else (the type families, the minimal integer
 * encodings, UTF-8 checks, length and element bounds) is this file's, once.
 */
export interface Dialect {
  /** Deepest nesting accepted, both ways. */
  readonly maxDepth: number
  /** The error class every refusal throws (a subclass of {@link MsgpackFormatError}). */
  readonly Error: new(message: string) => MsgpackFormatError
  /** An ext value read from the wire; absent: ext types are refused. */
  readonly readExt?: (code: number, data: Uint8Array) => unknown
  /** A non-str map key (already decoded) → its string key, or undefined to refuse it. */
  readonly mapKey?: (key: unknown) => string | undefined
  /** A repeated map key is an error (else the last one wins, as in a Python dict). */
  readonly uniqueKeys?: boolean
  /** An object to write as an ext value; undefined: not an ext object (encoded as usual or refused). */
  readonly writeExt?: (value: object) => Ext | undefined
}

/** msgpack-python `packb(use_bin_type=True)` / `unpackb(raw=False, strict_map_key=True)`, no ext types. */
const PYTHON: Dialect = { maxDepth: 512, Error: MsgpackFormatError }

// ---------------------------------------------------------------------------------------------
// Encoder

const utf8Encoder = new TextEncoder()

class Writer {
  buf: Buffer
  view: DataView
  pos = 0
  constructor(buf: Buffer) {
    this.buf = buf
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
  }
  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return
    let size = this.buf.length * 2
    while (size < this.pos + n) size *= 2
    const next = Buffer.allocUnsafe(size)
    this.buf.copy(next, 0, 0, this.pos)
    this.buf = next
    this.view = new DataView(next.buffer, next.byteOffset, next.byteLength)
  }
  u8(v: number): void {
    this.ensure(1)
    this.buf[this.pos++] = v
  }
  u8u8(t: number, v: number): void {
    this.ensure(2)
    this.buf[this.pos++] = t
    this.buf[this.pos++] = v
  }
  u8u16(t: number, v: number): void {
    this.ensure(3)
    this.buf[this.pos++] = t
    this.view.setUint16(this.pos, v)
    this.pos += 2
  }
  u8u32(t: number, v: number): void {
    this.ensure(5)
    this.buf[this.pos++] = t
    this.view.setUint32(this.pos, v)
    this.pos += 4
  }
  u8i8(t: number, v: number): void {
    this.ensure(2)
    this.buf[this.pos++] = t
    this.view.setInt8(this.pos, v)
    this.pos += 1
  }
  u8i16(t: number, v: number): void {
    this.ensure(3)
    this.buf[this.pos++] = t
    this.view.setInt16(this.pos, v)
    this.pos += 2
  }
  u8i32(t: number, v: number): void {
    this.ensure(5)
    this.buf[this.pos++] = t
    this.view.setInt32(this.pos, v)
    this.pos += 4
  }
  f64(v: number): void {
    this.ensure(9)
    this.buf[this.pos++] = 0xcb
    this.view.setFloat64(this.pos, v)
    this.pos += 8
  }
  big(v: bigint): void {
    this.ensure(9)
    if (v >= 0n) {
      if (v > 0xffffffffffffffffn) throw new MsgpackFormatError(`integer out of range: ${v}`)
      this.buf[this.pos++] = 0xcf
      this.view.setBigUint64(this.pos, v)
    } else {
      if (v < -0x8000000000000000n) throw new MsgpackFormatError(`integer out of range: ${v}`)
      this.buf[this.pos++] = 0xd3
      this.view.setBigInt64(this.pos, v)
    }
    this.pos += 8
  }
  bytes(b: Uint8Array): void {
    this.ensure(b.length)
    this.buf.set(b, this.pos)
    this.pos += b.length
  }
}

const writeInt = (w: Writer, n: number): void => {
  if (n >= 0) {
    if (n < 0x80) w.u8(n)
    else if (n <= 0xff) w.u8u8(0xcc, n)
    else if (n <= 0xffff) w.u8u16(0xcd, n)
    else if (n <= 0xffffffff) w.u8u32(0xce, n)
    else w.big(BigInt(n))
  } else {
    if (n >= -32) w.u8(n & 0xff)
    else if (n >= -0x80) w.u8i8(0xd0, n)
    else if (n >= -0x8000) w.u8i16(0xd1, n)
    else if (n >= -0x80000000) w.u8i32(0xd2, n)
    else w.big(BigInt(n))
  }
}

const writeBigInt = (w: Writer, n: bigint): void => {
  if (n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER)) writeInt(w, Number(n))
  else w.big(n)
}

const writeStr = (w: Writer, s: string): void => {
  // Fast path: ASCII-only short strings.
  const len = s.length
  if (len < 32) {
    let ascii = true
    for (let i = 0; i < len; i++) {
      if (s.charCodeAt(i) > 0x7f) {
        ascii = false
        break
      }
    }
    if (ascii) {
      w.ensure(1 + len)
      w.buf[w.pos++] = 0xa0 | len
      for (let i = 0; i < len; i++) w.buf[w.pos++] = s.charCodeAt(i)
      return
    }
  }
  // UTF-8 straight into the output buffer (no intermediate Uint8Array): measure, then write
  const n = Buffer.byteLength(s, "utf8")
  if (n < 32) w.u8(0xa0 | n)
  else if (n <= 0xff) w.u8u8(0xd9, n)
  else if (n <= 0xffff) w.u8u16(0xda, n)
  else if (n <= 0xffffffff) w.u8u32(0xdb, n)
  else throw new MsgpackFormatError("string too long")
  w.ensure(n)
  w.pos += w.buf.write(s, w.pos, n, "utf8")
}

const writeBin = (w: Writer, b: Uint8Array): void => {
  const n = b.length
  if (n <= 0xff) w.u8u8(0xc4, n)
  else if (n <= 0xffff) w.u8u16(0xc5, n)
  else if (n <= 0xffffffff) w.u8u32(0xc6, n)
  else throw new MsgpackFormatError("bytes too long")
  w.bytes(b)
}

const writeArrayHeader = (w: Writer, n: number): void => {
  if (n < 16) w.u8(0x90 | n)
  else if (n <= 0xffff) w.u8u16(0xdc, n)
  else w.u8u32(0xdd, n)
}

const writeMapHeader = (w: Writer, n: number): void => {
  if (n < 16) w.u8(0x80 | n)
  else if (n <= 0xffff) w.u8u16(0xde, n)
  else w.u8u32(0xdf, n)
}

const writeExt = (w: Writer, { code, data }: Ext): void => {
  const n = data.length
  const fixed = n === 1 ? 0xd4 : n === 2 ? 0xd5 : n === 4 ? 0xd6 : n === 8 ? 0xd7 : n === 16 ? 0xd8 : 0
  if (fixed !== 0) w.u8u8(fixed, code & 0xff)
  else if (n <= 0xff) {
    w.u8u8(0xc7, n)
    w.u8(code & 0xff)
  } else if (n <= 0xffff) {
    w.u8u16(0xc8, n)
    w.u8(code & 0xff)
  } else if (n <= 0xffffffff) {
    w.u8u32(0xc9, n)
    w.u8(code & 0xff)
  } else throw new MsgpackFormatError("ext payload too long")
  w.bytes(data)
}

const writeValue = (w: Writer, v: unknown, depth: number, d: Dialect): void => {
  if (depth > d.maxDepth) throw new d.Error("value nested too deeply")
  switch (typeof v) {
    case "string":
      return writeStr(w, v)
    case "number":
      return Number.isSafeInteger(v) ? writeInt(w, v === 0 ? 0 : v) : w.f64(v)
    case "boolean":
      return w.u8(v ? 0xc3 : 0xc2)
    case "undefined":
      return w.u8(0xc0)
    case "bigint":
      return writeBigInt(w, v)
    case "object": {
      if (v === null) return w.u8(0xc0)
      if (v instanceof PyFloat) return w.f64(v.value)
      if (v instanceof Uint8Array) return writeBin(w, v)
      if (Array.isArray(v)) {
        writeArrayHeader(w, v.length)
        for (const item of v) writeValue(w, item, depth + 1, d)
        return
      }
      if (v instanceof Map) {
        writeMapHeader(w, v.size)
        for (const [key, item] of v) {
          if (typeof key !== "string") throw new MsgpackFormatError(`map key must be a string, got ${typeof key}`)
          writeStr(w, key)
          writeValue(w, item, depth + 1, d)
        }
        return
      }
      const proto = Object.getPrototypeOf(v)
      if (proto !== Object.prototype && d.writeExt !== undefined) {
        const ext = d.writeExt(v)
        if (ext !== undefined) return writeExt(w, ext)
      }
      if (proto !== Object.prototype && proto !== null) {
        throw new MsgpackFormatError(`cannot encode an instance of ${proto?.constructor?.name ?? "?"}`)
      }
      const record = v as Record<string, unknown>
      let n = 0
      for (const key in record) if (record[key] !== undefined) n++
      writeMapHeader(w, n)
      for (const key in record) {
        const item = record[key]
        if (item === undefined) continue // absent optional keys; Python has no `undefined`
        writeStr(w, key)
        writeValue(w, item, depth + 1, d)
      }
      return
    }
    default:
      throw new MsgpackFormatError(`cannot encode a ${typeof v}`)
  }
}

// One reused scratch writer (encode is synchronous): a reply is built there and copied out at its
// exact size (`Buffer.allocUnsafe` under 4 KiB comes from Node's pool), instead of growing a fresh
// buffer 128 → 256 → … per call. A value that outgrows the scratch gets its own (larger) buffer.
const SCRATCH_BYTES = 64 * 1024
const scratch = new Writer(Buffer.allocUnsafe(SCRATCH_BYTES))
let scratchInUse = false

/** Encodes a value with Python semantics. Throws {@link MsgpackFormatError} on unencodable input. */
export const encode = (value: unknown): Buffer => encodeWith(PYTHON, value)

/** {@link encode} in another {@link Dialect}. */
export const encodeWith = (dialect: Dialect, value: unknown): Buffer => encodeInto(writeRoot, value, dialect)

const writeRoot = (w: Writer, value: unknown, dialect: Dialect): void => writeValue(w, value, 0, dialect)

/**
 * What a hand-written encoder of a hot path writes with ({@link encodeBy}): the msgpack bytes of maps,
 * str and nil values in the order called, with {@link encode}'s encodings (str family, the smallest map
 * header). The caller's map headers must count what follows (nothing checks them).
 */
export interface ValueWriter {
  readonly mapHeader: (n: number) => void
  readonly str: (s: string) => void
  readonly nil: () => void
}

class ScratchValueWriter implements ValueWriter {
  w: Writer = scratch
  readonly mapHeader = (n: number): void => writeMapHeader(this.w, n)
  readonly str = (s: string): void => writeStr(this.w, s)
  readonly nil = (): void => this.w.u8(0xc0)
}
const valueWriter = new ScratchValueWriter()

/**
 * The bytes `write` writes, as one value (or several, concatenated), without building the value as
 * objects first: the stats loop writes ~8,000 metric records per cycle straight from its series.
 */
export const encodeBy = (write: (w: ValueWriter) => void): Buffer => encodeInto(writeBy, write, undefined)

const writeBy = (w: Writer, write: (w: ValueWriter) => void): void => {
  const saved = valueWriter.w
  valueWriter.w = w
  try {
    write(valueWriter)
  } finally {
    valueWriter.w = saved
  }
}

/** Runs `write(w, a, b)` on the scratch writer (a fresh one when nested) and returns the bytes; module-level writers and their arguments, so an encode makes no closure. */
const encodeInto = <A, B>(write: (w: Writer, a: A, b: B) => void, a: A, b: B): Buffer => {
  if (scratchInUse) {
    const own = new Writer(Buffer.allocUnsafe(128))
    write(own, a, b)
    return own.buf.subarray(0, own.pos)
  }
  scratchInUse = true
  const w = scratch
  w.pos = 0
  try {
    write(w, a, b)
    // grown past the scratch: hand that buffer out (the finally below gives the scratch a fresh one)
    if (w.buf.length > SCRATCH_BYTES) return w.buf.subarray(0, w.pos)
    const out = Buffer.allocUnsafe(w.pos)
    w.buf.copy(out, 0, 0, w.pos)
    return out
  } finally {
    if (w.buf.length > SCRATCH_BYTES) {
      w.buf = Buffer.allocUnsafe(SCRATCH_BYTES)
      w.view = new DataView(w.buf.buffer, w.buf.byteOffset, w.buf.byteLength)
    }
    scratchInUse = false
  }
}

// ---------------------------------------------------------------------------------------------
// Decoder

const utf8Decoder = new TextDecoder("utf-8", { fatal: true })

/**
 * Default cap of {@link DecodeOptions.maxElements}: every decoded value (scalars, containers, map keys)
 * counts one. Bytes alone do not bound memory: an array of one-byte nils costs a JS slot per byte.
 */
export const DEFAULT_MAX_ELEMENTS = 1_000_000

/** Limits of {@link decode}. */
export interface DecodeOptions {
  /** Most values one payload may hold, all levels together (default {@link DEFAULT_MAX_ELEMENTS}). */
  readonly maxElements?: number
}

class Reader {
  readonly buf: Uint8Array
  readonly view: DataView
  readonly maxElements: number
  readonly d: Dialect
  pos = 0
  /** values still allowed */
  budget: number
  constructor(buf: Uint8Array, maxElements: number, d: Dialect) {
    this.buf = buf
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
    this.maxElements = maxElements
    this.budget = maxElements
    this.d = d
  }
  fail(message: string): never {
    throw new this.d.Error(message)
  }
  need(n: number): void {
    if (this.pos + n > this.buf.length) this.fail("unexpected end of data")
  }
  /** Reserves `n` more values (checked before a container allocates room for them). */
  take(n: number): void {
    this.budget -= n
    if (this.budget < 0) this.fail(`more than ${this.maxElements} elements`)
  }
}

const readStr = (r: Reader, n: number): string => {
  r.need(n)
  const start = r.pos
  r.pos += n
  // ASCII fast path for short strings
  if (n < 32) {
    let s = ""
    for (let i = start; i < start + n; i++) {
      const c = r.buf[i]!
      if (c > 0x7f) return decodeUtf8(r, r.buf.subarray(start, start + n))
      s += String.fromCharCode(c)
    }
    return s
  }
  return decodeUtf8(r, r.buf.subarray(start, start + n))
}

const decodeUtf8 = (r: Reader, bytes: Uint8Array): string => {
  try {
    return utf8Decoder.decode(bytes)
  } catch {
    return r.fail("invalid UTF-8 in str")
  }
}

const readBin = (r: Reader, n: number): Uint8Array => {
  r.need(n)
  // copy: the caller's frame buffer may be reused by the transport
  const out = Buffer.from(r.buf.subarray(r.pos, r.pos + n))
  r.pos += n
  return out
}

const readArray = (r: Reader, n: number, depth: number): Array<unknown> => {
  // every element takes at least one byte: reject impossible lengths before allocating
  if (n > r.buf.length - r.pos) r.fail("array length exceeds data")
  r.take(n)
  const out = new Array<unknown>(n)
  for (let i = 0; i < n; i++) out[i] = readValue(r, depth + 1)
  return out
}

const readMap = (r: Reader, n: number, depth: number): Record<string, unknown> => {
  if (n * 2 > r.buf.length - r.pos) r.fail("map length exceeds data")
  r.take(n * 2)
  const out: Record<string, unknown> = {}
  const d = r.d
  for (let i = 0; i < n; i++) {
    const raw = readValue(r, depth + 1)
    const key = typeof raw === "string" ? raw : d.mapKey?.(raw)
    if (key === undefined) return r.fail(d.mapKey === undefined ? "map key is not a str" : "map key is not a str, int or UUID")
    if (d.uniqueKeys === true && Object.prototype.hasOwnProperty.call(out, key)) r.fail(`map key ${JSON.stringify(key)} repeated`)
    const value = readValue(r, depth + 1)
    if (key === "__proto__") Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true })
    else out[key] = value
  }
  return out
}

const readExt = (r: Reader, t: number, read: (code: number, data: Uint8Array) => unknown): unknown => {
  let n: number
  if (t >= 0xd4) n = 1 << (t - 0xd4)
  else {
    const size = 1 << (t - 0xc7) // 0xc7: 1 length byte, 0xc8: 2, 0xc9: 4
    r.need(size)
    n = size === 1 ? r.view.getUint8(r.pos) : size === 2 ? r.view.getUint16(r.pos) : r.view.getUint32(r.pos)
    r.pos += size
  }
  r.need(1 + n)
  const code = r.view.getInt8(r.pos)
  const data = r.buf.subarray(r.pos + 1, r.pos + 1 + n)
  r.pos += 1 + n
  return read(code, data)
}

const toIntNumber = (v: bigint): number | bigint =>
  v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v

const readValue = (r: Reader, depth: number): unknown => {
  if (depth > r.d.maxDepth) r.fail("data nested too deeply")
  r.need(1)
  const t = r.buf[r.pos++]!
  if (t < 0x80) return t
  if (t >= 0xe0) return t - 0x100
  if (t >= 0xa0 && t <= 0xbf) return readStr(r, t & 0x1f)
  if (t >= 0x90 && t <= 0x9f) return readArray(r, t & 0x0f, depth)
  if (t >= 0x80 && t <= 0x8f) return readMap(r, t & 0x0f, depth)
  const v = r.view
  let n: number
  switch (t) {
    case 0xc0:
      return null
    case 0xc2:
      return false
    case 0xc3:
      return true
    case 0xc4:
      r.need(1)
      n = v.getUint8(r.pos)
      r.pos += 1
      return readBin(r, n)
    case 0xc5:
      r.need(2)
      n = v.getUint16(r.pos)
      r.pos += 2
      return readBin(r, n)
    case 0xc6:
      r.need(4)
      n = v.getUint32(r.pos)
      r.pos += 4
      return readBin(r, n)
    case 0xca:
      r.need(4)
      r.pos += 4
      return v.getFloat32(r.pos - 4)
    case 0xcb:
      r.need(8)
      r.pos += 8
      return v.getFloat64(r.pos - 8)
    case 0xcc:
      r.need(1)
      return v.getUint8(r.pos++)
    case 0xcd:
      r.need(2)
      r.pos += 2
      return v.getUint16(r.pos - 2)
    case 0xce:
      r.need(4)
      r.pos += 4
      return v.getUint32(r.pos - 4)
    case 0xcf:
      r.need(8)
      r.pos += 8
      return toIntNumber(v.getBigUint64(r.pos - 8))
    case 0xd0:
      r.need(1)
      return v.getInt8(r.pos++)
    case 0xd1:
      r.need(2)
      r.pos += 2
      return v.getInt16(r.pos - 2)
    case 0xd2:
      r.need(4)
      r.pos += 4
      return v.getInt32(r.pos - 4)
    case 0xd3:
      r.need(8)
      r.pos += 8
      return toIntNumber(v.getBigInt64(r.pos - 8))
    case 0xd9:
      r.need(1)
      n = v.getUint8(r.pos)
      r.pos += 1
      return readStr(r, n)
    case 0xda:
      r.need(2)
      n = v.getUint16(r.pos)
      r.pos += 2
      return readStr(r, n)
    case 0xdb:
      r.need(4)
      n = v.getUint32(r.pos)
      r.pos += 4
      return readStr(r, n)
    case 0xdc:
      r.need(2)
      n = v.getUint16(r.pos)
      r.pos += 2
      return readArray(r, n, depth)
    case 0xdd:
      r.need(4)
      n = v.getUint32(r.pos)
      r.pos += 4
      return readArray(r, n, depth)
    case 0xde:
      r.need(2)
      n = v.getUint16(r.pos)
      r.pos += 2
      return readMap(r, n, depth)
    case 0xdf:
      r.need(4)
      n = v.getUint32(r.pos)
      r.pos += 4
      return readMap(r, n, depth)
    default:
      // ext 0xc7–0xc9, fixext 0xd4–0xd8 (when the dialect has ext types); 0xc1 is never used
      if (r.d.readExt !== undefined && ((t >= 0xc7 && t <= 0xc9) || (t >= 0xd4 && t <= 0xd8))) return readExt(r, t, r.d.readExt)
      return r.fail(`unsupported msgpack type 0x${t.toString(16)}`)
  }
}

/**
 * Decodes exactly one msgpack value (trailing bytes are an error, like Python's `ExtraData`).
 * Throws {@link MsgpackFormatError} on malformed input.
 */
export const decode = (bytes: Uint8Array, options?: DecodeOptions): unknown => decodeWith(PYTHON, bytes, options)

/** {@link decode} in another {@link Dialect}. */
export const decodeWith = (dialect: Dialect, bytes: Uint8Array, options?: DecodeOptions): unknown => {
  const r = new Reader(bytes, options?.maxElements ?? DEFAULT_MAX_ELEMENTS, dialect)
  r.take(1)
  const value = readValue(r, 0)
  if (r.pos !== bytes.length) r.fail("extra data after the msgpack value")
  return value
}

const messageOf = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

/** The outcome of {@link decodeResult} / {@link encodeResult}. */
export type CodecResult<A> = { readonly ok: true; readonly value: A } | { readonly ok: false; readonly message: string }

/** {@link decode} without throwing (for hot paths that should not build an effect per frame). */
export const decodeResult = (bytes: Uint8Array, options?: DecodeOptions): CodecResult<unknown> => {
  try {
    return { ok: true, value: decode(bytes, options) }
  } catch (cause) {
    return { ok: false, message: messageOf(cause) }
  }
}

/** {@link encode} without throwing. */
export const encodeResult = (value: unknown): CodecResult<Buffer> => {
  try {
    return { ok: true, value: encode(value) }
  } catch (cause) {
    return { ok: false, message: messageOf(cause) }
  }
}

// ---------------------------------------------------------------------------------------------
// Effect wrappers

/** A msgpack payload that could not be decoded or a value that could not be encoded. */
export class MsgpackError extends Schema.TaggedError<MsgpackError>()("MsgpackError", {
  reason: Schema.Literals(["Decode", "Encode"]),
  message: Schema.String
}) {}

/** {@link decode} as an effect. */
export const decodeEffect = (bytes: Uint8Array, options?: DecodeOptions): Effect.Effect<unknown, MsgpackError> =>
  Effect.try({ try: () => decode(bytes, options), catch: (cause) => new MsgpackError({ reason: "Decode", message: messageOf(cause) }) })

/** {@link encode} as an effect. */
export const encodeEffect = (value: unknown): Effect.Effect<Buffer, MsgpackError> =>
  Effect.try({ try: () => encode(value), catch: (cause) => new MsgpackError({ reason: "Encode", message: messageOf(cause) }) })
