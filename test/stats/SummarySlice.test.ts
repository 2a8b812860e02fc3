// summaryOfNamespaces: a Summary document cut to some namespaces' pods before JSON.parse. The oracle
// is the whole document parsed, its pods filtered, then checked (projectSummary): on generated
// documents (summaryDocs.ts, with random edits) in the kubelet's layouts (compact, go-restful's
// one-space indent, CRLF and tabs), the cut text must give the same summary whenever it is given, and
// be given for every untouched document; hand-made odd layouts must fall back (undefined).
import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import { projectSummary } from "../../src/stats/KubeletSummary.ts"
import { summaryOfNamespaces } from "../../src/stats/SummarySlice.ts"
import { generated, prng } from "./summaryDocs.ts"

const NAMESPACES = ["kernels", "tenants", "kube-system", "k\u00e9rnels"]

/** The oracle: the whole document parsed; a summary's pods (objects with a podRef namespace) filtered. */
const filteredWhole = (json: unknown, keep: ReadonlySet<string>): Result.Result<unknown, string> => {
  const doc = json as { pods?: unknown }
  if (typeof json === "object" && json !== null && Array.isArray(doc.pods)) {
    const pods = doc.pods.filter((p: any) => !(typeof p?.podRef?.namespace === "string") || keep.has(p.podRef.namespace))
    return projectSummary({ ...doc, pods })
  }
  return projectSummary(json)
}

/** Spreads the generated pods over namespaces (podRef objects only; the edits may have replaced some). */
const spread = (json: unknown, rnd: () => number): unknown => {
  const pods = (json as { pods?: unknown } | null)?.pods
  if (Array.isArray(pods)) {
    for (const p of pods) {
      const ref = (p as { podRef?: unknown } | null)?.podRef
      if (typeof ref === "object" && ref !== null && "namespace" in ref && typeof ref.namespace === "string") {
        ;(ref as { namespace: string }).namespace = NAMESPACES[Math.floor(rnd() * NAMESPACES.length)]!
      }
    }
  }
  return json
}

const layouts: ReadonlyArray<readonly [string, (v: unknown) => string]> = [
  ["compact", (v) => JSON.stringify(v)],
  ["one-space indent", (v) => JSON.stringify(v, null, 1)],
  ["CRLF and tabs", (v) => JSON.stringify(v, null, "\t").replaceAll("\n", "\r\n") + "\r\n"]
]

describe("summaryOfNamespaces", () => {
  it("gives what the whole document parsed and filtered gives (3 × 3,000 generated documents)", () => {
    for (const [layout, write] of layouts) {
      const rnd = prng(7)
      let cut = 0
      let untouchedCut = 0
      let untouched = 0
      for (let i = 0; i < 3000; i++) {
        const json = spread(generated(rnd), rnd)
        const keep = new Set(NAMESPACES.filter(() => rnd() < 0.5))
        const text = write(json)
        const sliced = summaryOfNamespaces(Buffer.from(text), keep)
        const want = filteredWhole(json, keep)
        const pods = (json as { pods?: unknown } | null)?.pods
        // a summary as the kubelet writes it: checks, has pods, `pods` its last key, podRefs of strings
        // only (an edit may add a key after `pods` or an object in a podRef: those fall back)
        const plain = Result.isSuccess(projectSummary(json)) && Array.isArray(pods) && pods.length > 0 &&
          Object.keys(json as object).at(-1) === "pods" &&
          pods.every((p) => Object.values((p as { podRef: object }).podRef).every((v) => typeof v === "string"))
        if (plain) untouched++
        if (sliced === undefined) continue
        cut++
        if (plain) untouchedCut++
        const got = projectSummary(JSON.parse(sliced))
        if (Result.isSuccess(want)) {
          if (Result.isFailure(got)) assert.fail(`${layout}: ${text} → ${sliced}: ${got.failure}`)
          assert.deepStrictEqual(got.success, want.success, `${layout}: ${text}`)
        } else {
          // only a left-out pod's fault may be forgiven: the whole-document check then failed at a pod
          if (Result.isSuccess(got)) assert.match(want.failure, /^pods\[\d+\]/, `${layout}: ${text}`)
        }
      }
      // the cut is taken for every well-formed summary with pods, not just sometimes
      assert.strictEqual(untouchedCut, untouched, layout)
      assert.isAbove(untouched, 500, layout)
      assert.isAbove(cut, untouched, layout)
    }
  })

  it("keeps only the wanted pods' text, byte for byte", () => {
    const doc = {
      node: { nodeName: "n", cpu: { usageNanoCores: 1 } },
      pods: [
        { podRef: { name: "a", namespace: "tenants", uid: "1" }, cpu: { usageNanoCores: 2 } },
        { podRef: { name: "k\u00e9", namespace: "kernels", uid: "2" }, volume: [{ name: "v\u2028", usedBytes: 1e21 }] },
        { podRef: { name: "c", namespace: "tenants", uid: "3" }, containers: [{ name: "x" }] }
      ]
    }
    const text = JSON.stringify(doc, null, 1)
    const sliced = summaryOfNamespaces(Buffer.from("\ufeff" + text), new Set(["kernels"]))
    assert.deepStrictEqual(JSON.parse(sliced!), { node: doc.node, pods: [doc.pods[1]] })
    assert.deepStrictEqual(JSON.parse(summaryOfNamespaces(Buffer.from(text), new Set())!), { node: doc.node, pods: [] })
    assert.deepStrictEqual(JSON.parse(summaryOfNamespaces(Buffer.from(text), new Set(["tenants", "kernels"]))!), doc)
  })

  it("falls back (undefined) on any other layout", () => {
    const ns = new Set(["ns"])
    const cut = (s: string) => summaryOfNamespaces(Buffer.from(s), ns)
    const pod = `{"podRef":{"name":"p","namespace":"ns","uid":"u"}}`
    assert.isDefined(cut(`{"node":{"nodeName":"n"},"pods":[${pod},${pod}]}`))
    // no pods at all, an empty list, pods not the last key, trailing bytes, a truncated document
    assert.isUndefined(cut(`{"node":{"nodeName":"n"}}`))
    assert.isUndefined(cut(`{"node":{"nodeName":"n"},"pods":[]}`))
    assert.isUndefined(cut(`{"pods":[${pod}],"node":{"nodeName":"n"}}`))
    assert.isUndefined(cut(`{"node":{"nodeName":"n"},"pods":[${pod}]}x`))
    assert.isUndefined(cut(`{"node":{"nodeName":"n"},"pods":[${pod},${pod.slice(0, 30)}`))
    // "podRef" not as a pod's first key, or as a value; the array under another key
    assert.isUndefined(cut(`{"node":{"nodeName":"n"},"pods":[{"cpu":{},"podRef":{"name":"p","namespace":"ns","uid":"u"}}]}`))
    assert.isUndefined(cut(`{"node":{"nodeName":"n","x":"podRef"},"pods":[${pod}]}`))
    assert.isUndefined(cut(`{"node":{"nodeName":"n"},"other":[${pod}]}`))
    // a second pod glued without a comma; a duplicate podRef key
    assert.isUndefined(cut(`{"node":{"nodeName":"n"},"pods":[${pod} ${pod}]}`))
    assert.isUndefined(cut(`{"node":{"nodeName":"n"},"pods":[{"podRef":{"name":"p","namespace":"ns","uid":"u"},"podRef":{}}]}`))
    // a podRef that does not parse, holds a `}` in a string, or has no string namespace
    assert.isUndefined(cut(`{"node":{"nodeName":"n"},"pods":[{"podRef":{"name":"p}","namespace":"ns","uid":"u"}}]}`))
    assert.isUndefined(cut(`{"node":{"nodeName":"n"},"pods":[{"podRef":{"name":"p","namespace":1,"uid":"u"}}]}`))
    assert.isUndefined(cut(`{"node":{"nodeName":"n"},"pods":[{"podRef":[]}]}`))
  })
})
