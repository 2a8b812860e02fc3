// The watcher process end to end: `node src/watcher.ts -f agent.toml` reads [watcher] and the token
// from the testbed's real etcd, and runs a fake `systemctl` found on PATH.
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { inject } from "vitest"
import { freshEtcdNamespace, type TestbedEnv } from "../testbed/env.ts"
import { freePort } from "../testbed/ports.ts"

const env: TestbedEnv = inject("testbed")

const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "bai-watcher-int-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

const startProcess = (args: ReadonlyArray<string>, extraEnv: Record<string, string>, log: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const out = fs.openSync(log, "a")
      return spawn(process.execPath, ["src/watcher.ts", ...args], { env: { ...process.env, ...extraEnv }, stdio: ["ignore", out, out] })
    }),
    (child) =>
      Effect.callback<void>((resume) => {
        if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
        child.once("exit", () => resume(Effect.void))
        child.kill("SIGTERM")
      })
  )

const get = (url: string, token: string, method = "GET") =>
  Effect.tryPromise(async () => {
    const res = await fetch(url, { method, headers: { "X-BackendAI-Watcher-Token": token } })
    return { status: res.status, json: await res.json() as unknown, server: res.headers.get("server") }
  })

describe("watcher process", () => {
  it.live("serves GET / and POST /agent/restart with the etcd token and systemctl from PATH; exits 0 on SIGTERM", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const ns = yield* Effect.promise(() => freshEtcdNamespace(env, "w"))
      const port = yield* Effect.promise(() => freePort())
      const bin = path.join(dir, "bin")
      fs.mkdirSync(bin)
      fs.writeFileSync(path.join(bin, "systemctl"), `#!/bin/sh\necho "$@" >> "${dir}/calls"\n[ "$1" = is-active ] && echo active\nexit 0\n`, { mode: 0o755 })
      const toml = path.join(dir, "agent.toml")
      fs.writeFileSync(
        toml,
        `[etcd]\nnamespace = "${ns}"\naddr = "${env.etcd}"\n[watcher]\nservice-addr = "127.0.0.1:${port}"\ntarget-service = "bai-test.service"\n`
      )
      const log = path.join(dir, "watcher.log")
      const child = yield* startProcess(["-f", toml], { PATH: `${bin}:${process.env.PATH}` }, log)

      const url = `http://127.0.0.1:${port}`
      let status: { status: number; json: unknown; server: string | null } | undefined
      for (let i = 0; i < 300 && status?.status !== 200; i++) {
        status = yield* get(`${url}/`, env.watcherToken).pipe(Effect.orElseSucceed(() => undefined))
        if (status?.status !== 200) yield* Effect.sleep("100 millis")
      }
      assert.strictEqual(status?.status, 200, fs.readFileSync(log, "utf8"))
      assert.deepStrictEqual(status?.json, { "agent-status": "active", "watcher-status": "active" })
      assert.strictEqual(status?.server, "BackendAI-AgentWatcher")
      assert.strictEqual((yield* get(`${url}/`, "insecure")).status, 403)
      assert.deepStrictEqual((yield* get(`${url}/agent/restart`, env.watcherToken, "POST")).json, { result: "ok" })
      assert.deepStrictEqual(fs.readFileSync(path.join(dir, "calls"), "utf8").trim().split("\n"), [
        "is-active bai-test.service",
        "restart bai-test.service"
      ])

      const code = yield* Effect.callback<number | null>((resume) => {
        child.once("exit", (c) => resume(Effect.succeed(c)))
        child.kill("SIGTERM")
      })
      assert.strictEqual(code, 0, fs.readFileSync(log, "utf8"))
    }).pipe(Effect.scoped), { timeout: 120_000 })
})
