/**
 * Test support for the kernel lifecycle on the testbed: an agent config for a fresh etcd and
 * Kubernetes namespace, the lifecycle layer stack (real KubeClient, Etcd, RunnerConnections,
 * EventPublisher pushing to a real ZeroMQ PULL socket bound by the test), kubectl as the observer.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Layer, Queue, Scope } from "effect"
import * as Zmq from "zeromq"
import { AgentConfig, decodeConfigText } from "../../src/config/AgentConfig.ts"
import { KernelLifecycle } from "../../src/kernel/KernelLifecycle.ts"
import { KernelTable } from "../../src/kernel/KernelTable.ts"
import { LiveKernels } from "../../src/kernel/LiveKernels.ts"
import { MemoryRelease } from "../../src/observability/MemoryRelease.ts"
import { Reconciler } from "../../src/kernel/Reconciler.ts"
import { RunnerConnections } from "../../src/kernel/runner/RunnerConnections.ts"
import { KubeClient, type KubeClientShape } from "../../src/kube/KubeClient.ts"
import { NodePorts } from "../../src/kube/NodePorts.ts"
import { Etcd, type EtcdShape } from "../../src/manager/Etcd.ts"
import { EventPublisher } from "../../src/manager/EventPublisher.ts"
import * as Msgpack from "../../src/codec/Msgpack.ts"
import { KernelStatsSink } from "../../src/stats/KernelStatsSink.ts"
import { freshEtcdNamespace, freshKubeNamespace, type TestbedEnv } from "../testbed/env.ts"
import { freePort } from "../testbed/ports.ts"

export interface Site {
  readonly etcdNs: string
  readonly kubeNs: string
  readonly scratchRoot: string
  readonly agentId: string
  readonly eventAddr: string
  readonly toml: string
  readonly events: Queue.Queue<{ readonly name: string; readonly args: ReadonlyArray<unknown> }>
}

export const kubectl = (env: TestbedEnv, args: ReadonlyArray<string>) =>
  Effect.callback<string, Error>((resume) => {
    execFile(env.kubectl, ["--kubeconfig", env.kubeconfig, ...args], { maxBuffer: 32 * 1024 * 1024 }, (err, stdout, stderr) => {
      resume(err ? Effect.fail(new Error(`kubectl ${args.join(" ")}: ${stderr || err.message}`)) : Effect.succeed(stdout))
    })
  })

export const kubectlJson = (env: TestbedEnv, args: ReadonlyArray<string>) =>
  kubectl(env, [...args, "-o", "json"]).pipe(Effect.map((s) => JSON.parse(s) as { items: Array<any> } & Record<string, any>))

/** Every object of the namespace with the kernel's label (pods, services, configmaps). */
export const kernelObjects = (env: TestbedEnv, ns: string, kernelId: string) =>
  kubectlJson(env, ["-n", ns, "get", "pods,services,configmaps", "-l", `backend.ai/kernel-id=${kernelId}`]).pipe(
    Effect.map((l) => l.items.map((o) => `${o.kind}/${o.metadata.name}`))
  )

export const labelledObjects = (env: TestbedEnv, ns: string) =>
  kubectlJson(env, ["-n", ns, "get", "pods,services,configmaps", "-l", "app.kubernetes.io/managed-by=bai-k8s-agent"]).pipe(
    Effect.map((l) => l.items.map((o) => `${o.kind}/${o.metadata.name}`))
  )

/** Polls (the observer, not the agent) until `f` holds or `seconds` pass; returns the last value. */
export const eventually = <A, E>(check: Effect.Effect<A, E>, ok: (a: A) => boolean, seconds = 30) =>
  Effect.gen(function*() {
    let last = yield* check
    for (let i = 0; i < seconds * 4 && !ok(last); i++) {
      yield* Effect.sleep("250 millis")
      last = yield* check
    }
    return last
  })

/** A manager-side PULL socket bound on a free port; decoded events land in a queue. */
const pullSocket = (port: number) =>
  Effect.gen(function*() {
    const queue = yield* Queue.unbounded<{ readonly name: string; readonly args: ReadonlyArray<unknown> }>()
    const pull = yield* Effect.acquireRelease(
      Effect.tryPromise(async () => {
        const s = new Zmq.Pull({ linger: 0 })
        await s.bind(`tcp://127.0.0.1:${port}`)
        return s
      }),
      (s) => Effect.sync(() => s.close())
    )
    yield* Effect.tryPromise(() => pull.receive()).pipe(
      Effect.flatMap(([name, _agent, body]) =>
        Queue.offer(queue, { name: name!.toString(), args: Msgpack.decode(body!) as ReadonlyArray<unknown> })
      ),
      Effect.forever,
      Effect.ignore,
      Effect.forkScoped
    )
    return queue
  })

export interface SiteOptions {
  readonly createTimeout?: number
  readonly extra?: string
}

export const makeSite = (env: TestbedEnv, options: SiteOptions = {}) =>
  Effect.gen(function*() {
    const etcdNs = yield* Effect.promise(() => freshEtcdNamespace(env, "lc"))
    const kubeNs = yield* Effect.promise(() => freshKubeNamespace(env, "lc"))
    const scratchRoot = yield* Effect.acquireRelease(
      Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "bai-lc-scratch-"))),
      (d) => Effect.sync(() => fs.rmSync(d, { recursive: true, force: true }))
    )
    yield* Effect.addFinalizer(() => kubectl(env, ["delete", "namespace", kubeNs, "--wait=false"]).pipe(Effect.ignore))
    const port = yield* Effect.promise(() => freePort())
    const events = yield* pullSocket(port)
    const agentId = `i-lc-${etcdNs}`
    const toml = [
      `[etcd]`,
      `namespace = "${etcdNs}"`,
      `addr = "${env.etcd}"`,
      `[agent]`,
      `id = "${agentId}"`,
      `rpc-listen-addr = "127.0.0.1:${yield* Effect.promise(() => freePort())}"`,
      `[container]`,
      `scratch-root = "${scratchRoot}"`,
      `create-timeout = ${options.createTimeout ?? 60}`,
      `[kubernetes]`,
      `namespace = "${kubeNs}"`,
      `kubeconfig = "${env.kubeconfig}"`,
      `termination-grace = 1`,
      // only the testbed's simulated-kubelet nodes (benchmarks may add kubelet-less nodes)
      `node-selector = "backend.ai/testbed=true"`,
      `[kubernetes.registry]`,
      `url = "${env.registry.url}"`,
      options.extra ?? ""
    ].join("\n")
    return { etcdNs, kubeNs, scratchRoot, agentId, eventAddr: `127.0.0.1:${port}`, toml, events } satisfies Site
  })

/** The lifecycle stack for a site, without the reconciler (`withReconciler` adds it). */
export interface AgentOptions {
  readonly withReconciler?: boolean
  /** Wraps the (real) etcd client that LiveKernels writes its records through. */
  readonly recordsEtcd?: (etcd: EtcdShape) => EtcdShape
  /** Wraps the (real) Kubernetes client of the whole stack. */
  readonly kube?: (kube: KubeClientShape) => KubeClientShape
}

export const lifecycleLayer = (site: Site, options: AgentOptions = {}) =>
  Layer.unwrap(
    Effect.gen(function*() {
      const loaded = yield* decodeConfigText("agent.toml", site.toml, {}, "testhost")
      const Config = AgentConfig.fromLoaded(loaded)
      const wrapKube = options.kube
      const Kube = wrapKube === undefined
        ? KubeClient.layer
        : Layer.effect(KubeClient, Effect.map(KubeClient, (kube) => KubeClient.of(wrapKube(kube)))).pipe(Layer.provide(KubeClient.layer))
      const Infra = Layer.mergeAll(Kube, Etcd.layer).pipe(Layer.provide(Config))
      const wrapRecords = options.recordsEtcd
      const RecordsEtcd = wrapRecords === undefined
        ? Infra
        : Layer.effect(Etcd, Effect.map(Etcd, (etcd) => Etcd.of(wrapRecords(etcd)))).pipe(Layer.provide(Infra))
      const Events = EventPublisher.layer({ eventAddr: site.eventAddr, agentId: site.agentId })
      const Base = Layer.mergeAll(
        KernelTable.layer,
        RunnerConnections.layer,
        KernelStatsSink.layerNoop,
        LiveKernels.layer.pipe(Layer.provide(RecordsEtcd)),
        NodePorts.layer.pipe(Layer.provide(Infra), Layer.provide(Config))
      ).pipe(Layer.provideMerge(Events))
      const Lifecycle = KernelLifecycle.idleReaper.pipe(
        Layer.provideMerge(KernelLifecycle.layer),
        Layer.provideMerge(Layer.merge(Base, NodeFileSystem.layer)),
        Layer.provideMerge(Infra),
        Layer.provideMerge(Config),
        // the agent's: the reconciler's passes are bursts it releases after
        Layer.provideMerge(MemoryRelease.layer)
      )
      return options.withReconciler === true
        ? Layer.merge(Reconciler.layer.pipe(Layer.provideMerge(Lifecycle)), Lifecycle)
        : Lifecycle
    })
  )

/** Builds the stack in its own scope (closed by the caller: agent shutdown). */
export const startAgent = (site: Site, options: AgentOptions = {}) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(lifecycleLayer(site, options), scope)
    return { scope, context }
  })

export const takeEvent = (site: Site, name: string, kernelId: string) =>
  Effect.gen(function*() {
    for (;;) {
      const e = yield* Queue.take(site.events)
      if (e.name === name && e.args[0] === kernelId) return e
    }
  }).pipe(Effect.timeout("60 seconds"))

/** Every event received up to and including the first `name` for `kernelId` (bounded). */
export const eventsUntil = (site: Site, name: string, kernelId: string) =>
  Effect.gen(function*() {
    const seen: Array<{ readonly name: string; readonly args: ReadonlyArray<unknown> }> = []
    for (;;) {
      const e = yield* Queue.take(site.events)
      seen.push(e)
      if (e.name === name && e.args[0] === kernelId) return seen
    }
  }).pipe(Effect.timeout("60 seconds"))

export const pythonConfig = (env: TestbedEnv, overrides: Record<string, unknown> = {}) => ({
  image: {
    registry: { name: "index.docker.io", url: "https://registry-1.docker.io" },
    canonical: "index.docker.io/lablup/python:3.6-ubuntu18.04",
    digest: env.images["lablup/python:3.6-ubuntu18.04"] ?? "",
    labels: {
      "ai.backend.kernelspec": "1",
      "ai.backend.runtime-type": "python",
      "ai.backend.runtime-path": "/usr/bin/python3",
      "ai.backend.envs.corecount": "OPENBLAS_NUM_THREADS,OMP_NUM_THREADS",
      "ai.backend.features": "batch query uid-match user-input",
      "ai.backend.base-distro": "ubuntu18.04",
      "ai.backend.service-ports": "jupyter:http:8080,myapp:tcp:8081"
    }
  },
  resource_slots: { cpu: "1", mem: "268435456" },
  idle_timeout: 0,
  mounts: [],
  environ: { FOO: "bar" },
  ...overrides
})
