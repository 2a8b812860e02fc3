/**
 * The runner's records decoded without sockets (src/kernel/runner/RunnerRecords.ts). Oracles: the 19.06
 * runner's wire format (spec §3, §8.3: `[type, payload]`, JSON payloads for media and poll-ending
 * records, msgpack `{started_at}` for status) and UTF-8 itself (byte sequences written out by hand).
 */
import { assert, describe, it } from "@effect/vitest"
import { Option } from "effect"
import { encode, PyFloat } from "../../src/codec/Msgpack.ts"
import {
  decodeEnd,
  decodeMedia,
  decodeStatus,
  endsRun,
  itemSize,
  makeRecordDecoder,
  RECORD_MAX_BYTES,
  RunnerRecord,
  truncateUtf8
} from "../../src/kernel/runner/RunnerRecords.ts"

const bytes = (...b: ReadonlyArray<number>) => new Uint8Array(b)
const text = (s: string) => new TextEncoder().encode(s)

describe("record decoding", () => {
  it("truncateUtf8 never splits a sequence", () => {
    const euro = Buffer.from("a€b") // 61 e2 82 ac 62
    assert.deepStrictEqual([...truncateUtf8(euro, 5)], [...euro])
    assert.deepStrictEqual([...truncateUtf8(euro, 4)], [0x61, 0xe2, 0x82, 0xac])
    assert.deepStrictEqual([...truncateUtf8(euro, 3)], [0x61])
    assert.deepStrictEqual([...truncateUtf8(euro, 2)], [0x61])
    assert.deepStrictEqual([...truncateUtf8(euro, 1)], [0x61])
    assert.deepStrictEqual([...truncateUtf8(euro, 0)], [])
    const emoji = Buffer.from("😀😀") // f0 9f 98 80 ×2
    assert.deepStrictEqual([...truncateUtf8(emoji, 7)], [...emoji.subarray(0, 4)])
    const junk = Buffer.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x80])
    assert.strictEqual(truncateUtf8(junk, 5).length, 1, "backs off to max - 4 at most")
  })

  it("media payloads: JSON {type, data}, else raw HTML", () => {
    assert.deepStrictEqual(decodeMedia(`{"type":"image/png","data":"AAA="}`), { mime: "image/png", data: "AAA=" })
    assert.deepStrictEqual(decodeMedia(`{"type":"application/json","data":{"a":1}}`), { mime: "application/json", data: `{"a":1}` })
    assert.deepStrictEqual(decodeMedia(`{"type":"x/y"}`), { mime: "x/y", data: "null" })
    assert.deepStrictEqual(decodeMedia(`{"type":1,"data":"d"}`), { mime: "text/html", data: `{"type":1,"data":"d"}` })
    assert.deepStrictEqual(decodeMedia(`["type"]`), { mime: "text/html", data: `["type"]` })
    assert.deepStrictEqual(decodeMedia("<b>hi</b>"), { mime: "text/html", data: "<b>hi</b>" })
  })

  it("end records: exit codes and password prompts", () => {
    assert.deepStrictEqual(decodeEnd("finished", `{"exitCode": 3}`), { _tag: "End", status: "finished", exitCode: 3, options: null })
    assert.deepStrictEqual(decodeEnd("finished", `{"exitCode": 1.5}`), { _tag: "End", status: "finished", exitCode: null, options: null })
    assert.deepStrictEqual(decodeEnd("build-finished", `{"exitCode": "0"}`), { _tag: "End", status: "build-finished", exitCode: null, options: null })
    assert.deepStrictEqual(decodeEnd("exec-timeout", ""), { _tag: "End", status: "exec-timeout", exitCode: null, options: null })
    assert.deepStrictEqual(decodeEnd("waiting-input", `{"is_password": true}`), { _tag: "End", status: "waiting-input", exitCode: null, options: { is_password: true } })
    assert.deepStrictEqual(decodeEnd("waiting-input", `{"is_password": 1}`), { _tag: "End", status: "waiting-input", exitCode: null, options: { is_password: false } })
    assert.deepStrictEqual(decodeEnd("waiting-input", "junk"), { _tag: "End", status: "waiting-input", exitCode: null, options: { is_password: false } })
    assert.deepStrictEqual(decodeEnd("clean-finished", "[1]"), { _tag: "End", status: "clean-finished", exitCode: null, options: null })
  })
})

describe("a connection's record decoder", () => {
  it("joins UTF-8 sequences split across records, per stream", () => {
    const decode = makeRecordDecoder()
    assert.deepStrictEqual(decode("stdout", bytes(0x61, 0xe2)).record, RunnerRecord.Output({ items: [{ _tag: "Stream", stream: "stdout", text: "a" }] }))
    assert.deepStrictEqual(decode("stdout", bytes(0x82)).record, RunnerRecord.Output({ items: [] }))
    // stderr has its own decoder: stdout's pending bytes do not leak into it
    assert.deepStrictEqual(decode("stderr", bytes(0xf0, 0x9f)).record, RunnerRecord.Output({ items: [] }))
    assert.deepStrictEqual(decode("stdout", bytes(0xac, 0x62)).record, RunnerRecord.Output({ items: [{ _tag: "Stream", stream: "stdout", text: "€b" }] }))
    assert.deepStrictEqual(decode("stderr", bytes(0x98, 0x80)).record, RunnerRecord.Output({ items: [{ _tag: "Stream", stream: "stderr", text: "😀" }] }))
  })

  it("a run's end flushes both decoders (stdout first, a dangling sequence becomes U+FFFD); a poll's end does not", () => {
    const decode = makeRecordDecoder()
    decode("stdout", bytes(0xe2, 0x82))
    const input = decode("waiting-input", text(`{"is_password": true}`)).record
    assert.deepStrictEqual(input, RunnerRecord.End({ flushed: [], end: { _tag: "End", status: "waiting-input", exitCode: null, options: { is_password: true } } }))
    decode("stderr", bytes(0xc3))
    const fin = decode("finished", text(`{"exitCode": 2}`)).record
    assert.deepStrictEqual(
      fin,
      RunnerRecord.End({
        flushed: [{ _tag: "Stream", stream: "stdout", text: "\uFFFD" }, { _tag: "Stream", stream: "stderr", text: "\uFFFD" }],
        end: { _tag: "End", status: "finished", exitCode: 2, options: null }
      })
    )
    // flushed: the next run starts clean
    assert.deepStrictEqual(decode("stdout", bytes(0x82, 0xac)).record, RunnerRecord.Output({ items: [{ _tag: "Stream", stream: "stdout", text: "\uFFFD\uFFFD" }] }))
    decode("stdout", bytes(0xe2))
    const t = decode("exec-timeout", bytes()).record
    assert.deepStrictEqual(t, RunnerRecord.End({ flushed: [{ _tag: "Stream", stream: "stdout", text: "\uFFFD" }], end: { _tag: "End", status: "exec-timeout", exitCode: null, options: null } }))
    for (const status of ["clean-finished", "build-finished"] as const) {
      const e = makeRecordDecoder()
      e("stdout", bytes(0xe2))
      assert.deepStrictEqual(e(status, text(`{"exitCode": 0}`)).record, RunnerRecord.End({ flushed: [], end: { _tag: "End", status, exitCode: 0, options: null } }))
    }
  })

  it("media, html and unknown types; apps-result is nothing to the agent", () => {
    const decode = makeRecordDecoder()
    assert.deepStrictEqual(decode("media", text(`{"type":"image/png","data":"AA=="}`)).record, RunnerRecord.Output({ items: [{ _tag: "Media", mime: "image/png", data: "AA==" }] }))
    assert.deepStrictEqual(decode("media", text("<b>é</b>")).record, RunnerRecord.Output({ items: [{ _tag: "Media", mime: "text/html", data: "<b>é</b>" }] }))
    assert.deepStrictEqual(decode("html", text("<i>é</i>")).record, RunnerRecord.Output({ items: [{ _tag: "Other", type: "html", text: "<i>é</i>" }] }))
    assert.deepStrictEqual(decode("log", text("{}")).record, RunnerRecord.Output({ items: [{ _tag: "Other", type: "log", text: "{}" }] }))
    assert.deepStrictEqual(decode("apps-result", text("[]")).record, RunnerRecord.Ignored())
  })

  it("status replies decode started_at; completion and service-result replies are copies of their bytes", () => {
    const decode = makeRecordDecoder()
    assert.deepStrictEqual(decode("status", encode({ started_at: 7 })).record, RunnerRecord.Status({ startedAt: Option.some(7) }))
    assert.deepStrictEqual(decode("status", text("junk")).record, RunnerRecord.Status({ startedAt: Option.none() }))
    for (const type of ["completion", "service-result"] as const) {
      const frame = text(`xx["print"]yy`)
      const payload = frame.subarray(2, 11)
      const r = decode(type, payload).record
      assert.isTrue(r._tag === "Reply")
      if (r._tag === "Reply") {
        assert.strictEqual(r.type, type)
        assert.deepStrictEqual([...r.data], [...text(`["print"]`)])
        assert.strictEqual(r.data.buffer.byteLength, 9, "the reply does not keep the frame's buffer")
        frame.fill(0)
        assert.deepStrictEqual([...r.data], [...text(`["print"]`)])
      }
    }
  })

  it(`records are cut at RECORD_MAX_BYTES and say how long they were`, () => {
    const decode = makeRecordDecoder()
    const exact = decode("html", new Uint8Array(RECORD_MAX_BYTES).fill(0x61))
    assert.isTrue(Option.isNone(exact.truncatedFrom))
    assert.strictEqual(exact.record._tag === "Output" && exact.record.items[0]?._tag === "Other" ? exact.record.items[0].text.length : -1, RECORD_MAX_BYTES)
    const over = decode("html", new Uint8Array(RECORD_MAX_BYTES + 3).fill(0x62))
    assert.deepStrictEqual(over.truncatedFrom, Option.some(RECORD_MAX_BYTES + 3))
    assert.strictEqual(over.record._tag === "Output" && over.record.items[0]?._tag === "Other" ? over.record.items[0].text.length : -1, RECORD_MAX_BYTES)
  })
})

describe("record helpers", () => {
  it("status started_at: int, float, PyFloat or a 64-bit int; anything else is None", () => {
    assert.deepStrictEqual(decodeStatus(encode({ started_at: 1700000000 })), Option.some(1700000000))
    assert.deepStrictEqual(decodeStatus(encode({ started_at: 1.5 })), Option.some(1.5))
    assert.deepStrictEqual(decodeStatus(encode({ started_at: new PyFloat(12.5) })), Option.some(12.5))
    assert.deepStrictEqual(decodeStatus(encode({ started_at: 2n ** 60n })), Option.some(2 ** 60))
    for (const bad of [encode({ started_at: "x" }), encode([1]), encode({}), encode(null), text("not msgpack")]) {
      assert.deepStrictEqual(decodeStatus(bad), Option.none())
    }
  })

  it("finished and exec-timeout end a run; the other end statuses only end a poll", () => {
    assert.deepStrictEqual(
      (["finished", "exec-timeout", "waiting-input", "clean-finished", "build-finished"] as const).map(endsRun),
      [true, true, false, false, false]
    )
  })

  it("an item's weight is the length of its text or data", () => {
    assert.strictEqual(itemSize({ _tag: "Stream", stream: "stdout", text: "abc" }), 3)
    assert.strictEqual(itemSize({ _tag: "Other", type: "html", text: "abcd" }), 4)
    assert.strictEqual(itemSize({ _tag: "Media", mime: "a/b-long-mime", data: "ab" }), 2)
    assert.strictEqual(itemSize({ _tag: "End", status: "finished", exitCode: 0, options: null }), 0)
  })
})
