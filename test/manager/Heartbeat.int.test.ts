/**
 * Registration + heartbeat against the testbed: real Kubernetes API (fake Nodes written through the
 * API, selected by a per-run label), the testbed registry, a dedicated etcd (so it can be stopped
 * and wiped without disturbing other tests), and a pyzmq PULL socket playing manager 19.06
 * (test/manager/manager_pull.py, which decodes `images` with python-snappy + msgpack).
 */
import { assert, describe, it } from "@effect/vitest"
import * as k8s from "@kubernetes/client-node"
import { Context, Duration, Effect, Exit, Layer, Queue, Schedule, Scope } from "effect"
import { Etcd3 } from "etcd3"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { AgentConfig, decodeConfigText } from "../../src/config/AgentConfig.ts"
import { NodeResources } from "../../src/kube/NodeResources.ts"
import { MemoryRelease } from "../../src/observability/MemoryRelease.ts"
import { KubeClient } from "../../src/kube/KubeClient.ts"
import { Etcd } from "../../src/manager/Etcd.ts"
import { EventPublisherFromEtcd } from "../../src/manager/EventPublisher.ts"
import { Heartbeat } from "../../src/manager/Heartbeat.ts"
import { ImageRegistry } from "../../src/images/ImageRegistry.ts"
import { ManagerConfig } from "../../src/manager/ManagerConfig.ts"
import { Registration } from "../../src/manager/Registration.ts"
import { spawnPython } from "../interop/python.ts"
import { coreApi } from "../testbed/controlplane.ts"
import { managerKeys, startEtcd, waitEtcd } from "../testbed/datastores.ts"
import { freshKubeNamespace, testbed, type TestbedEnv } from "../testbed/env.ts"
import { freePort } from "../testbed/ports.ts"
import { pushImage } from "../testbed/registry.ts"
import { type Daemon, stopDaemons } from "../testbed/processes.ts"

const GiB = 1024 ** 3

interface Event {
  readonly name: string
  readonly agentId: string
  readonly args: ReadonlyArray<any>
}

/** A fake worker node (no kubelet behind it): Ready, labelled for this run, PreferNoSchedule so the
 * scheduler keeps other tests' pods on the real simulated nodes. */
export const fakeNode = (name: string, label: Record<string, string>, res: { cpu: string; memory: string; gpu?: string }, ip: string): k8s.V1Node => {
  const now = new Date()
  const allocatable = { cpu: res.cpu, memory: res.memory, pods: "110", ...(res.gpu === undefined ? {} : { "nvidia.com/gpu": res.gpu }) }
  return {
    apiVersion: "v1",
    kind: "Node",
    metadata: { name, labels: { ...label, "kubernetes.io/hostname": name } },
    spec: { taints: [{ key: "bai-test/fake-node", value: "true", effect: "PreferNoSchedule" }] },
    status: {
      capacity: allocatable,
      allocatable,
      conditions: [{ type: "Ready", status: "True", reason: "KubeletReady", message: "fake node", lastHeartbeatTime: now, lastTransitionTime: now }],
      addresses: [{ type: "InternalIP", address: ip }, { type: "Hostname", address: name }]
    }
  }
}

/** Creates the node and makes sure its status is there (create may drop it). */
export const createFakeNode = async (core: k8s.CoreV1Api, node: k8s.V1Node): Promise<void> => {
  await core.createNode({ body: node })
  const read = await core.readNode({ name: node.metadata!.name! })
  if (!(read.status?.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True")) {
    read.status = node.status!
    await core.replaceNodeStatus({ name: node.metadata!.name!, body: read })
  }
}

const configToml = (o: {
  etcdAddr: string
  etcdNs: string
  agentId: string
  env: TestbedEnv
  kubeNs: string
  selector: string
}) => `
[etcd]
namespace = "${o.etcdNs}"
addr = "${o.etcdAddr}"

[agent]
id = "${o.agentId}"
rpc-listen-addr = { port = 16001 }
scaling-group = "sg-test"

[kubernetes]
kubeconfig = "${o.env.kubeconfig}"
namespace = "${o.kubeNs}"
node-selector = "${o.selector}"
relist-interval = 300
registry = { url = "${o.env.registry.url}", pull-secret = "${o.env.registrySecret}" }

[resource]
reserved-cpu = 0.5

[debug]
heartbeat-interval = 1
`

describe("registration and heartbeats", () => {
  it.live("starting → running, instance_started, heartbeats tracking the cluster, etcd outage, instance_terminated", () =>
    Effect.gen(function*() {
      const env = yield* Effect.promise(() => testbed())
      const run = randomBytes(3).toString("hex")
      const agentId = `i-hbtest-${run}`
      const etcdNs = `hb${run}`
      const label = { "bai-test/heartbeat": run }
      const core = coreApi(env.kubeconfig)
      // images manager 19.06 cannot take: no kernelspec label (the 19.06 Docker agent lists only
      // kernelspec images), and a tag its ImageRef rejects ('Invalid image tag' would abort the
      // manager's whole image update on every heartbeat)
      yield* Effect.promise(() => pushImage(env.registry, { repo: `bai-test/plain-${run}`, tag: "1", labels: { "org.example": "x" } }))
      yield* Effect.promise(() => pushImage(env.registry, { repo: `bai-test/odd-${run}`, tag: "v1-", labels: { "ai.backend.kernelspec": "1" } }))

      // --- a dedicated etcd (stopped and wiped below), seeded with the manager/admin keys but no event_addr yet
      const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), "bai-hb-"))
      const etcdPort = yield* Effect.promise(() => freePort())
      const peerPort = yield* Effect.promise(() => freePort())
      const etcdAddr = `127.0.0.1:${etcdPort}`
      let etcdDaemon: Daemon = startEtcd(`hb-etcd-${run}`, path.join(stateDir, "etcd"), etcdPort, peerPort, stateDir)
      yield* Effect.addFinalizer(() => Effect.promise(() => stopDaemons([etcdDaemon])).pipe(Effect.andThen(Effect.sync(() => fs.rmSync(stateDir, { recursive: true, force: true })))))
      yield* Effect.promise(() => waitEtcd(etcdDaemon, etcdPort))
      const observer = yield* Effect.acquireRelease(Effect.sync(() => new Etcd3({ hosts: `http://${etcdAddr}` })), (c) => Effect.sync(() => c.close()))
      const seed = () =>
        Effect.promise(async () => {
          const keys = managerKeys({ redis: env.redis, eventAddr: "unused", registry: env.registry, vfolderMount: "/srv/vfolders", watcherToken: "tok-" + run })
          delete keys["nodes/manager/event_addr"]
          keys["config/network/subnet/agent"] = "127.0.0.0/8"
          keys["volumes/_fsprefix"] = "/prefix"
          for (const [k, v] of Object.entries(keys)) await observer.put(`/sorna/${etcdNs}/${k}`).value(v)
        })
      yield* seed()
      const nodeKey = (k: string) => `/sorna/${etcdNs}/nodes/agents/${agentId}/${k}`
      const readKey = (k: string) => Effect.promise(async () => (await observer.get(nodeKey(k)).string()) ?? undefined)
      const waitKey = (k: string, value: string, what: string) =>
        readKey(k).pipe(
          Effect.repeat({ until: (v) => v === value, schedule: Schedule.spaced("200 millis") }),
          Effect.timeoutOrElse({ duration: "60 seconds", orElse: () => Effect.die(new Error(`etcd ${what}: ${k} never became ${value}`)) })
        )

      // --- Kubernetes: a namespace with the pull secret, two fake worker nodes
      const kubeNs = yield* Effect.promise(() => freshKubeNamespace(env, "hb"))
      const nodeNames = [`hb-${run}-a`, `hb-${run}-b`, `hb-${run}-c`]
      yield* Effect.addFinalizer(() =>
        Effect.promise(async () => {
          await core.deleteNamespace({ name: kubeNs }).catch(() => undefined)
          for (const name of nodeNames) await core.deleteNode({ name }).catch(() => undefined)
        })
      )
      yield* Effect.promise(() => createFakeNode(core, fakeNode(nodeNames[0]!, label, { cpu: "4", memory: "8Gi", gpu: "1" }, "10.254.0.1")))
      yield* Effect.promise(() => createFakeNode(core, fakeNode(nodeNames[1]!, label, { cpu: "2500m", memory: "4Gi" }, "10.254.0.2")))

      // --- the manager side
      const manager = yield* spawnPython("../manager/manager_pull.py", [])
      const pullAddr = yield* Queue.take(manager.lines)
      const events: Array<Event> = []
      const nextEvent = (name: string, timeout: Duration.Input = "30 seconds", pred: (e: Event) => boolean = () => true) =>
        Effect.gen(function*() {
          for (;;) {
            const line = yield* Queue.take(manager.lines)
            const [n, a, args] = JSON.parse(line) as [string, string, ReadonlyArray<any>]
            const e = { name: n, agentId: a, args }
            events.push(e)
            if (n === name && pred(e)) return e
          }
        }).pipe(Effect.timeoutOrElse({ duration: timeout, orElse: () => Effect.die(new Error(`no ${name} within ${Duration.format(Duration.fromInputUnsafe(timeout))}; got ${events.map((e) => e.name).join(",")}; stderr: ${manager.stderr()}`)) }))

      // --- the agent's layers
      const loaded = yield* decodeConfigText("hb.toml", configToml({ etcdAddr, etcdNs, agentId, env, kubeNs, selector: `bai-test/heartbeat=${run}` }), {}, "hbhost")
      const Config = AgentConfig.fromLoaded(loaded)
      const Infra = Layer.mergeAll(Etcd.layer, KubeClient.layer, MemoryRelease.layer).pipe(Layer.provideMerge(Config))
      const WithManager = ManagerConfig.layer.pipe(Layer.provideMerge(Infra))
      const Services = Layer.mergeAll(
        Registration.layerWith({ reassertInterval: "3 seconds" }),
        NodeResources.layer,
        ImageRegistry.layer,
        EventPublisherFromEtcd
      ).pipe(Layer.provideMerge(WithManager))
      const AgentLayers = Heartbeat.layer.pipe(Layer.provideMerge(Services))
      const agentScope = yield* Scope.make()
      const ctx = yield* Layer.buildWithScope(AgentLayers, agentScope)
      const mc = Context.get(ctx, ManagerConfig)
      const registration = Context.get(ctx, Registration)

      // ManagerConfig read the admin keys; the RPC host was detected inside the subnet hint
      assert.strictEqual(`${mc.redis.host}:${mc.redis.port}`, env.redis)
      assert.strictEqual(mc.vfolderMount, "/srv/vfolders")
      assert.strictEqual(mc.vfolderFsPrefix, "/prefix")
      assert.isDefined(mc.watcherToken)
      assert.match(mc.rpcHost, /^127\./)
      assert.strictEqual(mc.rpcAddr.port, 16001)

      // starting, and nothing sent before running
      yield* waitKey("", "starting", "status")
      assert.isUndefined(yield* readKey("ip"))
      // the manager comes up later: event_addr appears now
      yield* Effect.promise(() => observer.put(`/sorna/${etcdNs}/nodes/manager/event_addr`).value(pullAddr))
      assert.strictEqual(yield* mc.eventAddr.pipe(Effect.timeout("30 seconds")), pullAddr)

      // "the RPC socket is bound"
      yield* registration.markRunning
      yield* waitKey("", "running", "status")
      assert.strictEqual(yield* readKey("ip"), mc.rpcHost)
      assert.strictEqual(yield* readKey("watcher_port"), "6009")

      // the first heartbeat precedes instance_started (manager 19.06 refreshes addr/version/slots
      // only on a heartbeat from an agent it does not hold ALIVE)
      const started = yield* nextEvent("instance_started")
      assert.strictEqual(started.agentId, agentId)
      assert.deepStrictEqual(started.args, [])
      assert.deepStrictEqual(events.map((e) => e.name), ["instance_heartbeat", "instance_started"], "a heartbeat comes first")

      // heartbeat payload: slots = Σ allocatable of the selected nodes − reserved cpu 0.5
      const slotsOf = (e: Event) => e.args[0].resource_slots as Record<string, [string, string]>
      const hb = events[0]!
      const info = hb.args[0]
      assert.strictEqual(info.ip, mc.rpcHost)
      assert.strictEqual(info.addr, `tcp://${mc.rpcHost}:16001`)
      assert.strictEqual(info.region, "local")
      assert.strictEqual(info.scaling_group, "sg-test")
      assert.strictEqual(info.version, "0.1.0")
      assert.deepStrictEqual(slotsOf(hb), { cpu: ["count", "6"], mem: ["bytes", String(12 * GiB)], "cuda.device": ["count", "1"] })
      const k8sPlugin = info.compute_plugins.kubernetes
      assert.deepStrictEqual(k8sPlugin.nodes.map((n: any) => n.name), nodeNames.slice(0, 2))
      assert.deepStrictEqual(k8sPlugin.nodes[1].allocatable, { cpu: "2.5", mem: String(4 * GiB), "cuda.device": "0" })
      assert.strictEqual(k8sPlugin.nodes[0].internal_ip, "10.254.0.1")
      // images: decoded by Python (snappy + msgpack) = the registry's tags with their digests
      const images = new Map((info.images as Array<[string, string]>).map(([n, d]) => [n, d]))
      for (const [repoTag, digest] of Object.entries(env.images)) {
        assert.strictEqual(images.get(`${env.registry.host}/${repoTag}`), digest, repoTag)
      }
      assert.deepStrictEqual([...images.keys()].filter((n) => n.includes(run)), [], "unparseable or non-kernelspec images are not listed")

      // a node joins → the next heartbeat grows
      yield* Effect.promise(() => createFakeNode(core, fakeNode(nodeNames[2]!, label, { cpu: "1", memory: "1Gi" }, "10.254.0.3")))
      yield* nextEvent("instance_heartbeat", "30 seconds", (e) => slotsOf(e).cpu[1] === "7")
      // another tenant's pod lands on node a → the next heartbeat shrinks by its requests
      yield* Effect.promise(() =>
        core.createNamespacedPod({
          namespace: kubeNs,
          body: {
            metadata: { name: "tenant" },
            spec: {
              nodeName: nodeNames[0]!,
              containers: [{ name: "c", image: "busybox", resources: { requests: { cpu: "1500m", memory: "1Gi", "nvidia.com/gpu": "1" }, limits: { "nvidia.com/gpu": "1" } } }]
            }
          }
        })
      )
      const afterPod = yield* nextEvent("instance_heartbeat", "30 seconds", (e) => slotsOf(e).cpu[1] === "5.5")
      assert.deepStrictEqual(slotsOf(afterPod), { cpu: ["count", "5.5"], mem: ["bytes", String(12 * GiB)], "cuda.device": ["count", "0"] })
      // node b becomes unschedulable (cordoned) → it drops out
      yield* Effect.promise(() => core.patchNode({ name: nodeNames[1]!, body: { spec: { unschedulable: true } } }, k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch)))
      yield* nextEvent("instance_heartbeat", "30 seconds", (e) => slotsOf(e).cpu[1] === "3")

      // --- etcd stopped: heartbeats continue. Three heartbeats must arrive while it is stopped (each
      // wait bounded): no clock window whose event count depends on the machine's load
      yield* Effect.sync(() => process.kill(-etcdDaemon.pid, "SIGSTOP"))
      // from here on, only what is sent while etcd is stopped
      for (const line of yield* Queue.clear(manager.lines)) {
        const [n, a, args] = JSON.parse(line) as [string, string, ReadonlyArray<any>]
        events.push({ name: n, agentId: a, args })
      }
      for (let i = 0; i < 3; i++) yield* nextEvent("instance_heartbeat", "30 seconds")
      yield* Effect.sync(() => process.kill(-etcdDaemon.pid, "SIGCONT"))

      // --- etcd killed and restarted empty (data loss): the registration is repaired by the re-assert
      yield* Effect.promise(() => stopDaemons([etcdDaemon], 1000))
      yield* Effect.sleep("2 seconds")
      etcdDaemon = startEtcd(`hb-etcd-${run}`, path.join(stateDir, "etcd"), etcdPort, peerPort, stateDir)
      yield* Effect.promise(() => waitEtcd(etcdDaemon, etcdPort))
      // the data is gone (the admin keys too); only the agent's re-assert brings its keys back
      assert.isNull(yield* Effect.promise(() => observer.get(`/sorna/${etcdNs}/config/redis/addr`).string()))
      yield* waitKey("", "running", "status after data loss")
      assert.strictEqual(yield* readKey("ip"), mc.rpcHost)
      yield* nextEvent("instance_heartbeat")

      // --- stop the agent: instance_terminated('shutdown')
      const heartbeat = Context.get(ctx, Heartbeat)
      // its count covers every heartbeat the manager received (no count that depends on elapsed time)
      const received = events.filter((e) => e.name === "instance_heartbeat" && e.agentId === agentId).length
      assert.isAbove(received, 3)
      assert.isAtLeast(yield* heartbeat.sent, received)
      yield* Scope.close(agentScope, Exit.void)
      const terminated = yield* nextEvent("instance_terminated", "10 seconds")
      assert.deepStrictEqual(terminated.args, ["shutdown"])
    }), { timeout: 240_000 })
})
