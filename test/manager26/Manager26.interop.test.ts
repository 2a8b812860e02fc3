/**
 * Done-when of issue 16: a 26.8.1-shaped manager side (test/manager26/manager26.py: callosum 1.0.3's own
 * client Peer from ../shared/upstream, the manager's ext-type codec with pickles made by Debian's
 * python3, the Redis `events` stream read with XREADGROUP) drives the real agent process
 * (`node dist/main.js`, `[agent] manager-contract = "26"`, needs `npm run build`) on the testbed
 * through a session's life: heartbeat + agent_started, connect (PING/PONG) + ping, check_and_pull →
 * image_pull_finished (PREPARED), create_kernels → kernel_started with resource_spec.allocations
 * (RUNNING), execute print(1+1), check_running + presence in DB 2, an unknown method, destroy_kernel →
 * kernel_terminated (TERMINATED) and check_running False, then SIGTERM → agent_terminated.
 */
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

const STEPS = [
  "heartbeat",
  "connect",
  "ping",
  "check-and-pull",
  "create-kernels",
  "execute",
  "check-running",
  "unknown-method",
  "destroy-kernel",
  "agent-terminated"
] as const

const NODE_SELECTOR = "backend.ai/testbed=true"

const waitExit = (child: ChildProcess) =>
  Effect.callback<{ readonly exitCode: number | null; readonly signal: string | null }>((resume) => {
    const done = () => resume(Effect.succeed({ exitCode: child.exitCode, signal: child.signalCode }))
    if (child.exitCode !== null || child.signalCode !== null) return done()
    child.once("exit", done)
  })

describe("manager 26.8.1 side (callosum Peer + Redis stream) drives the agent process", () => {
  it.live("PENDING → RUNNING → TERMINATED over the wire", () => {
    const log = path.join(os.tmpdir(), `bai-m26-${crypto.randomUUID().slice(0, 8)}.agent.log`)
    return Effect.gen(function*() {
      const etcdNs = yield* Effect.promise(() => freshEtcdNamespace(env, "m26"))
      const kubeNs = yield* Effect.promise(() => freshKubeNamespace(env, "m26"))
      yield* Effect.addFinalizer(() => kubectl(env, ["delete", "namespace", kubeNs, "--wait=false"]).pipe(Effect.ignore))
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "bai-m26-"))),
        (d) => Effect.sync(() => fs.rmSync(d, { recursive: true, force: true }))
      )
      const scratch = path.join(dir, "scratches")
      fs.mkdirSync(scratch)
      const rpcPort = yield* Effect.promise(() => freePort())
      const metricsPort = yield* Effect.promise(() => freePort())
      const agentId = `i-m26-${etcdNs}`
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
          `manager-contract = "26"`,
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
          `[metrics]`,
          `service-addr = "127.0.0.1:${metricsPort}"`,
          ``
        ].join("\n")
      )
      const agent = yield* startAgentProcess({ toml, log, rpcPort, metricsPort })

      const manager = yield* spawnPython("../manager26/manager26.py", [
        JSON.stringify({
          agentId,
          rpcAddr: `127.0.0.1:${rpcPort}`,
          redis: env.redis,
          registry: env.registry,
          image: "lablup/python:3.6-ubuntu18.04"
        })
      ])
      const reports: Array<Record<string, unknown>> = []
      let agentExit: unknown
      const converse = Effect.gen(function*() {
        for (;;) {
          const next = yield* Queue.take(manager.lines).pipe(Effect.timeoutOption("5 seconds"))
          if (next._tag === "None") {
            if (manager.child.exitCode !== null || manager.child.signalCode !== null) {
              return yield* Effect.fail(new Error(`manager26.py exited (${manager.child.exitCode ?? manager.child.signalCode}) without finishing`))
            }
            continue
          }
          let r: Record<string, unknown>
          try {
            r = JSON.parse(next.value) as Record<string, unknown>
          } catch {
            yield* Effect.logInfo(`manager26.py: ${next.value}`)
            continue
          }
          if (r["step"] !== undefined) {
            reports.push(r)
            const { ok: _ok, trace: _trace, ...detail } = r
            yield* (r["ok"] === true
              ? Effect.logInfo(`step ${r["step"]}: ok ${JSON.stringify(detail).slice(0, 600)}`)
              : Effect.logError(`step ${r["step"]}: ${r["error"]}`))
          } else if (r["need"] === "sigterm") {
            agent.kill("SIGTERM")
            agentExit = yield* waitExit(agent).pipe(
              Effect.timeoutOrElse({ duration: "120 seconds", orElse: () => Effect.succeed({ exitCode: null, signal: "timeout" }) })
            )
            manager.child.stdin!.write(`${JSON.stringify(agentExit)}\n`)
          } else if (r["done"] === true) {
            reports.push(r)
            return
          }
        }
      })
      yield* converse.pipe(
        Effect.timeoutOrElse({ duration: "1200 seconds", orElse: () => Effect.fail(new Error("manager26.py did not finish within 1200 s")) }),
        Effect.onExit(() =>
          Effect.sync(() => {
            const stderr = manager.stderr()
            if (stderr !== "") console.error(`--- manager26.py stderr:\n${stderr}`)
          })
        )
      )

      const failed = reports.find((r) => r["step"] !== undefined && r["ok"] !== true)
      if (failed !== undefined) assert.fail(`step ${failed["step"]} failed: ${failed["error"]}\n${failed["trace"] ?? ""}`)
      const byStep = new Map(reports.filter((r) => r["step"] !== undefined).map((r) => [r["step"], r]))
      for (const step of STEPS) assert.isDefined(byStep.get(step), `step ${step} not reached`)
      assert.deepStrictEqual(reports[reports.length - 1], { done: true, ok: true })
      assert.strictEqual(yield* manager.exitCode, 0)
      assert.strictEqual(byStep.get("execute")!["stdout"], "2\n")
      assert.isTrue(byStep.get("heartbeat")!["agentStartedAfterHeartbeat"] === true)
      assert.deepStrictEqual((agentExit as { exitCode: number }).exitCode, 0)
    }).pipe(printLogOnFailure(log), Effect.scoped)
  }, { timeout: 1_500_000 })
})
