/**
 * The reader and writer of `src/codec/Msgpack.ts` in a dialect with ext types, map-key rules and its own
 * error class (what manager 26's `ai.backend.common.msgpack` needs, contract §1.6), through a test
 * dialect that keeps ext values as `{code, data}`. Oracles: msgpack-python 1.0.3's bytes for
 * `packb(ExtType(code, data))` and `unpackb(strict_map_key=False)` (test/codec/msgpack_golden.json),
 * and the msgpack spec's ext formats written by hand.
 */
import { assert, describe, it } from "@effect/vitest"
import { createHash } from "node:crypto"
import { readFileSync } from "node:fs"
import { isDeepStrictEqual } from "node:util"
import * as Bai from "../../src/codec/bai/BaiMsgpack.ts"
import { decode, decodeWith, type Dialect, encode, encodeResult, encodeWith, type Ext, MsgpackFormatError } from "../../src/codec/Msgpack.ts"

interface Golden {
  readonly extpack: ReadonlyArray<
    { readonly code: number; readonly v: string; readonly rep: number; readonly len: number; readonly hex?: string; readonly head?: string; readonly sha256?: string }
  >
  readonly nested: { readonly ext_in_array: string; readonly ext_of_msgpack: string }
  readonly mapkeys: ReadonlyArray<{ readonly hex: string; readonly value: ReadonlyArray<readonly [string, unknown]> }>
  readonly repeated: { readonly hex: string; readonly python: Record<string, unknown> }
}

const golden = JSON.parse(readFileSync(new URL("./msgpack_golden.json", import.meta.url), "utf8")) as Golden

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex")
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex")

/**
 * `deepStrictEqual` for big values (node:util's, as strict): the same verdict without the diff chai
 * prints on failure, which takes ~70 s for a 65,536-element array and turned killed mutants into
 * timeouts in the mutation run.
 */
const same = (got: unknown, want: unknown, what: string) => assert.isTrue(isDeepStrictEqual(got, want), what)

class DialectError extends MsgpackFormatError {
  override readonly name: string = "DialectError"
}

/** An ext value as the test dialect reads it: the code and a copy of the payload. */
class ReadExt {
  readonly code: number
  readonly data: Buffer
  constructor(code: number, data: Uint8Array) {
    this.code = code
    this.data = Buffer.from(data)
  }
}

/** An object the test dialect writes as an ext value as it is. */
class WriteExt implements Ext {
  readonly code: number
  readonly data: Uint8Array
  constructor(code: number, data: Uint8Array) {
    this.code = code
    this.data = data
  }
}

/** Written as ext 9 holding `encode(inner)`: an ext writer that encodes while the outer value is encoded. */
class Packed {
  readonly inner: unknown
  constructor(inner: unknown) {
    this.inner = inner
  }
}

const TEST: Dialect = {
  maxDepth: 512,
  Error: DialectError,
  readExt: (code, data) => new ReadExt(code, data),
  mapKey: (key) => (typeof key === "number" && Number.isInteger(key) ? String(key) : undefined),
  writeExt: (v) => (v instanceof WriteExt ? v : v instanceof Packed ? { code: 9, data: encode(v.inner) } : undefined)
}
const UNIQUE: Dialect = { ...TEST, uniqueKeys: true }
const SHALLOW: Dialect = { ...TEST, maxDepth: 2 }

/** What `f` throws (undefined when it returns). */
const thrown = (f: () => unknown): unknown => {
  try {
    f()
  } catch (e) {
    return e
  }
  return undefined
}

const payloadOf = (c: Golden["extpack"][number]) => hex(c.v.repeat(c.rep))

describe("ext values against packb(ExtType(code, data))", () => {
  it("the golden file has every fixext size and both sides of the ext 8/16/32 limits", () => {
    const sizes = golden.extpack.map((c) => c.v.length / 2 * c.rep)
    for (const n of [0, 1, 2, 3, 4, 8, 15, 16, 17, 255, 256, 65535, 65536]) assert.include(sizes, n)
  })

  for (const c of golden.extpack) {
    const n = c.v.length / 2 * c.rep
    it(`ext ${c.code} with ${n} payload bytes: Python's ${c.len} bytes both ways`, () => {
      const out = encodeWith(TEST, new WriteExt(c.code, payloadOf(c)))
      assert.strictEqual(out.length, c.len)
      if (c.hex !== undefined) assert.strictEqual(out.toString("hex"), c.hex)
      else {
        assert.strictEqual(out.subarray(0, 8).toString("hex"), c.head)
        assert.strictEqual(sha256(out), c.sha256)
      }
      // `out` is now Python's bytes (checked above): they read back as the same code and payload
      same(decodeWith(TEST, out), new ReadExt(c.code, payloadOf(c)), `ext of ${n} bytes`)
    })
  }

  it("the ext headers of the spec, written by hand: fixext 1–16, ext 8 / 16 / 32 with a big-endian length", () => {
    const p = (n: number) => Buffer.alloc(n, 0x5a)
    const cases: ReadonlyArray<readonly [number, string]> = [
      [1, "d4 07"],
      [2, "d5 07"],
      [4, "d6 07"],
      [8, "d7 07"],
      [16, "d8 07"],
      [0, "c7 00 07"],
      [3, "c7 03 07"],
      [255, "c7 ff 07"],
      [256, "c8 01 00 07"],
      [65535, "c8 ff ff 07"],
      [65536, "c9 00 01 00 00 07"]
    ]
    for (const [n, head] of cases) {
      const bytes = Buffer.concat([hex(head), p(n)])
      assert.isTrue(encodeWith(TEST, new WriteExt(7, p(n))).equals(bytes), `${n} bytes`)
      same(decodeWith(TEST, bytes), new ReadExt(7, p(n)), `${n} bytes`)
    }
  })

  it("the ext code is a signed byte (spec: type is int8): codes -128 and -2 read back as written", () => {
    assert.deepStrictEqual(encodeWith(TEST, new WriteExt(-2, hex("00"))), hex("d4 fe 00"))
    assert.deepStrictEqual(decodeWith(TEST, hex("d4 fe 00")), new ReadExt(-2, hex("00")))
    assert.deepStrictEqual(decodeWith(TEST, hex("c7 01 80 aa")), new ReadExt(-128, hex("aa")))
  })

  it("an ext value inside an array is followed by the next values", () => {
    const bytes = hex(golden.nested.ext_in_array)
    const value = [new WriteExt(3, Buffer.from("xyz")), 1, new WriteExt(4, hex("01")), "z"]
    assert.deepStrictEqual(encodeWith(TEST, value), bytes)
    assert.deepStrictEqual(decodeWith(TEST, bytes), [new ReadExt(3, Buffer.from("xyz")), 1, new ReadExt(4, hex("01")), "z"])
  })

  it("the payload is a copy: the frame buffer can be reused after decoding", () => {
    const frame = hex("c7 03 05 01 02 03")
    const got = decodeWith({ ...TEST, readExt: (code, data) => ({ code, data }) }, frame) as { data: Uint8Array }
    // the dialect sees a view of exactly the payload (BaiMsgpack copies what it keeps)
    assert.deepStrictEqual([...got.data], [1, 2, 3])
    assert.strictEqual(got.data.length, 3)
  })

  it("an ext writer may encode while the outer value is being encoded (the inner value gets its own buffer)", () => {
    const first = encodeWith(TEST, [1, new Packed({ a: "x".repeat(200) }), 2])
    assert.strictEqual(first.toString("hex"), golden.nested.ext_of_msgpack)
    const copy = Buffer.from(first)
    // later encodes, on either path, leave the returned buffer alone
    encode({ b: "y".repeat(300) })
    encodeWith(TEST, [new Packed("z".repeat(150))])
    assert.deepStrictEqual(first, copy)
    // and the scratch is free again: a plain encode after a re-entrant one is correct
    assert.strictEqual(encode(["after", 1]).toString("hex"), "92a5616674657201")
  })

  it("every proper prefix of an ext value is refused as truncated, with the dialect's error", () => {
    for (const c of golden.extpack) {
      const full = c.hex !== undefined ? hex(c.hex) : encodeWith(TEST, new WriteExt(c.code, payloadOf(c)))
      const cuts = c.hex !== undefined ? Array.from({ length: full.length }, (_, i) => i) : [0, 1, 2, 3, 4, 5, 6, full.length - 1]
      for (const i of cuts) {
        assert.throws(() => decodeWith(TEST, full.subarray(0, i)), DialectError, /^unexpected end of data$/, `ext of ${c.rep} cut at ${i}`)
      }
    }
  })

  it("a length that claims more than the data is refused, not read past the end", () => {
    for (const h of ["c7 02 05 00", "c8 00 02 05 00", "c9 00 00 00 02 05 00", "c9 ff ff ff ff 05", "d5 05 00", "d8 05 00"]) {
      assert.throws(() => decodeWith(TEST, hex(h)), DialectError, /^unexpected end of data$/, h)
    }
  })

  it("0xc1 stays refused in a dialect with ext types; its neighbours read as their own families", () => {
    assert.throws(() => decodeWith(TEST, hex("c1")), DialectError, /^unsupported msgpack type 0xc1$/)
    assert.throws(() => decodeWith(TEST, hex("c1 00 00 00 00 00 00 00 00 00")), DialectError, /^unsupported msgpack type 0xc1$/)
    // the neighbours of the ext type bytes (Python's values, spec §formats)
    assert.deepStrictEqual(decodeWith(TEST, hex("c6 00000001 ff")), Buffer.from([0xff]))
    assert.strictEqual(decodeWith(TEST, hex("ca 3fc00000")), 1.5)
    assert.strictEqual(decodeWith(TEST, hex("d3 fffffffffffffffb")), -5)
    assert.strictEqual(decodeWith(TEST, hex("d9 03 616263")), "abc")
  })

  it("without ext types (the 19.06 dialect) an ext value is refused whatever its family", () => {
    for (const h of ["c7 00 05", "c8 00 00 05", "c9 00 00 00 00 05", "d4 05 00", "d8 05 " + "00".repeat(16)]) {
      assert.throws(() => decode(hex(h)), MsgpackFormatError, /^unsupported msgpack type 0x(c7|c8|c9|d4|d8)$/)
    }
  })
})

describe("map keys and repeated keys", () => {
  it("int keys as unpackb(strict_map_key=False) reads them, stringified by the dialect, in order", () => {
    for (const c of golden.mapkeys) {
      const got = decodeWith(TEST, hex(c.hex)) as Record<string, unknown>
      assert.deepStrictEqual(Object.entries(got), c.value.map(([k, v]) => [k, v]), c.hex)
      // Python's own strict default refuses them, as the 19.06 dialect does
      assert.throws(() => decode(hex(c.hex)), MsgpackFormatError, /^map key is not a str$/)
    }
  })

  it("a key the dialect's rule refuses is an error naming what keys may be", () => {
    for (const h of ["81 c0 01", "81 c3 01", "81 cb 3ff8000000000000 01", "81 c4 01 61 01", "81 90 01", "81 80 01"]) {
      assert.throws(() => decodeWith(TEST, hex(h)), DialectError, /^map key is not a str, int or UUID$/, h)
    }
  })

  it("a map with exactly two bytes per entry left is read, one byte short is refused up front", () => {
    assert.deepStrictEqual(decodeWith(TEST, hex("81 01 02")), { "1": 2 })
    assert.deepStrictEqual(decodeWith(TEST, hex("82 01 02 03 04")), { "1": 2, "3": 4 })
    assert.throws(() => decodeWith(TEST, hex("82 01 02 03")), DialectError, /^map length exceeds data$/)
  })

  it("a repeated key: the last one wins as in Python's dict, unless the dialect wants unique keys", () => {
    const dup = hex(golden.repeated.hex)
    assert.deepStrictEqual(decode(dup), golden.repeated.python)
    assert.deepStrictEqual(decodeWith(TEST, dup), golden.repeated.python)
    assert.throws(() => decodeWith(UNIQUE, dup), DialectError, /^map key "a" repeated$/)
    // the same key after stringification, and a __proto__ key (an own property, not the prototype)
    assert.throws(() => decodeWith(UNIQUE, hex("82 01 01 a1 31 02")), DialectError, /^map key "1" repeated$/)
    const proto = "a9 5f5f70726f746f5f5f"
    assert.throws(() => decodeWith(UNIQUE, hex(`82 ${proto} 01 ${proto} 02`)), DialectError, /^map key "__proto__" repeated$/)
    assert.deepStrictEqual(decodeWith(UNIQUE, hex("82 a1 61 01 a1 62 02")), { a: 1, b: 2 })
    assert.deepStrictEqual(Bai.decode(hex("82 a1 61 01 a1 62 02")), { a: 1, b: 2 })
    assert.throws(() => Bai.decode(dup), Bai.BaiMsgpackError, /^map key "a" repeated$/)
  })
})

describe("depth, errors and refusals per dialect", () => {
  it("depth counts every container level, both ways, for arrays, Maps and records (maxDepth 2)", () => {
    assert.deepStrictEqual(encodeWith(SHALLOW, [[0]]), hex("91 91 00"))
    assert.deepStrictEqual(encodeWith(SHALLOW, new Map([["a", new Map([["b", 0]])]])), hex("81 a1 61 81 a1 62 00"))
    assert.deepStrictEqual(encodeWith(SHALLOW, { a: { b: 0 } }), hex("81 a1 61 81 a1 62 00"))
    assert.deepStrictEqual(encodeWith(SHALLOW, [[new WriteExt(1, hex("00"))]]), hex("91 91 d4 01 00"))
    for (const deep of [[[[0]]], new Map([["a", new Map([["b", new Map([["c", 0]])]])]]), { a: { b: { c: 0 } } }, [[[new WriteExt(1, hex("00"))]]]]) {
      assert.throws(() => encodeWith(SHALLOW, deep), DialectError, /^value nested too deeply$/)
    }
    assert.deepStrictEqual(decodeWith(SHALLOW, hex("91 91 00")), [[0]])
    assert.deepStrictEqual(decodeWith(SHALLOW, hex("81 a1 61 81 a1 62 00")), { a: { b: 0 } })
    assert.deepStrictEqual(decodeWith(SHALLOW, hex("91 91 d4 01 00")), [[new ReadExt(1, hex("00"))]])
    for (const h of ["91 91 91 00", "81 a1 61 81 a1 62 81 a1 63 00", "91 91 91 d4 01 00"]) {
      assert.throws(() => decodeWith(SHALLOW, hex(h)), DialectError, /^data nested too deeply$/, h)
    }
  })

  it("every reader refusal is the dialect's error class; the 19.06 dialect's is MsgpackFormatError", () => {
    for (const h of ["", "c1", "a1", "01 02", "a2 ff fe", "92 01", "81 a1 61"]) {
      const e = thrown(() => decodeWith(TEST, hex(h)))
      assert.instanceOf(e, DialectError, h)
      assert.strictEqual((e as Error).name, "DialectError")
      const p = thrown(() => decode(hex(h)))
      assert.instanceOf(p, MsgpackFormatError, h)
      assert.notInstanceOf(p, DialectError, h)
      assert.strictEqual((p as Error).name, "MsgpackFormatError")
    }
  })

  it("a class instance the dialect does not write as ext is refused by its class name", () => {
    assert.throws(() => encodeWith(TEST, new Date(0)), MsgpackFormatError, /^cannot encode an instance of Date$/)
    assert.throws(() => Bai.encode({ at: new Date(0) }), MsgpackFormatError, /^cannot encode an instance of Date$/)
    // a prototype without a constructor (Object.create of a null-prototype object)
    const orphan = Object.create(Object.create(null) as object) as object
    assert.throws(() => encode(orphan), MsgpackFormatError, /^cannot encode an instance of \?$/)
    assert.throws(() => encodeWith(TEST, orphan), MsgpackFormatError, /^cannot encode an instance of \?$/)
    // plain and null-prototype records stay maps in a dialect with ext types
    const bare = Object.create(null) as Record<string, unknown>
    bare.k = 1
    assert.deepStrictEqual(encodeWith(TEST, [{ k: 1 }, bare]), hex("92 81 a1 6b 01 81 a1 6b 01"))
  })

  it("a thrown non-Error is reported by its string", () => {
    const hostile = {
      get k(): unknown {
        throw "getter says no"
      }
    }
    assert.deepStrictEqual(encodeResult(hostile), { ok: false, message: "getter says no" })
  })
})
