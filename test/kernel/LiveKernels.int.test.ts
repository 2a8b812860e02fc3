// What the manager must hear (issue 13): kernel_terminated is never lost to a full event queue, to an
// agent restart, to a pod deleted while the agent was down or to a create cut off by the agent's
// death; and a wall-clock jump destroys no idle kernel. The manager's event socket is pyzmq's PULL
// (test/manager/manager_pull.py) or the site's PULL socket; kubectl and an etcd client observe.
import { assert, describe, it } from "@effect/vitest"
import { Clock, Context, Duration, Effect, Exit, Fiber, Option, Queue, References, Schedule, Scope } from "effect"
import { Etcd3 } from "etcd3"
import * as fs from "node:fs"
import * as path from "node:path"
import { inject } from "vitest"
import { KernelLifecycle } from "../../src/kernel/KernelLifecycle.ts"
import { KernelTable } from "../../src/kernel/KernelTable.ts"
import { AgentEvents, EventPublisher } from "../../src/manager/EventPublisher.ts"
import { AgentRpcs } from "../../src/rpc/AgentRpcs.ts"
import { AiozmqClient } from "../../src/rpc/aiozmq/AiozmqClient.ts"
import { spawnPython } from "../interop/python.ts"
import { seedEtcd } from "../testbed/datastores.ts"
import type { TestbedEnv } from "../testbed/env.ts"
import { freePort } from "../testbed/ports.ts"
import { agentFiles, kill9, printLogOnFailure, startAgentProcess, waitRpcUp } from "./AgentProcessSupport.ts"
import {
  eventually,
  kernelObjects,
  kubectl,
  kubectlJson,
  labelledObjects,
  makeSite,
  pythonConfig,
  type Site,
  startAgent,
  takeEvent
} from "./KernelLifecycleSupport.ts"

const env: TestbedEnv = inject("testbed")

/** The site's agent, but with the manager's event address at a port where nobody listens (yet). */
const managerAway = (site: Site) =>
  Effect.map(Effect.promise(() => freePort()), (port) => ({ site: { ...site, eventAddr: `127.0.0.1:${port}` } satisfies Site, port }))

/** The manager's PULL socket (pyzmq) bound at `port`; `terminated(kids)` waits for their kernel_terminated. */
const managerAt = (port: number) =>
  Effect.gen(function*() {
    const proc = yield* spawnPython("../manager/manager_pull.py", [`tcp://127.0.0.1:${port}`])
    assert.strictEqual(yield* Queue.take(proc.lines), `127.0.0.1:${port}`)
    const seen = new Map<string, Array<ReadonlyArray<unknown>>>()
    const terminated = (kids: ReadonlyArray<string>) =>
      Effect.gen(function*() {
        while (kids.some((k) => !seen.has(k))) {
          const line = yield* Queue.take(proc.lines).pipe(
            Effect.timeoutOrElse({
              duration: "90 seconds",
              orElse: () => Effect.fail(new Error(`no kernel_terminated for ${kids.filter((k) => !seen.has(k)).join(" ")} (stderr: ${proc.stderr()})`))
            })
          )
          const [name, , args] = JSON.parse(line) as [string, string, ReadonlyArray<unknown>]
          if (name !== "kernel_terminated") continue
          const kid = args[0] as string
          seen.set(kid, [...(seen.get(kid) ?? []), args])
        }
        return seen
      })
    return { terminated }
  })

/** The agent's record of a kernel in etcd (observer client). */
const recordOf = (site: Site, kid: string) =>
  Effect.gen(function*() {
    const client = yield* Effect.acquireRelease(Effect.sync(() => new Etcd3({ hosts: `http://${env.etcd}` })), (c) => Effect.sync(() => c.close()))
    return yield* Effect.promise(() => client.get(`/sorna/${site.etcdNs}/nodes/agents/${site.agentId}/kernels/${kid}`).string())
  }).pipe(Effect.scoped)

/** A Clock whose wall time and monotonic time are the real ones moved by the given offsets (sleeps are real). */
const shiftedClock = (real: Clock.Clock, wallMillis: number, monotonicMillis: number): Clock.Clock => {
  const wallNanos = () => BigInt(Date.now() + wallMillis) * 1_000_000n
  const monoNanos = () => process.hrtime.bigint() + BigInt(monotonicMillis) * 1_000_000n
  return {
    currentTimeMillisUnsafe: () => Date.now() + wallMillis,
    currentTimeMillis: Effect.sync(() => Date.now() + wallMillis),
    currentTimeNanosUnsafe: wallNanos,
    currentTimeNanos: Effect.sync(wallNanos),
    monotonicTimeNanosUnsafe: monoNanos,
    monotonicTimeNanos: Effect.sync(monoNanos),
    sleep: (d: Duration.Duration) => real.sleep(d)
  }
}

const quiet = Effect.provideService(References.MinimumLogLevel, "Error")

describe("LiveKernels: what the manager must hear", () => {
  it.live("every kernel_terminated arrives although the event queue was full when the kernels ended", () =>
    Effect.gen(function*() {
      const { port, site } = yield* managerAway(yield* makeSite(env))
      const a = yield* startAgent(site)
      yield* Effect.addFinalizer(() => Scope.close(a.scope, Exit.void))
      const lifecycle = Context.get(a.context, KernelLifecycle)
      const events = Context.get(a.context, EventPublisher)
      const kids = [crypto.randomUUID(), crypto.randomUUID(), crypto.randomUUID()]
      yield* Effect.forEach(kids, (kid) => lifecycle.create(kid, pythonConfig(env)), { concurrency: 3, discard: true })
      // heartbeat-like traffic keeps the queue full while the manager is away
      const noise = yield* events.publish(AgentEvents.kernelStarted("noise")).pipe(
        Effect.repeat({ times: 49 }),
        Effect.repeat(Schedule.spaced("20 millis")),
        quiet,
        Effect.forkChild
      )
      yield* eventually(events.dropped, (n) => n > 0)
      yield* Effect.forEach(kids, (kid) => lifecycle.destroy(kid, "user-requested"), { concurrency: 3, discard: true }).pipe(quiet)
      yield* Fiber.interrupt(noise)
      assert.isAbove(yield* events.dropped, 0)

      const manager = yield* managerAt(port)
      const seen = yield* manager.terminated(kids)
      for (const kid of kids) assert.deepStrictEqual(seen.get(kid)![0]!.slice(0, 2), [kid, "user-requested"])
      // each record goes once its event was handed off
      for (const kid of kids) assert.isNull(yield* eventually(recordOf(site, kid), (r) => r === null))
    }).pipe(Effect.scoped), { timeout: 300_000 })

  it.live("a kernel_terminated not yet sent when the agent stops is sent by the next agent", () =>
    Effect.gen(function*() {
      const { port, site } = yield* managerAway(yield* makeSite(env))
      const a = yield* startAgent(site)
      const kid = crypto.randomUUID()
      yield* Context.get(a.context, KernelLifecycle).create(kid, pythonConfig(env))
      yield* Context.get(a.context, KernelLifecycle).destroy(kid, "user-requested")
      yield* Scope.close(a.scope, Exit.void).pipe(quiet)
      assert.deepStrictEqual(yield* kernelObjects(env, site.kubeNs, kid), [])

      const manager = yield* managerAt(port)
      const b = yield* startAgent(site, { withReconciler: true })
      yield* Effect.addFinalizer(() => Scope.close(b.scope, Exit.void))
      const seen = yield* manager.terminated([kid])
      assert.strictEqual(seen.get(kid)![0]![1], "user-requested")
      assert.isNull(yield* eventually(recordOf(site, kid), (r) => r === null))
    }).pipe(Effect.scoped), { timeout: 300_000 })

  it.live("a kernel whose pod and objects were deleted while the agent was down is reported when it starts", () =>
    Effect.gen(function*() {
      const site = yield* makeSite(env)
      const a = yield* startAgent(site)
      const kid = crypto.randomUUID()
      yield* Context.get(a.context, KernelLifecycle).create(kid, pythonConfig(env))
      yield* Scope.close(a.scope, Exit.void)
      yield* kubectl(env, ["-n", site.kubeNs, "delete", "pod,service,configmap", `kernel-${kid}`, "--grace-period=0", "--force", "--ignore-not-found"])
      assert.deepStrictEqual(yield* eventually(kernelObjects(env, site.kubeNs, kid), (xs) => xs.length === 0), [])

      const b = yield* startAgent(site, { withReconciler: true })
      yield* Effect.addFinalizer(() => Scope.close(b.scope, Exit.void))
      const term = yield* takeEvent(site, "kernel_terminated", kid)
      assert.strictEqual(term.args[1], "force-terminated")
      assert.isTrue(Option.isNone(yield* Context.get(b.context, KernelTable).find(kid)))
      assert.isFalse(fs.existsSync(path.join(site.scratchRoot, kid)))
      assert.isNull(yield* eventually(recordOf(site, kid), (r) => r === null))
    }).pipe(Effect.scoped), { timeout: 300_000 })

  it.live("a wall-clock jump destroys no idle kernel; monotonic idleness does", () =>
    Effect.gen(function*() {
      const site = yield* makeSite(env)
      const a = yield* startAgent(site)
      yield* Effect.addFinalizer(() => Scope.close(a.scope, Exit.void))
      const lifecycle = Context.get(a.context, KernelLifecycle)
      const registry = Context.get(a.context, KernelTable)
      const kid = crypto.randomUUID()
      yield* lifecycle.create(kid, pythonConfig(env, { idle_timeout: 60 }))
      const real = yield* Clock.clockWith(Effect.succeed)

      // the wall clock jumps a day ahead (NTP step, VM resume): the kernel was used just now
      yield* lifecycle.reapIdle.pipe(Effect.provideService(Clock.Clock, shiftedClock(real, 86_400_000, 0)))
      const still = yield* registry.find(kid)
      assert.isTrue(Option.isSome(still) && still.value.status === "running")
      assert.strictEqual((yield* kernelObjects(env, site.kubeNs, kid)).length, 3)
      // and a day back: still nothing
      yield* lifecycle.reapIdle.pipe(Effect.provideService(Clock.Clock, shiftedClock(real, -86_400_000, 0)))
      assert.isTrue(Option.isSome(yield* registry.find(kid)))

      // a day of real (monotonic) idleness does destroy it
      yield* lifecycle.reapIdle.pipe(Effect.provideService(Clock.Clock, shiftedClock(real, 0, 86_400_000)))
      const term = yield* takeEvent(site, "kernel_terminated", kid)
      assert.strictEqual(term.args[1], "idle-timeout")
      assert.isTrue(Option.isNone(yield* registry.find(kid)))
    }).pipe(Effect.scoped), { timeout: 300_000 })

  // The agent process (dist/main.js) is killed with SIGKILL while create_kernel waits for the kernel's
  // runner (container.kernel-host is a black hole, so the create cannot finish): the pod runs without
  // a ready mark, the manager got no reply and holds the kernel as PREPARING.
  it.live("kill -9 during a create: the restarted agent tears the kernel down and reports it", () =>
    Effect.gen(function*() {
      const base = yield* makeSite(env, { createTimeout: 600 })
      const site: Site = { ...base, toml: base.toml.replace("[container]\n", `[container]\nkernel-host = "192.0.2.1"\n`) }
      yield* Effect.promise(() =>
        seedEtcd(env.etcd, site.etcdNs, {
          redis: env.redis, eventAddr: site.eventAddr, registry: env.registry, vfolderMount: env.vfolderMount, watcherToken: env.watcherToken
        })
      )
      const files = yield* agentFiles(site)
      const connect = `tcp://127.0.0.1:${files.rpcPort}`
      return yield* Effect.gen(function*() {
        const firstClient = yield* Scope.make()
        const client1 = yield* AiozmqClient.make({ connect, timeout: "600 seconds", lingerMillis: 0 }).pipe(Scope.provide(firstClient))
        const first = yield* startAgentProcess(files)
        yield* waitRpcUp(client1, first)
        const kid = crypto.randomUUID()
        const creating = yield* client1.invoke(AgentRpcs.create_kernel, kid, pythonConfig(env)).pipe(Effect.exit, Effect.forkChild)
        const running = (l: { items: Array<any> }) =>
          l.items.some((p) => p.metadata.name === `kernel-${kid}` && p.status?.phase === "Running")
        assert.isTrue(running(yield* eventually(kubectlJson(env, ["-n", site.kubeNs, "get", "pods"]), running, 120)))
        yield* kill9(first)
        yield* Scope.close(firstClient, Exit.void)
        assert.isTrue(Exit.isFailure(yield* Fiber.join(creating)))
        assert.isNotNull(yield* recordOf(site, kid))

        const client = yield* AiozmqClient.make({ connect, timeout: "120 seconds" })
        const second = yield* startAgentProcess(files)
        yield* waitRpcUp(client, second)
        const term = yield* takeEvent(site, "kernel_terminated", kid)
        assert.strictEqual(term.args[1], "failed-to-start")
        assert.deepStrictEqual(yield* eventually(labelledObjects(env, site.kubeNs), (xs) => xs.length === 0, 60), [])
        assert.isNull(yield* eventually(recordOf(site, kid), (r) => r === null))
      }).pipe(printLogOnFailure(files.log))
    }).pipe(Effect.scoped), { timeout: 600_000 })
})
