// The drop-in claim from the manager's side: an independent Python manager 19.06
// (test/e2e/manager1906.py: aiozmq connect_rpc, a ZeroMQ PULL event socket it publishes in etcd,
// Redis DB 0, the registry, kubectl) drives the real agent process (`node dist/main.js -f agent.toml`,
// needs `npm run build`) on the testbed through the K1 end-to-end sequence (spec Appendix C): heartbeat
// and registration, RPC errors, create/execute/services/logs/files/completions, stats, destroy, and
// SIGTERM (detach) + restart (adoption). The Python side reports one JSON line per step; this test
// starts and stops the agent when asked and asserts on the steps in order, so a failure names its step.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Queue } from "effect"
import type { ChildProcess } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { inject } from "vitest"
import { mainJs, printLogOnFailure, startAgentProcess } from "../kernel/AgentProcessSupport.ts"
import { kubectl } from "../kernel/KernelLifecycleSupport.ts"
import { spawnPython } from "../interop/python.ts"
import { freshEtcdNamespace, freshKubeNamespace, type TestbedEnv } from "../testbed/env.ts"
import { freePort } from "../testbed/ports.ts"

const env: TestbedEnv = inject("testbed")

/** Every step manager1906.py reports, in order. */
const STEPS = [
  "manager-up",
  "agent-start",
  "heartbeat",
  "heartbeat-slots",
  "heartbeat-images",
  "instance-started",
  "etcd-registration",
  "ping",
  "not-found-error",
  "parameters-error",
  "domain-error",
  "unknown-kernel",
  "create-kernel",
  "kernel-events",
  "execute",
  "execute-continue",
  "start-service",
  "service-connect",
  "get-logs",
  "files",
  "get-completions",
  "stats-agent",
  "stats-kernel",
  "restart-kernel",
  "execute-after-restart",
  "stats-kernel-after-restart",
  "destroy-kernel",
  "last-stat",
  "objects-gone",
  "create-before-shutdown",
  "instance-terminated",
  "detached",
  "restart",
  "adopted-ping-kernel",
  "adopted-execute",
  "adopted-destroy",
  "adopted-objects-gone"
] as const

const NODE_SELECTOR = "backend.ai/testbed=true"

interface Report {
  readonly step?: string
  readonly ok?: boolean
  readonly need?: "start" | "sigterm"
  readonly done?: boolean
  readonly [key: string]: unknown
}

const waitExit = (child: ChildProcess) =>
  Effect.callback<{ readonly exitCode: number | null; readonly signal: string | null }>((resume) => {
    const done = () => resume(Effect.succeed({ exitCode: child.exitCode, signal: child.signalCode }))
    if (child.exitCode !== null || child.signalCode !== null) return done()
    child.once("exit", done)
  })

describe("manager 19.06 (Python) drives the agent process", () => {
  it.live("K1 end-to-end sequence, SIGTERM detach and restart adoption", () => {
    // the agent's log stays after the test (printed on failure)
    const log = path.join(os.tmpdir(), `bai-e2e-${crypto.randomUUID().slice(0, 8)}.agent.log`)
    return Effect.gen(function*() {
      const etcdNs = yield* Effect.promise(() => freshEtcdNamespace(env, "e2e"))
      const kubeNs = yield* Effect.promise(() => freshKubeNamespace(env, "e2e"))
      yield* Effect.addFinalizer(() => kubectl(env, ["delete", "namespace", kubeNs, "--wait=false"]).pipe(Effect.ignore))
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "bai-e2e-"))),
        (d) => Effect.sync(() => fs.rmSync(d, { recursive: true, force: true }))
      )
      const scratch = path.join(dir, "scratches")
      fs.mkdirSync(scratch)
      const rpcPort = yield* Effect.promise(() => freePort())
      const metricsPort = yield* Effect.promise(() => freePort())
      const agentId = `i-e2e-${etcdNs}`
      const toml = path.join(dir, "agent.toml")
      fs.writeFileSync(
        toml,
        [
          `[etcd]`,
          `namespace = "${etcdNs}"`,
          `addr = "${env.etcd}"`,
          `[agent]`,
          `id = "${agentId}"`,
          `rpc-listen-addr = "127.0.0.1:${rpcPort}"`,
          `[container]`,
          `scratch-root = "${scratch}"`,
          `create-timeout = 180`,
          `[kubernetes]`,
          `namespace = "${kubeNs}"`,
          `kubeconfig = "${env.kubeconfig}"`,
          `termination-grace = 1`,
          `node-selector = "${NODE_SELECTOR}"`,
          `[kubernetes.registry]`,
          `url = "${env.registry.url}"`,
          `[kubernetes.scratch-volume]`,
          `type = "hostPath"`,
          `path = "${scratch}"`,
          `[debug]`,
          `heartbeat-interval = 1`,
          `[stats]`,
          `interval = 1`,
          `[metrics]`,
          `service-addr = "127.0.0.1:${metricsPort}"`,
          ``
        ].join("\n")
      )
      const files = { toml, log, rpcPort, metricsPort }

      const manager = yield* spawnPython("../e2e/manager1906.py", [
        JSON.stringify({
          agentId,
          rpcAddr: `127.0.0.1:${rpcPort}`,
          etcd: env.etcd,
          etcdNs,
          redis: env.redis,
          registry: env.registry,
          kubectl: env.kubectl,
          kubeconfig: env.kubeconfig,
          kubeNs,
          nodeSelector: NODE_SELECTOR
        })
      ])
      const answer = (obj: unknown) => Effect.sync(() => manager.child.stdin!.write(`${JSON.stringify(obj)}\n`))

      const reports: Array<Report> = []
      let agent: ChildProcess | undefined
      const converse = Effect.gen(function*() {
        for (;;) {
          const next = yield* Queue.take(manager.lines).pipe(Effect.timeoutOption("5 seconds"))
          if (next._tag === "None") {
            // a manager that died without its `done` line (its stderr is printed below)
            if (manager.child.exitCode !== null || manager.child.signalCode !== null) {
              return yield* Effect.fail(new Error(`manager1906.py exited (${manager.child.exitCode ?? manager.child.signalCode}) without finishing`))
            }
            continue
          }
          const line = next.value
          let r: Report
          try {
            r = JSON.parse(line) as Report
          } catch {
            yield* Effect.logInfo(`manager1906.py: ${line}`)
            continue
          }
          if (r.step !== undefined) {
            reports.push(r)
            const { ok: _ok, seconds, step, ...detail } = r
            yield* (r.ok === true
              ? Effect.logInfo(`step ${step}: ok (${seconds} s) ${JSON.stringify(detail).slice(0, 600)}`)
              : Effect.logError(`step ${step}: ${r.error}`))
          } else if (r.need === "start") {
            agent = yield* startAgentProcess(files)
            yield* answer({ started: true, pid: agent.pid })
          } else if (r.need === "sigterm") {
            const child = agent!
            child.kill("SIGTERM")
            const exit = yield* waitExit(child).pipe(
              Effect.timeoutOrElse({ duration: "120 seconds", orElse: () => Effect.succeed({ exitCode: null, signal: "timeout" }) })
            )
            yield* answer(exit)
          } else if (r.done === true) {
            reports.push(r)
            return
          }
        }
      })

      yield* converse.pipe(
        Effect.timeoutOrElse({ duration: "1500 seconds", orElse: () => Effect.fail(new Error("the Python manager did not finish within 1500 s")) }),
        Effect.onExit(() =>
          Effect.sync(() => {
            const stderr = manager.stderr()
            if (stderr !== "") console.error(`--- manager1906.py stderr:\n${stderr}`)
          })
        )
      )

      const failed = reports.find((r) => r.step !== undefined && r.ok !== true)
      if (failed !== undefined) assert.fail(`step ${failed.step} failed: ${failed.error}\n${failed.trace ?? ""}`)
      const byStep = new Map(reports.filter((r) => r.step !== undefined).map((r) => [r.step!, r]))
      for (const step of STEPS) {
        const r = byStep.get(step)
        assert.isDefined(r, `step ${step} not reached (reports: ${JSON.stringify(reports.map((x) => [x.step, x.ok]))})`)
      }
      const done = reports[reports.length - 1]!
      assert.isTrue(done.done === true && done.ok === true, JSON.stringify(done))
      assert.strictEqual(yield* manager.exitCode, 0)

      // what the manager saw, in detail
      const kernel = byStep.get("create-kernel")!.result as Record<string, unknown>
      assert.strictEqual(kernel.container_id !== undefined, true)
      assert.deepStrictEqual(byStep.get("execute")!.stdout, [["stdout", "hi\n"]])
      assert.deepStrictEqual(byStep.get("kernel-events")!.order, ["kernel_preparing", "kernel_creating", "kernel_started"])
      assert.deepStrictEqual((byStep.get("instance-terminated")!.exit as { exitCode: number }).exitCode, 0)
    }).pipe(printLogOnFailure(log), Effect.scoped)
  }, { timeout: 1_800_000 })
})
