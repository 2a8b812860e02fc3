/**
 * `ai.backend.common.msgpack` as the 26.x manager uses it (contract §1.6): msgpack with
 * `use_bin_type`, `strict_map_key=False` and the Backend.AI extension types.
 *
 * Decoding (untrusted input):
 * - ext 1 UUID → {@link Uuid} (16 bytes); as a **map key** it becomes its canonical string;
 * - ext 3 Decimal, ext 6 enum, ext 7 ImageRef → the strict pickle subset of `Pickle.ts`
 *   ({@link PyDecimal}, {@link PyEnum}, {@link ImageRef});
 * - ext 4 / 5 / 17 paths → strings; any other ext code → {@link ExtValue} (kept, never interpreted);
 * - maps → plain records; keys may be str, int or UUID (stringified; a repeated key is an error).
 *
 * Encoding (what the agent sends): plain Python values as `src/rpc/msgpack/Msgpack.ts` writes them
 * (that encoder does every scalar), plus {@link ExtValue} for ext types (the heartbeat's ResourceSlot,
 * ext 8, from {@link resourceSlotExt}).
 */
import { Uuid } from "./Uuid.ts"
import { PickleError, PyDecimal, PyEnum, PyObject, readPickle, writeResourceSlot } from "./Pickle.ts"
import * as Msgpack from "../../rpc/msgpack/Msgpack.ts"

export { PickleError, PyDecimal, PyEnum, PyObject, Uuid }

/** A msgpack ext value carried as is. */
export class ExtValue {
  readonly code: number
  readonly data: Uint8Array
  constructor(code: number, data: Uint8Array) {
    this.code = code
    this.data = data
  }
}

/** `ai.backend.common.docker.ImageRef` as the manager pickles it (ext 7). */
export class ImageRef {
  readonly name: string
  readonly project: string | null
  readonly tag: string
  readonly registry: string
  readonly architecture: string
  readonly isLocal: boolean
  constructor(fields: {
    readonly name: string
    readonly project: string | null
    readonly tag: string
    readonly registry: string
    readonly architecture: string
    readonly isLocal: boolean
  }) {
    this.name = fields.name
    this.project = fields.project
    this.tag = fields.tag
    this.registry = fields.registry
    this.architecture = fields.architecture
    this.isLocal = fields.isLocal
  }
  /** `registry/project/name:tag` (the manager's canonical form). */
  get canonical(): string {
    const path = this.project === null || this.project === "" ? this.name : `${this.project}/${this.name}`
    return `${this.registry}/${path}:${this.tag}`
  }
}

/** Thrown by {@link decode}: malformed msgpack or a refused ext payload. */
export class BaiMsgpackError extends Error {
  override readonly name = "BaiMsgpackError"
}

const imageRefOf = (v: unknown): ImageRef => {
  if (!(v instanceof PyObject) || v.cls !== "ai.backend.common.docker.ImageRef") throw new BaiMsgpackError("ext 7 is not an ImageRef")
  const a = v.attrs
  const str = (k: string): string => {
    const x = a[k]
    if (typeof x !== "string") throw new BaiMsgpackError(`ImageRef.${k} is not a str`)
    return x
  }
  const project = a["project"]
  if (project !== undefined && project !== null && typeof project !== "string") throw new BaiMsgpackError("ImageRef.project is not a str")
  return new ImageRef({
    name: str("name"),
    project: typeof project === "string" ? project : null,
    tag: str("tag"),
    registry: str("registry"),
    architecture: str("architecture"),
    isLocal: a["is_local"] === true
  })
}

const pickled = (code: number, data: Uint8Array): unknown => {
  let v: unknown
  try {
    v = readPickle(data)
  } catch (e) {
    throw new BaiMsgpackError(`ext ${code}: ${e instanceof PickleError ? e.message : String(e)}`)
  }
  switch (code) {
    case 3:
      if (!(v instanceof PyDecimal)) throw new BaiMsgpackError("ext 3 is not a Decimal")
      return v
    case 6:
      if (!(v instanceof PyEnum)) throw new BaiMsgpackError("ext 6 is not an enum member")
      return v
    default:
      return imageRefOf(v)
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true })

const extValue = (code: number, data: Uint8Array): unknown => {
  switch (code) {
    case 1:
      if (data.length !== 16) throw new BaiMsgpackError("ext 1 (UUID) must be 16 bytes")
      return new Uuid(data)
    case 3:
    case 6:
    case 7:
      return pickled(code, data)
    case 4:
    case 5:
    case 17:
      try {
        return utf8.decode(data)
      } catch {
        throw new BaiMsgpackError(`ext ${code} (path) is not UTF-8`)
      }
    default:
      return new ExtValue(code, Buffer.from(data))
  }
}

const MAX_DEPTH = 256

class Reader {
  pos = 0
  readonly view: DataView
  readonly buf: Uint8Array
  constructor(buf: Uint8Array) {
    this.buf = buf
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
  }
  need(n: number) {
    if (this.pos + n > this.buf.length) throw new BaiMsgpackError("unexpected end of data")
  }
  take(n: number): Uint8Array {
    this.need(n)
    const out = this.buf.subarray(this.pos, this.pos + n)
    this.pos += n
    return out
  }
  u8() {
    this.need(1)
    return this.buf[this.pos++]!
  }
  u16() {
    this.need(2)
    this.pos += 2
    return this.view.getUint16(this.pos - 2)
  }
  u32() {
    this.need(4)
    this.pos += 4
    return this.view.getUint32(this.pos - 4)
  }
}

const safe = (v: bigint): number | bigint =>
  v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v

const readStr = (r: Reader, n: number): string => {
  try {
    return utf8.decode(r.take(n))
  } catch (e) {
    if (e instanceof BaiMsgpackError) throw e
    throw new BaiMsgpackError("invalid UTF-8 in str")
  }
}

const readArray = (r: Reader, n: number, depth: number): Array<unknown> => {
  if (n > r.buf.length - r.pos) throw new BaiMsgpackError("array length exceeds data")
  const out = new Array<unknown>(n)
  for (let i = 0; i < n; i++) out[i] = readValue(r, depth + 1)
  return out
}

const readMap = (r: Reader, n: number, depth: number): Record<string, unknown> => {
  if (n * 2 > r.buf.length - r.pos) throw new BaiMsgpackError("map length exceeds data")
  const out: Record<string, unknown> = {}
  for (let i = 0; i < n; i++) {
    const raw = readValue(r, depth + 1)
    const key = typeof raw === "string"
      ? raw
      : raw instanceof Uuid
      ? raw.toString()
      : typeof raw === "number" && Number.isInteger(raw)
      ? String(raw)
      : undefined
    if (key === undefined) throw new BaiMsgpackError("map key is not a str, int or UUID")
    if (Object.prototype.hasOwnProperty.call(out, key)) throw new BaiMsgpackError(`map key ${JSON.stringify(key)} repeated`)
    Object.defineProperty(out, key, { value: readValue(r, depth + 1), enumerable: true, writable: true, configurable: true })
  }
  return out
}

const readExt = (r: Reader, n: number): unknown => {
  r.need(1 + n)
  const code = r.view.getInt8(r.pos)
  r.pos += 1
  return extValue(code, r.take(n))
}

const readValue = (r: Reader, depth: number): unknown => {
  if (depth > MAX_DEPTH) throw new BaiMsgpackError("data nested too deeply")
  const t = r.u8()
  if (t < 0x80) return t
  if (t >= 0xe0) return t - 0x100
  if (t >= 0xa0 && t <= 0xbf) return readStr(r, t & 0x1f)
  if (t >= 0x90 && t <= 0x9f) return readArray(r, t & 0x0f, depth)
  if (t >= 0x80 && t <= 0x8f) return readMap(r, t & 0x0f, depth)
  const v = r.view
  switch (t) {
    case 0xc0:
      return null
    case 0xc2:
      return false
    case 0xc3:
      return true
    case 0xc4:
      return Buffer.from(r.take(r.u8()))
    case 0xc5:
      return Buffer.from(r.take(r.u16()))
    case 0xc6:
      return Buffer.from(r.take(r.u32()))
    case 0xc7:
      return readExt(r, r.u8())
    case 0xc8:
      return readExt(r, r.u16())
    case 0xc9:
      return readExt(r, r.u32())
    case 0xca:
      r.need(4)
      r.pos += 4
      return v.getFloat32(r.pos - 4)
    case 0xcb:
      r.need(8)
      r.pos += 8
      return v.getFloat64(r.pos - 8)
    case 0xcc:
      return r.u8()
    case 0xcd:
      return r.u16()
    case 0xce:
      return r.u32()
    case 0xcf:
      r.need(8)
      r.pos += 8
      return safe(v.getBigUint64(r.pos - 8))
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
      return safe(v.getBigInt64(r.pos - 8))
    case 0xd4:
      return readExt(r, 1)
    case 0xd5:
      return readExt(r, 2)
    case 0xd6:
      return readExt(r, 4)
    case 0xd7:
      return readExt(r, 8)
    case 0xd8:
      return readExt(r, 16)
    case 0xd9:
      return readStr(r, r.u8())
    case 0xda:
      return readStr(r, r.u16())
    case 0xdb:
      return readStr(r, r.u32())
    case 0xdc:
      return readArray(r, r.u16(), depth)
    case 0xdd:
      return readArray(r, r.u32(), depth)
    case 0xde:
      return readMap(r, r.u16(), depth)
    case 0xdf:
      return readMap(r, r.u32(), depth)
    default:
      throw new BaiMsgpackError(`unsupported msgpack type 0x${t.toString(16)}`)
  }
}

/** Decodes exactly one value. Throws {@link BaiMsgpackError}. */
export const decode = (bytes: Uint8Array): unknown => {
  const r = new Reader(bytes)
  const value = readValue(r, 0)
  if (r.pos !== bytes.length) throw new BaiMsgpackError("extra data after the msgpack value")
  return value
}

// ---------------------------------------------------------------------------------------------
// Encoder: containers and ext values here, every other value through the 19.06 encoder (msgpack is
// a concatenation: a container header followed by its encoded items).

const header = (small: number, smallMax: number, n: number, t16: number, t32: number): Buffer => {
  if (n <= smallMax) return Buffer.from([small | n])
  const b = Buffer.alloc(n <= 0xffff ? 3 : 5)
  if (n <= 0xffff) {
    b[0] = t16
    b.writeUInt16BE(n, 1)
  } else {
    b[0] = t32
    b.writeUInt32BE(n, 1)
  }
  return b
}

const extHeader = (code: number, n: number): Buffer => {
  const fixed: Record<number, number> = { 1: 0xd4, 2: 0xd5, 4: 0xd6, 8: 0xd7, 16: 0xd8 }
  const f = fixed[n]
  if (f !== undefined) return Buffer.from([f, code & 0xff])
  if (n <= 0xff) return Buffer.from([0xc7, n, code & 0xff])
  if (n <= 0xffff) {
    const b = Buffer.from([0xc8, 0, 0, code & 0xff])
    b.writeUInt16BE(n, 1)
    return b
  }
  const b = Buffer.from([0xc9, 0, 0, 0, 0, code & 0xff])
  b.writeUInt32BE(n, 1)
  return b
}

const hasExt = (v: unknown, depth: number): boolean => {
  if (depth > MAX_DEPTH) throw new BaiMsgpackError("value nested too deeply")
  if (v instanceof ExtValue || v instanceof Uuid) return true
  if (Array.isArray(v)) return v.some((x) => hasExt(x, depth + 1))
  if (v !== null && typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype) {
    return Object.values(v).some((x) => hasExt(x, depth + 1))
  }
  return false
}

const encodeInto = (out: Array<Buffer>, v: unknown, depth: number): void => {
  if (!hasExt(v, depth)) {
    out.push(Msgpack.encode(v))
    return
  }
  if (v instanceof ExtValue) {
    out.push(extHeader(v.code, v.data.length), Buffer.from(v.data))
  } else if (v instanceof Uuid) {
    out.push(extHeader(1, 16), Buffer.from(v.bytes))
  } else if (Array.isArray(v)) {
    out.push(header(0x90, 15, v.length, 0xdc, 0xdd))
    for (const x of v) encodeInto(out, x, depth + 1)
  } else {
    const entries = Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined)
    out.push(header(0x80, 15, entries.length, 0xde, 0xdf))
    for (const [k, x] of entries) {
      out.push(Msgpack.encode(k))
      encodeInto(out, x, depth + 1)
    }
  }
}

/** Encodes with Python semantics plus ext values. Throws on unencodable input. */
export const encode = (value: unknown): Buffer => {
  const out: Array<Buffer> = []
  encodeInto(out, value, 0)
  return out.length === 1 ? out[0]! : Buffer.concat(out)
}

/** The heartbeat's `available_resource_slots`: ext 8 holding a `ResourceSlot` pickle. */
export const resourceSlotExt = (slots: Readonly<Record<string, string>>): ExtValue => new ExtValue(8, writeResourceSlot(slots))

/**
 * Turns decoded manager values into plain JSON-like values for the shared core: UUIDs and enums
 * become their strings, Decimals their text, ImageRefs `{canonical, architecture, …}`.
 */
export const plain = (v: unknown, depth = 0): unknown => {
  if (depth > MAX_DEPTH) throw new BaiMsgpackError("value nested too deeply")
  if (v instanceof Uuid || v instanceof PyEnum || v instanceof PyDecimal) return v.toString()
  if (v instanceof ImageRef) {
    return { canonical: v.canonical, name: v.name, project: v.project, tag: v.tag, registry: v.registry, architecture: v.architecture, is_local: v.isLocal }
  }
  if (Array.isArray(v)) return v.map((x) => plain(x, depth + 1))
  if (v !== null && typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype) {
    const out: Record<string, unknown> = {}
    for (const [k, x] of Object.entries(v)) Object.defineProperty(out, k, { value: plain(x, depth + 1), enumerable: true, writable: true, configurable: true })
    return out
  }
  return v
}
