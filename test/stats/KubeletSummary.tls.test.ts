// KubeletSummary against a real local HTTPS server standing in for the API server's node proxy, with a
// kubeconfig whose CA, client certificate and key are files (as an admin kubeconfig has them): the TLS
// material and the token arrive, the connections are kept alive across reads, an answer over
// MAX_SUMMARY_BYTES is cut while it streams (declared or not), a node that stops mid-answer times out
// and its request is aborted, a connection lost mid-answer fails the read, and an exec user's rotating
// token is asked for on every read.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schedule } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import type * as http from "node:http"
import * as https from "node:https"
import type * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import type * as tls from "node:tls"
import { KubeClient } from "../../src/kube/KubeClient.ts"
import { KubeletSummary, MAX_SUMMARY_BYTES } from "../../src/stats/KubeletSummary.ts"

const summary = {
  node: { nodeName: "n1", cpu: { usageNanoCores: 5 } },
  pods: [{ podRef: { name: "p", namespace: "ns", uid: "u1" }, memory: { workingSetBytes: 7 } }]
}

/** A fresh directory, removed when the scope closes. */
const tempDir = (prefix: string) =>
  Effect.acquireRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), prefix))),
    (d) => Effect.sync(() => fs.rmSync(d, { recursive: true, force: true }))
  )

/** A self-signed certificate for 127.0.0.1 (its own CA) and a client certificate, as PEM files in `dir`. */
const certificates = (dir: string) => {
  const make = (name: string, subject: string, san: string | undefined) => {
    const key = path.join(dir, `${name}.key`), cert = path.join(dir, `${name}.crt`)
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
      "-days", "1", "-subj", subject, ...(san === undefined ? [] : ["-addext", `subjectAltName=${san}`])
    ], { stdio: "ignore" })
    return { key, cert }
  }
  return { server: make("server", "/CN=127.0.0.1", "IP:127.0.0.1"), client: make("client", "/CN=agent", undefined) }
}

interface Seen {
  readonly url: string
  readonly authorization: string | undefined
  /** the client presented the certificate the server trusts */
  readonly clientCertificate: boolean
}

/** What the server saw and did: requests, TLS connections accepted and closed, answers closed and their bytes. */
interface Server {
  readonly seen: Array<Seen>
  readonly connections: { opened: number; closed: number }
  readonly answers: Array<{ closed: boolean; bytes: number }>
}

/** The kubeconfig user's credentials (next to its client certificate and key files). */
type User = { readonly token: string } | { readonly exec: string } | { readonly tokenFile: string }

/** A node proxy answering with `handler` over TLS; a KubeletSummary whose kubeconfig trusts it by CA file. */
const setup = (
  handler: (req: http.IncomingMessage, res: http.ServerResponse, answer: { closed: boolean; bytes: number }) => void,
  options: { readonly timeoutSeconds?: number; readonly user?: User } = {}
) =>
  Effect.gen(function*() {
    const dir = yield* tempDir("kubelet-summary-tls-")
    const pki = certificates(dir)
    const state: Server = { seen: [], connections: { opened: 0, closed: 0 }, answers: [] }
    const sockets = new Set<net.Socket>()
    const server = yield* Effect.acquireRelease(
      Effect.callback<https.Server>((resume) => {
        const s = https.createServer({
          key: fs.readFileSync(pki.server.key),
          cert: fs.readFileSync(pki.server.cert),
          ca: fs.readFileSync(pki.client.cert),
          requestCert: true,
          rejectUnauthorized: false
        }, (req, res) => {
          const answer = { closed: false, bytes: 0 }
          state.answers.push(answer)
          res.on("close", () => { answer.closed = true })
          state.seen.push({ url: req.url ?? "", authorization: req.headers.authorization, clientCertificate: (req.socket as tls.TLSSocket).authorized })
          handler(req, res, answer)
        })
        s.on("secureConnection", (c) => {
          state.connections.opened++
          sockets.add(c)
          c.on("close", () => { state.connections.closed++; sockets.delete(c) })
        })
        s.listen(0, "127.0.0.1", () => resume(Effect.succeed(s)))
      }),
      (s) => Effect.sync(() => { for (const c of sockets) c.destroy(); s.close() })
    )
    const port = (server.address() as net.AddressInfo).port
    const user = options.user ?? { token: "node-proxy-token" }
    const kubeconfig = path.join(dir, "kubeconfig")
    fs.writeFileSync(kubeconfig, JSON.stringify({
      apiVersion: "v1", kind: "Config", "current-context": "c",
      clusters: [{ name: "k", cluster: { server: `https://127.0.0.1:${port}`, "certificate-authority": pki.server.cert } }],
      users: [{
        name: "u",
        user: {
          "client-certificate": pki.client.cert,
          "client-key": pki.client.key,
          ...("token" in user
            ? { token: user.token }
            : "exec" in user
            ? { exec: { apiVersion: "client.authentication.k8s.io/v1beta1", command: user.exec } }
            : { "auth-provider": { name: "tokenFile", config: { tokenFile: user.tokenFile } } })
        }
      }],
      contexts: [{ name: "c", context: { cluster: "k", user: "u" } }]
    }))
    const kube = yield* KubeClient.make({ kubeconfig, requestTimeoutSeconds: 5 })
    const summaries = yield* KubeletSummary.make({ timeoutSeconds: options.timeoutSeconds ?? 5 }).pipe(Effect.provideService(KubeClient, kube))
    return { state, summaries, dir }
  })

/** Waits (bounded) until `condition` holds. */
const eventually = (what: string, condition: () => boolean) =>
  Effect.suspend(() => (condition() ? Effect.void : Effect.fail(what))).pipe(
    Effect.retry({ schedule: Schedule.spaced("20 millis"), times: 250 }),
    Effect.orDie
  )

/** Writes `chunk` to `res` whenever it drains, until the client goes away. */
const endless = (res: http.ServerResponse, answer: { bytes: number }, chunk: Buffer) => {
  const pump = () => {
    while (!res.destroyed) {
      answer.bytes += chunk.length
      if (!res.write(chunk)) return void res.once("drain", pump)
    }
  }
  pump()
}

describe("KubeletSummary over TLS", () => {
  it.live("reads with the kubeconfig's CA, client certificate and token, over kept-alive connections", () =>
    Effect.gen(function*() {
      const { state, summaries } = yield* setup((_req, res) => {
        res.writeHead(200, { "content-type": "application/json" })
        res.end(JSON.stringify(summary))
      })
      const got = yield* Effect.forEach(Array.from({ length: 40 }), (_, i) => summaries.fetch(`n${i % 3}`), { concurrency: 4 })
      for (const s of got) assert.deepStrictEqual(s, summary)
      assert.strictEqual(state.seen.length, 40)
      // in any order (4 at a time)
      const urls = state.seen.map((s) => s.url).sort()
      assert.deepStrictEqual(urls, Array.from({ length: 40 }, (_, i) => `/api/v1/nodes/n${i % 3}/proxy/stats/summary`).sort())
      for (const s of state.seen) assert.deepStrictEqual({ ...s, url: "" }, { url: "", authorization: "Bearer node-proxy-token", clientCertificate: true })
      // 4 at a time: at most 4 connections, each kept for the next reads
      assert.isAtMost(state.connections.opened, 4)
      assert.strictEqual(state.connections.closed, 0)
    }).pipe(Effect.scoped))

  it.live("an endless answer is cut at MAX_SUMMARY_BYTES: the read fails with Other and the connection is closed", () =>
    Effect.gen(function*() {
      const { state, summaries } = yield* setup((_req, res, answer) => {
        res.writeHead(200, { "content-type": "application/json" })
        endless(res, answer, Buffer.alloc(256 * 1024, 0x20))
      }, { timeoutSeconds: 60 })
      const e = yield* Effect.flip(summaries.fetch("n1"))
      assert.strictEqual(e.reason, "Other")
      assert.match(e.message, /at most \d+ bytes/)
      yield* eventually("the server sees the answer closed", () => state.answers[0]?.closed === true)
      // the client stopped reading at the bound (plus what the socket buffers held)
      assert.isBelow(state.answers[0]!.bytes, MAX_SUMMARY_BYTES + 8 * 2 ** 20)
    }).pipe(Effect.scoped))

  it.live("a declared Content-Length over MAX_SUMMARY_BYTES fails at once, without waiting for the body", () =>
    Effect.gen(function*() {
      const { state, summaries } = yield* setup((_req, res) => {
        res.writeHead(200, { "content-type": "application/json", "content-length": String(MAX_SUMMARY_BYTES + 1) })
        res.write("{") // and nothing more: only the header can tell
      }, { timeoutSeconds: 60 })
      const e = yield* Effect.flip(summaries.fetch("n1"))
      assert.strictEqual(e.reason, "Other")
      assert.match(e.message, /at most \d+ bytes/)
      yield* eventually("the server sees the answer closed", () => state.answers[0]?.closed === true)
    }).pipe(Effect.scoped))

  it.live("a node proxy that stops mid-answer fails with Timeout and the request is aborted", () =>
    Effect.gen(function*() {
      const { state, summaries } = yield* setup((_req, res) => {
        res.writeHead(200, { "content-type": "application/json" })
        res.write("{\"node\":") // and then silence
      }, { timeoutSeconds: 1 })
      const e = yield* Effect.flip(summaries.fetch("n1"))
      assert.strictEqual(e.reason, "Timeout")
      yield* eventually("the server sees the answer closed", () => state.answers[0]?.closed === true)
      yield* eventually("the connection closed", () => state.connections.closed === 1)
    }).pipe(Effect.scoped))

  it.live("a connection lost mid-answer fails the read with Unavailable", () =>
    Effect.gen(function*() {
      const { summaries } = yield* setup((_req, res) => {
        res.writeHead(200, { "content-type": "application/json" })
        res.write("{\"node\":", () => res.socket?.destroy())
      })
      const e = yield* Effect.flip(summaries.fetch("n1"))
      assert.strictEqual(e.reason, "Unavailable")
    }).pipe(Effect.scoped))

  it.live("an exec user's token is asked for on every read (rotating credentials are not cached)", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("kubelet-summary-exec-")
      // a credential plugin whose token changes on every call and has already expired (never cached)
      const plugin = path.join(dir, "token.sh")
      fs.writeFileSync(plugin, [
        "#!/bin/sh",
        `n=$(cat "${dir}/count" 2>/dev/null || echo 0); n=$((n + 1)); echo $n > "${dir}/count"`,
        `printf '{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{"token":"t-%s","expirationTimestamp":"2000-01-01T00:00:00Z"}}' $n`
      ].join("\n"), { mode: 0o755 })
      const { state, summaries } = yield* setup((_req, res) => {
        res.writeHead(200, { "content-type": "application/json" })
        res.end(JSON.stringify(summary))
      }, { user: { exec: plugin } })
      for (let i = 0; i < 3; i++) yield* summaries.fetch("n1")
      const tokens = state.seen.map((s) => s.authorization)
      // each read carries a newer token than the one before
      const numbers = tokens.map((t) => Number(/^Bearer t-(\d+)$/.exec(t ?? "")?.[1]))
      assert.strictEqual(numbers.length, 3, String(tokens))
      for (const n of numbers) assert.isFalse(Number.isNaN(n), String(tokens))
      assert.isAbove(numbers[1]!, numbers[0]!)
      assert.isAbove(numbers[2]!, numbers[1]!)
      // the TLS material still comes from the kubeconfig
      for (const s of state.seen) assert.isTrue(s.clientCertificate)
    }).pipe(Effect.scoped))

  it.live("a token-file user (the in-cluster service account's shape) reads with the file's token and the client certificate", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("kubelet-summary-token-file-")
      const tokenFile = path.join(dir, "token")
      fs.writeFileSync(tokenFile, "from-the-file")
      const { state, summaries } = yield* setup((_req, res) => {
        res.writeHead(200, { "content-type": "application/json" })
        res.end(JSON.stringify(summary))
      }, { user: { tokenFile } })
      assert.deepStrictEqual(yield* summaries.fetch("n1"), summary)
      assert.deepStrictEqual(state.seen, [{ url: "/api/v1/nodes/n1/proxy/stats/summary", authorization: "Bearer from-the-file", clientCertificate: true }])
    }).pipe(Effect.scoped))
})
