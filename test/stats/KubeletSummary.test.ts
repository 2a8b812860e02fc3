// KubeletSummary against a real HTTP socket standing in for the API server's node proxy (the
// kubeconfig's token must arrive; status, size and silence are provoked): the summary's decoding,
// the status → KubeError mapping, the size bound and the time bound.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Result, Schema } from "effect"
import * as fs from "node:fs"
import * as http from "node:http"
import * as os from "node:os"
import * as path from "node:path"
import { KubeClient } from "../../src/kube/KubeClient.ts"
import { generated, prng } from "./summaryDocs.ts"
import { KubeletSummary, MAX_SUMMARY_BYTES, projectSummary, Summary } from "../../src/stats/KubeletSummary.ts"

interface Seen { readonly url: string; readonly authorization: string | undefined }

/** A fake node proxy answering with `handler`; a KubeletSummary whose kubeconfig points at it. */
const setup = (handler: (req: http.IncomingMessage, res: http.ServerResponse) => void, timeoutSeconds = 5) =>
  Effect.gen(function*() {
    const seen: Array<Seen> = []
    const sockets = new Set<import("node:net").Socket>()
    const server = yield* Effect.acquireRelease(
      Effect.callback<http.Server>((resume) => {
        const s = http.createServer((req, res) => {
          seen.push({ url: req.url ?? "", authorization: req.headers.authorization })
          handler(req, res)
        })
        s.on("connection", (c) => { sockets.add(c); c.on("close", () => sockets.delete(c)) })
        s.listen(0, "127.0.0.1", () => resume(Effect.succeed(s)))
      }),
      (s) => Effect.sync(() => { for (const c of sockets) c.destroy(); s.close() })
    )
    const port = (server.address() as { port: number }).port
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kubelet-summary-"))
    yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true })))
    const kubeconfig = path.join(dir, "kubeconfig")
    fs.writeFileSync(kubeconfig, JSON.stringify({
      apiVersion: "v1", kind: "Config", "current-context": "c",
      clusters: [{ name: "k", cluster: { server: `http://127.0.0.1:${port}`, "insecure-skip-tls-verify": true } }],
      users: [{ name: "u", user: { token: "node-proxy-token" } }],
      contexts: [{ name: "c", context: { cluster: "k", user: "u" } }]
    }))
    const kube = yield* KubeClient.make({ kubeconfig, requestTimeoutSeconds: 5 })
    const summaries = yield* KubeletSummary.make({ timeoutSeconds }).pipe(Effect.provideService(KubeClient, kube))
    return { seen, summaries }
  })

const summary = {
  node: { nodeName: "n1", cpu: { usageNanoCores: 5 }, memory: { workingSetBytes: 7 } },
  pods: [{ podRef: { name: "p", namespace: "ns", uid: "u1" }, network: { rxBytes: 1, txBytes: 2 } }]
}

describe("KubeletSummary", () => {
  it.live("reads the node proxy's summary with the kubeconfig's credentials and decodes it", () =>
    Effect.gen(function*() {
      const { seen, summaries } = yield* setup((_req, res) => {
        res.writeHead(200, { "content-type": "application/json" })
        res.end(JSON.stringify(summary))
      })
      const s = yield* summaries.fetch("n1")
      assert.deepStrictEqual(s, summary)
      assert.deepStrictEqual(seen, [{ url: "/api/v1/nodes/n1/proxy/stats/summary", authorization: "Bearer node-proxy-token" }])
    }).pipe(Effect.scoped))

  it.live("maps the answer's status to the KubeError reason", () =>
    Effect.gen(function*() {
      const status = { n404: 404, n403: 403, n503: 503 } as Record<string, number>
      const { summaries } = yield* setup((req, res) => {
        res.writeHead(status[req.url!.split("/")[4]!] ?? 500)
        res.end("nope")
      })
      for (const [node, reason] of [["n404", "NotFound"], ["n403", "Forbidden"], ["n503", "Unavailable"]] as const) {
        const e = yield* Effect.flip(summaries.fetch(node))
        assert.strictEqual(e.reason, reason, node)
        assert.strictEqual(e.message, "nope")
      }
    }).pipe(Effect.scoped))

  it.live("an answer larger than MAX_SUMMARY_BYTES fails instead of being buffered", () =>
    Effect.gen(function*() {
      const { summaries } = yield* setup((_req, res) => {
        res.writeHead(200, { "content-type": "application/json" })
        // a well-formed summary, just too large
        res.end(JSON.stringify({ ...summary, padding: "x".repeat(MAX_SUMMARY_BYTES) }))
      })
      const e = yield* Effect.flip(summaries.fetch("n1"))
      assert.strictEqual(e.reason, "Other")
      assert.match(e.message, /at most \d+ bytes/)
    }).pipe(Effect.scoped))

  it.live("malformed and unusual bodies: accepted, refused as not JSON or as not a summary exactly as JSON.parse + the Summary schema", () =>
    Effect.gen(function*() {
      const pod = "{\"podRef\":{\"name\":\"p\",\"namespace\":\"ns\",\"uid\":\"u\"},\"cpu\":{\"usageCoreNanoSeconds\":5}}"
      const bodies: ReadonlyArray<string | Buffer> = [
        `{"node":{"nodeName":"n","x":[1,{"y":null}]},"pods":[${pod}],"extra":"\u00e9"}`,
        `{"node":{"nodeName":"n"},"pods":[${pod}]`, // truncated
        `{"node":{"nodeName":"n"}} {}`, // trailing garbage
        `{"node":{"nodeName":1}}`,
        `{"node":{"nodeName":"n"},"pods":[${pod},{"podRef":{"name":"q","uid":"u"}}]}`,
        `{"node":{"nodeName":"n","cpu":{"usageNanoCores":"5"}}}`,
        `{"node":{"nodeName":"n","cpu":{"usageNanoCores":1},"cpu":{"usageNanoCores":2}}}`, // the last wins
        `{"node":{"nodeName":"n","cpu":{"usageNanoCores":01}}}`,
        `{"node":{"nodeName":"n","cpu":{"usageNanoCores":1e400}}}`,
        `{"node":{"nodeName":"n\ud800"},"pods":null}`,
        `[]`, `null`, ``, ` `, `{"node":{"nodeName":"n"},"pods":{}}`,
        Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(`{"node":{"nodeName":"n"}}`)]), // a UTF-8 BOM
        Buffer.concat([Buffer.from(`{"node":{"nodeName":"n`), Buffer.from([0xff, 0xc3]), Buffer.from(`"}}`)]), // not UTF-8 in a string
        Buffer.concat([Buffer.from(`{"node":{"nodeName":"n"}`), Buffer.from([0xff]), Buffer.from(`}`)]) // not UTF-8 outside
      ]
      let index = 0
      const { summaries } = yield* setup((_req, res) => {
        res.writeHead(200, { "content-type": "application/json" })
        res.end(bodies[index])
      })
      const decode = Schema.decodeUnknownResult(Summary)
      // the same with the pods' namespace asked for (all these pods are in it or broken): the same outcomes
      for (const namespaces of [undefined, new Set(["ns"])]) for (index = 0; index < bodies.length; index++) {
        const body = bodies[index]!
        const text = typeof body === "string" ? body : new TextDecoder().decode(body)
        let want: string | { readonly value: unknown }
        try {
          const r = decode(JSON.parse(text))
          want = Result.isSuccess(r) ? { value: r.success } : "unexpected summary"
        } catch {
          want = "not JSON"
        }
        const got = yield* summaries.fetch("n1", namespaces).pipe(
          Effect.map((value): string | { readonly value: unknown } => ({ value })),
          Effect.catch((e) => Effect.succeed(e.message.startsWith("not JSON") ? "not JSON" : e.message.startsWith("unexpected summary") ? "unexpected summary" : e.message))
        )
        assert.deepStrictEqual(got, want, `${String(body)} (namespaces ${namespaces === undefined ? "all" : "ns"})`)
      }
    }).pipe(Effect.scoped))

  it.live("with namespaces: only their pods, the others not parsed (a broken foreign pod does not fail the read)", () =>
    Effect.gen(function*() {
      const pod = (name: string, namespace: string, cpu: unknown) => ({ podRef: { name, namespace, uid: name }, cpu: { usageNanoCores: cpu } })
      const doc = { node: summary.node, pods: [pod("a", "tenants", "not a number"), pod("k", "kernels", 5), pod("b", "tenants", 1)] }
      const { summaries } = yield* setup((_req, res) => {
        res.writeHead(200, { "content-type": "application/json" })
        res.end(JSON.stringify(doc, null, 1)) // go-restful's layout: one-space indent
      })
      assert.deepStrictEqual(yield* summaries.fetch("n1", new Set(["kernels"])), { node: summary.node, pods: [doc.pods[1]!] } as Summary)
      assert.deepStrictEqual(yield* summaries.fetch("n1", new Set()), { node: summary.node, pods: [] })
      const e = yield* Effect.flip(summaries.fetch("n1"))
      assert.match(e.message, /^unexpected summary: pods\[0\]\.cpu\.usageNanoCores/)
    }).pipe(Effect.scoped))

  it.live("with namespaces, a layout the cut does not take (parsed whole) still answers only their pods", () =>
    Effect.gen(function*() {
      const pod = (name: string, namespace: string) => ({ podRef: { name, namespace, uid: name }, cpu: { usageNanoCores: 1 } })
      // `pods` before `node`: not the kubelet's layout, so the whole document is parsed
      const doc = { pods: [pod("a", "tenants"), pod("k", "kernels")], node: summary.node }
      const { summaries } = yield* setup((_req, res) => {
        res.writeHead(200, { "content-type": "application/json" })
        res.end(JSON.stringify(doc))
      })
      assert.deepStrictEqual(yield* summaries.fetch("n1", new Set(["kernels"])), { node: summary.node, pods: [pod("k", "kernels")] } as Summary)
      assert.strictEqual((yield* summaries.fetch("n1")).pods?.length, 2)
    }).pipe(Effect.scoped))

  it.live("a node proxy that never answers fails with Timeout", () =>
    Effect.gen(function*() {
      const { summaries } = yield* setup(() => { /* never answers */ }, 1)
      const e = yield* Effect.flip(summaries.fetch("n1"))
      assert.strictEqual(e.reason, "Timeout")
    }).pipe(Effect.scoped))
})

// projectSummary is the Summary schema's decoding by hand (the stats loop's hot path): the Schema is
// the oracle, on generated documents (summaryDocs.ts).
describe("projectSummary", () => {
  const decode = Schema.decodeUnknownResult(Summary)

  it("accepts exactly what the Summary schema accepts and gives the same value (5,000 generated documents)", () => {
    const rnd = prng(42)
    let accepted = 0
    for (let i = 0; i < 5000; i++) {
      const json = generated(rnd)
      const want = decode(json)
      const got = projectSummary(json)
      if (Result.isSuccess(want)) {
        accepted++
        if (Result.isFailure(got)) assert.fail(`${JSON.stringify(json)}: ${got.failure}`)
        assert.deepStrictEqual(got.success, want.success, JSON.stringify(json))
      } else {
        assert.isTrue(Result.isFailure(got), `${JSON.stringify(json)} is not a Summary: ${want.failure.message}`)
      }
    }
    // both outcomes are well represented
    assert.isAbove(accepted, 1000)
    assert.isBelow(accepted, 4000)
  })

  it("names the first field that does not match", () => {
    const bad = (json: unknown) => Result.match(projectSummary(json), { onFailure: (problem) => problem, onSuccess: () => "accepted" })
    assert.strictEqual(bad([]), "summary: expected an object")
    assert.strictEqual(bad({ pods: [] }), "node: expected an object")
    assert.strictEqual(bad({ node: { nodeName: 1 } }), "node.nodeName: expected a string")
    assert.strictEqual(bad({ node: { nodeName: "n", fs: { usedBytes: "1" } } }), "node.fs.usedBytes: expected a number")
    assert.strictEqual(bad({ node: { nodeName: "n" }, pods: {} }), "pods: expected an array")
    const pod = { podRef: { name: "p", namespace: "ns", uid: "u" } }
    assert.strictEqual(bad({ node: { nodeName: "n" }, pods: [pod, { ...pod, cpu: { usageCoreNanoSeconds: null } }] }), "pods[1].cpu.usageCoreNanoSeconds: expected a number")
    assert.strictEqual(bad({ node: { nodeName: "n" }, pods: [{ podRef: { name: "p", uid: "u" } }] }), "pods[0].podRef: expected name, namespace and uid strings")
    assert.strictEqual(bad({ node: { nodeName: "n" }, pods: [{ ...pod, volume: [{ name: "v" }, { usedBytes: 1 }] }] }), "pods[0].volume[1]: expected an object with a name")
    assert.strictEqual(bad({ node: { nodeName: "n" }, pods: [{ ...pod, volume: [{ name: "v", usedBytes: [] }] }] }), "pods[0].volume[0].usedBytes: expected a number")
    assert.strictEqual(bad({ node: { nodeName: "n" }, pods: [{ ...pod, "ephemeral-storage": [] }] }), "pods[0].ephemeral-storage: expected an object")
  })
})
