// The agent process (`node dist/main.js -f agent.toml`) killed with SIGKILL in the middle of 100
// random creates/destroys, then restarted: no leaked object, every kernel reported created (and not
// destroyed) is adopted and usable through RPC. Needs `npm run build` and the kernel handlers wired
// in src/AgentLive.ts (test/currentBuild.ts builds dist/ first when it is stale).
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
import { AiozmqClient, type AiozmqClientShape } from "../../src/rpc/aiozmq/AiozmqClient.ts"
import { seedEtcd } from "../testbed/datastores.ts"
import type { TestbedEnv } from "../testbed/env.ts"
import { agentFiles, kill9, printLogOnFailure, startAgentProcess, waitRpcUp } from "./AgentProcessSupport.ts"
import { eventually, kubectlJson, labelledObjects, makeSite, pythonConfig } from "./KernelLifecycleSupport.ts"

const env: TestbedEnv = inject("testbed")
const OPS = 100

/** Runs `print(6 * 7)` in the kernel through the agent's execute RPC; the stdout of the run. */
const runIn = (client: AiozmqClientShape, kid: string) =>
  Effect.gen(function*() {
    const runId = `check-${crypto.randomUUID().slice(0, 8)}`
    let out = ""
    let result = yield* client.invoke(AgentRpcs.execute, 3, kid, runId, "query", "print(6 * 7)", {}, 2)
    for (let i = 0; i < 60 && result?.status === "continued"; i++) {
      out += stdoutOf(result.console)
      result = yield* client.invoke(AgentRpcs.execute, 3, kid, runId, "continue", "", {}, 2)
    }
    assert.strictEqual(result?.status, "finished", `kernel ${kid}: ${JSON.stringify(result)}`)
    return out + stdoutOf(result?.console)
  })

const stdoutOf = (console: unknown): string =>
  Array.isArray(console) ? console.filter((c) => Array.isArray(c) && c[0] === "stdout").map((c) => String(c[1])).join("") : ""

describe("agent process crash during creates/destroys", () => {
  it.live("kill -9 mid-loop, restart: zero leaked objects, reported kernels adopted and usable", () =>
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
          // keep a few kernels live, so that there is something to adopt at the kill
          const create = ids.length < 3 || (yield* Random.nextBoolean)
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
        const final = yield* Ref.get(counts)
        yield* Effect.logInfo(
          `loop done after ${yield* elapsed}: ${JSON.stringify(final)}, ${reported.length} kernels live, ` +
            `${(yield* Ref.get(uncertain)).size} in flight at the kill`
        )
        // the test is about kernels that exist at the kill: an agent whose creates all fail must not pass
        assert.isAbove(final.created, 0, "no create_kernel succeeded before the kill")
        assert.isAbove(reported.length, 0, "no kernel was live at the kill")

        // restart, with a new manager connection
        const client = yield* AiozmqClient.make({ connect, timeout: "120 seconds" })
        const second = yield* startAgentProcess(files)
        yield* waitRpcUp(client, second)
        yield* Effect.logInfo(`restarted agent up after ${yield* elapsed}`)
        // every reported kernel is adopted and usable: code runs in it through the restarted agent
        // (ping_kernel would only read the agent's table)
        for (const kid of reported) assert.strictEqual(yield* runIn(client, kid), "42\n", `kernel ${kid} adopted and running code`)
        // no object of a kernel the agent does not know: waits (bounded) until every labelled object
        // belongs to a kernel the agent answers for (half-created ones are being torn down meanwhile);
        // a create whose reply was lost in the kill may be adopted too, then it must run code as well
        const kidsOf = (objects: ReadonlyArray<string>) => [...new Set(objects.map((x) => x.replace(/^[A-Za-z]+\/kernel-/, "")))]
        const unknownKids = labelledObjects(env, site.kubeNs).pipe(
          Effect.flatMap((objects) =>
            Effect.filter(kidsOf(objects), (kid) => Effect.map(Effect.exit(client.invoke(AgentRpcs.ping_kernel, kid)), Exit.isFailure))
          )
        )
        assert.deepStrictEqual(yield* eventually(unknownKids, (xs) => xs.length === 0, 60), [])
        const kids = kidsOf(yield* labelledObjects(env, site.kubeNs))
        for (const kid of kids) assert.strictEqual(yield* runIn(client, kid), "42\n", `kernel ${kid} adopted and running code`)
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
