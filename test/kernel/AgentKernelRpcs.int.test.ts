// The agent-wide kernel RPCs at the RPC level, against the real agent process (`node dist/main.js`,
// current build) on the testbed, with a manager-side DEALER and the manager's event PULL socket:
// reset_agent, clean_all_kernels, shutdown_agent (with and without terminating kernels), and
// refresh_idle against the running idle reaper (activity pushes the deadline; an untouched kernel is
// reaped by the loop, no test-driven reaper pass). Answers are checked raw: the wire's None is nil.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Queue, Schedule } from "effect"
import type { ChildProcess } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { inject } from "vitest"
import { AgentRpcs } from "../../src/rpc/AgentRpcs.ts"
import { AiozmqClient } from "../../src/rpc/aiozmq/AiozmqClient.ts"
import { seedEtcd } from "../testbed/datastores.ts"
import type { TestbedEnv } from "../testbed/env.ts"
import { agentFiles, printLogOnFailure, startAgentProcess, waitRpcUp } from "./AgentProcessSupport.ts"
import { eventually, kernelObjects, labelledObjects, makeSite, pythonConfig, type Site, takeEvent } from "./KernelLifecycleSupport.ts"

const env: TestbedEnv = inject("testbed")
const T = { timeout: 300_000 }

/** A site whose manager event address is the site's PULL socket, the agent process and a client. */
const agentOnSite = (options: { readonly pidFile?: string } = {}) => Effect.gen(function*() {
  const base = yield* makeSite(env, { createTimeout: 120 })
  const site = options.pidFile === undefined ? base : { ...base, toml: base.toml.replace("[agent]\n", `[agent]\npid-file = "${options.pidFile}"\n`) }
  yield* Effect.promise(() =>
    seedEtcd(env.etcd, site.etcdNs, {
      redis: env.redis, eventAddr: site.eventAddr, registry: env.registry, vfolderMount: env.vfolderMount, watcherToken: env.watcherToken
    })
  )
  const files = yield* agentFiles(site)
  const client = yield* AiozmqClient.make({ connect: `tcp://127.0.0.1:${files.rpcPort}`, timeout: "120 seconds", lingerMillis: 0 })
  const child = yield* startAgentProcess(files)
  yield* waitRpcUp(client, child)
  return { site, files, client, child }
})

const exitOf = (child: ChildProcess) =>
  Effect.callback<{ readonly code: number | null; readonly signal: string | null }>((resume) => {
    const done = () => resume(Effect.succeed({ code: child.exitCode, signal: child.signalCode }))
    if (child.exitCode !== null || child.signalCode !== null) return done()
    child.once("exit", done)
  })

const takeAny = (site: Site) => Queue.take(site.events)

const scratchGone = (site: Site, kid: string) => !fs.existsSync(path.join(site.scratchRoot, kid))

describe("agent-wide kernel RPCs (agent process)", () => {
  it.live("reset_agent destroys every kernel (agent-reset); clean_all_kernels uses its reason, None → agent-reset", () =>
    Effect.gen(function*() {
      const { site, files, client } = yield* agentOnSite()
      yield* Effect.gen(function*() {
        const create = () =>
          Effect.gen(function*() {
            const kid = crypto.randomUUID()
            yield* client.invoke(AgentRpcs.create_kernel, kid, pythonConfig(env))
            return kid
          })
        const [a, b] = yield* Effect.all([create(), create()], { concurrency: 2 })
        assert.isNull(yield* client.call("reset_agent", []))
        // both kernel_terminated events, in whichever order the two destroys finish (taking one kernel's
        // event with takeEvent would drop the other's if it came first)
        const reasons = new Map<unknown, unknown>()
        yield* Effect.gen(function*() {
          while (reasons.size < 2) {
            const e = yield* takeAny(site)
            if (e.name === "kernel_terminated" && (e.args[0] === a || e.args[0] === b)) reasons.set(e.args[0], e.args[1])
          }
        }).pipe(Effect.timeout("60 seconds"))
        for (const kid of [a!, b!]) {
          assert.strictEqual(reasons.get(kid), "agent-reset")
          assert.isTrue(scratchGone(site, kid))
        }
        assert.deepStrictEqual(yield* eventually(labelledObjects(env, site.kubeNs), (xs) => xs.length === 0), [])
        // the agent forgot them: a kernel RPC naming one fails with KernelNotFound
        const gone = yield* client.invoke(AgentRpcs.ping_kernel, a!).pipe(Effect.flip)
        assert.strictEqual(gone._tag === "AiozmqRemoteError" ? gone.excType : gone._tag, "ai.backend.agent.exception.KernelNotFound")

        const c = yield* create()
        assert.isNull(yield* client.call("clean_all_kernels", ["maintenance"]))
        assert.strictEqual((yield* takeEvent(site, "kernel_terminated", c)).args[1], "maintenance")
        assert.deepStrictEqual(yield* eventually(kernelObjects(env, site.kubeNs, c), (xs) => xs.length === 0), [])

        const d = yield* create()
        assert.isNull(yield* client.call("clean_all_kernels", [null]))
        assert.strictEqual((yield* takeEvent(site, "kernel_terminated", d)).args[1], "agent-reset")
        assert.deepStrictEqual(yield* eventually(labelledObjects(env, site.kubeNs), (xs) => xs.length === 0), [])
      }).pipe(printLogOnFailure(files.log))
    }).pipe(Effect.scoped), T)

  it.live("shutdown_agent(true): kernels destroyed (agent-termination), then the process exits 0", () =>
    Effect.gen(function*() {
      const { site, files, client, child } = yield* agentOnSite()
      yield* Effect.gen(function*() {
        const kid = crypto.randomUUID()
        yield* client.invoke(AgentRpcs.create_kernel, kid, pythonConfig(env))
        assert.isNull(yield* client.call("shutdown_agent", [true]))
        assert.strictEqual((yield* takeEvent(site, "kernel_terminated", kid)).args[1], "agent-termination")
        const exit = yield* exitOf(child).pipe(Effect.timeout("90 seconds"))
        assert.deepStrictEqual(exit, { code: 0, signal: null })
        assert.deepStrictEqual(yield* eventually(labelledObjects(env, site.kubeNs), (xs) => xs.length === 0), [])
        assert.isTrue(scratchGone(site, kid))
      }).pipe(printLogOnFailure(files.log))
    }).pipe(Effect.scoped), T)

  it.live("shutdown_agent(false): the process exits 0 and the kernel is left running (detached, not destroyed); the pid file lives as long as the process", () =>
    Effect.gen(function*() {
      const pidFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "bai-pid-")), "agent.pid")
      const { site, files, client, child } = yield* agentOnSite({ pidFile })
      yield* Effect.gen(function*() {
        // written once start-up is done (bounded wait: the RPC server may answer before), removed on exit
        const pidText = yield* eventually(Effect.sync(() => (fs.existsSync(pidFile) ? fs.readFileSync(pidFile, "utf8") : "")), (t) => t !== "", 30)
        assert.strictEqual(pidText, `${child.pid}\n`)
        const kid = crypto.randomUUID()
        yield* client.invoke(AgentRpcs.create_kernel, kid, pythonConfig(env))
        assert.isNull(yield* client.call("shutdown_agent", [false]))
        const exit = yield* exitOf(child).pipe(Effect.timeout("90 seconds"))
        assert.deepStrictEqual(exit, { code: 0, signal: null })
        assert.isFalse(fs.existsSync(pidFile), "the pid file outlived the agent process")
        // the log is one JSON object per line (not a terminal): the manager's request is logged
        const logged = fs.readFileSync(files.log, "utf8").split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l))
        assert.isTrue(logged.some((o) => o.message === "shutdown requested by the manager" && o.level === "INFO"))
        assert.deepStrictEqual((yield* kernelObjects(env, site.kubeNs, kid)).sort(), [`ConfigMap/kernel-${kid}`, `Pod/kernel-${kid}`, `Service/kernel-${kid}`])
        assert.isFalse(scratchGone(site, kid))
        // no kernel_terminated for it: the agent's last event for the kernel was kernel_started
        // (instance_terminated follows the kernel events on the same socket)
        const rest = yield* Effect.gen(function*() {
          const seen: Array<{ readonly name: string; readonly args: ReadonlyArray<unknown> }> = []
          for (;;) {
            const e = yield* takeAny(site)
            seen.push(e)
            if (e.name === "instance_terminated") return seen
          }
        }).pipe(Effect.timeout("60 seconds"))
        assert.isFalse(rest.some((e) => e.name === "kernel_terminated" && e.args[0] === kid), JSON.stringify(rest.map((e) => [e.name, e.args[0]])))
      }).pipe(printLogOnFailure(files.log))
    }).pipe(Effect.scoped), T)

  it.live("refresh_idle pushes a kernel's idle deadline; the reaper loop destroys the untouched one (idle-timeout)", () =>
    Effect.gen(function*() {
      const { site, files, client } = yield* agentOnSite()
      yield* Effect.gen(function*() {
        const unknown = yield* client.invoke(AgentRpcs.refresh_idle, crypto.randomUUID()).pipe(Effect.flip)
        assert.strictEqual(unknown._tag === "AiozmqRemoteError" ? unknown.excType : unknown._tag, "ai.backend.agent.exception.KernelNotFound")
        const kept = crypto.randomUUID()
        const idle = crypto.randomUUID()
        // idle_timeout 6 s against a refresh every second: a margin of 5 s for a loaded machine
        yield* client.invoke(AgentRpcs.create_kernel, kept, pythonConfig(env, { idle_timeout: 6 }))
        const refresher = yield* client.invoke(AgentRpcs.refresh_idle, kept).pipe(
          Effect.repeat(Schedule.spaced("1 second")),
          Effect.forkChild
        )
        yield* client.invoke(AgentRpcs.create_kernel, idle, pythonConfig(env, { idle_timeout: 6 }))
        // the reaper runs on its own every 10 s: the untouched kernel goes within a few passes
        assert.strictEqual((yield* takeEvent(site, "kernel_terminated", idle)).args[1], "idle-timeout")
        // the refreshed kernel, idle as long or longer by the clock, is still there and usable
        assert.isNull(yield* client.call("ping_kernel", [kept]))
        assert.strictEqual((yield* kernelObjects(env, site.kubeNs, kept)).length, 3)
        yield* Fiber.interrupt(refresher)
        // left alone, it is reaped by the loop as well
        assert.strictEqual((yield* takeEvent(site, "kernel_terminated", kept)).args[1], "idle-timeout")
        assert.deepStrictEqual(yield* eventually(labelledObjects(env, site.kubeNs), (xs) => xs.length === 0), [])
      }).pipe(printLogOnFailure(files.log))
    }).pipe(Effect.scoped), T)
})
