/**
 * Kernel lifecycle on Kubernetes (design §2): create, destroy, restart, destroy-all, idle reaping and
 * adoption of kernels found in the cluster.
 *
 * - **create** validates the config first (nothing is created for a bad one), then runs every step
 *   as an `acquireRelease` in a per-create `Scope`: scratch dir, NodePorts, Pod, ConfigMap and Service
 *   (owned by the Pod), registry entry, runner connection. The scope is closed with the create's
 *   `Exit`: a failure or an interruption (destroy, agent shutdown) removes everything made, a success
 *   keeps it. The pod is followed with a watch until Running (failures classified as they appear),
 *   then the runner must answer `status`; the pod is then marked ready (annotation), which is what a
 *   restarted agent adopts.
 * - Operations on one kernel id are single-flight: concurrent creates share one fiber (FiberMap keyed
 *   by kid), destroys share one, a destroy interrupts an in-flight create (which rolls back).
 * - **destroy** deletes Pod (grace and preconditions in the body), Service and ConfigMap, waits for
 *   the pod to go, finalizes the kernel's stats and then publishes `kernel_terminated` with the real
 *   reason. Agent shutdown never deletes anything (detach).
 */
import * as k8s from "@kubernetes/client-node"
import { Clock, Context, Data, Duration, Effect, Exit, Fiber, FiberMap, Layer, Metric, Option, Ref, Schedule, Schema, Semaphore, Stream } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { kernelDirOwner, prepareScratchDir } from "../kube/ScratchDir.ts"
import { AgentConfig } from "../config/AgentConfig.ts"
import {
  ImagePullFailed,
  InvalidKernelConfig,
  KernelCreationFailed,
  KernelCreationTimeout,
  KernelNotFound,
  type KubernetesFailure,
  kubernetesFailure,
  Unschedulable
} from "../domain/Errors.ts"
import {
  buildConfigMap,
  buildPod,
  buildServicePolicy,
  buildService,
  classifyCreating,
  exposedPorts,
  isReadyMarked,
  type KernelObjectsInput,
  nodePortsOf,
  nodeSelectorOf,
  objectName,
  READY_ANNOTATION,
  RECOVERY_ANNOTATION,
  recoveryFor,
  recoveryOf,
  recoveryText,
  REPL_IN,
  REPL_OUT,
  terminationOf,
  type VolumeSpec
} from "../kube/KernelObjects.ts"
import { monotonicMillis } from "../domain/MonotonicClock.ts"
import { KubeClient, type KubeError, optional } from "../kube/KubeClient.ts"
import { allocatedPortsIn, NodePorts } from "../kube/NodePorts.ts"
import {
  countKernelTerminated,
  type KernelStartPhase,
  kernelsCreatedTotal,
  recordKernelStartPhase
} from "../observability/Metrics.ts"
import { Etcd } from "../registry/Etcd.ts"
import { AgentEvents, EventPublisher } from "../registry/EventPublisher.ts"
import type { CreateKernelResult, RestartKernelResult } from "../rpc/AgentRpcs.ts"
import { KernelStatsSink } from "../stats/KernelStatsSink.ts"
import { kernelDir as checkedKernelDir, kernelWorkDir as checkedKernelWorkDir } from "./ScratchPath.ts"
import {
  checkVfolderPaths,
  decodeKernelConfig,
  environText,
  KernelConfig as KernelConfigSchema,
  type KernelConfig,
  parseServicePorts,
  resourceText
} from "./KernelConfig.ts"
import { type KernelInfo, KernelRegistry } from "./KernelRegistry.ts"
import { LiveKernels } from "./LiveKernels.ts"
import { RunnerConnections } from "./runner/RunnerConnections.ts"

export type CreateError =
  | InvalidKernelConfig
  | ImagePullFailed
  | Unschedulable
  | KernelCreationFailed
  | KernelCreationTimeout
  | KubernetesFailure

export type DestroyError = KernelNotFound | KubernetesFailure

/** Reason of a `destroy_kernel` RPC without an explicit reason. */
export const USER_REQUESTED = "user-requested"
/** `kernel_terminated` reason of a kernel lost because its restart failed (the old pod was already gone). */
export const RESTART_FAILED = "restart-failed"
/**
 * `kernel_terminated` reason for a kernel id this agent does not know (the 19.06 Docker agent's
 * `_destroy_kernel`/`_execute`): the manager then releases the session's slots instead of leaving it
 * in ERROR for ever.
 */
export const SELF_TERMINATED = "self-terminated"

/** `destroy_kernel`'s result: the kernel's last stat with `version: 2` (the Docker agent's), or None. */
export type DestroyResult = { readonly [key: string]: unknown } | null

/**
 * What a restart re-creates from: manager 19.06 sends `mounts: []` ("recovered from container
 * config") and no `idle_timeout` (registry.py 819–834), and the Docker agent takes both from the old
 * kernel's resource spec. So do we: an empty mount list and a missing (or null) idle timeout mean
 * "as before". The old kernel's spec comes from the pod's recovery annotation: it is decoded like
 * the manager's config, and ignored when it does not decode.
 */
export const restartConfig = (raw: unknown, decoded: KernelConfig, old: { readonly resourceSpec: string; readonly idleTimeout: number }): KernelConfig => {
  const sentIdle = typeof raw === "object" && raw !== null && (raw as { readonly idle_timeout?: unknown }).idle_timeout != null
  const oldMounts = decoded.mounts.length > 0 ? Option.none() : decodeOldMounts(old.resourceSpec)
  return {
    ...decoded,
    ...(sentIdle ? {} : { idle_timeout: old.idleTimeout }),
    ...(Option.isSome(oldMounts) ? { mounts: oldMounts.value } : {})
  }
}

const OldSpec = Schema.fromJsonString(Schema.Struct({ mounts: KernelConfigSchema.fields.mounts }))
const decodeOldSpec = Schema.decodeUnknownOption(OldSpec)
const decodeOldMounts = (resourceSpec: string): Option.Option<KernelConfig["mounts"]> =>
  Option.map(decodeOldSpec(resourceSpec), (s) => s.mounts)

export interface KernelLifecycleShape {
  /** `create_kernel`: idempotent per kernel id. */
  readonly create: (kernelId: string, config: unknown) => Effect.Effect<CreateKernelResult, CreateError>
  /**
   * `destroy_kernel`: returns the kernel's last stat (`version: 2`) or null. A second destroy of a
   * known kernel is harmless; an unknown id (e.g. its pod vanished while the agent was down) has
   * whatever objects are left removed and is reported `kernel_terminated(kid, "self-terminated")`,
   * as the 19.06 Docker agent does, and answers null.
   */
  readonly destroy: (kernelId: string, reason: string) => Effect.Effect<DestroyResult, DestroyError>
  /** An RPC named a kernel id this agent does not know: `kernel_terminated(kid, "self-terminated")`. */
  readonly reportUnknown: (kernelId: string) => Effect.Effect<void>
  /** `restart_kernel`: a new pod for the same kernel id and scratch dir. */
  readonly restart: (kernelId: string, config: unknown) => Effect.Effect<RestartKernelResult, CreateError | KernelNotFound>
  /** Destroys every kernel (bounded concurrency); failures are logged, never raised. */
  readonly destroyAll: (reason: string) => Effect.Effect<void>
  /** The watch saw the pod of a running kernel end (or vanish): tear down and report. */
  readonly podEnded: (kernelId: string, reason: string, exitCode: number | null) => Effect.Effect<void>
  /** A create, restart or destroy is running for this kernel. */
  readonly busy: (kernelId: string) => Effect.Effect<boolean>
  /** Rebuilds a ready kernel from its Pod and Service (start-up, relist). */
  readonly adopt: (pod: k8s.V1Pod, service: k8s.V1Service) => Effect.Effect<Option.Option<KernelInfo>>
  /** Deletes every object of a kernel id (half-created or orphaned objects) and its scratch dir; no event. */
  readonly removeObjects: (kernelId: string) => Effect.Effect<void, KubernetesFailure>
  /** One pass of the idle reaper. */
  readonly reapIdle: Effect.Effect<void>
}

const toResult = (info: KernelInfo): CreateKernelResult => ({
  id: info.kernelId,
  kernel_host: info.kernelHost,
  repl_in_port: info.replInPort,
  repl_out_port: info.replOutPort,
  stdin_port: 0,
  stdout_port: 0,
  service_ports: info.servicePorts,
  container_id: info.podUid ?? info.objectName,
  resource_spec: info.resourceSpec
})

const unavailable = (e: KubeError): KubernetesFailure => kubernetesFailure(e)

const isUnavailable = (e: KubeError) => e.reason === "Unavailable" || e.reason === "Timeout"

/**
 * Create-path mapping of API failures: unreachable → KubernetesUnavailable, refused credentials →
 * KubernetesForbidden, anything else (invalid object, conflict) → KernelCreationFailed.
 */
const createFailure = (kernelId: string) => (e: KubeError): KubernetesFailure | KernelCreationFailed =>
  isUnavailable(e) || e.reason === "Forbidden" || e.reason === "Unauthorized"
    ? kubernetesFailure(e)
    : new KernelCreationFailed({ kernelId, reason: `Kube${e.reason}`, message: `${e.operation}: ${e.message}` })

/** Internal: the pod exists already and is a ready kernel → adopt instead of creating. */
class AdoptExisting extends Data.TaggedError("AdoptExisting")<{ readonly pod: k8s.V1Pod }> {}

export class KernelLifecycle extends Context.Service<KernelLifecycle, KernelLifecycleShape>()("bai-agent/kernel/KernelLifecycle") {
  static readonly make = Effect.gen(function*() {
    const { agentId, config } = yield* AgentConfig
    const kube = yield* KubeClient
    const registry = yield* KernelRegistry
    const nodePorts = yield* NodePorts
    const events = yield* EventPublisher
    const stats = yield* KernelStatsSink
    const runners = yield* RunnerConnections
    const etcd = yield* Etcd
    const live = yield* LiveKernels

    const namespace = config.kubernetes.namespace
    const grace = config.kubernetes["termination-grace"]
    const createTimeout = config.container["create-timeout"]
    const scratchRoot = path.resolve(config.container["scratch-root"])
    const kernelHostOverride = config.container["kernel-host"]
    // A relative hostPath means "relative to the agent's working directory" (the testbed's nodes are
    // this host); Kubernetes would take it as is, and a real kubelet would refuse it.
    const configuredScratch = config.kubernetes["scratch-volume"]
    const scratchVolume: VolumeSpec = configuredScratch === undefined
      ? { type: "hostPath", path: scratchRoot }
      : configuredScratch.type === "hostPath"
      ? { ...configuredScratch, path: path.resolve(configuredScratch.path) }
      : configuredScratch
    const podsPath = `/api/v1/namespaces/${namespace}/pods`
    const nodeSelector = nodeSelectorOf(config.kubernetes["node-selector"])

    const creates = yield* FiberMap.make<string, KernelInfo, CreateError>()
    const destroys = yield* FiberMap.make<string, DestroyResult, DestroyError>()
    const lock = yield* Semaphore.make(1)
    /** Kernel ids destroyed by this process (bounded), so that a repeated destroy is harmless. */
    const terminated = yield* Ref.make<ReadonlyMap<string, true>>(new Map())
    const rememberTerminated = (kernelId: string) =>
      Ref.update(terminated, (m) => {
        const next = new Map(m)
        next.delete(kernelId)
        next.set(kernelId, true)
        if (next.size > 4096) next.delete(next.keys().next().value!)
        return next
      })

    const kernelDir = (kernelId: string) => path.join(scratchRoot, kernelId)
    const scratchDirOf = (kernelId: string) => path.join(kernelDir(kernelId), "work")

    // ------------------------------------------------------------------------------------------
    // Kubernetes operations

    const readPod = (name: string) => optional(kube.core("read pod", (api) => api.readNamespacedPod({ name, namespace })))

    const deletePod = (name: string, uid: string | undefined, graceSeconds: number) =>
      kube.core("delete pod", (api) =>
        api.deleteNamespacedPod({
          name,
          namespace,
          // the 1.20 server ignores query parameters when a body is sent: grace and preconditions go in the body
          body: { gracePeriodSeconds: Math.ceil(graceSeconds), ...(uid === undefined ? {} : { preconditions: { uid } }) }
        })).pipe(
          Effect.asVoid,
          // 404: gone; 409: the precondition failed, i.e. the name now belongs to another pod
          Effect.catchIf((e) => e.reason === "NotFound" || e.reason === "Conflict", () => Effect.void)
        )
    const deleteService = (name: string) =>
      kube.core("delete service", (api) => api.deleteNamespacedService({ name, namespace, body: {} })).pipe(
        Effect.asVoid,
        Effect.catchIf((e) => e.reason === "NotFound", () => Effect.void)
      )
    const deleteConfigMap = (name: string) =>
      kube.core("delete configmap", (api) => api.deleteNamespacedConfigMap({ name, namespace, body: {} })).pipe(
        Effect.asVoid,
        Effect.catchIf((e) => e.reason === "NotFound", () => Effect.void)
      )

    /**
     * Waits (watch, bounded) until the pod `name` (with `uid`, if given) is gone; returns the last
     * version seen. Pods bound to a node stay Terminating until the kubelet confirms.
     */
    const waitPodGone = (name: string, uid: string | undefined, bound: Duration.Input) =>
      Effect.gen(function*() {
        let last: k8s.V1Pod | undefined
        for (;;) {
          const cur = yield* readPod(name)
          if (Option.isNone(cur) || (uid !== undefined && cur.value.metadata?.uid !== uid)) return last
          last = cur.value
          const gone = yield* kube.watch<k8s.V1Pod>(podsPath, {
            fieldSelector: `metadata.name=${name}`,
            resourceVersion: cur.value.metadata?.resourceVersion
          }).pipe(
            Stream.tap((e) => Effect.sync(() => void (e.type !== "BOOKMARK" && (last = e.object)))),
            Stream.takeUntil((e) => e.type === "DELETED"),
            Stream.runLast,
            Effect.map((ev) => Option.isSome(ev) && ev.value.type === "DELETED"),
            Effect.catchIf((e) => e.reason === "Gone", () => Effect.succeed(false))
          )
          if (gone) return last
        }
      }).pipe(
        Effect.timeoutOption(bound),
        Effect.map(Option.flatMap(Option.fromNullishOr))
      )

    /**
     * Deletes Pod, Service and ConfigMap of a kernel and waits (bounded) for the pod to go; `graceSeconds`
     * defaults to `kubernetes.termination-grace`.
     */
    const deleteObjects = (kernelId: string, podUid: string | undefined, graceSeconds: number = grace) =>
      Effect.gen(function*() {
        const name = objectName(kernelId)
        yield* Effect.all([deletePod(name, podUid, graceSeconds), deleteService(name), deleteConfigMap(name)], { concurrency: 3, discard: true })
        return yield* waitPodGone(name, podUid, Duration.sum(Duration.seconds(graceSeconds), Duration.seconds(15)))
      }).pipe(Effect.mapError(unavailable))

    // ------------------------------------------------------------------------------------------
    // create

    const objectsInput = (kernelId: string, kconfig: KernelConfig, vf: { mount: string; fsprefix: string }, servicePorts: KernelObjectsInput["servicePorts"]): KernelObjectsInput => ({
      namespace,
      agentId,
      kernelId,
      config: kconfig,
      servicePorts,
      registryUrl: config.kubernetes.registry.url,
      pullSecret: config.kubernetes.registry["pull-secret"],
      krunnerVolume: config.kubernetes["krunner-volume"],
      scratchVolume,
      scratchDir: scratchDirOf(kernelId),
      vfolderMount: vf.mount,
      vfolderFsPrefix: vf.fsprefix,
      kernelUid: config.container["kernel-uid"],
      kernelGid: config.container["kernel-gid"],
      sandboxType: config.container["sandbox-type"],
      jailArgs: config.container["jail-args"],
      terminationGraceSeconds: grace,
      nodeSelector
    })

    const vfolderHost = (kernelId: string, kconfig: KernelConfig) =>
      kconfig.mounts.length === 0
        ? Effect.succeed({ mount: "", fsprefix: "" })
        : Effect.all({ mount: etcd.get("volumes/_mount"), fsprefix: etcd.get("volumes/_fsprefix") }).pipe(
          Effect.map(({ fsprefix, mount }) => ({ mount: mount ?? "", fsprefix: (fsprefix ?? "").replace(/^\/+/, "") })),
          Effect.mapError((e) => new KernelCreationFailed({ kernelId, reason: "VfolderConfig", message: e.message })),
          Effect.filterOrFail(
            (v) => v.mount !== "",
            () => new KernelCreationFailed({ kernelId, reason: "VfolderConfig", message: "etcd volumes/_mount is not set" })
          ),
          Effect.flatMap((v) => {
            const outside = checkVfolderPaths(kconfig.mounts, v)
            return outside === undefined
              ? Effect.succeed(v)
              : Effect.fail(new KernelCreationFailed({ kernelId, reason: "VfolderConfig", message: outside }))
          })
        )

    const fsEffect = <A>(kernelId: string, what: string, f: () => Promise<A>) =>
      Effect.tryPromise({
        try: f,
        catch: (e) => new KernelCreationFailed({ kernelId, reason: "ScratchDir", message: `${what}: ${String(e)}` })
      })

    const removeScratch = (kernelId: string) =>
      checkedKernelDir(scratchRoot, kernelId).pipe(
        Effect.flatMap((dir) => Effect.tryPromise(() => fs.promises.rm(dir, { recursive: true, force: true }))),
        Effect.catch((e) => Effect.logWarning(`cannot remove the scratch dir of ${kernelId}: ${String(e.cause ?? e)}`))
      )

    /** Only on a failed or interrupted create: the release half of a rollback step. */
    const onFailure = (exit: Exit.Exit<unknown, unknown>, undo: Effect.Effect<unknown, unknown>, what: string) =>
      Exit.isFailure(exit)
        ? undo.pipe(Effect.catchCause((cause) => Effect.logWarning(`rollback: ${what} failed`, cause)))
        : Effect.void

    /**
     * `bai_kernel_start_phase_seconds`: each phase once, timed from the previous one (`total` from
     * the start, with `runner-ready`).
     */
    const startPhases = Effect.gen(function*() {
      const start = yield* Clock.currentTimeMillis
      const last = yield* Ref.make({ at: start, reached: new Set<KernelStartPhase>() })
      return (phase: Exclude<KernelStartPhase, "total">) =>
        Effect.gen(function*() {
          const now = yield* Clock.currentTimeMillis
          const prev = yield* Ref.modify(last, (l) =>
            l.reached.has(phase) ? [undefined, l] : [l.at, { at: now, reached: new Set([...l.reached, phase]) }])
          if (prev === undefined) return
          yield* recordKernelStartPhase(phase, Duration.millis(now - prev))
          if (phase === "runner-ready") yield* recordKernelStartPhase("total", Duration.millis(now - start))
        })
    })

    /**
     * Follows the pod with a watch until it runs or fails decisively; `scheduled` once it is bound.
     * `created` (the POST's answer) starts the first watch at its resourceVersion without a GET;
     * later rounds (a watch that ended or expired) read the pod again.
     */
    const waitRunning = (
      kernelId: string,
      name: string,
      uid: string,
      lastState: Ref.Ref<string>,
      scheduled: Effect.Effect<void>,
      created?: k8s.V1Pod
    ) =>
      Effect.gen(function*() {
        const whenBound = (p: k8s.V1Pod) => (p.spec?.nodeName ? scheduled : Effect.void)
        let first = created
        for (;;) {
          const cur = first !== undefined
            ? Option.some(first)
            : yield* readPod(name).pipe(Effect.mapError(createFailure(kernelId)))
          first = undefined
          if (Option.isNone(cur) || cur.value.metadata?.uid !== uid) {
            return yield* new KernelCreationFailed({ kernelId, reason: "PodDeleted", message: "the pod disappeared while the kernel was being created" })
          }
          let pod = cur.value
          yield* whenBound(pod)
          const decisive = (p: k8s.V1Pod) => classifyCreating(p)._tag !== "Pending"
          if (!decisive(pod)) {
            const ended = yield* kube.watch<k8s.V1Pod>(podsPath, {
              fieldSelector: `metadata.name=${name}`,
              resourceVersion: pod.metadata?.resourceVersion
            }).pipe(
              Stream.filter((e) => e.type === "ADDED" || e.type === "MODIFIED" || e.type === "DELETED"),
              Stream.tap((e) =>
                Effect.sync(() => {
                  pod = e.type === "DELETED" ? { ...e.object, metadata: { ...e.object.metadata, deletionTimestamp: new Date() } } : e.object
                }).pipe(
                  Effect.andThen(Ref.set(lastState, classifyCreating(pod)._tag === "Pending" ? (classifyCreating(pod) as { description: string }).description : pod.status?.phase ?? "")),
                  Effect.andThen(Effect.suspend(() => whenBound(pod)))
                )
              ),
              Stream.takeUntil(() => decisive(pod)),
              Stream.runDrain,
              Effect.as(true),
              Effect.catch((e: KubeError) =>
                e.reason === "Gone" ? Effect.succeed(false) : Effect.sleep("1 second").pipe(Effect.as(false))
              )
            )
            if (!ended || !decisive(pod)) continue
          }
          const state = classifyCreating(pod)
          switch (state._tag) {
            case "Running":
              yield* scheduled
              return state.hostIP
            case "ImagePullFailed":
              return yield* new ImagePullFailed({ kernelId, image: state.image, reason: state.reason, message: state.message })
            case "Unschedulable":
              return yield* new Unschedulable({ kernelId, message: state.message })
            case "Failed":
              return yield* new KernelCreationFailed({ kernelId, reason: state.reason, message: state.message })
            case "Pending":
              continue
          }
        }
      })

    const createPod = (kernelId: string, body: k8s.V1Pod) =>
      Effect.gen(function*() {
        for (let attempt = 0;; attempt++) {
          const created = yield* kube.core("create pod", (api) => api.createNamespacedPod({ namespace, body })).pipe(
            Effect.map(Option.some),
            Effect.catchIf((e) => e.reason === "AlreadyExists" && attempt < 2, () => Effect.succeed(Option.none<k8s.V1Pod>())),
            Effect.mapError(createFailure(kernelId))
          )
          if (Option.isSome(created)) return created.value
          // 409: a pod of this name exists: a ready kernel is adopted, leftovers are replaced
          const existing = yield* readPod(objectName(kernelId)).pipe(Effect.mapError(createFailure(kernelId)))
          if (Option.isNone(existing)) continue
          const pod = existing.value
          if (isReadyMarked(pod) && pod.metadata?.deletionTimestamp === undefined && Option.isSome(recoveryOf(pod))) {
            return yield* Effect.fail(new AdoptExisting({ pod }))
          }
          yield* Effect.logInfo("replacing leftover pod of a kernel being created").pipe(Effect.annotateLogs({ kernelId }))
          yield* deleteObjects(kernelId, pod.metadata?.uid)
        }
      })

    /** Creates the Service; a NodePort taken elsewhere (422) is replaced by another one. */
    const createService = (kernelId: string, input: KernelObjectsInput, reserved: Ref.Ref<ReadonlyArray<number>>, podUid: string) =>
      Effect.gen(function*() {
        const wanted = exposedPorts(input.servicePorts)
        for (let attempt = 0;; attempt++) {
          const ports = yield* Ref.get(reserved)
          const map = new Map(wanted.map((p, i) => [p, ports[i]!]))
          const result = yield* kube.core("create service", (api) => api.createNamespacedService({ namespace, body: buildService(input, map, podUid) })).pipe(
            Effect.map(Option.some),
            Effect.catchIf(
              (e) => e.reason === "Invalid" && allocatedPortsIn(e.message).length > 0 && attempt < 20,
              (e) =>
                Effect.gen(function*() {
                  const taken = allocatedPortsIn(e.message)
                  yield* nodePorts.markForeign(taken)
                  yield* nodePorts.release(taken)
                  const fresh = yield* nodePorts.reserve(taken.length).pipe(
                    Effect.mapError((err) => new KernelCreationFailed({ kernelId, reason: "NoFreeNodePort", message: err.message }))
                  )
                  yield* Ref.update(reserved, (cur) => cur.map((p) => (taken.includes(p) ? fresh[taken.indexOf(p)]! : p)))
                  return Option.none<k8s.V1Service>()
                })
            ),
            Effect.catchIf(
              (e: KubeError | KernelCreationFailed) => e._tag === "KubeError" && e.reason === "AlreadyExists" && attempt < 20,
              () => deleteService(objectName(kernelId)).pipe(Effect.mapError(createFailure(kernelId)), Effect.as(Option.none<k8s.V1Service>()))
            ),
            Effect.mapError((e) => (e._tag === "KubeError" ? createFailure(kernelId)(e) : e))
          )
          if (Option.isSome(result)) return result.value
        }
      })

    const statusPing = (kernelId: string, host: string, replIn: number, replOut: number) =>
      Effect.gen(function*() {
        const conn = yield* runners.open(kernelId, { host, replInPort: replIn, replOutPort: replOut })
        yield* conn.status("2 seconds").pipe(Effect.retry(Schedule.spaced("300 millis")))
      }).pipe(Effect.mapError((e) => new KernelCreationFailed({ kernelId, reason: "RunnerUnreachable", message: e.message })))

    /** The create itself, in its own scope; `reuseScratch` for restarts. */
    const doCreate = (kernelId: string, kconfig: KernelConfig, reuseScratch: boolean): Effect.Effect<KernelInfo, CreateError> =>
      Effect.gen(function*() {
        const phase = yield* startPhases
        const servicePorts = yield* parseServicePorts(kconfig.image.labels["ai.backend.service-ports"] ?? "").pipe(
          Effect.mapError((message) => new InvalidKernelConfig({ kernelId, message }))
        )
        const vf = yield* vfolderHost(kernelId, kconfig)
        const input = objectsInput(kernelId, kconfig, vf, servicePorts)
        const name = objectName(kernelId)
        yield* events.publish(AgentEvents.kernelCreating(kernelId))

        // scratch dir (agent side; the same directory is the pod's /home/work); removed on failure only
        // if this create made it (a ready pod found on 409 is adopted with the directory it uses)
        yield* Effect.acquireRelease(
          checkedKernelWorkDir(scratchRoot, kernelId).pipe(
            Effect.mapError((e) => new KernelCreationFailed({ kernelId, reason: "ScratchDir", message: e.message })),
            Effect.flatMap((dir) => fsEffect(kernelId, "create the scratch dir", () => fs.promises.mkdir(dir, { recursive: true })))
          ),
          (made, exit) => (reuseScratch || made === undefined ? Effect.void : onFailure(exit, removeScratch(kernelId), "remove scratch dir"))
        )
        // modes 0711 / 0700, owned by the kernel's user (src/kube/ScratchDir.ts)
        const owner = kernelDirOwner({ uid: config.container["kernel-uid"], gid: config.container["kernel-gid"] }, process.getuid?.() ?? -1)
        yield* prepareScratchDir(kernelDir(kernelId), owner).pipe(
          Effect.mapError((e) => new KernelCreationFailed({ kernelId, reason: "ScratchDir", message: e.message }))
        )
        // NodePorts: reserved now, released if the create fails
        const wanted = exposedPorts(servicePorts)
        const reserved = yield* Effect.acquireRelease(
          nodePorts.reserve(wanted.length).pipe(
            Effect.mapError((e) => new KernelCreationFailed({ kernelId, reason: "NoFreeNodePort", message: e.message })),
            Effect.flatMap((ports) => Ref.make(ports))
          ),
          (ref, exit) => onFailure(exit, Ref.get(ref).pipe(Effect.flatMap(nodePorts.release)), "release NodePorts")
        )
        const portMap = (ports: ReadonlyArray<number>) => new Map(wanted.map((p, i) => [p, ports[i]!]))

        // Pod (owner of the rest)
        const pod = yield* Effect.acquireRelease(
          createPod(kernelId, buildPod(input, portMap(yield* Ref.get(reserved)))),
          (p, exit) => onFailure(exit, deleteObjects(kernelId, p.metadata?.uid), "delete pod")
        )
        const podUid = pod.metadata!.uid!
        // ConfigMap, Service and NetworkPolicy all hang off the pod (ownerReferences) and not off each
        // other: created concurrently, each with its own rollback step (an acquisition is not
        // interruptible, so a sibling's failure still registers the release of what was made)
        const createConfigMap = Effect.acquireRelease(
          kube.core("create configmap", (api) =>
            api.createNamespacedConfigMap({
              namespace,
              body: buildConfigMap(input, { environ: environText(kconfig.environ), resource: resourceText(kernelId, kconfig) }, podUid)
            })).pipe(
              Effect.catchIf(
                (e) => e.reason === "AlreadyExists",
                () =>
                  kube.core("replace configmap", (api) =>
                    api.replaceNamespacedConfigMap({
                      name,
                      namespace,
                      body: buildConfigMap(input, { environ: environText(kconfig.environ), resource: resourceText(kernelId, kconfig) }, podUid)
                    }))
              ),
              Effect.mapError(createFailure(kernelId))
            ),
          (_, exit) => onFailure(exit, deleteConfigMap(name), "delete configmap")
        )
        const createServiceObject = Effect.acquireRelease(
          createService(kernelId, input, reserved, podUid),
          (_, exit) => onFailure(exit, deleteService(name), "delete service")
        )
        // the kernel's service ports, only from kubernetes.network-policy.service-sources (owned by the pod;
        // a restart replaces the old pod's policy)
        const fence = config.kubernetes["network-policy"]
        const servicePolicy = fence.enabled ? buildServicePolicy(input, fence["service-sources"], podUid) : undefined
        const createPolicy = servicePolicy === undefined
          ? Effect.void
          : kube.networking("create network policy", (api) => api.createNamespacedNetworkPolicy({ namespace, body: servicePolicy })).pipe(
            Effect.catchIf(
              (e) => e.reason === "AlreadyExists",
              () => kube.networking("replace network policy", (api) => api.replaceNamespacedNetworkPolicy({ name, namespace, body: servicePolicy }))
            ),
            Effect.mapError(createFailure(kernelId)),
            Effect.asVoid
          )
        const [, service] = yield* Effect.all([createConfigMap, createServiceObject, createPolicy], { concurrency: "unbounded" })
        const ports = nodePortsOf(service)
        const recovery = recoveryFor(input, ports)
        const now = yield* monotonicMillis
        const info: KernelInfo = {
          kernelId,
          namespace,
          objectName: name,
          podUid,
          status: "creating",
          kernelHost: kernelHostOverride,
          replInPort: ports.get(REPL_IN)!,
          replOutPort: ports.get(REPL_OUT)!,
          servicePorts: recovery.servicePorts,
          canonicalImage: recovery.canonicalImage,
          image: recovery.image,
          resourceSpec: recovery.resourceSpec,
          scratchDir: recovery.scratchDir,
          idleTimeout: recovery.idleTimeout,
          lastUsed: now
        }
        yield* Effect.acquireRelease(registry.upsert(info), (_, exit) => onFailure(exit, registry.remove(kernelId), "registry entry"))

        // Running, and a runner that answers, within container.create-timeout
        const lastState = yield* Ref.make("pod created")
        const hostIP = yield* Effect.gen(function*() {
          const hostIP = yield* waitRunning(kernelId, name, podUid, lastState, phase("scheduled"), pod)
          yield* phase("running")
          yield* Ref.set(lastState, "pod Running, waiting for the runner's status answer")
          const kernelHost = kernelHostOverride !== "" ? kernelHostOverride : hostIP
          yield* Effect.acquireRelease(Effect.void, (_, exit) => onFailure(exit, runners.close(kernelId), "close runner"))
          yield* statusPing(kernelId, kernelHost, info.replInPort, info.replOutPort)
          yield* phase("runner-ready")
          return hostIP
        }).pipe(
          Effect.timeoutOrElse({
            duration: Duration.seconds(createTimeout),
            orElse: () =>
              Ref.get(lastState).pipe(
                Effect.flatMap((last) => Effect.fail(new KernelCreationTimeout({ kernelId, seconds: createTimeout, lastState: last })))
              )
          })
        )

        // ready: mark the pod (what a restarted agent adopts), then the registry
        const readyAt = new Date(yield* Clock.currentTimeMillis).toISOString()
        yield* kube.core("mark pod ready", (api) =>
          api.patchNamespacedPod(
            {
              name,
              namespace,
              body: { metadata: { annotations: { [READY_ANNOTATION]: readyAt, [RECOVERY_ANNOTATION]: recoveryText(recovery) } } }
            },
            k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch)
          )).pipe(Effect.mapError(createFailure(kernelId)))
        const ready: KernelInfo = { ...info, status: "running", kernelHost: kernelHostOverride !== "" ? kernelHostOverride : hostIP }
        yield* registry.upsert(ready)
        yield* nodePorts.claim(ports.values())
        return ready
      }).pipe(
        Effect.scoped,
        Effect.catch((e) => (e instanceof AdoptExisting ? adoptExisting(kernelId, e.pod) : Effect.fail(e))),
        Effect.annotateLogs({ kernelId })
      )

    /** A ready pod found on create (409): rebuild from the cluster. */
    const adoptExisting = (kernelId: string, pod: k8s.V1Pod) =>
      Effect.gen(function*() {
        const svc = yield* optional(kube.core("read service", (api) => api.readNamespacedService({ name: objectName(kernelId), namespace }))).pipe(
          Effect.mapError(createFailure(kernelId))
        )
        if (Option.isNone(svc)) {
          return yield* new KernelCreationFailed({ kernelId, reason: "KernelObjectsLost", message: "a pod of this kernel exists without its Service" })
        }
        const adopted = yield* adopt(pod, svc.value)
        if (Option.isNone(adopted)) {
          return yield* new KernelCreationFailed({ kernelId, reason: "KernelObjectsLost", message: "the existing pod cannot be adopted" })
        }
        return adopted.value
      })

    const adopt = (pod: k8s.V1Pod, service: k8s.V1Service): Effect.Effect<Option.Option<KernelInfo>> =>
      Effect.gen(function*() {
        const rec = recoveryOf(pod)
        const hostIP = pod.status?.hostIP ?? ""
        if (Option.isNone(rec) || (hostIP === "" && kernelHostOverride === "")) return Option.none()
        const r = rec.value
        const ports = nodePortsOf(service)
        const now = yield* monotonicMillis
        const info: KernelInfo = {
          kernelId: r.kernelId,
          namespace,
          objectName: objectName(r.kernelId),
          podUid: pod.metadata?.uid,
          status: "running",
          kernelHost: kernelHostOverride !== "" ? kernelHostOverride : hostIP,
          replInPort: ports.get(REPL_IN) ?? r.replInPort,
          replOutPort: ports.get(REPL_OUT) ?? r.replOutPort,
          servicePorts: r.servicePorts.map((p) => ({ ...p, host_port: ports.get(p.container_port) ?? p.host_port })),
          canonicalImage: r.canonicalImage,
          image: r.image,
          resourceSpec: r.resourceSpec,
          scratchDir: r.scratchDir,
          idleTimeout: r.idleTimeout,
          lastUsed: now
        }
        yield* registry.upsert(info)
        yield* nodePorts.claim(ports.values())
        yield* runners.open(info.kernelId, { host: info.kernelHost, replInPort: info.replInPort, replOutPort: info.replOutPort }).pipe(
          Effect.catch((e) => Effect.logWarning(`adopted kernel: runner connection failed: ${e.message}`))
        )
        return Option.some(info)
      })

    /** Waits for an in-flight create's outcome; an interrupted create is a typed failure. */
    const awaitCreate = (kernelId: string, fiber: Fiber.Fiber<KernelInfo, CreateError>) =>
      Fiber.await(fiber).pipe(
        Effect.flatMap((exit) =>
          Exit.isSuccess(exit)
            ? Effect.succeed(exit.value)
            : Exit.hasInterrupts(exit) && Option.isNone(Exit.findErrorOption(exit))
            ? Effect.fail(new KernelCreationFailed({ kernelId, reason: "Cancelled", message: "the create was cancelled (destroy_kernel or agent shutdown)" }))
            : exit
        )
      )

    const create = Effect.fn("KernelLifecycle.create")(function*(kernelId: string, raw: unknown) {
      const kconfig = yield* decodeKernelConfig(kernelId, raw)
      const waiter = yield* lock.withPermits(1)(Effect.gen(function*() {
        const inflight = FiberMap.getUnsafe(creates, kernelId)
        if (Option.isSome(inflight)) return awaitCreate(kernelId, inflight.value)
        const known = yield* registry.find(kernelId)
        if (Option.isSome(known) && known.value.status === "running") return Effect.succeed(known.value)
        const destroying = FiberMap.getUnsafe(destroys, kernelId)
        const fiber = yield* FiberMap.run(
          creates,
          kernelId,
          Effect.gen(function*() {
            if (Option.isSome(destroying)) yield* Fiber.await(destroying.value)
            // recorded where it survives the agent before anything is made (LiveKernels)
            yield* live.creating(kernelId).pipe(
              Effect.mapError((e) => new KernelCreationFailed({ kernelId, reason: "EtcdUnavailable", message: `cannot record the kernel: ${e.message}` }))
            )
            yield* events.publish(AgentEvents.kernelPreparing(kernelId))
            // a failure is answered to the manager: no event, no record (an interruption keeps it)
            const info = yield* doCreate(kernelId, kconfig, false).pipe(Effect.tapError(() => live.forget(kernelId)))
            yield* events.publish(AgentEvents.kernelStarted(kernelId))
            yield* Metric.update(kernelsCreatedTotal, 1)
            yield* Ref.update(terminated, (m) => {
              const next = new Map(m)
              next.delete(kernelId)
              return next
            })
            return info
          })
        )
        return awaitCreate(kernelId, fiber)
      }))
      const info = yield* waiter
      yield* registry.touch(kernelId).pipe(Effect.ignore)
      return toResult(info)
    })

    // ------------------------------------------------------------------------------------------
    // destroy

    const doDestroy = (kernelId: string, reason: string, exitCodeHint: number | null, creating: Option.Option<Fiber.Fiber<KernelInfo, CreateError>>) =>
      Effect.gen(function*() {
        if (Option.isSome(creating)) {
          // the create rolls back everything it made when interrupted
          yield* Fiber.interrupt(creating.value)
        }
        const known = yield* registry.find(kernelId)
        if (Option.isSome(known)) {
          const info = known.value
          yield* registry.update(kernelId, (k) => ({ ...k, status: "terminating" }))
          const last = yield* deleteObjects(kernelId, info.podUid).pipe(
            Effect.tapError(() => registry.update(kernelId, (k) => ({ ...k, status: info.status })))
          )
          yield* runners.close(kernelId)
          const exitCode = exitCodeHint ?? Option.match(last, { onNone: () => null, onSome: (p) => terminationOf(p).exitCode })
          const lastStat = yield* stats.finalize(kernelId)
          yield* live.terminated(kernelId, reason, exitCode)
          yield* countKernelTerminated(reason)
          yield* registry.remove(kernelId)
          yield* nodePorts.release([info.replInPort, info.replOutPort, ...info.servicePorts.map((p) => p.host_port)])
          yield* removeScratch(kernelId)
          yield* Effect.logInfo(`kernel terminated (${reason})`)
          yield* rememberTerminated(kernelId)
          return Option.match(lastStat, { onNone: (): DestroyResult => null, onSome: (st): DestroyResult => ({ ...st, version: 2 }) })
        } else if (Option.isSome(creating)) {
          // an interrupted restart keeps the scratch dir it reuses
          yield* removeScratch(kernelId)
          yield* live.terminated(kernelId, reason, null)
          yield* countKernelTerminated(reason)
        }
        yield* rememberTerminated(kernelId)
        return null
      }).pipe(Effect.annotateLogs({ kernelId }))

    const reportUnknown = (kernelId: string) =>
      events.publish(AgentEvents.kernelTerminated(kernelId, SELF_TERMINATED, null)).pipe(
        Effect.andThen(countKernelTerminated(SELF_TERMINATED)),
        Effect.andThen(Effect.logInfo("unknown kernel id: reported kernel_terminated(self-terminated)")),
        Effect.annotateLogs({ kernelId })
      )

    /**
     * `destroy_kernel` of an id this agent does not know: objects it may have left (a pod that never
     * became ready, one the registry lost) are removed, then the kernel is reported self-terminated.
     */
    const destroyUnknown = (kernelId: string) =>
      removeObjects(kernelId).pipe(
        Effect.catch((e) => Effect.logWarning(`destroy of an unknown kernel: cannot remove its objects: ${e.message}`).pipe(Effect.annotateLogs({ kernelId }))),
        Effect.andThen(reportUnknown(kernelId)),
        Effect.andThen(rememberTerminated(kernelId)),
        Effect.as<DestroyResult>(null)
      )

    const destroyWith = (kernelId: string, reason: string, exitCode: number | null) =>
      Effect.gen(function*() {
        const waiter = yield* lock.withPermits(1)(Effect.gen(function*() {
          const inflight = FiberMap.getUnsafe(destroys, kernelId)
          if (Option.isSome(inflight)) return Fiber.join(inflight.value)
          const creating = FiberMap.getUnsafe(creates, kernelId)
          const known = yield* registry.find(kernelId)
          if (Option.isNone(creating) && Option.isNone(known)) {
            const wasKnown = (yield* Ref.get(terminated)).has(kernelId)
            if (wasKnown) return Effect.succeed<DestroyResult>(null)
            const fiber = yield* FiberMap.run(destroys, kernelId, destroyUnknown(kernelId))
            return Fiber.join(fiber)
          }
          const fiber = yield* FiberMap.run(destroys, kernelId, doDestroy(kernelId, reason, exitCode, creating))
          return Fiber.join(fiber)
        }))
        return yield* waiter
      })

    const destroy = Effect.fn("KernelLifecycle.destroy")(function*(kernelId: string, reason: string) {
      return yield* destroyWith(kernelId, reason, null)
    })

    const podEnded = (kernelId: string, reason: string, exitCode: number | null) =>
      Effect.gen(function*() {
        if (FiberMap.hasUnsafe(creates, kernelId) || FiberMap.hasUnsafe(destroys, kernelId)) return
        const known = yield* registry.find(kernelId)
        if (Option.isNone(known) || known.value.status !== "running") return
        yield* Effect.logInfo(`kernel pod ended: ${reason}, exit code ${exitCode}`).pipe(Effect.annotateLogs({ kernelId }))
        yield* destroyWith(kernelId, reason, exitCode).pipe(
          Effect.catch((e) => Effect.logWarning(`cleanup after the pod ended failed: ${e.message}`).pipe(Effect.annotateLogs({ kernelId })))
        )
      })

    // ------------------------------------------------------------------------------------------
    // restart

    /** A restart whose new pod failed: what a destroy does for a kernel with no objects left. */
    const restartFailed = (kernelId: string) =>
      Effect.gen(function*() {
        yield* removeScratch(kernelId)
        yield* stats.finalize(kernelId)
        yield* live.terminated(kernelId, RESTART_FAILED, null)
        yield* countKernelTerminated(RESTART_FAILED)
        yield* rememberTerminated(kernelId)
      }).pipe(Effect.annotateLogs({ kernelId }))

    const restart = Effect.fn("KernelLifecycle.restart")(function*(kernelId: string, raw: unknown) {
      const sent = yield* decodeKernelConfig(kernelId, raw)
      const waiter = yield* lock.withPermits(1)(Effect.gen(function*() {
        const inflight = FiberMap.getUnsafe(creates, kernelId)
        if (Option.isSome(inflight)) return awaitCreate(kernelId, inflight.value)
        const known = yield* registry.find(kernelId)
        if (Option.isNone(known) || FiberMap.hasUnsafe(destroys, kernelId)) return Effect.fail(new KernelNotFound({ kernelId }))
        const old = known.value
        const kconfig = restartConfig(raw, sent, old)
        const fiber = yield* FiberMap.run(
          creates,
          kernelId,
          Effect.gen(function*() {
            yield* registry.update(kernelId, (k) => ({ ...k, status: "creating" }))
            // the old pod could not be removed (API server unreachable): the kernel stays what it was,
            // so that the watch still reports it if the pod goes later. Killed at once (grace 0), as
            // the Docker agent kills the container: the whole restart runs under the manager's 30 s
            // timeout, and the new pod (same name) can only be created once the old one is gone.
            yield* deleteObjects(kernelId, old.podUid, 0).pipe(
              Effect.tapError(() => registry.update(kernelId, (k) => ({ ...k, status: old.status })))
            )
            yield* runners.close(kernelId)
            yield* registry.remove(kernelId)
            yield* nodePorts.release([old.replInPort, old.replOutPort, ...old.servicePorts.map((p) => p.host_port)])
            const info = yield* doCreate(kernelId, kconfig, true).pipe(
              // the old pod is gone and the new one failed: the kernel is gone (an interruption is a
              // destroy, which reports it itself)
              Effect.tapError(() => restartFailed(kernelId))
            )
            yield* events.publish(AgentEvents.kernelStarted(kernelId))
            return info
          })
        )
        return awaitCreate(kernelId, fiber)
      }))
      const info = yield* waiter
      return {
        container_id: info.podUid ?? info.objectName,
        repl_in_port: info.replInPort,
        repl_out_port: info.replOutPort,
        stdin_port: 0,
        stdout_port: 0,
        service_ports: info.servicePorts
      } satisfies RestartKernelResult
    })

    // ------------------------------------------------------------------------------------------
    // all kernels, idle reaper, orphans

    const destroyAll = Effect.fn("KernelLifecycle.destroyAll")(function*(reason: string) {
      const known = (yield* registry.list).map((k) => k.kernelId)
      const ids = new Set(known)
      for (const [kid] of creates) ids.add(kid)
      yield* Effect.forEach(
        ids,
        (kernelId) =>
          destroy(kernelId, reason).pipe(
            Effect.catch((e) =>
              e._tag === "KernelNotFound" ? Effect.void : Effect.logWarning(`destroy failed: ${e.message}`).pipe(Effect.annotateLogs({ kernelId }))
            )
          ),
        { concurrency: 8, discard: true }
      )
    })

    // idle time on the monotonic clock: a wall-clock jump destroys nothing
    const reapIdle = Effect.gen(function*() {
      const now = yield* monotonicMillis
      const idle = (yield* registry.list).filter((k) =>
        k.status === "running" && k.idleTimeout > 0 && now - k.lastUsed > k.idleTimeout * 1000
      )
      yield* Effect.forEach(
        idle,
        (k) =>
          Effect.logInfo(`kernel idle for more than ${k.idleTimeout}s`).pipe(
            Effect.andThen(destroy(k.kernelId, "idle-timeout")),
            Effect.catch((e) => Effect.logWarning(`idle destroy failed: ${e.message}`)),
            Effect.annotateLogs({ kernelId: k.kernelId })
          ),
        { concurrency: 4, discard: true }
      )
    })

    const removeObjects = (kernelId: string) =>
      Effect.gen(function*() {
        const pod = yield* readPod(objectName(kernelId)).pipe(Effect.mapError(unavailable))
        yield* deleteObjects(kernelId, Option.getOrUndefined(Option.map(pod, (p) => p.metadata?.uid)))
        yield* removeScratch(kernelId)
      })

    return KernelLifecycle.of({
      create,
      destroy,
      reportUnknown,
      restart,
      destroyAll,
      podEnded,
      busy: (kernelId) => Effect.sync(() => FiberMap.hasUnsafe(creates, kernelId) || FiberMap.hasUnsafe(destroys, kernelId)),
      adopt,
      removeObjects,
      reapIdle
    })
  })

  /** The lifecycle and its idle reaper (every 10 s, Clock-driven). */
  static readonly layer = Layer.effect(
    KernelLifecycle,
    Effect.gen(function*() {
      const lifecycle = yield* KernelLifecycle.make
      yield* lifecycle.reapIdle.pipe(
        Effect.repeat(Schedule.spaced("10 seconds")),
        Effect.delay("10 seconds"),
        Effect.forkScoped
      )
      return lifecycle
    })
  )
}
