// The agent process (`node dist/main.js -f agent.toml`) killed with SIGKILL in the middle of 100
// random creates/destroys, then restarted: no leaked object, every kernel reported created (and not
// destroyed) is adopted and usable through RPC. Needs `npm run build` and the kernel handlers wired
// in src/AgentLive.ts (skipped, saying so, until they are).
import { assert, describe, it } from "@effect/vitest"
import { Effect, Random, Ref } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { inject } from "vitest"
import { AgentRpcs } from "../../src/rpc/AgentRpcs.ts"
import { AiozmqClient } from "../../src/rpc/aiozmq/Client.ts"
import { seedEtcd } from "../testbed/datastores.ts"
import type { TestbedEnv } from "../testbed/env.ts"
import { freePort } from "../testbed/ports.ts"
import { eventually, kubectlJson, labelledObjects, makeSite, pythonConfig } from "./KernelLifecycleSupport.ts"

const env: TestbedEnv = inject("testbed")
const root = path.join(import.meta.dirname, "..", "..")
const wired = fs.existsSync(path.join(root, "dist", "main.js")) &&
  /KernelHandlers/.test(fs.readFileSync(path.join(root, "src", "AgentLive.ts"), "utf8"))

const startAgentProcess = (toml: string, log: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const out = fs.openSync(log, "a")
      return spawn(process.execPath, [path.join(root, "dist", "main.js"), "-f", toml], { stdio: ["ignore", out, out] })
    }),
    (child: ChildProcess) =>
      Effect.callback<void>((resume) => {
        if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
        child.once("exit", () => resume(Effect.void))
        child.kill("SIGTERM")
      })
  )

const kill9 = (child: ChildProcess) =>
  Effect.callback<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    child.once("exit", () => resume(Effect.void))
    child.kill("SIGKILL")
  })

describe("agent process crash during creates/destroys", () => {
  it.live.skipIf(!wired)("kill -9 mid-loop, restart: zero leaked objects, reported kernels adopted and usable", () =>
    Effect.gen(function*() {
      const site = yield* makeSite(env, { createTimeout: 120 })
      // the manager's event address for this agent = the site's PULL socket
      yield* Effect.promise(() =>
        seedEtcd(env.etcd, site.etcdNs, {
          redis: env.redis, eventAddr: site.eventAddr, registry: env.registry, vfolderMount: env.vfolderMount, watcherToken: env.watcherToken
        })
      )
      const rpcPort = yield* Effect.promise(() => freePort())
      const dir = path.dirname(site.scratchRoot)
      const toml = path.join(site.scratchRoot, "..", `${path.basename(site.scratchRoot)}.toml`)
      fs.writeFileSync(toml, site.toml.replace(/rpc-listen-addr = "[^"]*"/, `rpc-listen-addr = "127.0.0.1:${rpcPort}"`))
      yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(toml, { force: true })))
      const log = path.join(dir, `${path.basename(site.scratchRoot)}.agent.log`)
      const client = yield* AiozmqClient.make({ connect: `tcp://127.0.0.1:${rpcPort}`, timeout: "120 seconds" })
      const waitUp = eventually(client.invoke(AgentRpcs.ping, "up").pipe(Effect.option), (o) => o._tag === "Some", 60)

      const first = yield* startAgentProcess(toml, log)
      yield* waitUp

      // 100 random operations, 4 at a time; SIGKILL after a random number of them
      const live = yield* Ref.make<ReadonlySet<string>>(new Set())
      const killAt = yield* Random.nextIntBetween(30, 70)
      const done = yield* Ref.make(0)
      const op = Effect.gen(function*() {
        const n = yield* Ref.getAndUpdate(done, (x) => x + 1)
        if (n === killAt) return yield* kill9(first)
        const ids = [...(yield* Ref.get(live))]
        const create = ids.length === 0 || (yield* Random.nextBoolean)
        if (create) {
          const kid = crypto.randomUUID()
          yield* client.invoke(AgentRpcs.create_kernel, kid, pythonConfig(env)).pipe(
            Effect.andThen(Ref.update(live, (s) => new Set([...s, kid]))),
            Effect.ignore
          )
        } else {
          const kid = ids[yield* Random.nextIntBetween(0, ids.length, { halfOpen: true })]!
          yield* client.invoke(AgentRpcs.destroy_kernel, kid).pipe(
            Effect.andThen(Ref.update(live, (s) => new Set([...s].filter((x) => x !== kid)))),
            Effect.ignore
          )
        }
      })
      yield* Effect.forEach(Array.from({ length: 100 }), () => op, { concurrency: 4, discard: true })
      yield* kill9(first)

      // restart
      yield* startAgentProcess(toml, log)
      yield* waitUp
      const reported = [...(yield* Ref.get(live))]
      // every reported kernel is adopted and usable
      for (const kid of reported) {
        yield* client.invoke(AgentRpcs.ping_kernel, kid)
      }
      // no object of a kernel the agent does not know: every labelled object belongs to a kernel that
      // answers ping_kernel (a create whose reply was lost in the kill may be adopted too: it is known)
      yield* Effect.sleep("3 seconds")
      const objects = yield* labelledObjects(env, site.kubeNs)
      const kids = [...new Set(objects.map((x) => x.replace(/^[A-Za-z]+\/kernel-/, "")))]
      for (const kid of kids) {
        yield* client.invoke(AgentRpcs.ping_kernel, kid)
      }
      for (const kid of reported) assert.include(kids, kid)
      const pods = yield* kubectlJson(env, ["-n", site.kubeNs, "get", "pods"])
      assert.strictEqual(pods.items.length, kids.length)
      // and they all go away through the restarted agent
      yield* Effect.forEach(kids, (kid) => client.invoke(AgentRpcs.destroy_kernel, kid), { concurrency: 4, discard: true })
      assert.deepStrictEqual(yield* eventually(labelledObjects(env, site.kubeNs), (xs) => xs.length === 0, 60), [])
    }).pipe(Effect.scoped), { timeout: 600_000 })
})
