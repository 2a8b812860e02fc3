/**
 * The 26.x manager's msgpack ext types and pickles (contract §1.6). Golden vectors: pickles made by
 * CPython 3.11.7 (enums by value, like the manager's 3.13) and Debian's 3.11.2 (enums by name) from
 * classes with the manager's module/qualname; the ResourceSlot pickle and the ping frames are the
 * contract doc's verified bytes.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Bai from "../../src/codec/bai/BaiMsgpack.ts"
import { readPickle, writeResourceSlot } from "../../src/codec/bai/Pickle.ts"

const hex = (s: string) => Buffer.from(s.replace(/[\s|]/g, ""), "hex")
const ext = (code: number, data: Uint8Array) => Buffer.concat([Buffer.from([0xc7, data.length, code]), data])

const ENUM_BY_VALUE = hex(
  "8005953d000000000000008c1761692e6261636b656e642e636f6d6d6f6e2e7479706573948c0b436c75737465724d6f64659493948c0b73696e676c652d6e6f646594859452942e"
)
const ENUM_BY_NAME = hex(
  "80059554000000000000008c086275696c74696e73948c07676574617474729493948c1761692e6261636b656e642e636f6d6d6f6e2e7479706573948c0b436c75737465724d6f64659493948c0b53494e474c455f4e4f444594869452942e"
)
const PULL_BY_NAME = hex(
  "80059554000000000000008c086275696c74696e73948c07676574617474729493948c1761692e6261636b656e642e636f6d6d6f6e2e7479706573948c104175746f50756c6c4265686176696f729493948c0644494745535494869452942e"
)
const IMAGE_REF = hex(
  "800595ab000000000000008c1861692e6261636b656e642e636f6d6d6f6e2e646f636b6572948c08496d6167655265669493942981947d94288c046e616d65948c06707974686f6e948c0770726f6a656374948c06737461626c65948c03746167948c0f332e392d7562756e747532302e3034948c087265676973747279948c0d63722e6261636b656e642e6169948c0c617263686974656374757265948c067838365f3634948c0869735f6c6f63616c948975622e"
)
// project == name (a memo reference, BINGET) and a `_tag_set` PlatformTagSet (slots state)
const IMAGE_REF_TAGSET = hex(
  "800595ea000000000000008c1861692e6261636b656e642e636f6d6d6f6e2e646f636b6572948c08496d6167655265669493942981947d94288c046e616d65948c06707974686f6e948c0770726f6a6563749468068c03746167948c0f332e392d7562756e747532302e3034948c087265676973747279948c0d63722e6261636b656e642e6169948c0c617263686974656374757265948c067838365f3634948c0869735f6c6f63616c94898c085f7461675f7365749468008c0e506c6174666f726d5461675365749493942981944e7d948c055f64617461947d948c0b7562756e747532302e3034948c0094737386946275622e"
)
const DECIMAL = hex("80059521000000000000008c07646563696d616c948c07446563696d616c9493948c03312e3594859452942e")
// contract §1.6, verified with pickle.loads on the manager's class
const RESOURCE_SLOT = hex(`80 04 8c 17 ${Buffer.from("ai.backend.common.types").toString("hex")} 8c 0c ${Buffer.from("ResourceSlot").toString("hex")} 93 29 81 4e 7d 8c 04 ${Buffer.from("data").toString("hex")} 7d 28
  8c 03 ${Buffer.from("cpu").toString("hex")} 8c 07 ${Buffer.from("decimal").toString("hex")} 8c 07 ${Buffer.from("Decimal").toString("hex")} 93 8c 01 38 85 52
  8c 03 ${Buffer.from("mem").toString("hex")} 8c 07 ${Buffer.from("decimal").toString("hex")} 8c 07 ${Buffer.from("Decimal").toString("hex")} 93 8c 0b ${Buffer.from("34359738368").toString("hex")} 85 52
  75 73 86 62 2e`)

describe("pickle subset", () => {
  it("enum members by value (CPython ≥ 3.11.3) and by name (3.11.2)", () => {
    const v = readPickle(ENUM_BY_VALUE) as Bai.PyEnum
    assert.instanceOf(v, Bai.PyEnum)
    assert.deepStrictEqual([v.cls, v.member, v.value], ["ai.backend.common.types.ClusterMode", "SINGLE_NODE", "single-node"])
    const n = readPickle(ENUM_BY_NAME) as Bai.PyEnum
    assert.deepStrictEqual([n.member, n.value], ["SINGLE_NODE", "single-node"])
    assert.strictEqual(String(readPickle(PULL_BY_NAME)), "digest")
  })

  it("Decimal and ResourceSlot (memo-less and CPython's own protocol-5 form)", () => {
    assert.strictEqual(String(readPickle(DECIMAL)), "1.5")
    const rs = readPickle(RESOURCE_SLOT) as Bai.PyObject
    assert.strictEqual(rs.cls, "ai.backend.common.types.ResourceSlot")
    assert.deepStrictEqual(Object.fromEntries(Object.entries(rs.attrs["data"] as object).map(([k, x]) => [k, String(x)])), {
      cpu: "8",
      mem: "34359738368"
    })
  })

  it("writes the ResourceSlot pickle byte for byte as the contract's verified one", () => {
    assert.deepStrictEqual(writeResourceSlot({ cpu: "8", mem: "34359738368" }), RESOURCE_SLOT)
    assert.throws(() => writeResourceSlot({ cpu: "8; import os" }))
  })

  it("refuses everything outside the subset", () => {
    const evil = [
      // os.system("id") via GLOBAL + REDUCE (protocol 0 style, the classic exploit)
      Buffer.from("cos\nsystem\n(S'id'\ntR.", "latin1"),
      // builtins.eval through STACK_GLOBAL
      hex(`8004 8c08 ${Buffer.from("builtins").toString("hex")} 8c04 ${Buffer.from("eval").toString("hex")} 93 8c01 31 85 52 2e`),
      // getattr on a whitelisted enum with a name outside its members
      hex(`8004 8c08 ${Buffer.from("builtins").toString("hex")} 8c07 ${Buffer.from("getattr").toString("hex")} 93 8c17 ${Buffer.from("ai.backend.common.types").toString("hex")} 8c0b ${Buffer.from("ClusterMode").toString("hex")} 93 8c08 ${Buffer.from("__dict__").toString("hex")} 86 52 2e`),
      // enum by value with a value that is not a member
      hex(`8004 8c17 ${Buffer.from("ai.backend.common.types").toString("hex")} 8c0b ${Buffer.from("ClusterMode").toString("hex")} 93 8c01 78 85 52 2e`),
      // Decimal of something that is not a decimal literal
      hex(`8004 8c07 ${Buffer.from("decimal").toString("hex")} 8c07 ${Buffer.from("Decimal").toString("hex")} 93 8c02 3078 85 52 2e`),
      // truncated, trailing data, no STOP, two values
      IMAGE_REF.subarray(0, IMAGE_REF.length - 3),
      Buffer.concat([DECIMAL, Buffer.from([0x4e])]),
      hex("8004 4e"),
      hex("8004 4e 4e 2e"),
      // an unsupported opcode (BINBYTES)
      hex("8004 42 01000000 41 2e")
    ]
    for (const p of evil) assert.throws(() => readPickle(p), Bai.PickleError)
  })
})

describe("ai.backend.common.msgpack", () => {
  const kid = "3f1e6f0e-8a4b-4f5e-9c1d-2b7a6c5d4e3f"
  const kidBytes = Buffer.from(kid.replace(/-/g, ""), "hex")

  it("decodes UUIDs (also as map keys), enums, ImageRefs and Decimals", () => {
    // {"mode": ext6 by-name, "refs": {UUID: ext7}, "slot": ext3, "id": ext1, "pull": ext6 by-value}
    const bytes = Buffer.concat([
      Buffer.from([0x85]),
      Buffer.from([0xa4]), Buffer.from("mode"), ext(6, ENUM_BY_NAME),
      Buffer.from([0xa4]), Buffer.from("refs"), Buffer.from([0x81, 0xd8, 0x01]), kidBytes, Buffer.from([0xc8, 0x00, IMAGE_REF_TAGSET.length, 7]), IMAGE_REF_TAGSET,
      Buffer.from([0xa4]), Buffer.from("slot"), ext(3, DECIMAL),
      Buffer.from([0xa2]), Buffer.from("id"), Buffer.from([0xd8, 0x01]), kidBytes,
      Buffer.from([0xa4]), Buffer.from("pull"), ext(6, ENUM_BY_VALUE)
    ])
    const v = Bai.decode(bytes) as Record<string, unknown>
    assert.strictEqual(String(v["mode"]), "single-node")
    const refs = v["refs"] as Record<string, Bai.ImageRef>
    assert.deepStrictEqual(Object.keys(refs), [kid])
    assert.instanceOf(refs[kid], Bai.ImageRef)
    assert.strictEqual(refs[kid]!.canonical, "cr.backend.ai/python/python:3.9-ubuntu20.04")
    assert.strictEqual(String(v["slot"]), "1.5")
    assert.strictEqual(String(v["id"]), kid)
    assert.deepStrictEqual(Bai.plain(v), {
      mode: "single-node",
      refs: {
        [kid]: {
          canonical: "cr.backend.ai/python/python:3.9-ubuntu20.04",
          name: "python",
          project: "python",
          tag: "3.9-ubuntu20.04",
          registry: "cr.backend.ai",
          architecture: "x86_64",
          is_local: false
        }
      },
      slot: "1.5",
      id: kid,
      pull: "single-node"
    })
    const plainRef = Bai.decode(ext(7, IMAGE_REF)) as Bai.ImageRef
    assert.strictEqual(plainRef.canonical, "cr.backend.ai/stable/python:3.9-ubuntu20.04")
  })

  it("refuses bad ext payloads and repeated keys; keeps unknown ext codes opaque", () => {
    assert.throws(() => Bai.decode(Buffer.from([0xd7, 0x01, 1, 2, 3, 4, 5, 6, 7, 8])), Bai.BaiMsgpackError) // UUID of 8 bytes
    assert.throws(() => Bai.decode(ext(6, DECIMAL)), Bai.BaiMsgpackError) // ext 6 must be an enum
    assert.throws(() => Bai.decode(ext(7, ENUM_BY_VALUE)), Bai.BaiMsgpackError) // ext 7 must be an ImageRef
    assert.throws(() => Bai.decode(Buffer.from([0x82, 0xa1, 0x61, 0x01, 0xa1, 0x61, 0x02])), Bai.BaiMsgpackError)
    const opaque = Bai.decode(Buffer.from([0xd4, 0x02, 0x07]))
    assert.instanceOf(opaque, Bai.ExtValue)
  })

  it("decodes with the 19.06 reader's bounds: an element budget and the ext/str rules of one reader", () => {
    // an array header claiming 1_000_001 nils (each one byte): refused before 1 M slots are allocated
    const many = Buffer.alloc(5 + 1_000_001, 0xc0)
    many[0] = 0xdd
    many.writeUInt32BE(1_000_001, 1)
    assert.throws(() => Bai.decode(many), Bai.BaiMsgpackError, /more than 1000000 elements/)
    // one reader: invalid UTF-8 in a short str is refused, int keys are strings, extra bytes are refused
    assert.throws(() => Bai.decode(Buffer.from([0xa2, 0xc3, 0x28])), Bai.BaiMsgpackError, /UTF-8/)
    assert.deepStrictEqual(Bai.decode(Buffer.from([0x81, 0x07, 0xa1, 0x61])), { "7": "a" })
    assert.throws(() => Bai.decode(Buffer.from([0xc0, 0xc0])), Bai.BaiMsgpackError, /extra data/)
    // and one writer: a Map holding a UUID encodes like the record it stands for
    const id = Bai.Uuid.parse(kid)!
    assert.deepStrictEqual(Bai.encode(new Map([["id", id]])), Bai.encode({ id }))
  })

  it("encodes the manager's ping frames byte for byte and ext values (contract §1.4)", () => {
    assert.deepStrictEqual(
      Bai.encode({ type: 2, meth: "ping", okey: new Uint8Array(0), seq: 0, zip: false }),
      hex("85 a4 74797065 02 a4 6d657468 a4 70696e67 a4 6f6b6579 c4 00 a3 736571 00 a3 7a6970 c2")
    )
    const hb = Bai.encode([{ available_resource_slots: Bai.resourceSlotExt({ cpu: "8", mem: "34359738368" }), id: Bai.Uuid.parse(kid)! }])
    const back = Bai.decode(hb) as Array<Record<string, unknown>>
    assert.instanceOf(back[0]!["available_resource_slots"], Bai.ExtValue)
    assert.deepStrictEqual((back[0]!["available_resource_slots"] as Bai.ExtValue).data, RESOURCE_SLOT)
    assert.strictEqual(String(back[0]!["id"]), kid)
  })
})
