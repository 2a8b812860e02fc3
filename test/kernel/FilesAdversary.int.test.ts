// The kernel as an adversary, against the whole agent process (`node dist/main.js`, needs
// `npm run build`) on the testbed (issue 13, "Done when"). The kernel's /home/work is
// `<scratch-root>/<kid>/work` on the host (the simulated kubelet mounts the hostPath there), so the
// kernel's moves are played from the host side on that directory:
//
// - it makes a FIFO and the manager uploads to it 6 times at once: every upload is answered, list_files
//   still answers, and SIGTERM stops the agent within its shutdown grace (before: the uploads pinned
//   libuv's pool for good, every RPC stalled and the agent never exited);
// - it swaps `f` and `d` for symlinks to a canary outside its work dir as fast as it can during 400
//   download+upload pairs: no download carries the canary, nothing is written outside;
// - it writes megabytes of log: get_logs answers a bounded tail.
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Clock, Effect, Exit } from "effect"
import { inject } from "vitest"
import { AgentRpcs } from "../../src/rpc/AgentRpcs.ts"
import { AiozmqClient } from "../../src/rpc/aiozmq/AiozmqClient.ts"
import { LOGS_MAX_BYTES, LOGS_TAIL_LINES } from "../../src/rpc/handlers/Runner.ts"
import { seedEtcd } from "../testbed/datastores.ts"
import type { TestbedEnv } from "../testbed/env.ts"
import { agentFiles, printLogOnFailure, startAgentProcess, waitRpcUp } from "./AgentProcessSupport.ts"
import { swapper } from "./FilesSupport.ts"
import { makeSite, pythonConfig, type Site } from "./KernelLifecycleSupport.ts"

const env: TestbedEnv = inject("testbed")
/** The agent's default `agent.shutdown-grace` (s), and what the watchdog adds. */
const SHUTDOWN_GRACE = 10

/** The site's agent process up, answering RPC, with one kernel created through it. */
const agentWithKernel = (site: Site) =>
  Effect.gen(function*() {
    yield* Effect.promise(() =>
      seedEtcd(env.etcd, site.etcdNs, {
        redis: env.redis, eventAddr: site.eventAddr, registry: env.registry, vfolderMount: env.vfolderMount, watcherToken: env.watcherToken
      })
    )
    const files = yield* agentFiles(site)
    const client = yield* AiozmqClient.make({ connect: `tcp://127.0.0.1:${files.rpcPort}`, timeout: "120 seconds", lingerMillis: 0 })
    const child = yield* startAgentProcess(files)
    yield* waitRpcUp(client, child)
    const kid = crypto.randomUUID()
    yield* client.invoke(AgentRpcs.create_kernel, kid, pythonConfig(env))
    const work = path.join(site.scratchRoot, kid, "work")
    assert.isTrue(fs.statSync(work).isDirectory(), `the kernel's work dir ${work}`)
    return { files, client, child, kid, work }
  })

const bounded = (seconds: number, what: string) => <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.timeoutOrElse(self, { duration: `${seconds} seconds`, orElse: () => Effect.fail(new Error(`${what}: no answer within ${seconds} s`)) })

describe("file RPCs against a hostile kernel (agent process)", () => {
  it.live("mkfifo + 6 concurrent uploads: list_files answers, SIGTERM stops the agent within its grace", () =>
    Effect.gen(function*() {
      const site = yield* makeSite(env)
      const { child, client, files, kid, work } = yield* agentWithKernel(site)
      const fifo = path.join(work, "x")
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          // whatever happened, release a writer blocked on it (the test's own cleanup must not hang)
          if (fs.existsSync(fifo)) fs.closeSync(fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK))
        })
      )
      return yield* Effect.gen(function*() {
        assert.strictEqual(spawnSync("mkfifo", [fifo]).status, 0)
        const uploads = yield* Effect.forEach(
          Array.from({ length: 6 }),
          () => Effect.exit(client.invoke(AgentRpcs.upload_file, kid, "x", new TextEncoder().encode("hello"))),
          { concurrency: "unbounded" }
        ).pipe(bounded(60, "6 uploads to a FIFO"))
        for (const u of uploads) assert.isTrue(Exit.isFailure(u), "an upload onto a FIFO is refused")
        const listed = yield* client.invoke(AgentRpcs.list_files, kid, ".").pipe(bounded(60, "list_files after the uploads"))
        assert.include(listed.files, "\"filename\": \"x\"")
        yield* client.invoke(AgentRpcs.ping_kernel, kid).pipe(bounded(60, "ping_kernel"))

        const t0 = yield* Clock.currentTimeMillis
        child.kill("SIGTERM")
        yield* Effect.callback<void>((resume) => {
          if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
          child.once("exit", () => resume(Effect.void))
        }).pipe(bounded(SHUTDOWN_GRACE + 5 + 30, "the agent's exit after SIGTERM"))
        const seconds = ((yield* Clock.currentTimeMillis) - t0) / 1000
        yield* Effect.logInfo(`agent stopped ${seconds.toFixed(1)} s after SIGTERM (exit ${child.exitCode}, signal ${child.signalCode})`)
        assert.strictEqual(child.exitCode, 0, "a clean exit, not the watchdog's SIGKILL")
      }).pipe(printLogOnFailure(files.log))
    }).pipe(Effect.scoped), { timeout: 300_000 })

  it.live("a symlink-swap loop during 400 download+upload pairs never reads or writes outside the work dir", () =>
    Effect.gen(function*() {
      const site = yield* makeSite(env)
      const { client, files, kid, work } = yield* agentWithKernel(site)
      return yield* Effect.gen(function*() {
        const outside = path.join(site.scratchRoot, "outside")
        fs.mkdirSync(outside)
        fs.writeFileSync(path.join(outside, "canary"), "CANARY-SECRET")
        const swapping = yield* swapper(work, outside)
        let leaked = 0
        let served = 0
        for (let i = 0; i < 400; i++) {
          const got = yield* client.invoke(AgentRpcs.download_file, kid, i % 2 === 0 ? "f" : "d").pipe(Effect.option)
          if (got._tag === "Some" && got.value !== null) {
            served++
            if (Buffer.from(got.value).includes("CANARY-SECRET")) leaked++
          }
          yield* client.invoke(AgentRpcs.upload_file, kid, i % 2 === 0 ? "f" : `d/up${i}.txt`, new TextEncoder().encode(`upload ${i}`)).pipe(
            Effect.ignore
          )
        }
        assert.isNull(swapping.exitCode, "the swapper ran all along")
        yield* Effect.logInfo(`${served} of 400 downloads served, ${leaked} with the canary`)
        assert.strictEqual(leaked, 0, `${leaked} of ${served} downloads carried the canary`)
        assert.deepStrictEqual(fs.readdirSync(outside), ["canary"])
        assert.strictEqual(fs.readFileSync(path.join(outside, "canary"), "utf8"), "CANARY-SECRET")
        assert.isAbove(served, 0)
      }).pipe(printLogOnFailure(files.log))
    }).pipe(Effect.scoped), { timeout: 600_000 })

  it.live("get_logs answers a bounded tail of a huge log", () =>
    Effect.gen(function*() {
      const site = yield* makeSite(env)
      const { client, files, kid } = yield* agentWithKernel(site)
      return yield* Effect.gen(function*() {
        // the simulated kubelet's container log of the kernel pod
        const pods = path.join(env.stateDir, "pods")
        const podDir = fs.readdirSync(pods).find((d) => d.startsWith(`${site.kubeNs}_kernel-${kid}_`))
        assert.isDefined(podDir, `the pod's log dir under ${pods}`)
        const log = path.join(pods, podDir!, "kernel.log")
        const line = (i: number) => `log line ${String(i).padStart(8, "0")} ${"x".repeat(80)}\n`
        const total = 3 * LOGS_TAIL_LINES
        const fd = fs.openSync(log, "a")
        for (let i = 0; i < total; i += 1000) fs.writeSync(fd, Array.from({ length: 1000 }, (_, j) => line(i + j)).join(""))
        fs.writeSync(fd, "x".repeat(LOGS_MAX_BYTES * 2) + "\n")
        fs.closeSync(fd)
        const logs = (yield* client.invoke(AgentRpcs.get_logs, kid)).logs
        assert.isAtMost(Buffer.byteLength(logs), LOGS_MAX_BYTES)
        assert.notInclude(logs, line(0))
      }).pipe(printLogOnFailure(files.log))
    }).pipe(Effect.scoped), { timeout: 300_000 })
})
