/**
 * The codec against msgpack-python's own bytes (test/codec/msgpack_golden.json, made by
 * test/codec/msgpack_golden.py with Debian's python3-msgpack): every size boundary of every family
 * both ways, the encodings only Python's decoder meets (float32, non-minimal ints), and the inputs
 * Python rejects. The oracle is Python's codec, not this one.
 */
import { assert, describe, it } from "@effect/vitest"
import { createHash } from "node:crypto"
import { readFileSync } from "node:fs"
import { isDeepStrictEqual } from "node:util"
import { Effect, Exit } from "effect"
import {
  decode,
  decodeEffect,
  decodeResult,
  decodeWith,
  DEFAULT_MAX_ELEMENTS,
  type Dialect,
  encode,
  encodeEffect,
  encodeResult,
  MsgpackFormatError,
  PyFloat
} from "../../src/codec/Msgpack.ts"

type Desc =
  | { readonly t: "nil" }
  | { readonly t: "bool"; readonly v: boolean }
  | { readonly t: "int"; readonly v: string }
  | { readonly t: "float"; readonly v: string }
  | { readonly t: "str"; readonly v: string; readonly rep?: number }
  | { readonly t: "bin"; readonly v: string; readonly rep?: number }
  | { readonly t: "arr"; readonly v: ReadonlyArray<Desc>; readonly rep?: number }
  | { readonly t: "map"; readonly v?: ReadonlyArray<readonly [string, Desc]>; readonly rep?: number }

interface Golden {
  readonly encode: ReadonlyArray<{ readonly value: Desc; readonly len: number; readonly hex?: string; readonly head?: string; readonly sha256?: string }>
  readonly decode: ReadonlyArray<{ readonly value: Desc; readonly hex: string }>
  readonly reject: ReadonlyArray<{ readonly hex: string; readonly python: string }>
  readonly ext: ReadonlyArray<{ readonly hex: string; readonly python: string }>
}

const golden = JSON.parse(readFileSync(new URL("./msgpack_golden.json", import.meta.url), "utf8")) as Golden

const pyFloat = (s: string): number => (s === "inf" ? Infinity : s === "-inf" ? -Infinity : Number(s))

/** The JS value the encoder must turn into Python's bytes (`float` → PyFloat, big ints → bigint). */
const toInput = (d: Desc): unknown => {
  switch (d.t) {
    case "nil":
      return null
    case "bool":
      return d.v
    case "int": {
      const b = BigInt(d.v)
      return b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b
    }
    case "float":
      return new PyFloat(pyFloat(d.v))
    case "str":
      return d.v.repeat(d.rep ?? 1)
    case "bin":
      return new Uint8Array(Buffer.from(d.v.repeat(d.rep ?? 1), "hex"))
    case "arr": {
      const one = d.v.map(toInput)
      return Array.from({ length: d.rep ?? 1 }, () => one).flat()
    }
    case "map": {
      if (d.rep === undefined) return Object.fromEntries((d.v ?? []).map(([k, v]) => [k, toInput(v)]))
      const entries = Array.from({ length: d.rep }, (_, i) => [`k${i}`, i] as const)
      // a big dict as a Map (the encoder's other dict input): a record of 65,536 keys costs ~0.5 s to
      // build and walk, and every mutant of the mutation run pays it
      return d.rep > BIG_MAP ? new Map(entries) : Object.fromEntries(entries)
    }
  }
}

/** Map vectors above this many entries are encoded from a `Map`; their counts are read back from hand-written maps. */
const BIG_MAP = 16

/** What the decoder must return for Python's bytes (floats as plain numbers). */
const toDecoded = (d: Desc): unknown => {
  if (d.t === "float") return pyFloat(d.v)
  if (d.t === "arr") {
    const one = d.v.map(toDecoded)
    return Array.from({ length: d.rep ?? 1 }, () => one).flat()
  }
  if (d.t === "map" && d.rep === undefined) return Object.fromEntries((d.v ?? []).map(([k, v]) => [k, toDecoded(v)]))
  if (d.t === "map" && d.rep !== undefined) return Object.fromEntries(Array.from({ length: d.rep }, (_, i) => [`k${i}`, i]))
  if (d.t === "bin") return Buffer.from(d.v.repeat(d.rep ?? 1), "hex")
  return toInput(d)
}

const label = (d: Desc): string => {
  const rep = "rep" in d && d.rep !== undefined ? ` ×${d.rep}` : ""
  const v = "v" in d && typeof d.v !== "object" ? JSON.stringify(d.v).slice(0, 12) : ""
  return `${d.t} ${v}${rep}`
}

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex")

/**
 * `deepStrictEqual` for big values (node:util's, as strict): the same verdict without the diff chai
 * prints on failure, which takes ~70 s for a 65,536-element array and turned killed mutants into
 * timeouts in the mutation run.
 */
const same = (got: unknown, want: unknown, what: string) => assert.isTrue(isDeepStrictEqual(got, want), what)

/** A dialect with ext types (as manager 26's): the type bytes next to the ext ones must keep their meaning. */
const WITH_EXT: Dialect = { maxDepth: 512, Error: MsgpackFormatError, readExt: (code, data) => ({ code, data }) }

/** Why Python refuses each input, in the decoder's words (written by hand from the spec's formats). */
const REJECT_MESSAGE: Readonly<Record<string, string>> = {
  "": "unexpected end of data",
  c1: "unsupported msgpack type 0xc1",
  "810101": "map key is not a str",
  "81c001": "map key is not a str",
  a2fffe: "invalid UTF-8 in str",
  a1: "unexpected end of data",
  "9201": "array length exceeds data",
  c40200: "unexpected end of data",
  cd00: "unexpected end of data",
  cb000000: "unexpected end of data",
  "0101": "extra data after the msgpack value",
  dcffff: "array length exceeds data",
  dfffffffff: "map length exceeds data",
  d902c328: "invalid UTF-8 in str",
  "81a161": "unexpected end of data"
}

describe("msgpack against msgpack-python's bytes", () => {
  it("the golden file covers every family", () => {
    assert.isAtLeast(golden.encode.length, 60)
    assert.isAtLeast(golden.decode.length, 20)
    assert.isAtLeast(golden.reject.length, 15)
  })

  for (const c of golden.encode) {
    it(`encode ${label(c.value)} → Python's ${c.len} bytes`, () => {
      const out = encode(toInput(c.value))
      assert.strictEqual(out.length, c.len)
      if (c.hex !== undefined) assert.strictEqual(out.toString("hex"), c.hex)
      else {
        assert.strictEqual(out.subarray(0, 8).toString("hex"), c.head)
        assert.strictEqual(createHash("sha256").update(out).digest("hex"), c.sha256)
      }
    })
  }

  it("decode(Python's bytes) gives the value back, for every encode vector", () => {
    for (const c of golden.encode) {
      if (c.hex === undefined) continue
      const got = decode(hex(c.hex))
      const want = toDecoded(c.value)
      if (typeof want === "number" && Number.isNaN(want)) assert.isTrue(Number.isNaN(got as number))
      else assert.deepStrictEqual(got, want, label(c.value))
    }
  })

  it("decode of the long vectors: encode → decode is the identity at every size boundary", () => {
    for (const c of golden.encode) {
      if (c.hex !== undefined || (c.value.t === "map" && (c.value.rep ?? 0) > BIG_MAP)) continue
      same(decode(encode(toInput(c.value))), toDecoded(c.value), label(c.value))
    }
  })

  it("map 16 / map 32 with the largest counts of their family read every entry (spec bytes: 65,535 and 65,536 entries of \"\": nil)", () => {
    // a repeated key is Python's dict assignment again (last one wins): {"": None}, cheap to build and compare
    const entries = (n: number) => Buffer.alloc(2 * n, Buffer.from([0xa0, 0xc0]))
    assert.deepStrictEqual(decode(Buffer.concat([hex("de ff ff"), entries(65535)])), { "": null })
    assert.deepStrictEqual(decode(Buffer.concat([hex("df 00 01 00 00"), entries(65536)])), { "": null })
    assert.throws(() => decode(Buffer.concat([hex("de ff ff"), entries(65534), hex("a0")])), MsgpackFormatError, /^map length exceeds data$/)
    assert.throws(() => decode(Buffer.concat([hex("de ff ff"), entries(65535), hex("c0")])), MsgpackFormatError, /^extra data after the msgpack value$/)
  })

  for (const c of golden.decode) {
    it(`decode ${c.hex} (an encoding Python reads) → ${label(c.value)}`, () => {
      assert.deepStrictEqual(decode(hex(c.hex)), toDecoded(c.value))
      assert.deepStrictEqual(decodeWith(WITH_EXT, hex(c.hex)), toDecoded(c.value))
    })
  }

  for (const c of golden.reject) {
    it(`rejects ${c.hex || "(empty)"} like Python (${c.python})`, () => {
      assert.throws(() => decode(hex(c.hex)), MsgpackFormatError)
      assert.deepStrictEqual(decodeResult(hex(c.hex)), { ok: false, message: REJECT_MESSAGE[c.hex] })
    })
  }

  for (const c of golden.ext) {
    it(`rejects ext type ${c.hex} (Python: ${c.python.slice(0, 40)}; the agent takes no ext types)`, () => {
      assert.throws(() => decode(hex(c.hex)), /unsupported msgpack type 0x[c-d][0-9]/)
    })
  }

  it("every proper prefix of a valid message is rejected (no over-read, no silent short value)", () => {
    // Python's minimal encodings and the longer ones only its decoder meets (bin/str/array/map 16 and 32, float32)
    for (const c of [...golden.encode, ...golden.decode]) {
      if (c.hex === undefined) continue
      const full = hex(c.hex)
      for (let i = 0; i < full.length; i++) {
        // a cut scalar is short of bytes; a cut container may already be short of one byte per element
        const why = c.value.t === "arr" || c.value.t === "map" ? /^(unexpected end of data|(array|map) length exceeds data)$/ : /^unexpected end of data$/
        assert.throws(() => decode(full.subarray(0, i)), MsgpackFormatError, why, `${label(c.value)} cut at ${i}`)
      }
    }
  })

  it("every fixed-width value straddling the end of the 64 KiB scratch buffer is written whole (spec bytes)", () => {
    // [bin filler, value]: 92, c5 + 16-bit length + filler, then the value starting `k` bytes before 65,536
    const values: ReadonlyArray<readonly [unknown, string]> = [
      [128, "cc 80"],
      [256, "cd 01 00"],
      [65536, "ce 00 01 00 00"],
      [2 ** 32, "cf 00 00 00 01 00 00 00 00"],
      [-33, "d0 df"],
      [-129, "d1 ff 7f"],
      [-32769, "d2 ff ff 7f ff"],
      [-(2 ** 31) - 1, "d3 ff ff ff ff 7f ff ff ff"],
      [2n ** 64n - 1n, "cf ff ff ff ff ff ff ff ff"],
      [new PyFloat(1.5), "cb 3f f8 00 00 00 00 00 00"],
      ["x".repeat(40), `d9 28 ${"78".repeat(40)}`],
      ["é".repeat(200), `da 01 90 ${"c3a9".repeat(200)}`],
      [new Uint8Array([1, 2]), "c4 02 01 02"],
      [Array.from({ length: 16 }, () => 0), `dc 00 10 ${"00".repeat(16)}`],
      [Object.fromEntries(Array.from({ length: 16 }, (_, i) => [String.fromCharCode(97 + i), 0])), `de 00 10 ${Array.from({ length: 16 }, (_, i) => `a1 ${(97 + i).toString(16)} 00`).join(" ")}`]
    ]
    for (const [value, bytes] of values) {
      const tail = hex(bytes)
      for (let k = 1; k < Math.min(tail.length, 12); k++) {
        const n = 65536 - k - 4
        const want = Buffer.concat([hex("92 c5"), Buffer.from([n >> 8, n & 0xff]), Buffer.alloc(n, 0x5a), tail])
        assert.isTrue(encode([new Uint8Array(n).fill(0x5a), value]).equals(want), `${bytes.slice(0, 14)} at 65536 - ${k}`)
      }
    }
  })

  it("one value longer than twice the scratch buffer (the buffer doubles until it fits)", () => {
    const big = new Uint8Array(300_000).map((_, i) => i % 251)
    const out = encode([1, big])
    assert.strictEqual(out.length, 300_007)
    assert.isTrue(out.subarray(0, 7).equals(hex("92 01 c6 00 04 93 e0")))
    assert.isTrue(out.subarray(7).equals(big))
  })

  it("decodes from a view into a larger buffer (byteOffset respected)", () => {
    const backing = hex("ff ff cd 01 00 cb 3f f8 00 00 00 00 00 00 ff")
    assert.strictEqual(decode(backing.subarray(2, 5)), 256)
    assert.strictEqual(decode(new Uint8Array(backing.buffer, backing.byteOffset + 5, 9)), 1.5)
  })

  it("bin values are copies, not views of the frame", () => {
    const frame = hex("c4 02 01 02")
    const got = decode(frame) as Uint8Array
    frame[2] = 9
    assert.deepStrictEqual([...got], [1, 2])
  })
})

describe("msgpack encoder edges Python defines", () => {
  it("number semantics: -0 → int 0, non-integral and unsafe → float64, PyFloat forces float64", () => {
    assert.strictEqual(encode(-0).toString("hex"), "00")
    assert.strictEqual(encode(2 ** 53).toString("hex"), "cb4340000000000000")
    assert.strictEqual(encode(-(2 ** 53)).toString("hex"), "cbc340000000000000")
    assert.strictEqual(encode(new PyFloat(3)).toString("hex"), "cb4008000000000000")
    assert.strictEqual(encode(NaN).toString("hex").slice(0, 4), "cb7f")
  })

  it("undefined → nil, but undefined map values are left out (Python has no undefined)", () => {
    assert.strictEqual(encode(undefined).toString("hex"), "c0")
    assert.strictEqual(encode([undefined]).toString("hex"), "91c0")
    assert.strictEqual(encode({ a: undefined, b: 1 }).toString("hex"), "81a16201")
    assert.strictEqual(encode({ a: 1, b: undefined }).toString("hex"), "81a16101")
  })

  it("Maps encode like dicts; non-str keys are refused", () => {
    assert.strictEqual(encode(new Map<string, unknown>([["a", 1], ["b", [true]]])).toString("hex"), "82a16101a16291c3")
    const sixteen = new Map(Array.from({ length: 16 }, (_, i) => [`k${i}`, i] as const))
    assert.strictEqual(encode(sixteen).subarray(0, 3).toString("hex"), "de0010")
    assert.deepStrictEqual(decode(encode(sixteen)), Object.fromEntries(sixteen))
    assert.throws(() => encode(new Map([[1, 1]])), /map key must be a string, got number/)
  })

  it("null-prototype objects encode; class instances, functions and symbols do not", () => {
    const o = Object.create(null) as Record<string, unknown>
    o.x = 1
    assert.strictEqual(encode(o).toString("hex"), "81a17801")
    assert.throws(() => encode(new Date(0)), /cannot encode an instance of Date/)
    assert.throws(() => encode(() => 1), /cannot encode a function/)
    assert.throws(() => encode(Symbol("s")), /cannot encode a symbol/)
  })

  it("64-bit bigints at and past the edges", () => {
    assert.strictEqual(encode(2n ** 64n - 1n).toString("hex"), "cfffffffffffffffff")
    assert.strictEqual(encode(-(2n ** 63n)).toString("hex"), "d38000000000000000")
    assert.strictEqual(encode(5n).toString("hex"), "05")
    assert.strictEqual(encode(-5n).toString("hex"), "fb")
    assert.throws(() => encode(2n ** 64n), /integer out of range/)
    assert.throws(() => encode(-(2n ** 63n) - 1n), /integer out of range/)
    assert.strictEqual(decode(hex("cf ff ff ff ff ff ff ff ff")), 2n ** 64n - 1n)
    assert.strictEqual(decode(hex("d3 80 00 00 00 00 00 00 00")), -(2n ** 63n))
    assert.strictEqual(decode(hex("cf 00 1f ff ff ff ff ff ff")), Number.MAX_SAFE_INTEGER)
    assert.strictEqual(decode(hex("cf 00 20 00 00 00 00 00 00")), 2n ** 53n)
    assert.strictEqual(decode(hex("d3 ff e0 00 00 00 00 00 01")), Number.MIN_SAFE_INTEGER)
    assert.strictEqual(decode(hex("d3 ff e0 00 00 00 00 00 00")), -(2n ** 53n))
  })

  it("nesting depth: 512 levels encode and decode, 514 do not", () => {
    const nest = (n: number): unknown => {
      let v: unknown = 0
      for (let i = 0; i < n; i++) v = [v]
      return v
    }
    assert.strictEqual(encode(nest(512)).length, 513)
    assert.throws(() => encode(nest(514)), /nested too deeply/)
    const deep = Buffer.concat([Buffer.alloc(514, 0x91), hex("00")])
    assert.throws(() => decode(deep), /nested too deeply/)
    const ok = Buffer.concat([Buffer.alloc(512, 0x91), hex("00")])
    same(decode(ok), nest(512), "512 levels")
    const deepMap = Buffer.concat([Buffer.concat(Array.from({ length: 520 }, () => hex("81 a1 61"))), hex("00")])
    assert.throws(() => decode(deepMap), /nested too deeply/)
  })

  it("a buffer that grows many times keeps every earlier byte", () => {
    const parts = Array.from({ length: 300 }, (_, i) => "x".repeat(i % 40) + String(i))
    same(decode(encode(parts)), parts, "300 strings")
    const big = new Uint8Array(1000).map((_, i) => i & 0xff)
    same([...(decode(encode([1, big, 2])) as [number, Uint8Array, number])[1]], [...big], "1000 bytes")
  })

  it("a __proto__ key is data, not the prototype", () => {
    const got = decode(hex("81 a9 5f5f70726f746f5f5f 81 a1 78 01")) as Record<string, unknown>
    assert.strictEqual(Object.getPrototypeOf(got), Object.prototype)
    assert.deepStrictEqual(Object.keys(got), ["__proto__"])
    assert.deepStrictEqual(Object.getOwnPropertyDescriptor(got, "__proto__")?.value, { x: 1 })
    assert.isUndefined((got as { x?: unknown }).x)
    // an ordinary own data property, like every other decoded key
    assert.deepStrictEqual(Object.getOwnPropertyDescriptor(got, "__proto__"), { value: { x: 1 }, writable: true, enumerable: true, configurable: true })
    const other = decode(hex("81 a1 61 01")) as Record<string, unknown>
    assert.deepStrictEqual(Object.getOwnPropertyDescriptor(other, "a"), { value: 1, writable: true, enumerable: true, configurable: true })
  })

  it("short ASCII strings past the 64 KiB scratch buffer keep every byte (spec: fixstr = 0xa0 | length)", () => {
    const items = Array.from({ length: 5000 }, (_, i) => `s${String(i).padStart(4, "0")}-abcdefghijklmn`)
    const want = Buffer.concat([hex("dc 13 88"), ...items.map((s) => Buffer.concat([Buffer.from([0xa0 | 20]), Buffer.from(s, "ascii")]))])
    assert.strictEqual(want.length, 105_003)
    assert.isTrue(encode(items).equals(want))
    assert.isTrue(encode(items).equals(want)) // and again, after the scratch was replaced
  })

  it("a long str with invalid UTF-8 is refused like a short one", () => {
    assert.throws(() => decode(Buffer.concat([hex("d9 20"), Buffer.alloc(31, 0x61), hex("ff")])), MsgpackFormatError, /^invalid UTF-8 in str$/)
    assert.throws(() => decode(Buffer.concat([hex("a5"), Buffer.alloc(4, 0x61), hex("c3")])), MsgpackFormatError, /^invalid UTF-8 in str$/)
    // valid multi-byte characters at both ends of the short and the long path
    assert.strictEqual(decode(hex("a4 c3a9 c3a9")), "éé")
    assert.strictEqual(decode(Buffer.concat([hex("d9 21 c3a9"), Buffer.alloc(31, 0x61)])), "é" + "a".repeat(31))
  })
})

describe("msgpack element budget", () => {
  it("counts every value once, the top level included", () => {
    assert.deepStrictEqual(decode(hex("93 01 02 03"), { maxElements: 4 }), [1, 2, 3])
    assert.throws(() => decode(hex("93 01 02 03"), { maxElements: 3 }), /more than 3 elements/)
    assert.deepStrictEqual(decode(hex("81 a1 61 01"), { maxElements: 3 }), { a: 1 })
    assert.throws(() => decode(hex("81 a1 61 01"), { maxElements: 2 }), /more than 2 elements/)
    assert.strictEqual(decode(hex("01"), { maxElements: 1 }), 1)
    assert.throws(() => decode(hex("01"), { maxElements: 0 }), /more than 0 elements/)
    assert.strictEqual(DEFAULT_MAX_ELEMENTS, 1_000_000)
  })

  it("the default cap holds: a million nils pass, one more is refused", () => {
    const arr = (n: number) => Buffer.concat([hex("dd"), Buffer.from([n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]), Buffer.alloc(n, 0xc0)])
    assert.strictEqual((decode(arr(999_999)) as Array<unknown>).length, 999_999)
    assert.throws(() => decode(arr(1_000_000)), /more than 1000000 elements/)
  })

  it("container lengths beyond the remaining bytes are refused before allocating", () => {
    assert.throws(() => decode(hex("dd 7f ff ff ff")), /array length exceeds data/)
    assert.throws(() => decode(hex("df 7f ff ff ff")), /map length exceeds data/)
    assert.throws(() => decode(hex("82 a1 61 01")), /map length exceeds data/)
    assert.throws(() => decode(hex("92 01")), /array length exceeds data/)
    assert.deepStrictEqual(decode(hex("81 a1 61 c0")), { a: null })
    assert.deepStrictEqual(decode(hex("92 c0 c0")), [null, null])
  })
})

describe("msgpack results and effects", () => {
  it("decodeResult / encodeResult carry the value or the message", () => {
    assert.deepStrictEqual(decodeResult(hex("93 01 02 03")), { ok: true, value: [1, 2, 3] })
    assert.deepStrictEqual(decodeResult(hex("c1")), { ok: false, message: "unsupported msgpack type 0xc1" })
    assert.deepStrictEqual(decodeResult(hex("01 02")), { ok: false, message: "extra data after the msgpack value" })
    assert.deepStrictEqual(decodeResult(hex("a2 ff fe")), { ok: false, message: "invalid UTF-8 in str" })
    assert.deepStrictEqual(decodeResult(hex("cd 00")), { ok: false, message: "unexpected end of data" })
    assert.deepStrictEqual(decodeResult(hex("81 01 01")), { ok: false, message: "map key is not a str" })
    const e = encodeResult([1])
    assert.isTrue(e.ok)
    if (e.ok) assert.strictEqual(e.value.toString("hex"), "9101")
    assert.deepStrictEqual(encodeResult(new Date(0)), { ok: false, message: "cannot encode an instance of Date" })
  })

  it.effect("decodeEffect / encodeEffect fail with MsgpackError of the right reason", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(yield* decodeEffect(hex("91 01")), [1])
      assert.strictEqual((yield* encodeEffect("a")).toString("hex"), "a161")
      const d = yield* Effect.flip(decodeEffect(hex("c1")))
      assert.strictEqual(d._tag, "MsgpackError")
      assert.strictEqual(d.reason, "Decode")
      assert.strictEqual(d.message, "unsupported msgpack type 0xc1")
      const en = yield* Effect.flip(encodeEffect(Symbol("x")))
      assert.strictEqual(en.reason, "Encode")
      assert.strictEqual(en.message, "cannot encode a symbol")
      const limited = yield* Effect.exit(decodeEffect(hex("92 01 02"), { maxElements: 2 }))
      assert.isTrue(Exit.isFailure(limited))
    }))
})
