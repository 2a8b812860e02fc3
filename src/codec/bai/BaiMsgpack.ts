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
 * Encoding (what the agent sends): plain Python values as `src/codec/Msgpack.ts` writes them,
 * plus {@link ExtValue} and {@link Uuid} as ext types (the heartbeat's ResourceSlot, ext 8, from
 * {@link resourceSlotExt}).
 *
 * Reading and writing are `Msgpack.ts`'s, in the {@link BAI} dialect: this file holds only what the
 * ext types mean. Decoding also gets that reader's element budget (`DEFAULT_MAX_ELEMENTS`).
 */
import { Data } from "effect"
import { Uuid } from "./Uuid.ts"
import { PickleError, PyDecimal, PyEnum, PyObject, readPickle, writeResourceSlot } from "./Pickle.ts"
import * as Msgpack from "../Msgpack.ts"

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
export class ImageRef extends Data.Class<{
  readonly name: string
  readonly project: string | null
  readonly tag: string
  readonly registry: string
  readonly architecture: string
  readonly isLocal: boolean
}> {
  /** `manager/project/name:tag` (the manager's canonical form). */
  get canonical(): string {
    const path = this.project === null || this.project === "" ? this.name : `${this.project}/${this.name}`
    return `${this.registry}/${path}:${this.tag}`
  }
}

/** Thrown by {@link decode}: malformed msgpack or a refused ext payload. */
export class BaiMsgpackError extends Msgpack.MsgpackFormatError {
  override readonly name: string = "BaiMsgpackError"
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

/** `ai.backend.common.msgpack` as a dialect of the one msgpack reader/writer (`Msgpack.ts`). */
const BAI: Msgpack.Dialect = {
  maxDepth: MAX_DEPTH,
  Error: BaiMsgpackError,
  readExt: extValue,
  // strict_map_key=False: int and UUID keys become their strings; a repeated key is refused
  mapKey: (raw) =>
    raw instanceof Uuid ? raw.toString() : typeof raw === "number" && Number.isInteger(raw) ? String(raw) : undefined,
  uniqueKeys: true,
  writeExt: (v) => (v instanceof ExtValue ? v : v instanceof Uuid ? { code: 1, data: v.bytes } : undefined)
}

/** Decodes exactly one value. Throws {@link BaiMsgpackError}. */
export const decode = (bytes: Uint8Array): unknown => Msgpack.decodeWith(BAI, bytes)

/** Encodes with Python semantics plus ext values. Throws on unencodable input. */
export const encode = (value: unknown): Buffer => Msgpack.encodeWith(BAI, value)

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
