import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Schema } from "effect"
import { KernelNotFound, pyExceptionRepr, toErrorBody } from "../../src/domain/Errors.ts"
import { AgentRpcs } from "../../src/rpc/AgentRpcs.ts"
import { decode, decodeEffect, encode, PyFloat } from "../../src/codec/Msgpack.ts"
import { decodeReplyHeader, decodeRequestHeader, encodeReplyHeader, encodeRequestHeader } from "../../src/rpc/aiozmq/Frames.ts"

const KID = "0b7a5b2c-5d0e-4bd4-a4d5-6a3f1a7f8a11"

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex")
const ascii = (s: string) => Buffer.from(s, "ascii").toString("hex")
const bytesOf = (...parts: Array<string>) => hex(parts.join(""))

describe("msgpack with Python semantics", () => {
  it("golden vectors of spec §1.1 (ping)", () => {
    assert.deepStrictEqual(encode(["hello"]), hex("91 a5 68 65 6c 6c 6f"))
    assert.deepStrictEqual(encode({}), hex("80"))
    assert.deepStrictEqual(encode("hello"), hex("a5 68 65 6c 6c 6f"))
    assert.deepStrictEqual(
      encode(toErrorBody({ name: "builtins.KeyError", args: ["abc"] })),
      bytesOf("93", "b1", ascii("builtins.KeyError"), "91 a3", ascii("abc"), "af", ascii("KeyError('abc')"))
    )
  })

  it("encoded buffers are independent of each other (the encoder reuses a scratch buffer), also past its size", () => {
    const first = encode({ files: "x".repeat(40), abspath: "/home/work" })
    const firstCopy = Buffer.from(first)
    const big = encode("y".repeat(100_000)) // outgrows the 64 KiB scratch
    const second = encode({ files: "z".repeat(40), abspath: "/tmp" })
    const nonAscii = encode("é".repeat(20_000))
    assert.deepStrictEqual(first, firstCopy)
    assert.deepStrictEqual(decode(first), { files: "x".repeat(40), abspath: "/home/work" })
    assert.isTrue(decode(big) === "y".repeat(100_000)) // no 100,000-character diff on failure
    assert.deepStrictEqual(decode(second), { files: "z".repeat(40), abspath: "/tmp" })
    assert.isTrue(decode(nonAscii) === "é".repeat(20_000))
    assert.deepStrictEqual(nonAscii.subarray(0, 5), hex("da 9c 40 c3 a9")) // str16, 40,000 UTF-8 bytes
    assert.throws(() => encode([1, () => 1]))
    assert.deepStrictEqual(decode(encode(["after", "a", "failure"])), ["after", "a", "failure"])
  })

  it("golden vectors of spec §1.2 (events)", () => {
    assert.deepStrictEqual(encode([]), hex("90"))
    assert.deepStrictEqual(
      encode(["k1", "self-terminated", null]),
      bytesOf("93 a2 6b 31 af", ascii("self-terminated"), "c0")
    )
  })

  it("floats are float64 only when Python would say float", () => {
    assert.deepStrictEqual(encode(new PyFloat(2)), hex("cb 40 00 00 00 00 00 00 00"))
    assert.deepStrictEqual(encode(2), hex("02"))
    assert.deepStrictEqual(encode(0.5), hex("cb 3f e0 00 00 00 00 00 00"))
  })

  it("ints use the family Python picks", () => {
    assert.deepStrictEqual(encode(127), hex("7f"))
    assert.deepStrictEqual(encode(128), hex("cc 80"))
    assert.deepStrictEqual(encode(-1), hex("ff"))
    assert.deepStrictEqual(encode(-33), hex("d0 df"))
    assert.deepStrictEqual(encode(65536), hex("ce 00 01 00 00"))
    assert.deepStrictEqual(encode(2 ** 32), hex("cf 00 00 00 01 00 00 00 00"))
    assert.deepStrictEqual(encode(-(2 ** 31) - 1), hex("d3 ff ff ff ff 7f ff ff ff"))
  })

  it("str and bin are kept apart", () => {
    assert.deepStrictEqual(encode("x".repeat(32)), bytesOf("d9 20", ascii("x".repeat(32))))
    assert.deepStrictEqual(encode(new Uint8Array([1, 2])), hex("c4 02 01 02"))
    assert.deepStrictEqual(encode("é"), hex("a2 c3 a9"))
    const back = decode(hex("92 c4 02 01 02 a2 c3 a9")) as Array<unknown>
    assert.instanceOf(back[0], Uint8Array)
    assert.strictEqual(back[1], "é")
  })

  it("decodes maps to objects and rejects non-str keys, ext types, trailing bytes", () => {
    assert.deepStrictEqual(decode(hex("81 a1 61 c0")), { a: null })
    for (const bad of ["81 01 02", "d4 01 00", "c0 c0", "92 01", "c1", "a3 ff ff ff", "dd ff ff ff ff"]) {
      assert.throws(() => decode(hex(bad)))
    }
  })

  it("caps the number of decoded elements, not only bytes (a 1-byte element must not cost a JS value each without bound)", () => {
    // 200,000 nils in one array: 200 KB of input, far under any byte cap
    const many = Buffer.concat([hex("dd"), Buffer.from([0x00, 0x03, 0x0d, 0x40]), Buffer.alloc(200_000, 0xc0)])
    assert.strictEqual((decode(many) as Array<unknown>).length, 200_000) // under the default cap
    assert.throws(() => decode(many, { maxElements: 100_000 }), /more than 100000 elements/)
    // nested: 10 arrays of 20,000 nils
    const inner = Buffer.concat([hex("dc 4e 20"), Buffer.alloc(20_000, 0xc0)])
    const nested = Buffer.concat([hex("9a"), ...Array.from({ length: 10 }, () => inner)])
    assert.throws(() => decode(nested, { maxElements: 100_000 }), /more than 100000 elements/)
    assert.strictEqual((decode(nested, { maxElements: 200_011 }) as Array<unknown>).length, 10)
    // map entries count twice (key and value)
    const map = encode(Object.fromEntries(Array.from({ length: 600 }, (_, i) => [`k${i}`, i])))
    assert.throws(() => decode(map, { maxElements: 1000 }), /more than 1000 elements/)
  })

  it.effect("decodeEffect fails typed on garbage", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(decodeEffect(hex("c1")))
      assert.isTrue(Exit.isFailure(exit))
    }))

  it("round-trips nested values", () => {
    const value = { a: [1, -2, "x", null, true, false, 1.5], b: { c: new Uint8Array([0xff]) } }
    assert.deepStrictEqual(decode(encode(value)), { ...value, b: { c: Buffer.from([0xff]) } })
  })
})

describe("aiozmq headers (spec §1.1 worked example)", () => {
  it("request header", () => {
    const golden = hex("d2 04 ef be 01 00 00 00 00 00 20 b0 79 50 d7 41")
    const h = decodeRequestHeader(golden)!
    assert.strictEqual(h.pid, 1234)
    assert.strictEqual(h.rnd, 0xbeef)
    assert.strictEqual(h.reqId, 1)
    assert.deepStrictEqual(encodeRequestHeader(h), golden)
  })
  it("reply header", () => {
    const golden = hex("e1 10 34 12 01 00 00 00 66 66 26 b0 79 50 d7 41 00")
    const h = decodeReplyHeader(golden)!
    assert.strictEqual(h.reqId, 1)
    assert.isFalse(h.isError)
    assert.deepStrictEqual(encodeReplyHeader(h), golden)
    assert.strictEqual(encodeReplyHeader({ ...h, isError: true })[16], 1)
  })
})

describe("contract schemas", () => {
  it.effect("execute coerces like aiozmq annotations and encodes results with float64 where Python has floats", () =>
    Effect.gen(function*() {
      const args = yield* Schema.decodeUnknownEffect(AgentRpcs.execute.args)(["3", KID, null, "query", "print(1)", {}, 2])
      assert.deepStrictEqual(args, [3, KID, null, "query", "print(1)", {}, 2])
      const short = yield* Schema.decodeUnknownEffect(AgentRpcs.execute.args)([3, KID, null, "query", "x", {}])
      assert.strictEqual(short.length, 6)
      const encoded = yield* Schema.encodeEffect(AgentRpcs.execute.args)(args)
      assert.deepStrictEqual(encode(encoded).subarray(-9), hex("cb 40 00 00 00 00 00 00 00"))
    }))

  it.effect("wrong arity fails", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(Schema.decodeUnknownEffect(AgentRpcs.ping.args)([]))
      assert.isTrue(Exit.isFailure(exit))
      const exit2 = yield* Effect.exit(Schema.decodeUnknownEffect(AgentRpcs.ping.args)(["a", "b"]))
      assert.isTrue(Exit.isFailure(exit2))
    }))

  it.effect("get_completions accepts manager 19.06's 4-argument form", () =>
    Effect.gen(function*() {
      const a = yield* Schema.decodeUnknownEffect(AgentRpcs.get_completions.args)([KID, "query", "pri", {}])
      assert.deepStrictEqual(a, [KID, "pri", {}])
    }))

  it.effect("download_file result is bin", () =>
    Effect.gen(function*() {
      const out = yield* Schema.encodeEffect(AgentRpcs.download_file.success)(new Uint8Array([1]))
      assert.deepStrictEqual(encode(out), hex("c4 01 01"))
    }))
})

describe("domain errors", () => {
  it("have a Python face", () => {
    const e = new KernelNotFound({ kernelId: "abc" })
    assert.deepStrictEqual(toErrorBody(e.python), [
      "ai.backend.agent.exception.KernelNotFound",
      ["abc"],
      "KernelNotFound('abc')"
    ])
    assert.strictEqual(pyExceptionRepr({ name: "x.E", args: ["it's", 1, null, true] }), `E("it's", 1, None, True)`)
  })
})
