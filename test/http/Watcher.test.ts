import * as NodeServices from "@effect/platform-node/NodeServices"
import { assert, describe, it } from "@effect/vitest"
import { vi } from "vitest"
import { Context, Effect, Layer } from "effect"
import { HttpServer } from "effect/http"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as https from "node:https"
import * as os from "node:os"
import * as path from "node:path"
import * as Watcher from "../../src/http/Watcher.ts"

/** Every `timingSafeEqual` call the code under test makes (the real function still answers). */
const timingSafeCalls = vi.hoisted(() => [] as Array<readonly [number, number]>)
vi.mock("node:crypto", async (importOriginal) => {
  const real = await importOriginal<typeof import("node:crypto")>()
  return {
    ...real,
    timingSafeEqual: (a: NodeJS.ArrayBufferView, b: NodeJS.ArrayBufferView) => {
      timingSafeCalls.push([a.byteLength, b.byteLength])
      return real.timingSafeEqual(a, b)
    }
  }
})

/** A fake `systemctl`: records its arguments (one line per call), prints `active` or fails on demand. */
const fakeSystemctl = (dir: string) => {
  const script = path.join(dir, "systemctl")
  fs.writeFileSync(
    script,
    `#!/bin/sh
echo "$@" >> "${dir}/calls"
case "$1" in
  is-active) if [ -f "${dir}/inactive" ]; then echo inactive; exit 3; fi; echo active ;;
  stop) if [ -f "${dir}/fail-stop" ]; then echo "Failed to stop $2: Access denied" >&2; exit 4; fi ;;
esac
exit 0
`,
    { mode: 0o755 }
  )
  return script
}

const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "bai-watcher-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

const calls = (dir: string) =>
  fs.existsSync(path.join(dir, "calls")) ? fs.readFileSync(path.join(dir, "calls"), "utf8").trim().split("\n") : []

interface Res {
  readonly status: number
  readonly json: any
  readonly server: string | null
}

const request = (url: string, method: string, token?: string) =>
  Effect.tryPromise(async (): Promise<Res> => {
    const res = await fetch(url, { method, headers: token === undefined ? {} : { "X-BackendAI-Watcher-Token": token } })
    const text = await res.text()
    return { status: res.status, json: text === "" ? undefined : JSON.parse(text), server: res.headers.get("server") }
  })

const startWatcher = (options: Partial<Watcher.WatcherServerOptions> & Pick<Watcher.WatcherServerOptions, "systemctl">) =>
  Effect.gen(function*() {
    const ctx = yield* Layer.build(
      Watcher.layerServer({
        host: "127.0.0.1",
        port: 0,
        targetService: "backendai-agent.service",
        softResetAvailable: false,
        token: Effect.succeed("s3cret"),
        ...options
      }).pipe(Layer.provide(NodeServices.layer))
    )
    const address = Context.get(ctx, HttpServer.HttpServer).address
    return "port" in address ? address.port : 0
  })

describe("Watcher", () => {
  it.live("checks the token, reports the agent status and controls the service through systemctl", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const port = yield* startWatcher({ systemctl: [fakeSystemctl(dir)] })
      const url = `http://127.0.0.1:${port}`

      // no token, wrong token, token of another length: 403 with the Server header
      for (const token of [undefined, "s3creT", "s3cret-and-more", ""]) {
        const r = yield* request(`${url}/`, "GET", token)
        assert.strictEqual(r.status, 403, `token ${token}`)
        assert.strictEqual(r.server, "BackendAI-AgentWatcher")
      }
      assert.deepStrictEqual(calls(dir), [], "nothing runs without the token")

      const status = yield* request(`${url}/`, "GET", "s3cret")
      assert.strictEqual(status.status, 200)
      assert.strictEqual(status.server, "BackendAI-AgentWatcher")
      assert.deepStrictEqual(status.json, { "agent-status": "active", "watcher-status": "active" })

      fs.writeFileSync(path.join(dir, "inactive"), "")
      const inactive = yield* request(`${url}/`, "GET", "s3cret")
      assert.deepStrictEqual(inactive.json, { "agent-status": "inactive", "watcher-status": "active" })

      for (const verb of ["start", "stop", "restart"]) {
        const r = yield* request(`${url}/agent/${verb}`, "POST", "s3cret")
        assert.strictEqual(r.status, 200)
        assert.deepStrictEqual(r.json, { result: "ok" })
      }
      fs.writeFileSync(path.join(dir, "fail-stop"), "")
      const failed = yield* request(`${url}/agent/stop`, "POST", "s3cret")
      assert.strictEqual(failed.status, 500)
      assert.deepStrictEqual(failed.json, { result: "failed", "exit-code": 4, message: "Failed to stop backendai-agent.service: Access denied" })

      // soft-reset is off; unknown paths and wrong methods are 404 (after the token check)
      assert.strictEqual((yield* request(`${url}/soft-reset`, "POST", "s3cret")).status, 404)
      assert.strictEqual((yield* request(`${url}/soft-reset`, "POST")).status, 403)
      const notFound = yield* request(`${url}/mounts`, "GET", "s3cret")
      assert.strictEqual(notFound.status, 404)
      assert.strictEqual(notFound.server, "BackendAI-AgentWatcher")

      assert.deepStrictEqual(calls(dir), [
        "is-active backendai-agent.service",
        "is-active backendai-agent.service",
        "start backendai-agent.service",
        "stop backendai-agent.service",
        "restart backendai-agent.service",
        "stop backendai-agent.service"
      ])
    }).pipe(Effect.scoped))

  it.live("soft-reset reloads when enabled", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const port = yield* startWatcher({
        systemctl: [fakeSystemctl(dir)],
        softResetAvailable: true,
        targetService: "bai.service"
      })
      const url = `http://127.0.0.1:${port}`
      assert.strictEqual((yield* request(`${url}/soft-reset`, "POST", "insecure")).status, 403)
      const r = yield* request(`${url}/soft-reset`, "POST", "s3cret")
      assert.strictEqual(r.status, 200)
      assert.deepStrictEqual(r.json, { result: "ok" })
      assert.deepStrictEqual(calls(dir), ["reload bai.service"])
    }).pipe(Effect.scoped))

  it.live("no token in etcd: every request is refused (no built-in default token), and an empty token is no token", () =>
    Effect.gen(function*() {
      for (const absent of [undefined, ""]) {
        const dir = yield* tempDir
        const port = yield* startWatcher({ systemctl: [fakeSystemctl(dir)], softResetAvailable: true, token: Effect.succeed(absent) })
        const url = `http://127.0.0.1:${port}`
        for (const token of [undefined, "insecure", "", "s3cret"]) {
          for (const [method, p] of [["GET", "/"], ["POST", "/agent/stop"], ["POST", "/soft-reset"], ["GET", "/nope"]] as const) {
            const r = yield* request(`${url}${p}`, method, token)
            assert.strictEqual(r.status, 403, `${method} ${p} with token ${token} (etcd ${absent})`)
            assert.strictEqual(r.server, "BackendAI-AgentWatcher")
          }
        }
        assert.deepStrictEqual(calls(dir), [], "nothing runs")
      }
    }).pipe(Effect.scoped))

  it.live("without systemctl it answers 200 with the not-loaded message", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const port = yield* startWatcher({ systemctl: [path.join(dir, "no-such-systemctl")] })
      const url = `http://127.0.0.1:${port}`
      for (const [method, p] of [["GET", "/"], ["POST", "/agent/restart"]] as const) {
        const r = yield* request(`${url}${p}`, method, "s3cret")
        assert.strictEqual(r.status, 200)
        assert.deepStrictEqual(r.json, { message: "Agent is not loaded with systemctl." })
      }
    }).pipe(Effect.scoped))

  it.live("answers 503 until the token could be read, then serves", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      let attempts = 0
      const port = yield* startWatcher({
        systemctl: [fakeSystemctl(dir)],
        token: Effect.suspend(() => (++attempts < 3 ? Effect.fail(new Error("etcd unavailable")) : Effect.succeed("late")))
      })
      const url = `http://127.0.0.1:${port}`
      let r = yield* request(`${url}/`, "GET", "late")
      while (r.status === 503) {
        yield* Effect.sleep("100 millis")
        r = yield* request(`${url}/`, "GET", "late")
      }
      assert.strictEqual(r.status, 200)
      assert.isAtLeast(attempts, 3)
    }).pipe(Effect.scoped))

  it.live("serves HTTPS with ssl-cert/ssl-privkey", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const key = path.join(dir, "key.pem")
      const cert = path.join(dir, "cert.pem")
      execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1"], {
        stdio: "ignore"
      })
      const port = yield* startWatcher({
        systemctl: [fakeSystemctl(dir)],
        tls: { cert: fs.readFileSync(cert), key: fs.readFileSync(key) }
      })
      const body = yield* Effect.tryPromise(() =>
        new Promise<{ status: number; body: string }>((resolve, reject) => {
          const req = https.request(
            { host: "127.0.0.1", port, path: "/", method: "GET", ca: fs.readFileSync(cert), rejectUnauthorized: false, headers: { "X-BackendAI-Watcher-Token": "s3cret" } },
            (res) => {
              let data = ""
              res.on("data", (c) => (data += c))
              res.on("end", () => resolve({ status: res.statusCode ?? 0, body: data }))
            }
          )
          req.on("error", reject)
          req.end()
        })
      )
      assert.strictEqual(body.status, 200)
      assert.deepStrictEqual(JSON.parse(body.body), { "agent-status": "active", "watcher-status": "active" })
    }).pipe(Effect.scoped))

  it("compares tokens in constant time over equal-length digests", () => {
    // the oracle is node's constant-time compare itself: every comparison, also of tokens of different
    // lengths, goes through crypto.timingSafeEqual over two equal-length digests (a plain === would
    // answer the same booleans without calling it)
    const cases: ReadonlyArray<readonly [string, string, boolean]> = [
      ["abc", "abc", true],
      ["abc", "abd", false],
      ["abc", "abcd", false],
      ["", "insecure", false],
      ["insecure", "insecure", true]
    ]
    for (const [given, expected, matches] of cases) {
      timingSafeCalls.length = 0
      assert.strictEqual(Watcher.tokenMatches(given, expected), matches, `${given} vs ${expected}`)
      assert.strictEqual(timingSafeCalls.length, 1, `${given} vs ${expected}: not compared with timingSafeEqual`)
      const [a, b] = timingSafeCalls[0]!
      assert.strictEqual(a, b)
      assert.isAtLeast(a, 32)
    }
  })
})
