import * as NodeServices from "@effect/platform-node/NodeServices"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { execFileSync, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { decodeConfigText, loadConfig } from "../../src/config/AgentConfig.ts"

const node = process.execPath
const main = path.resolve("dist/main.js")
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "bai-config-"))
const write = (name: string, text: string) => {
  const p = path.join(tmp, name)
  fs.writeFileSync(p, text)
  return p
}
const cli = (...args: Array<string>) => spawnSync(node, [main, ...args], { encoding: "utf8", env: { ...process.env, BACKEND_CONFIG_FILE: "" } })

describe("agent.toml", () => {
  it.effect("config/sample.toml and config/halfstack.toml parse and validate", () =>
    Effect.gen(function*() {
      for (const f of ["config/sample.toml", "config/halfstack.toml"]) {
        const loaded = yield* loadConfig(f, {})
        assert.deepStrictEqual(loaded.warnings, [], `${f} has unknown keys`)
        assert.strictEqual(loaded.config.etcd.namespace, "local")
      }
      const half = yield* loadConfig("config/halfstack.toml", {})
      assert.deepStrictEqual(half.config.agent["rpc-listen-addr"], { host: "127.0.0.1", port: 6001 })
      assert.strictEqual(half.config.debug["heartbeat-interval"], 3)
    }).pipe(Effect.provide(NodeServices.layer)))

  it.effect("defaults, units, agent id from the hostname, unknown keys as warnings", () =>
    Effect.gen(function*() {
      const loaded = yield* decodeConfigText(
        "x.toml",
        `[etcd]\nnamespace = "ns"\naddr = "10.0.0.1:2379"\n[container]\ncreate-timeout = "90s"\nscratch-size = "10Gi"\nmystery = 1\n[shiny]\nx = 1\n`,
        {},
        "box"
      )
      assert.strictEqual(loaded.agentId, "i-box")
      assert.strictEqual(loaded.region, "local")
      assert.deepStrictEqual(loaded.config.etcd.addr, { host: "10.0.0.1", port: 2379 })
      assert.strictEqual(loaded.config.container["create-timeout"], 90)
      assert.strictEqual(loaded.config.container["scratch-size"], 10 * 1024 ** 3)
      assert.deepStrictEqual(loaded.config.container["port-range"], [30000, 31000])
      assert.strictEqual(loaded.config.kubernetes.namespace, "backend-ai")
      assert.strictEqual(loaded.config.kubernetes.registry["pull-secret"], "backend-ai-registry-secret")
      assert.deepStrictEqual(loaded.warnings, ["x.toml: unknown key container.mystery (ignored)", "x.toml: unknown key shiny (ignored)"])
    }))

  it.effect("environment overrides of spec §4.3 apply before validation", () =>
    Effect.gen(function*() {
      const loaded = yield* decodeConfigText("x.toml", `[etcd]\nnamespace = "file"\n`, {
        BACKEND_NAMESPACE: "env-ns",
        BACKEND_ETCD_ADDR: "127.0.0.9:1234",
        BACKEND_AGENT_HOST_OVERRIDE: "10.1.2.3",
        BACKEND_AGENT_PORT: "7001",
        BACKEND_CONTAINER_PORT_RANGE: "32000-32100",
        BACKEND_SCRATCH_ROOT: "/srv/scratch",
        BACKEND_REGION: "lab"
      }, "h")
      assert.strictEqual(loaded.config.etcd.namespace, "env-ns")
      assert.deepStrictEqual(loaded.config.etcd.addr, { host: "127.0.0.9", port: 1234 })
      assert.deepStrictEqual(loaded.config.agent["rpc-listen-addr"], { host: "10.1.2.3", port: 7001 })
      assert.deepStrictEqual(loaded.config.container["port-range"], [32000, 32100])
      assert.strictEqual(loaded.config.container["scratch-root"], "/srv/scratch")
      assert.strictEqual(loaded.region, "lab")
      const bad = yield* Effect.exit(decodeConfigText("x.toml", `[etcd]\nnamespace = "a"\n`, { BACKEND_AGENT_PORT: "six" }, "h"))
      assert.isTrue(Exit.isFailure(bad))
    }))

  it.effect("loop intervals must be above zero; BACKEND_REGION only fills a region the file does not set", () =>
    Effect.gen(function*() {
      const zero = yield* Effect.exit(decodeConfigText("z.toml", `[etcd]\nnamespace = "a"\n[debug]\nheartbeat-interval = 0\n[stats]\ninterval = "0s"\n`, {}, "h"))
      assert.isTrue(Exit.isFailure(zero))
      const message = Exit.isFailure(zero) ? String(zero.cause) : ""
      assert.include(message, "debug.heartbeat-interval: expected a duration above zero, found 0")
      assert.include(message, "stats.interval: expected a duration above zero")
      // every loop interval and timeout, one at a time, so one that accepts zero cannot hide behind another
      const positive: ReadonlyArray<readonly [string, string, string]> = [
        ["debug", "heartbeat-interval", "0"],
        ["stats", "interval", `"0s"`],
        ["stats", "ttl", "0"],
        ["kubernetes", "relist-interval", `"0s"`],
        ["kubernetes", "request-timeout", "0"]
      ]
      for (const [sectionName, key, value] of positive) {
        const one = yield* Effect.exit(
          decodeConfigText("z.toml", `[etcd]\nnamespace = "a"\n[${sectionName}]\n${key} = ${value}\n`, {}, "h")
        )
        assert.isTrue(Exit.isFailure(one), `${sectionName}.${key} = ${value} was accepted`)
        assert.include(Exit.isFailure(one) ? String(one.cause) : "", `${sectionName}.${key}: expected a duration above zero`)
        const fine = yield* decodeConfigText("z.toml", `[etcd]\nnamespace = "a"\n[${sectionName}]\n${key} = "1s"\n`, {}, "h")
        assert.strictEqual((fine.config as unknown as Record<string, Record<string, unknown>>)[sectionName]?.[key], 1)
      }
      const fromFile = yield* decodeConfigText("r.toml", `[etcd]\nnamespace = "a"\n[agent]\nregion = "file-region"\n`, { BACKEND_REGION: "env-region" }, "h")
      assert.strictEqual(fromFile.region, "file-region")
    }))

  it.effect("agent.rpc-allowed-peers takes IPs and CIDR blocks and refuses anything else; rpc-max-inflight is at least 1", () =>
    Effect.gen(function*() {
      const ok = yield* decodeConfigText(
        "a.toml",
        `[etcd]\nnamespace = "a"\n[agent]\nrpc-allowed-peers = ["10.0.0.2", "10.1.0.0/16", "fd00::/8", "::1"]\n`,
        {},
        "h"
      )
      assert.deepStrictEqual(ok.config.agent["rpc-allowed-peers"], ["10.0.0.2", "10.1.0.0/16", "fd00::/8", "::1"])
      assert.strictEqual(ok.config.agent["rpc-max-inflight"], 1024)
      const defaults = yield* decodeConfigText("d.toml", `[etcd]\nnamespace = "a"\n`, {}, "h")
      assert.deepStrictEqual(defaults.config.agent["rpc-allowed-peers"], [])
      for (const bad of [`["manager.local"]`, `["10.0.0.0/33"]`, `["10.0.0.1/8/9"]`, `[""]`]) {
        const exit = yield* Effect.exit(decodeConfigText("b.toml", `[etcd]\nnamespace = "a"\n[agent]\nrpc-allowed-peers = ${bad}\n`, {}, "h"))
        assert.isTrue(Exit.isFailure(exit), bad)
        assert.include(Exit.isFailure(exit) ? String(exit.cause) : "", "agent.rpc-allowed-peers: expected IP addresses or CIDR blocks", bad)
      }
      const zero = yield* Effect.exit(decodeConfigText("c.toml", `[etcd]\nnamespace = "a"\n[agent]\nrpc-max-inflight = 0\n`, {}, "h"))
      assert.isTrue(Exit.isFailure(zero))
    }))

  it.effect("every problem is reported with its key path, expectation and found value", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(decodeConfigText(
        "bad.toml",
        `[etcd]\nnamespace = 5\n[agent]\nrpc-listen-addr = { host = "127.0.0.1", port = 99999 }\n[container]\ncreate-timeout = "5 parsecs"\n`,
        {},
        "h"
      ))
      assert.isTrue(Exit.isFailure(exit))
      const message = Exit.isFailure(exit) ? String(exit.cause) : ""
      assert.include(message, "etcd.namespace: expected string, found 5")
      assert.include(message, "agent.rpc-listen-addr.port")
      assert.include(message, "found 99999")
      assert.include(message, `container.create-timeout: expected a duration`)
    }))
})

describe("bai-agent CLI", () => {
  it("--check-config exits 0 for the shipped samples and prints the config with secrets redacted", () => {
    for (const f of ["config/sample.toml", "config/halfstack.toml"]) {
      const r = cli("--check-config", "-f", f)
      assert.strictEqual(r.status, 0, r.stderr)
      assert.strictEqual(JSON.parse(r.stdout).etcd.namespace, "local")
    }
    const secret = write("secret.toml", `[etcd]\nnamespace = "x"\npassword = "hunter2"\n`)
    const r = cli("--check-config", "-f", secret)
    assert.strictEqual(r.status, 0)
    assert.notInclude(r.stdout, "hunter2")
    assert.include(r.stdout, "<redacted>")
  })

  it("a wrong type, a missing required key and broken TOML each exit 1 naming the key path", () => {
    const wrongType = cli("--check-config", "-f", write("t1.toml", `[etcd]\nnamespace = "x"\n[debug]\nenabled = "yes"\n`))
    assert.strictEqual(wrongType.status, 1)
    assert.include(wrongType.stderr, "debug.enabled: expected boolean, found \"yes\"")
    const missing = cli("--check-config", "-f", write("t2.toml", `[etcd]\naddr = "127.0.0.1:2379"\n`))
    assert.strictEqual(missing.status, 1)
    assert.include(missing.stderr, "etcd.namespace: required key is missing")
    const broken = cli("--check-config", "-f", write("t3.toml", `[etcd\nnamespace = "x"\n`))
    assert.strictEqual(broken.status, 1)
    assert.match(broken.stderr, /t3\.toml: not valid TOML at line 1/)
    const absent = cli("--check-config", "-f", path.join(tmp, "absent.toml"))
    assert.strictEqual(absent.status, 1)
    assert.include(absent.stderr, "no such file")
  })

  it("--config-path (the Python agent's spelling) works like -f/--config", () => {
    for (const flag of ["-f", "--config", "--config-path"]) {
      const r = cli("--check-config", flag, "config/halfstack.toml")
      assert.strictEqual(r.status, 0, `${flag}: ${r.stdout}${r.stderr}`)
      assert.strictEqual(JSON.parse(r.stdout).etcd.namespace, "local")
    }
  })

  it("an unknown flag exits 1", () => {
    const r = cli("--no-such-flag")
    assert.strictEqual(r.status, 1)
    assert.include(r.stdout + r.stderr, "--no-such-flag")
  })

  it("--help lists the options and --version prints the version", () => {
    const help = execFileSync(node, [main, "--help"], { encoding: "utf8" })
    for (const opt of ["--config", "-f", "--debug", "--check-config", "--help", "--version"]) assert.include(help, opt)
    assert.match(execFileSync(node, [main, "--version"], { encoding: "utf8" }), /0\.1\.0/)
  })

  it("refuses an older Node with a one-line message", () => {
    const r = spawnSync(node, ["--input-type=module", "-e", `import { checkNodeVersion } from "${path.resolve("dist/version.js")}"; checkNodeVersion("20.20.2")`], { encoding: "utf8" })
    assert.strictEqual(r.status, 1)
    assert.strictEqual(r.stderr.trim().split("\n").length, 1)
    assert.include(r.stderr, "needs Node >= 22.19")
  })
})
