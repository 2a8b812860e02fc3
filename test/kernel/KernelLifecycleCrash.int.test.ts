// The agent process (`node dist/main.js -f agent.toml`) killed with SIGKILL in the middle of 100
// random creates/destroys, then restarted: no leaked object, every kernel reported created (and not
// destroyed) is adopted and usable through RPC. Needs `npm run build` and the kernel handlers wired
// in src/AgentLive.ts (skipped, saying so, until they are).
//
// The manager side: one DEALER per agent process. Operations stop at the kill (a manager does not
// keep sending to a dead agent), and the first client is closed right away (linger 0): its requests
// in flight fail instead of waiting for their 120 s timeout, and none of them is delivered later to
// the restarted agent. A kernel whose create or destroy was in flight at the kill is in no known
// state: it may be adopted (then it must be usable) or gone, never leaked.
import { assert, describe, it } from "@effect/vitest"
import { Clock, Effect, Exit, Random, Ref, Scope } from "effect"
import { inject } from "vitest"
import { AgentRpcs } from "../../src/rpc/AgentRpcs.ts"
import { AiozmqClient } from "../../src/rpc/aiozmq/Client.ts"
import { seedEtcd } from "../testbed/datastores.ts"
import type { TestbedEnv } from "../testbed/env.ts"
import { agentBuilt, agentFiles, kill9, printLogOnFailure, startAgentProcess, waitRpcUp } from "./AgentProcessSupport.ts"
import { eventually, kubectlJson, labelledObjects, makeSite, pythonConfig } from "./KernelLifecycleSupport.ts"

const env: TestbedEnv = inject("testbed")
const OPS = 100

describe("agent process crash during creates/destroys", () => {
  it.live.skipIf(!agentBuilt)("kill -9 mid-loop, restart: zero leaked objects, reported kernels adopted and usable", () =>
    Effect.gen(function*() {
      const site = yield* makeSite(env, { createTimeout: 120 })
      // the manager's event address for this agent = the site's PULL socket
      yield* Effect.promise(() =>
        seedEtcd(env.etcd, site.etcdNs, {
          redis: env.redis, eventAddr: site.eventAddr, registry: env.registry, vfolderMount: env.vfolderMount, watcherToken: env.watcherToken
        })
      )
      const files = yield* agentFiles(site)
      const connect = `tcp://127.0.0.1:${files.rpcPort}`
      const t0 = yield* Clock.currentTimeMillis
      const elapsed = Effect.map(Clock.currentTimeMillis, (t) => `${((t - t0) / 1000).toFixed(1)} s`)

      return yield* Effect.gen(function*() {
        const firstClientScope = yield* Scope.make()
        const client1 = yield* AiozmqClient.make({ connect, timeout: "120 seconds", lingerMillis: 0 }).pipe(Scope.provide(firstClientScope))
        const first = yield* startAgentProcess(files)
        yield* waitRpcUp(client1, first)
        yield* Effect.logInfo(`first agent up after ${yield* elapsed}`)

        // 100 random operations, 4 at a time; SIGKILL at a random one of them, the rest are not sent
        const live = yield* Ref.make<ReadonlySet<string>>(new Set()) // create answered, no destroy sent
        const uncertain = yield* Ref.make<ReadonlySet<string>>(new Set()) // create or destroy unanswered
        const counts = yield* Ref.make({ created: 0, destroyed: 0, failed: 0, cutOff: 0 })
        const killAt = yield* Random.nextIntBetween(30, 70)
        const done = yield* Ref.make(0)
        const add = (set: Ref.Ref<ReadonlySet<string>>, kid: string) => Ref.update(set, (s) => new Set([...s, kid]))
        const del = (set: Ref.Ref<ReadonlySet<string>>, kid: string) => Ref.update(set, (s) => new Set([...s].filter((x) => x !== kid)))
        const op = Effect.gen(function*() {
          const n = yield* Ref.getAndUpdate(done, (x) => x + 1)
          if (n > killAt) return
          if (n === killAt) {
            yield* kill9(first)
            yield* Effect.logInfo(`agent killed at operation ${n}, after ${yield* elapsed}`)
            // the requests in flight fail now ("client closed")
            return yield* Scope.close(firstClientScope, Exit.void)
          }
          const ids = [...(yield* Ref.get(live))]
          const create = ids.length === 0 || (yield* Random.nextBoolean)
          if (create) {
            const kid = crypto.randomUUID()
            yield* add(uncertain, kid)
            yield* client1.invoke(AgentRpcs.create_kernel, kid, pythonConfig(env)).pipe(
              Effect.matchEffect({
                onFailure: (e) =>
                  e._tag === "AiozmqRemoteError"
                    ? Ref.update(counts, (c) => ({ ...c, failed: c.failed + 1 })).pipe(Effect.andThen(Effect.logWarning(`create failed: ${e.repr}`)))
                    : Ref.update(counts, (c) => ({ ...c, cutOff: c.cutOff + 1 })),
                onSuccess: () =>
                  Effect.all([add(live, kid), del(uncertain, kid), Ref.update(counts, (c) => ({ ...c, created: c.created + 1 }))])
              })
            )
          } else {
            const kid = ids[yield* Random.nextIntBetween(0, ids.length, { halfOpen: true })]!
            yield* del(live, kid)
            yield* add(uncertain, kid)
            yield* client1.invoke(AgentRpcs.destroy_kernel, kid).pipe(
              Effect.matchEffect({
                // the agent answered with an error: the kernel is still there
                onFailure: (e) =>
                  e._tag === "AiozmqRemoteError"
                    ? Effect.all([add(live, kid), del(uncertain, kid), Ref.update(counts, (c) => ({ ...c, failed: c.failed + 1 }))]).pipe(
                      Effect.andThen(Effect.logWarning(`destroy failed: ${e.repr}`))
                    )
                    : Ref.update(counts, (c) => ({ ...c, cutOff: c.cutOff + 1 })),
                onSuccess: () => Effect.all([del(uncertain, kid), Ref.update(counts, (c) => ({ ...c, destroyed: c.destroyed + 1 }))])
              })
            )
          }
        })
        yield* Effect.forEach(Array.from({ length: OPS }), () => op, { concurrency: 4, discard: true })
        yield* kill9(first)
        yield* Scope.close(firstClientScope, Exit.void)
        const reported = [...(yield* Ref.get(live))]
        yield* Effect.logInfo(
          `loop done after ${yield* elapsed}: ${JSON.stringify(yield* Ref.get(counts))}, ${reported.length} kernels live, ` +
            `${(yield* Ref.get(uncertain)).size} in flight at the kill`
        )

        // restart, with a new manager connection
        const client = yield* AiozmqClient.make({ connect, timeout: "120 seconds" })
        const second = yield* startAgentProcess(files)
        yield* waitRpcUp(client, second)
        yield* Effect.logInfo(`restarted agent up after ${yield* elapsed}`)
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
        yield* Effect.logInfo(`${kids.length} kernels adopted (${reported.length} reported), checked after ${yield* elapsed}`)
        // and they all go away through the restarted agent
        yield* Effect.forEach(kids, (kid) => client.invoke(AgentRpcs.destroy_kernel, kid), { concurrency: 4, discard: true })
        assert.deepStrictEqual(yield* eventually(labelledObjects(env, site.kubeNs), (xs) => xs.length === 0, 60), [])
        yield* Effect.logInfo(`done after ${yield* elapsed}`)
      }).pipe(
        // fail (and print the agent's log) before vitest's own timeout
        Effect.timeoutOrElse({ duration: "540 seconds", orElse: () => Effect.fail(new Error("timed out after 540 s")) }),
        printLogOnFailure(files.log)
      )
    }).pipe(Effect.scoped), { timeout: 600_000 })
})
