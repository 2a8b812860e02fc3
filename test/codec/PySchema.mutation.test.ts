/** aiozmq annotation coercion: what Python's `int(x)`, `str(x)`, `float(x)`, `bool(x)` make of wire values. */
import { assert, describe, it } from "@effect/vitest"
import { Schema } from "effect"
import { PyFloat } from "../../src/codec/Msgpack.ts"
import { Bool, Float, Int, Str } from "../../src/codec/PySchema.ts"

const dec = <S extends Schema.Top>(s: S, u: unknown) => Schema.decodeUnknownSync(s as never)(u) as unknown
const enc = <S extends Schema.Top>(s: S, u: unknown) => Schema.encodeUnknownSync(s as never)(u) as unknown

describe("Python-typed argument schemas", () => {
  it("Float: numbers and PyFloat decode to numbers, encode to PyFloat", () => {
    assert.strictEqual(dec(Float, 2), 2)
    assert.strictEqual(dec(Float, new PyFloat(2.5)), 2.5)
    const e = enc(Float, 3)
    assert.instanceOf(e, PyFloat)
    assert.strictEqual((e as PyFloat).value, 3)
    assert.throws(() => dec(Float, "1.5"))
    assert.throws(() => dec(Float, {}))
  })

  it("Int: int(3.9) = 3, int(-3.9) = -3, int(' 42 ') = 42, int(True) = 1", () => {
    assert.strictEqual(dec(Int, 3.9), 3)
    assert.strictEqual(dec(Int, -3.9), -3)
    assert.strictEqual(dec(Int, " 42 "), 42)
    assert.strictEqual(dec(Int, "+7"), 7)
    assert.strictEqual(dec(Int, "-7"), -7)
    assert.strictEqual(dec(Int, true), 1)
    assert.strictEqual(dec(Int, false), 0)
    assert.strictEqual(enc(Int, 5), 5)
    for (const bad of ["4.2", "x1", "1x", "", "0x10", null, {}]) assert.throws(() => dec(Int, bad), undefined, undefined, String(bad))
  })

  it("Str: str(x) of strings and numbers", () => {
    assert.strictEqual(dec(Str, "a"), "a")
    assert.strictEqual(dec(Str, 12), "12")
    assert.strictEqual(enc(Str, "b"), "b")
    assert.throws(() => dec(Str, null))
    assert.throws(() => dec(Str, true))
  })

  it("Bool: bool(None) = False, bool(0) = False, bool(2) = True", () => {
    assert.strictEqual(dec(Bool, null), false)
    assert.strictEqual(dec(Bool, 0), false)
    assert.strictEqual(dec(Bool, 2), true)
    assert.strictEqual(dec(Bool, -1), true)
    assert.strictEqual(dec(Bool, true), true)
    assert.strictEqual(dec(Bool, false), false)
    assert.strictEqual(enc(Bool, true), true)
    assert.throws(() => dec(Bool, "yes"))
  })
})
