// The Kubernetes API server unreachable for 30 s (kube-apiserver SIGSTOPped: connections stay open,
// nothing answers) under the real agent process:
// - RPCs that need it fail with a typed error (`KubernetesUnavailable`) within the manager's
//   timeouts (create_kernel: none, so 60 s here; destroy_kernel and restart_kernel: 30 s); RPCs
//   that do not need it (ping_kernel, execute) keep working;
// - after SIGCONT the pod watch works again (pods deleted with kubectl are reported at once; the
//   relist is 5 minutes away), no kernel is lost or reported terminated by mistake, and nothing leaks.
// Requests the agent gave up on stay queued in the paused server and run when it resumes, so a
// destroy or restart that failed may still delete its pod: the kernel is then reported terminated
// (once) and its objects go; otherwise it stays usable. A create that failed leaves nothing.
//
// Pausing the API server disturbs everything on that testbed, so this test brings up a testbed of
// its own (named `vitest-<worker pid>`: a run that dies leaves it to globalSetup's reaper) and takes
// it down at the end. Needs `npm run build`.
import { assert, describe, it } from "@effect/vitest"
import { Clock, Effect, Exit, Option, Queue, Ref } from "effect"
import { AgentRpcs } from "../../src/rpc/AgentRpcs.ts"
import { AiozmqClient, type AiozmqClientShape } from "../../src/rpc/aiozmq/AiozmqClient.ts"
import { seedEtcd } from "../testbed/datastores.ts"
import type { TestbedEnv } from "../testbed/env.ts"
import { isRunning } from "../testbed/processes.ts"
import { down, up } from "../testbed/testbed.ts"
import { agentFiles, printLogOnFailure, scrapeMetric, startAgentProcess, waitRpcUp } from "./AgentProcessSupport.ts"
import { eventually, kernelObjects, kubectl, kubectlJson, labelledObjects, makeSite, pythonConfig } from "./KernelLifecycleSupport.ts"

const OUTAGE_SECONDS = 30
const UNAVAILABLE = "ai.backend.agent.exception.KubernetesUnavailable"

/** A testbed of this test's own, down (and removed) with the scope. */
const ownTestbed = Effect.acquireRelease(
  Effect.promise(async () => {
    const env = await up({ name: `vitest-${process.pid}`, mode: "test", log: () => {} })
    // last resort if the worker exits without running finalizers
    const killAll = () => { for (const p of env.pids.filter(isRunning)) { try { process.kill(-p.pid, "SIGTERM") } catch { /* gone */ } } }
    process.once("exit", killAll)
    return { env, killAll }
  }),
  ({ env, killAll }) =>
    Effect.promise(async () => {
      process.removeListener("exit", killAll)
      await down(env.stateDir, true)
    })
).pipe(Effect.map(({ env }) => env))

/** SIGSTOP of the testbed's kube-apiserver; SIGCONT when the scope closes. */
const pauseApiserver = (env: TestbedEnv) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const p = env.pids.find((x) => x.name === "kube-apiserver")
      if (p === undefined || !isRunning(p)) throw new Error("no running kube-apiserver in the testbed")
      process.kill(p.pid, "SIGSTOP")
      return p.pid
    }),
    (pid) => Effect.sync(() => process.kill(pid, "SIGCONT"))
  )

const execute = (client: AiozmqClientShape, kid: string) =>
  client.invoke(AgentRpcs.execute, 3, kid, crypto.randomUUID(), "query", "print(6*7)", {}, 20).pipe(
    Effect.tap((r) =>
      Effect.sync(() => {
        assert.strictEqual(r?.status, "finished", `execute on ${kid}: ${JSON.stringify(r)}`)
        assert.include(JSON.stringify(r), "42")
      })
    )
  )

/** The call's outcome and how long it took. */
const timed = <A, E>(self: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const t = yield* Clock.currentTimeMillis
    const exit = yield* Effect.exit(self)
    return { exit, seconds: ((yield* Clock.currentTimeMillis) - t) / 1000 }
  })

const assertTypedFailure = (what: string, r: { exit: Exit.Exit<unknown, { _tag: string; message: string }>; seconds: number }) => {
  assert.isTrue(Exit.isFailure(r.exit), `${what} succeeded while the API server was paused`)
  const e = Exit.isFailure(r.exit) ? Exit.findErrorOption(r.exit) : Option.none()
  assert.isTrue(Option.isSome(e), `${what}: ${String(r.exit)}`)
  const err = Option.getOrThrow(e) as { _tag: string; message: string; excType?: string }
  assert.strictEqual(err._tag, "AiozmqRemoteError", `${what}: ${err.message}`) // not a client timeout
  assert.strictEqual(err.excType, UNAVAILABLE, `${what}: ${err.message}`)
}

describe("Kubernetes API server unreachable for 30 s", () => {
  it.live("typed failures within the manager's timeouts, watch resumes, no kernel lost or leaked", () =>
    Effect.gen(function*() {
      const tb = yield* ownTestbed
      const site = yield* makeSite(tb, { createTimeout: 120 })
      yield* Effect.promise(() =>
        seedEtcd(tb.etcd, site.etcdNs, {
          redis: tb.redis, eventAddr: site.eventAddr, registry: tb.registry, vfolderMount: tb.vfolderMount, watcherToken: tb.watcherToken
        })
      )
      const events = yield* Ref.make<ReadonlyArray<{ readonly name: string; readonly args: ReadonlyArray<unknown> }>>([])
      yield* Queue.take(site.events).pipe(
        Effect.flatMap((e) => Ref.update(events, (xs) => [...xs, e])),
        Effect.forever,
        Effect.forkScoped
      )
      const eventsOf = (name: string, kid: string) =>
        Effect.map(Ref.get(events), (xs) => xs.filter((e) => e.name === name && e.args[0] === kid))
      const files = yield* agentFiles(site)
      const log = (s: string) => Effect.logInfo(s)

      return yield* Effect.gen(function*() {
        const client = yield* AiozmqClient.make({ connect: `tcp://127.0.0.1:${files.rpcPort}`, timeout: "120 seconds" })
        const agent = yield* startAgentProcess(files)
        yield* waitRpcUp(client, agent)

        // A: untouched; B: restarted during the outage; D: destroyed during the outage
        const [a, b, d] = [crypto.randomUUID(), crypto.randomUUID(), crypto.randomUUID()]
        const c = crypto.randomUUID() // created during the outage
        yield* Effect.forEach([a, b, d], (kid) => client.invoke(AgentRpcs.create_kernel, kid, pythonConfig(tb)), { concurrency: 3 })
        yield* execute(client, a)

        // ---- outage
        const outage = yield* Effect.scoped(Effect.gen(function*() {
          const t0 = yield* Clock.currentTimeMillis
          yield* pauseApiserver(tb)
          const results = yield* Effect.all({
            create: timed(client.call("create_kernel", [c, pythonConfig(tb)], { timeout: "60 seconds" })),
            destroy: timed(client.call("destroy_kernel", [d, null], { timeout: "30 seconds" })),
            restart: timed(client.call("restart_kernel", [b, pythonConfig(tb)], { timeout: "30 seconds" })),
            ping: timed(client.call("ping_kernel", [a], { timeout: "10 seconds" })),
            execute: timed(execute(client, a))
          }, { concurrency: "unbounded" })
          const t1 = yield* Clock.currentTimeMillis
          yield* Effect.sleep(Math.max(0, OUTAGE_SECONDS * 1000 - (t1 - t0)))
          return results
        }))
        yield* log(`outage over; RPC seconds: ${JSON.stringify(Object.fromEntries(Object.entries(outage).map(([k, v]) => [k, v.seconds])))}`)
        assertTypedFailure("create_kernel", outage.create)
        assertTypedFailure("destroy_kernel", outage.destroy)
        assertTypedFailure("restart_kernel", outage.restart)
        assert.isTrue(Exit.isSuccess(outage.ping.exit), `ping_kernel during the outage: ${String(outage.ping.exit)}`)
        assert.isTrue(Exit.isSuccess(outage.execute.exit), `execute during the outage: ${String(outage.execute.exit)}`)

        // ---- after: the server works off what was queued in it; let the watch deliver that
        yield* eventually(kubectl(tb, ["get", "--raw", "/readyz"]).pipe(Effect.option), Option.isSome, 60)
        yield* Effect.sleep("5 seconds")

        // A 30 s pause does not break the watches' connections (their inactivity timeout is past the
        // server's 5 min watch timeout), so they resume where they were; whether they restarted is
        // logged, and that they see events again is checked below (deletions reported by the watch).
        for (const resource of ["kernel-pods", "nodes", "pods"]) {
          const restarts = yield* scrapeMetric(files, "bai_kube_watch_restarts_total", { resource })
          yield* log(`watch restarts of ${resource}: ${restarts ?? 0}`)
        }

        // A: never reported terminated, still usable
        assert.deepStrictEqual(yield* eventsOf("kernel_terminated", a), [])
        yield* client.invoke(AgentRpcs.ping_kernel, a)
        yield* execute(client, a)

        // B and D: either their pod survived (usable) or it went (reported terminated once, nothing left)
        const survivors = [a]
        for (const [what, kid] of [["restarted", b], ["destroyed", d]] as const) {
          const pod = yield* kubectlJson(tb, ["-n", site.kubeNs, "get", "pods", "-l", `backend.ai/kernel-id=${kid}`])
          const alive = pod.items.some((p) => p.metadata.deletionTimestamp === undefined)
          yield* log(`kernel ${what} during the outage: pod ${alive ? "kept" : "deleted by the queued request"}`)
          if (alive) {
            yield* client.invoke(AgentRpcs.ping_kernel, kid)
            yield* execute(client, kid)
            assert.deepStrictEqual(yield* eventsOf("kernel_terminated", kid), [])
            survivors.push(kid)
          } else {
            const ev = yield* eventually(eventsOf("kernel_terminated", kid), (xs) => xs.length > 0, 60)
            assert.strictEqual(ev.length, 1, `kernel_terminated of the ${what} kernel`)
            assert.deepStrictEqual(yield* eventually(kernelObjects(tb, site.kubeNs, kid), (xs) => xs.length === 0, 60), [])
            const ping = yield* Effect.exit(client.invoke(AgentRpcs.ping_kernel, kid))
            assert.isTrue(Exit.isFailure(ping), `the ${what} kernel is gone but the agent still knows it`)
          }
        }

        // C: the failed create leaves nothing, even if its pod request ran when the server resumed
        assert.deepStrictEqual(yield* eventually(kernelObjects(tb, site.kubeNs, c), (xs) => xs.length === 0, 60), [])
        assert.deepStrictEqual(yield* eventsOf("kernel_started", c), [])
        assert.isTrue(Exit.isFailure(yield* Effect.exit(client.invoke(AgentRpcs.ping_kernel, c))), "the failed create is known")

        // the watch works again, and the survivors are running kernels to it: a pod deleted by someone
        // else is reported (the relist is 5 min away)
        for (const kid of survivors) yield* kubectl(tb, ["-n", site.kubeNs, "delete", "pod", `kernel-${kid}`, "--wait=false"])
        for (const kid of survivors) {
          const gone = yield* eventually(eventsOf("kernel_terminated", kid), (xs) => xs.length > 0, 60)
          assert.strictEqual(gone.length, 1, `kernel_terminated of ${kid} after its pod was deleted`)
          assert.strictEqual(gone[0]!.args[1], "force-terminated")
          assert.deepStrictEqual(yield* eventually(kernelObjects(tb, site.kubeNs, kid), (xs) => xs.length === 0, 60), [])
        }

        // no leaked object: whatever is left belongs to a kernel the agent knows; then destroy it all
        const objects = yield* labelledObjects(tb, site.kubeNs)
        const kids = [...new Set(objects.map((x) => x.replace(/^[A-Za-z]+\/kernel-/, "")))]
        for (const kid of kids) yield* client.invoke(AgentRpcs.ping_kernel, kid)
        const pods = yield* kubectlJson(tb, ["-n", site.kubeNs, "get", "pods"])
        assert.strictEqual(pods.items.length, kids.length)
        yield* Effect.forEach(kids, (kid) => client.invoke(AgentRpcs.destroy_kernel, kid), { concurrency: 4, discard: true })
        assert.deepStrictEqual(yield* eventually(labelledObjects(tb, site.kubeNs), (xs) => xs.length === 0, 60), [])
        // nothing was reported twice
        const terminated = (yield* Ref.get(events)).filter((e) => e.name === "kernel_terminated").map((e) => e.args[0])
        assert.strictEqual(new Set(terminated).size, terminated.length, `kernel_terminated twice: ${JSON.stringify(terminated)}`)
      }).pipe(
        Effect.timeoutOrElse({ duration: "420 seconds", orElse: () => Effect.fail(new Error("timed out after 420 s")) }),
        printLogOnFailure(files.log)
      )
    }).pipe(Effect.scoped), { timeout: 480_000 })
})
