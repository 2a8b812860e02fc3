/**
 * aiozmq framing against Python's `struct` (the oracle: `struct.pack('=HHLd', …)` /
 * `struct.pack('=HHLd?', …)` on little-endian CPython 3.11, the bytes pasted below) and the
 * request splitting rules of aiozmq's `rpc/rpc.py`.
 */
import { assert, describe, it } from "@effect/vitest"
import {
  decodeReplyHeader,
  decodeRequestHeader,
  encodeReplyHeader,
  encodeRequestHeader,
  parseRequest,
  REPLY_HEADER_BYTES,
  REQUEST_HEADER_BYTES
} from "../../src/rpc/aiozmq/Frames.ts"

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex")

// /usr/bin/python3 -c "import struct; print(struct.pack('=HHLd', 0xbeef, 0x1234, 0xdeadbeef, 1700000000.25).hex())"
const PY_REQ = "efbe3412efbeadde00001040fc54d941"
// struct.pack('=HHLd?', 0xbeef, 0x1234, 0xdeadbeef, 1700000000.25, True)
const PY_REPLY_ERR = "efbe3412efbeadde00001040fc54d94101"
// struct.pack('=HHLd?', 1, 2, 3, -0.5, False)
const PY_REPLY_OK = "0100020003000000000000000000e0bf00"

describe("aiozmq headers against Python's struct", () => {
  it("sizes are struct.calcsize('=HHLd') and '=HHLd?'", () => {
    assert.strictEqual(REQUEST_HEADER_BYTES, 16)
    assert.strictEqual(REPLY_HEADER_BYTES, 17)
  })

  it("request header encodes to and decodes from Python's bytes", () => {
    const h = { pid: 0xbeef, rnd: 0x1234, reqId: 0xdeadbeef, timestamp: 1700000000.25 }
    assert.strictEqual(encodeRequestHeader(h).toString("hex"), PY_REQ)
    assert.deepStrictEqual(decodeRequestHeader(hex(PY_REQ)), h)
  })

  it("reply headers (error and ok) encode to and decode from Python's bytes", () => {
    const err = { pid: 0xbeef, rnd: 0x1234, reqId: 0xdeadbeef, timestamp: 1700000000.25, isError: true }
    assert.strictEqual(encodeReplyHeader(err).toString("hex"), PY_REPLY_ERR)
    assert.deepStrictEqual(decodeReplyHeader(hex(PY_REPLY_ERR)), err)
    const ok = { pid: 1, rnd: 2, reqId: 3, timestamp: -0.5, isError: false }
    assert.strictEqual(encodeReplyHeader(ok).toString("hex"), PY_REPLY_OK)
    assert.deepStrictEqual(decodeReplyHeader(hex(PY_REPLY_OK)), ok)
  })

  it("values wider than the fields wrap like the C struct fields (pid & 0xffff, reqId as uint32)", () => {
    const b = encodeRequestHeader({ pid: 0x1beef, rnd: 0x21234, reqId: -1, timestamp: 0 })
    assert.strictEqual(b.toString("hex"), "efbe3412ffffffff0000000000000000")
    const r = encodeReplyHeader({ pid: 0x1beef, rnd: 0x21234, reqId: 2 ** 32 + 5, timestamp: 0, isError: false })
    assert.strictEqual(r.toString("hex"), "efbe341205000000000000000000000000")
  })

  it("wrong lengths and a bool byte other than 0/1 are refused", () => {
    assert.isUndefined(decodeRequestHeader(hex(PY_REQ + "00")))
    assert.isUndefined(decodeRequestHeader(hex(PY_REQ).subarray(0, 15)))
    assert.isUndefined(decodeReplyHeader(hex(PY_REQ)))
    assert.isUndefined(decodeReplyHeader(hex(PY_REPLY_OK + "00")))
    assert.isUndefined(decodeReplyHeader(hex(PY_REPLY_OK.slice(0, -2) + "02")))
    assert.isUndefined(decodeReplyHeader(hex(PY_REPLY_OK.slice(0, -2) + "ff")))
  })

  it("decodes headers from views into a larger buffer", () => {
    const backing = hex("aaaa" + PY_REPLY_ERR + "bbbb")
    assert.deepStrictEqual(decodeReplyHeader(backing.subarray(2, 19))?.reqId, 0xdeadbeef)
    const backing2 = hex("cc" + PY_REQ)
    assert.deepStrictEqual(decodeRequestHeader(backing2.subarray(1))?.timestamp, 1700000000.25)
  })
})

describe("parseRequest", () => {
  const header = hex(PY_REQ)
  const method = Buffer.from("ping_kernel")
  const args = hex("91a3616263")
  const kwargs = hex("80")

  it("splits routing frames from the last four frames", () => {
    const r = parseRequest([Buffer.from("peer"), Buffer.from("hop"), header, method, args, kwargs], 1 << 20)
    assert.strictEqual(r._tag, "Request")
    if (r._tag !== "Request") return
    assert.deepStrictEqual(r.pre.map((b) => b.toString()), ["peer", "hop"])
    assert.strictEqual(r.reqId, 0xdeadbeef)
    assert.strictEqual(r.method, "ping_kernel")
    assert.strictEqual(r.args, args)
    assert.strictEqual(r.kwargs, kwargs)
  })

  it("fewer than five frames: malformed without a reqId", () => {
    const r = parseRequest([header, method, args, kwargs], 1 << 20)
    assert.deepStrictEqual(r, { _tag: "Malformed", pre: [], reqId: undefined, reason: "expected at least 5 frames, got 4" })
    assert.strictEqual(parseRequest([], 10)._tag, "Malformed")
  })

  it("bad header length: malformed without a reqId, routing kept", () => {
    const r = parseRequest([Buffer.from("peer"), header.subarray(0, 15), method, args, kwargs], 1 << 20)
    assert.deepStrictEqual(r, { _tag: "Malformed", pre: [Buffer.from("peer")], reqId: undefined, reason: "bad header length 15" })
  })

  it("the byte limit counts every frame, routing included; exactly the limit passes", () => {
    const frames = [Buffer.from("peer"), header, method, args, kwargs]
    const total = frames.reduce((n, f) => n + f.length, 0)
    assert.strictEqual(parseRequest(frames, total)._tag, "Request")
    const over = parseRequest(frames, total - 1)
    assert.deepStrictEqual(over, {
      _tag: "Malformed",
      pre: [Buffer.from("peer")],
      reqId: 0xdeadbeef,
      reason: `request of ${total} bytes exceeds the ${total - 1}-byte limit`
    })
  })

  it("a method name that is not UTF-8 is malformed with the reqId (answered with an error)", () => {
    const r = parseRequest([Buffer.from("peer"), header, hex("ff fe"), args, kwargs], 1 << 20)
    assert.deepStrictEqual(r, { _tag: "Malformed", pre: [Buffer.from("peer")], reqId: 0xdeadbeef, reason: "method name is not UTF-8" })
    const ok = parseRequest([Buffer.from("peer"), header, Buffer.from("ümlaut"), args, kwargs], 1 << 20)
    assert.strictEqual(ok._tag === "Request" ? ok.method : "", "ümlaut")
  })

  it("method names: ASCII, non-ASCII and invalid UTF-8 read alike at every length", () => {
    const name = (frame: Buffer) => {
      const r = parseRequest([Buffer.from("peer"), header, frame, args, kwargs], 1 << 20)
      return r._tag === "Request" ? r.method : r.reason
    }
    for (const length of [0, 1, 63, 64, 65, 200]) {
      const ascii = "\x00\x7fa".repeat(70).slice(0, length)
      assert.strictEqual(name(Buffer.from(ascii, "latin1")), ascii)
      const mixed = "é" + "b".repeat(Math.max(0, length - 2))
      assert.strictEqual(name(Buffer.from(mixed, "utf8")), mixed)
      const invalid = Buffer.concat([Buffer.from("c".repeat(length), "latin1"), hex("c3")])
      assert.strictEqual(name(invalid), "method name is not UTF-8")
      const latin1Only = Buffer.concat([hex("e9"), Buffer.from("d".repeat(length), "latin1")])
      assert.strictEqual(name(latin1Only), "method name is not UTF-8")
    }
  })

  it("reads the request id from a header that is a view into a larger buffer", () => {
    const backing = hex("cc" + PY_REQ + "dd")
    const r = parseRequest([Buffer.from("peer"), backing.subarray(1, 17), method, args, kwargs], 1 << 20)
    assert.strictEqual(r._tag === "Request" ? r.reqId : -1, 0xdeadbeef)
  })
})
