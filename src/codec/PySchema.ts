/**
 * Schemas for Python-typed values on the aiozmq wire.
 *
 * Argument schemas mirror aiozmq's annotation coercion (`str(x)`, `int(x)`, `float(x)`…) leniently
 * where Python would succeed; result schemas encode to values that {@link encode} writes with
 * Python semantics (e.g. {@link Float} encodes to {@link PyFloat} → msgpack float64).
 */
import { Schema, SchemaGetter } from "effect"
import { PyFloat } from "./Msgpack.ts"

const PyFloatInstance = Schema.declare((u: unknown): u is PyFloat => u instanceof PyFloat, {
  identifier: "PyFloat"
})

/** Python `float`: decodes from any number (or a {@link PyFloat}), encodes to a float64 marker. */
export const Float = Schema.Union([Schema.Number, PyFloatInstance]).pipe(
  Schema.decodeTo(Schema.Number, {
    decode: SchemaGetter.transform((u: number | PyFloat) => (typeof u === "number" ? u : u.value)),
    encode: SchemaGetter.transform((n: number): number | PyFloat => new PyFloat(n))
  })
)

const IntString = Schema.String.check(Schema.isPattern(/^\s*[+-]?\d+\s*$/))

/** Python `int(x)`: ints, floats (truncated), decimal strings and booleans. Encodes as an int. */
export const Int = Schema.Union([Schema.Number, IntString, Schema.Boolean]).pipe(
  Schema.decodeTo(Schema.Int, {
    decode: SchemaGetter.transform((u: number | string | boolean) =>
      typeof u === "number" ? Math.trunc(u) : typeof u === "string" ? Number.parseInt(u, 10) : u ? 1 : 0
    ),
    encode: SchemaGetter.transform((n: number): number | string | boolean => n)
  })
)

/** Python `str(x)` for the values a manager realistically sends: strings, and numbers stringified. */
export const Str = Schema.Union([Schema.String, Schema.Number]).pipe(
  Schema.decodeTo(Schema.String, {
    decode: SchemaGetter.transform((u: string | number) => (typeof u === "string" ? u : String(u))),
    encode: SchemaGetter.transform((s: string): string | number => s)
  })
)

/** Python `bool(x)` for booleans, numbers and None. */
export const Bool = Schema.Union([Schema.Boolean, Schema.Number, Schema.Null]).pipe(
  Schema.decodeTo(Schema.Boolean, {
    decode: SchemaGetter.transform((u: boolean | number | null) => (u === null ? false : typeof u === "number" ? u !== 0 : u)),
    encode: SchemaGetter.transform((b: boolean): boolean | number | null => b)
  })
)

/** Python `dict` with str keys (the msgpack decoder only produces str keys). */
export const Dict = Schema.Record(Schema.String, Schema.Unknown)
export type Dict = typeof Dict.Type

/** Python `bytes` ↔ msgpack bin. */
export const Bytes = Schema.Uint8Array

/** Python `None` as a result: handlers return `void`, the wire gets nil. */
export const None = Schema.Void
