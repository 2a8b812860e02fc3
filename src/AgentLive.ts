/**
 * The agent as one layer (design §4). Each group is built on the previous one with
 * `Layer.provideMerge`, so construction follows the order below and release is its reverse:
 * on SIGTERM the RPC server stops taking requests first, then the heartbeat sends
 * `instance_terminated`, then the kernel loops stop (pods are detached, never deleted), and the
 * clients (event socket, Redis, etcd, Kubernetes) close last.
 *
 *   Infra      config, etcd, Kubernetes, what the manager put in etcd, event channel, Redis
 *   Core       kernel registry, runner connections, node resources, images, stats, lifecycle
 *   Kernels    start-up reconciliation (adopt / clean up) and the pod watch, execution, files
 *   App        heartbeat (its loop waits for `running`), RPC on 6001 (after the reconciler, so
 *              adopted kernels are known), etcd `running`, internal HTTP (metrics, health, ready)
 */
import * as NodeServices from "@effect/platform-node/NodeServices"
import { Effect, Layer, Redacted } from "effect"
import { AgentConfig, type LoadedConfig } from "./config/AgentConfig.ts"
import { formatHostPort } from "./domain/Units.ts"
import * as InternalHttp from "./http/InternalHttp.ts"
import { AgentShutdown } from "./kernel/AgentShutdown.ts"
import { KernelExecution } from "./kernel/KernelExecution.ts"
import { KernelFiles } from "./kernel/KernelFiles.ts"
import { KernelLifecycle } from "./kernel/KernelLifecycle.ts"
import { KernelTable } from "./kernel/KernelTable.ts"
import { LiveKernels } from "./kernel/LiveKernels.ts"
import { Reconciler } from "./kernel/Reconciler.ts"
import { RunnerConnections } from "./kernel/runner/RunnerConnections.ts"
import { KubeClient } from "./kube/KubeClient.ts"
import { NodePorts } from "./kube/NodePorts.ts"
import { NodeResources } from "./kube/NodeResources.ts"
import { MemoryRelease } from "./observability/MemoryRelease.ts"
import * as PidFile from "./observability/PidFile.ts"
import { Readiness } from "./observability/Readiness.ts"
import { Etcd } from "./manager/Etcd.ts"
import { Heartbeat } from "./manager/Heartbeat.ts"
import { ImageRegistry } from "./images/ImageRegistry.ts"
import { ManagerConfig } from "./manager/ManagerConfig.ts"
import { Redis } from "./manager/Redis.ts"
import { EventPublisher, EventPublisherFromEtcd } from "./manager/EventPublisher.ts"
import { Registration } from "./manager/Registration.ts"
import { AgentRpcHandlers } from "./rpc/AgentRpcs.ts"
import { AiozmqServer } from "./rpc/aiozmq/AiozmqServer.ts"
import { CallosumServer } from "./rpc/callosum/CallosumServer.ts"
import { CallosumRpcServer, PresenceFromEtcd, StreamEventsFromEtcd } from "./manager26/Manager26Live.ts"
import { HealthHandlers } from "./rpc/handlers/Health.ts"
import { KernelHandlers } from "./rpc/handlers/Kernel.ts"
import { RunnerHandlers } from "./rpc/handlers/Runner.ts"
import { KubeletSummary } from "./stats/KubeletSummary.ts"
import { StatsCollector } from "./stats/StatsCollector.ts"
import { VERSION } from "./version.ts"

const StartupLog = Layer.effectDiscard(
  Effect.gen(function*() {
    const loaded = yield* AgentConfig
    for (const w of loaded.warnings) yield* Effect.logWarning(w)
    const unsupported = loaded.config.logging.drivers.filter((d) => d !== "console")
    if (unsupported.length > 0) {
      yield* Effect.logWarning(
        `logging.drivers: ${unsupported.join(", ")} not supported; logs go to the console (JSON lines under systemd: journald keeps them)`
      )
    }
    yield* Effect.logInfo(`bai-k8s-agent ${VERSION} starting`).pipe(
      Effect.annotateLogs({ agentId: loaded.agentId, config: loaded.file, namespace: loaded.config.etcd.namespace })
    )
    yield* Effect.addFinalizer(() => Effect.logInfo("agent stopped"))
  })
)

/** Redis DB 0 at etcd `config/redis` (spec §5.2, §6). */
const RedisFromEtcd = Layer.unwrap(
  Effect.map(ManagerConfig, (manager) =>
    Redis.layer({
      addr: formatHostPort(manager.redis),
      password: manager.redis.password === undefined ? undefined : Redacted.value(manager.redis.password),
      db: 0
    })
  )
)

/** The manager RPC server on `agent.rpc-listen-addr` (host auto-detected when empty). */
const RpcServer = Layer.unwrap(
  Effect.gen(function*() {
    const { config } = yield* AgentConfig
    const manager = yield* ManagerConfig
    return AiozmqServer.layer({
      bind: `tcp://${formatHostPort(manager.rpcAddr)}`,
      maxFrameBytes: config.agent["rpc-max-frame-size"],
      maxInFlightPerPeer: config.agent["rpc-max-inflight"],
      allowedPeers: config.agent["rpc-allowed-peers"],
      shutdownGrace: `${config.agent["shutdown-grace"]} seconds`
    })
  })
).pipe(Layer.provide(AgentRpcHandlers.layer(HealthHandlers, KernelHandlers, RunnerHandlers)))

/** What `/ready` checks: etcd, the Kubernetes API, the event channel and Redis answer. */
const ReadinessChecks = Layer.effectDiscard(
  Effect.gen(function*() {
    const readiness = yield* Readiness
    const etcd = yield* Etcd
    const kube = yield* KubeClient
    const events = yield* EventPublisher
    const redis = yield* Redis
    yield* readiness.register("etcd", etcd.get("nodes/manager/event_addr").pipe(Effect.asVoid))
    yield* readiness.register("kubernetes", kube.core("readiness", (api) => api.listNode({ limit: 1 })).pipe(Effect.asVoid))
    yield* readiness.register("events", events.connected)
    yield* readiness.register("redis", Effect.map(redis.status, (s) => s === "ready"))
  })
)

/** Stats of the kernels of the KernelTable, over the worker nodes NodeResources tracks (Ready, schedulable, selected). */
const StatsFromWorkers = Layer.unwrap(
  Effect.map(Effect.all([NodeResources, KernelTable]), ([resources, kernels]) =>
    StatsCollector.layer({ kernels: kernels.list, nodes: Effect.map(resources.workers, (workers) => workers.map((w) => w.name)) })
  )
)

export const AgentLive = (loaded: LoadedConfig) => {
  const Base = Layer.mergeAll(AgentConfig.fromLoaded(loaded), NodeServices.layer, Readiness.layer, MemoryRelease.layer)
  const Clients = Layer.mergeAll(Etcd.layer, KubeClient.layer).pipe(
    Layer.provideMerge(Layer.mergeAll(Base, StartupLog.pipe(Layer.provide(Base))))
  )
  // manager 26 (docs/manager-26.md): events go to the Redis stream, RPC is Callosum; the core is shared
  const m26 = loaded.config.agent["manager-contract"] === "26"
  const Events = m26 ? StreamEventsFromEtcd : EventPublisherFromEtcd
  const Infra = Layer.mergeAll(Events, RedisFromEtcd, Registration.layer, KubeletSummary.layer).pipe(
    Layer.provideMerge(ManagerConfig.layer),
    Layer.provideMerge(Clients)
  )
  const Core = KernelLifecycle.layer.pipe(
    Layer.provideMerge(StatsFromWorkers),
    Layer.provideMerge(
      Layer.mergeAll(
        KernelTable.layer,
        LiveKernels.layer,
        RunnerConnections.layer,
        NodePorts.layer,
        NodeResources.layer,
        ImageRegistry.layer,
        AgentShutdown.layer
      )
    ),
    Layer.provideMerge(Infra)
  )
  const Kernels = Layer.mergeAll(Reconciler.layer, KernelExecution.layer, KernelFiles.layer, KernelLifecycle.idleReaper).pipe(
    Layer.provideMerge(Core)
  )
  // Heartbeat is built before the RPC server (its loop waits for `running`), so it is released after
  // it: the server stops taking requests, then `instance_terminated` goes out.
  const Common = Layer.mergeAll(InternalHttp.layer, ReadinessChecks, PidFile.layer(loaded.config.agent["pid-file"], process.pid))
  // "running" in etcd only once the RPC socket is bound; the server itself is not an output
  const Rpc26 = Registration.layerMarkRunningAfter(CallosumServer).pipe(Layer.provide(CallosumRpcServer), Layer.provide(PresenceFromEtcd))
  const Rpc1906 = Registration.layerMarkRunningAfter(AiozmqServer).pipe(Layer.provide(RpcServer))
  const Rpc: Layer.Layer<never, Layer.Error<typeof Rpc26 | typeof Rpc1906>, Layer.Services<typeof Rpc26 | typeof Rpc1906>> = m26
    ? Rpc26
    : Rpc1906
  const App = Common.pipe(
    Layer.provideMerge(Rpc),
    Layer.provideMerge(Heartbeat.layer),
    Layer.provideMerge(Kernels)
  )
  return App
}
