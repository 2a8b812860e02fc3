// The whole agent process (`node dist/main.js -f agent.toml`, needs `npm run build`) with nothing but
// the token of deploy/kubernetes/rbac.yaml's service account (RBAC is on in the testbed's API server):
// deploy/kubernetes/rbac.yaml rendered into the test's namespace (cluster-scoped objects named after
// it), a kubeconfig holding only the token, and our aiozmq client playing the manager:
// - registration (etcd `running`) and heartbeats with slots (NodeResources: cluster-wide nodes and pods
//   list/watch) and the registry's images (listing needs the pull secret: secrets get);
// - create_kernel → pod Running, execute, get_logs (pods/log), statistics in Redis (node proxy),
//   destroy_kernel leaves nothing;
// - SIGTERM (detach) and restart: the kept kernel is adopted and usable, restarted (restart_kernel),
//   then destroyed;
// - the agent's log has no Forbidden / 403 / Unauthorized anywhere.
// kubectl with the admin kubeconfig is the observer.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Queue, Ref } from "effect"
import { Etcd3 } from "etcd3"
import * as fs from "node:fs"
import { inject } from "vitest"
import { unpackImages } from "../../src/images/ImageRegistry.ts"
import { Redis } from "../../src/manager/Redis.ts"
import { AgentRpcs } from "../../src/rpc/AgentRpcs.ts"
import { AiozmqClient, type AiozmqClientShape } from "../../src/rpc/aiozmq/AiozmqClient.ts"
import * as Msgpack from "../../src/codec/Msgpack.ts"
import { agentFiles, printLogOnFailure, startAgentProcess, waitRpcUp } from "../kernel/AgentProcessSupport.ts"
import { eventually, kernelObjects, kubectlJson, labelledObjects, makeSite, pythonConfig } from "../kernel/KernelLifecycleSupport.ts"
import { seedEtcd } from "../testbed/datastores.ts"
import type { TestbedEnv } from "../testbed/env.ts"
import { applyRbac, kubectlAs, serviceAccountToken, tokenKubeconfig } from "./RbacSupport.ts"

const env: TestbedEnv = inject("testbed")

/** What an authorization failure looks like in the agent's log (KubeError reason, API server message, status). */
const DENIED = /forbidden|unauthorized|\b(?:status|code|HTTP)\W{0,3}40[13]\b/i

type Event = { readonly name: string; readonly args: ReadonlyArray<any> }

/** Runs `code` (query mode) to its end; its stdout. */
const execute = (client: AiozmqClientShape, kid: string, code: string) =>
  client.invoke(AgentRpcs.execute, 3, kid, crypto.randomUUID(), "query", code, {}, 20).pipe(
    Effect.map((r) => {
      assert.strictEqual(r?.status, "finished", JSON.stringify(r))
      assert.strictEqual(r?.exitCode, 0, JSON.stringify(r))
      return (r?.console ?? []).filter((c): c is [string, string] => Array.isArray(c) && c[0] === "stdout").map((c) => c[1]).join("")
    })
  )

const podUid = (ns: string, kid: string) =>
  kubectlJson(env, ["-n", ns, "get", "pod", `kernel-${kid}`]).pipe(Effect.map((p) => p.metadata.uid as string))

describe("the agent process under deploy/kubernetes/rbac.yaml", () => {
  it.live("registers, heartbeats, runs and adopts kernels with only the service account's token", () =>
    Effect.gen(function*() {
      const site0 = yield* makeSite(env, { createTimeout: 180, extra: "[debug]\nheartbeat-interval = 1\n[stats]\ninterval = 1\n" })
      yield* Effect.promise(() =>
        seedEtcd(env.etcd, site0.etcdNs, {
          redis: env.redis, eventAddr: site0.eventAddr, registry: env.registry, vfolderMount: env.vfolderMount, watcherToken: env.watcherToken
        })
      )
      yield* applyRbac(env, site0.kubeNs)
      const token = yield* serviceAccountToken(env, site0.kubeNs)
      const kubeconfig = yield* tokenKubeconfig(env, site0.kubeNs, token)
      // the token is the service account's, not an admin's
      const other = yield* kubectlAs(env, kubeconfig, "auth", "can-i", "create", "pods", "-n", "default")
      assert.strictEqual(other.stdout.trim(), "no", "the token must not be an admin's")
      const adminLine = `kubeconfig = "${env.kubeconfig}"`
      assert.include(site0.toml, adminLine)
      const site = { ...site0, toml: site0.toml.replace(adminLine, `kubeconfig = "${kubeconfig}"`) }
      const files = yield* agentFiles(site)
      assert.include(fs.readFileSync(files.toml, "utf8"), `kubeconfig = "${kubeconfig}"`)
      assert.notInclude(fs.readFileSync(files.toml, "utf8"), env.kubeconfig)

      return yield* Effect.gen(function*() {
        const events = yield* Ref.make<ReadonlyArray<Event>>([])
        yield* Queue.take(site.events).pipe(
          Effect.flatMap((e) => Ref.update(events, (xs) => [...xs, e])),
          Effect.forever,
          Effect.forkScoped
        )
        const eventsNamed = (name: string, kid?: string) =>
          Effect.map(Ref.get(events), (xs) => xs.filter((e) => e.name === name && (kid === undefined || e.args[0] === kid)))
        const etcd = yield* Effect.acquireRelease(
          Effect.sync(() => new Etcd3({ hosts: `http://${env.etcd}` })),
          (c) => Effect.sync(() => c.close())
        )
        const agentKey = (key: string) =>
          Effect.promise(() => etcd.get(`/sorna/${site.etcdNs}/nodes/agents/${site.agentId}/${key}`).string())
        const redis = yield* Redis.make<never, never>({ addr: env.redis, db: 0 })
        const stat = (key: string) =>
          redis.getBuffer(key).pipe(
            Effect.map((b) => (b === undefined ? undefined : Msgpack.decode(b) as Record<string, any>)),
            Effect.orElseSucceed(() => undefined)
          )
        const client = yield* AiozmqClient.make({ connect: `tcp://127.0.0.1:${files.rpcPort}`, timeout: "120 seconds", lingerMillis: 0 })
        const step = (s: string) => Effect.logInfo(`agent under RBAC: ${s}`)

        // ---- first run
        const kept = crypto.randomUUID()
        yield* Effect.scoped(Effect.gen(function*() {
          const agent = yield* startAgentProcess(files)
          yield* waitRpcUp(client, agent)
          assert.strictEqual(yield* eventually(agentKey(""), (s) => s === "running", 60), "running", "etcd nodes/agents/<id>/")
          yield* step("registered (etcd running)")

          // heartbeats: slots of the selected nodes, and the registry's images
          const hbs = yield* eventually(eventsNamed("instance_heartbeat"), (xs) => xs.length >= 2, 60)
          assert.isAtLeast(hbs.length, 2, "heartbeats (they wait for NodeResources: nodes and pods list/watch cluster-wide)")
          const info = hbs[hbs.length - 1]!.args[0]
          const slots = info.resource_slots as Record<string, [string, string]>
          assert.strictEqual(slots.cpu?.[0], "count", JSON.stringify(slots))
          assert.isAbove(Number(slots.cpu?.[1]), 0, JSON.stringify(slots))
          assert.strictEqual(slots.mem?.[0], "bytes", JSON.stringify(slots))
          assert.isAbove(Number(slots.mem?.[1]), 0, JSON.stringify(slots))
          const withImages = yield* eventually(
            eventsNamed("instance_heartbeat"),
            (xs) => xs.some((e) => unpackImages(e.args[0].images).length > 0),
            60
          )
          const imagesHb = withImages.findLast((e) => unpackImages(e.args[0].images).length > 0)
          assert.isDefined(imagesHb, "a heartbeat with the registry's images (the listing reads the pull secret)")
          const images = new Map(unpackImages(imagesHb!.args[0].images).map((e) => [e.name, e.digest]))
          for (const [repoTag, digest] of Object.entries(env.images)) {
            assert.strictEqual(images.get(`${env.registry.host}/${repoTag}`), digest, `image ${repoTag} in the heartbeat`)
          }
          yield* step(`heartbeat slots ${JSON.stringify(slots)}, ${images.size} images`)

          // a kernel: created, executes, logs, statistics, destroyed
          const kid = crypto.randomUUID()
          const created = yield* client.invoke(AgentRpcs.create_kernel, kid, pythonConfig(env))
          assert.strictEqual(created.id, kid)
          const pod = yield* kubectlJson(env, ["-n", site.kubeNs, "get", "pod", `kernel-${kid}`])
          assert.strictEqual(pod.status.phase, "Running")
          assert.strictEqual(yield* execute(client, kid, "print('hi under rbac')"), "hi under rbac\n")
          const logs = yield* client.invoke(AgentRpcs.get_logs, kid)
          assert.include(logs.logs, "hi under rbac")
          yield* step(`kernel created, executed, ${logs.logs.length} chars of logs`)

          const agentStat = yield* eventually(stat(site.agentId), (s) => s?.node?.cpu_util?.pct !== undefined && Number(s?.node?.mem?.current) > 0, 90)
          assert.isDefined(agentStat?.node?.mem?.current, `agent stat ${JSON.stringify(agentStat)}`)
          assert.isAbove(Number(agentStat!.node.mem.current), 0, `agent stat ${JSON.stringify(agentStat)}`)
          const kernelStat = yield* eventually(stat(kid), (s) => s?.cpu_used?.current !== undefined && s?.mem?.["stats.max"] !== undefined, 90)
          assert.isDefined(kernelStat?.cpu_used?.current, `kernel stat ${JSON.stringify(kernelStat)}`)
          yield* step(`statistics: node ${Object.keys(agentStat!.node).join(",")}; kernel ${Object.keys(kernelStat!).join(",")}`)

          yield* client.invoke(AgentRpcs.destroy_kernel, kid, null)
          const terminated = yield* eventually(eventsNamed("kernel_terminated", kid), (xs) => xs.length > 0, 60)
          assert.strictEqual(terminated.length, 1)
          assert.deepStrictEqual(yield* eventually(kernelObjects(env, site.kubeNs, kid), (xs) => xs.length === 0, 60), [])
          yield* step("destroyed, nothing left")

          // one kernel stays for the restart
          yield* client.invoke(AgentRpcs.create_kernel, kept, pythonConfig(env))
          assert.strictEqual(yield* execute(client, kept, "print(6 * 7)"), "42\n")
        }))
        // SIGTERM: the agent detached, the kernel's pod is still there
        assert.deepStrictEqual((yield* eventsNamed("instance_terminated")).length, 1)
        const keptPod = yield* kubectlJson(env, ["-n", site.kubeNs, "get", "pod", `kernel-${kept}`])
        assert.strictEqual(keptPod.metadata.deletionTimestamp, undefined)
        const keptUid = keptPod.metadata.uid as string
        yield* step("SIGTERM: detached")

        // ---- restart: the kept kernel is adopted
        yield* Effect.scoped(Effect.gen(function*() {
          const since = (yield* eventsNamed("instance_heartbeat")).length
          const agent = yield* startAgentProcess(files)
          yield* waitRpcUp(client, agent)
          yield* eventually(eventsNamed("instance_heartbeat"), (xs) => xs.length > since, 60)
          yield* client.invoke(AgentRpcs.ping_kernel, kept)
          // adopted: the same pod, usable, not reported lost
          assert.strictEqual(yield* execute(client, kept, "print(6 * 7 + 1)"), "43\n")
          assert.strictEqual(yield* podUid(site.kubeNs, kept), keptUid)
          assert.deepStrictEqual(yield* eventsNamed("kernel_terminated", kept), [])
          // restart_kernel: a new pod with its Service and ConfigMap
          yield* client.invoke(AgentRpcs.restart_kernel, kept, pythonConfig(env))
          assert.notStrictEqual(yield* podUid(site.kubeNs, kept), keptUid)
          assert.strictEqual(yield* execute(client, kept, "print('restarted')"), "restarted\n")
          yield* client.invoke(AgentRpcs.destroy_kernel, kept, null)
          assert.deepStrictEqual(yield* eventually(labelledObjects(env, site.kubeNs), (xs) => xs.length === 0, 60), [])
          yield* step("restart: adopted, executed, restart_kernel, destroyed")
        }))

        // ---- no authorization failure anywhere in the agent's log
        const log = fs.readFileSync(files.log, "utf8")
        const denied = log.split("\n").filter((l) => DENIED.test(l))
        assert.deepStrictEqual(denied.slice(0, 20), [], `authorization failures in ${files.log}`)
      }).pipe(printLogOnFailure(files.log))
    }).pipe(
      Effect.timeoutOrElse({ duration: "600 seconds", orElse: () => Effect.fail(new Error("timed out after 600 s")) }),
      Effect.scoped
    ), { timeout: 660_000 })
})
