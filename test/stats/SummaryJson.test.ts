// parseSummary reads the Summary straight from the JSON text: the oracle is JSON.parse + the Summary
// schema (what KubeletSummary did before), on generated documents printed in several ways and then
// corrupted at the text level (characters dropped, inserted, replaced; truncation; escaped keys;
// duplicate keys; numbers of every JSON form), plus the testbed kubelet's own documents.
import { assert, describe, it } from "@effect/vitest"
import { Result, Schema } from "effect"
import { summary as testbedSummary } from "../testbed/stats.ts"
import { Summary } from "../../src/stats/KubeletSummary.ts"
import { parseSummary, SummaryMismatch } from "../../src/stats/SummaryJson.ts"
import { generated, prng } from "./summaryDocs.ts"

const decode = Schema.decodeUnknownResult(Summary)

type Outcome = "not JSON" | "mismatch" | { readonly value: unknown }

const oracle = (text: string): Outcome => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return "not JSON"
  }
  const r = decode(json)
  return Result.isSuccess(r) ? { value: r.success } : "mismatch"
}

const subject = (text: string): Outcome => {
  try {
    const r = parseSummary(text)
    return r instanceof SummaryMismatch ? "mismatch" : { value: r }
  } catch (e) {
    if (e instanceof SyntaxError) return "not JSON"
    throw e
  }
}

const same = (text: string) => {
  const want = oracle(text)
  const got = subject(text)
  assert.deepStrictEqual(got, want, text.length > 3000 ? `${text.slice(0, 3000)}…` : text)
  return want
}

/** Text-level edits of a printed document. */
const corrupt = (rnd: () => number, text: string): string => {
  const pick = <A>(xs: ReadonlyArray<A>): A => xs[Math.floor(rnd() * xs.length)]!
  const at = Math.floor(rnd() * (text.length + 1))
  switch (Math.floor(rnd() * 9)) {
    case 0:
      return text.slice(0, at) + text.slice(at + 1)
    case 1:
      return text.slice(0, at) + pick(["{", "}", "[", "]", ",", ":", "\"", "\\", "-", "0", "e", ".", " ", "\n", "\u0001", "x", "\u00e9"]) + text.slice(at)
    case 2:
      return text.slice(0, at)
    case 3:
      // an escaped key or value character (same string for JSON)
      return text.replace(pick(["\"cpu\"", "\"node\"", "\"pods\"", "\"name\"", "\"usedBytes\"", "\"podRef\"", "\"p0\"", "\"ns\""]), (m) => `"\\u00${m.charCodeAt(1).toString(16)}${m.slice(2)}`)
    case 4: {
      // a duplicate key before the real one (the last wins): wrong type or right type
      const key = pick(["cpu", "node", "pods", "name", "usedBytes", "podRef", "usageCoreNanoSeconds", "volume", "nodeName", "uid"])
      const value = pick(["\"x\"", "null", "1", "{}", "[]", "{\"usedBytes\":1}", "[{\"name\":\"v\"}]"])
      return text.replace(`"${key}":`, `"${key}":${value},"${key}":`)
    }
    case 5: {
      // a duplicate key after the real one
      const key = pick(["cpu", "node", "pods", "name", "usedBytes", "podRef", "workingSetBytes", "nodeName"])
      const value = pick(["\"x\"", "null", "7", "{}", "[]", "{\"name\":\"n\",\"namespace\":\"s\",\"uid\":\"u\"}"])
      const i = text.indexOf(`"${key}":`)
      if (i < 0) return text
      const close = text.indexOf("}", i)
      return `${text.slice(0, close)},"${key}":${value}${text.slice(close)}`
    }
    case 6:
      // numbers in every JSON (and some non-JSON) form
      return text.replace(/(?<=:)\d+/, pick(["-0", "1e21", "12345678901234567890", "1.5e3", "0.1", "1E-7", "-12.75", "01", "1.", ".5", "+1", "1e", "-", "123456789012345"]))
    case 7:
      // strings with escapes
      return text.replace(/"p(\d)"/, pick(["\"p\\n$1\"", "\"p\\\"$1\"", "\"p\\u00e9$1\"", "\"p\\/$1\"", "\"p\\x$1\"", "\"p\\u12$1\"", "\"p\t$1\""]))
    default:
      return ` \n${text}\r\t`
  }
}

describe("parseSummary", () => {
  it("agrees with JSON.parse + the Summary schema on 4,000 generated documents, printed and corrupted", () => {
    const rnd = prng(7)
    const seen = { "not JSON": 0, mismatch: 0, value: 0 }
    for (let i = 0; i < 4000; i++) {
      let text = JSON.stringify(generated(rnd), null, [0, 0, 1, "\t"][i % 4])
      for (let edits = Math.floor(rnd() * 3); edits > 0; edits--) text = corrupt(rnd, text)
      const outcome = same(text)
      seen[typeof outcome === "string" ? outcome : "value"]++
    }
    // all three outcomes are well represented
    for (const [outcome, n] of Object.entries(seen)) assert.isAbove(n, 400, outcome)
  })

  it("reads the testbed kubelet's documents", () => {
    const pods = Array.from({ length: 3 }, (_, i) => ({
      name: `kernel-${i}`, namespace: "ns", uid: `u${i}`, startTime: "2026-11-30T22:00:00Z", containers: ["kernel"],
      usage: { cpuNs: 1e9 * i + 123, rssBytes: 1 << 20, pids: 2 }, cpuNanoCores: 5e6, rxBytes: 10 * i, txBytes: 3,
      workDir: undefined, workVolume: i === 1 ? undefined : "work", workBytes: 4096, logBytes: 100
    }))
    const doc = testbedSummary({ nodeName: "n1", startTime: "2026-11-30T22:00:00Z", memoryCapacity: 2 ** 34, fsRoot: "/tmp" }, pods)
    const outcome = same(JSON.stringify(doc))
    assert.notStrictEqual(typeof outcome, "string")
  })

  it("skips deeply nested values it does not read without using the call stack", () => {
    const deep = "[".repeat(100_000) + "]".repeat(100_000)
    same(`{"node":{"nodeName":"n","x":${deep}},"y":${deep}}`)
    same(`{"node":{"nodeName":"n","x":${deep}]}}`)
  })

  it("names the field that does not match; a syntax error is a SyntaxError", () => {
    const bad = (text: string) => (parseSummary(text) as SummaryMismatch).message
    assert.strictEqual(bad("[]"), "summary: expected an object")
    assert.strictEqual(bad("{\"pods\":[]}"), "summary.node: expected an object")
    assert.strictEqual(bad("{\"node\":{\"nodeName\":1}}"), "node.nodeName: expected a string")
    assert.strictEqual(bad("{\"node\":{\"nodeName\":\"n\",\"fs\":{\"usedBytes\":\"1\"}}}"), "fs.usedBytes: expected a number")
    assert.strictEqual(bad("{\"node\":{\"nodeName\":\"n\"},\"pods\":[{\"podRef\":{\"name\":\"p\",\"uid\":\"u\"}}]}"), "podRef.namespace: expected a string")
    assert.throws(() => parseSummary("{\"node\":{\"nodeName\":\"n\"}} x"), SyntaxError)
    assert.throws(() => parseSummary(""), SyntaxError)
  })
})
