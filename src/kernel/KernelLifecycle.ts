// size: the coordinator only (each concern is in ./lifecycle/); the layer that wires the one shared pod watch into it takes it just over 400
/**
 * Kernel lifecycle on Kubernetes (design §2): create, destroy, restart, destroy-all, idle reaping and
 * adoption of kernels found in the cluster. This file coordinates; each concern has its own room in
 * `./lifecycle/`:
 *
 * - `CreateFlow`: one create, every step a rollback step in the create's own `Scope` (scratch dir,
 *   NodePorts, Pod, ConfigMap/Service/NetworkPolicy owned by the pod, registry entry, runner), the
 *   pod followed until Running, the runner's `status` answer, the ready mark (what a restarted agent
 *   adopts). A failure or an interruption removes what was made; success keeps it.
 * - `KernelPods`: the Kubernetes operations on a kernel's objects, conflicts retried on `Schedule`s.
 * - `PodWaits`: following one pod until it runs or is gone, on `KernelPodWatch` (the agent's one
 *   pod watch, shared with the Reconciler).
 * - `ScratchDirs`: the scratch directories, on Effect's `FileSystem`, every path checked.
 * - `Adoption`: a ready kernel rebuilt from its Pod and Service.
 * - `IdleReaper`: the idle pass, repeated by its own layer (`KernelLifecycle.idleReaper`).
 *
 * Here: operations on one kernel id are single-flight — concurrent creates share one fiber
 * (FiberMap keyed by kid), destroys share one, a destroy interrupts an in-flight create (which rolls
 * back). **destroy** deletes Pod (grace and preconditions in the body), Service and ConfigMap, waits
 * for the pod to go, finalizes the kernel's stats and then publishes `kernel_terminated` with the
 * real reason. **restart** replaces the pod of a kernel under the same id and scratch dir. Agent
 * shutdown never deletes anything (detach).
 */
import type * as k8s from "@kubernetes/client-node"
import { Context, Effect, Exit, Fiber, FiberMap, Layer, Metric, Option, Ref, Semaphore } from "effect"
import { KernelCreationFailed, KernelNotFound, type KubernetesFailure, kubernetesFailure } from "../domain/Errors.ts"
import { objectName, terminationOf } from "../kube/KernelObjects.ts"
import { NodePorts } from "../kube/NodePorts.ts"
import { countKernelTerminated, kernelsCreatedTotal } from "../observability/Metrics.ts"
import { AgentEvents, EventPublisher } from "../manager/EventPublisher.ts"
import type { CreateKernelResult, RestartKernelResult } from "../domain/KernelResults.ts"
import { KernelStatsSink } from "../stats/KernelStatsSink.ts"
import { decodeKernelConfig } from "../spec/KernelConfig.ts"
import { type KernelInfo, KernelTable } from "./KernelTable.ts"
import { Adoption } from "./lifecycle/Adoption.ts"
import { type CreateError, CreateFlow } from "./lifecycle/CreateFlow.ts"
import { idlePass, idleReaperLoop } from "./lifecycle/IdleReaper.ts"
import { KernelPods } from "./lifecycle/KernelPods.ts"
import { KernelPodWatch } from "./lifecycle/KernelPodWatch.ts"
import { PodWaits } from "./lifecycle/PodWaits.ts"
import { restartConfig } from "./lifecycle/RestartConfig.ts"
import { ScratchDirs } from "./lifecycle/ScratchDirs.ts"
import { LiveKernels } from "./LiveKernels.ts"
import { RunnerConnections } from "./runner/RunnerConnections.ts"

export type { CreateError } from "./lifecycle/CreateFlow.ts"
export { restartConfig } from "./lifecycle/RestartConfig.ts"

export type DestroyError = KernelNotFound | KubernetesFailure

/** Reason of a `destroy_kernel` RPC without an explicit reason. */
export const USER_REQUESTED = "user-requested"
/** `KernelCreationFailed` reason of a create whose live-kernel record could not be written (nothing to forget). */
const RECORD_FAILED = "EtcdUnavailable"
/** `kernel_terminated` reason of a kernel lost because its restart failed (the old pod was already gone). */
const RESTART_FAILED = "restart-failed"
/**
 * `kernel_terminated` reason for a kernel id this agent does not know (the 19.06 Docker agent's
 * `_destroy_kernel`/`_execute`): the manager then releases the session's slots instead of leaving it
 * in ERROR for ever.
 */
export const SELF_TERMINATED = "self-terminated"

/** `destroy_kernel`'s result: the kernel's last stat with `version: 2` (the Docker agent's), or None. */
export type DestroyResult = { readonly [key: string]: unknown } | null

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

export class KernelLifecycle extends Context.Service<KernelLifecycle, KernelLifecycleShape>()("bai-agent/kernel/KernelLifecycle") {
  static readonly make = Effect.gen(function*() {
    const flow = yield* CreateFlow
    const pods = yield* KernelPods
    const scratch = yield* ScratchDirs
    const adoption = yield* Adoption
    const registry = yield* KernelTable
    const nodePorts = yield* NodePorts
    const events = yield* EventPublisher
    const stats = yield* KernelStatsSink
    const runners = yield* RunnerConnections
    const live = yield* LiveKernels

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

    // ------------------------------------------------------------------------------------------
    // create

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
      yield* Effect.annotateCurrentSpan("kernelId", kernelId)
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
            // never blocks (an in-process queue)
            yield* events.publish(AgentEvents.kernelPreparing(kernelId))
            // recorded where it survives the agent before anything is made (LiveKernels): the flow
            // writes it beside its preparation and waits for it before the pod is POSTed
            const record = live.creating(kernelId).pipe(
              Effect.mapError((e) => new KernelCreationFailed({ kernelId, reason: RECORD_FAILED, message: `cannot record the kernel: ${e.message}` }))
            )
            // a failure is answered to the manager: no event, no record (an interruption keeps it;
            // a record that could not be written is not deleted either)
            const info = yield* flow.run(kernelId, kconfig, { reuseScratch: false, record }).pipe(
              Effect.tapError((e) => (e._tag === "KernelCreationFailed" && e.reason === RECORD_FAILED ? Effect.void : live.forget(kernelId)))
            )
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
          const last = yield* pods.deleteObjects(kernelId, info.podUid).pipe(
            Effect.tapError(() => registry.update(kernelId, (k) => ({ ...k, status: info.status })))
          )
          yield* runners.close(kernelId)
          const exitCode = exitCodeHint ?? Option.match(last, { onNone: () => null, onSome: (p) => terminationOf(p).exitCode })
          const lastStat = yield* stats.finalize(kernelId)
          yield* live.terminated(kernelId, reason, exitCode)
          yield* countKernelTerminated(reason)
          yield* registry.remove(kernelId)
          yield* nodePorts.release([info.replInPort, info.replOutPort, ...info.servicePorts.map((p) => p.host_port)])
          yield* scratch.remove(kernelId)
          yield* Effect.logInfo(`kernel terminated (${reason})`)
          yield* rememberTerminated(kernelId)
          return Option.match(lastStat, { onNone: (): DestroyResult => null, onSome: (st): DestroyResult => ({ ...st, version: 2 }) })
        } else if (Option.isSome(creating)) {
          // an interrupted restart keeps the scratch dir it reuses
          yield* scratch.remove(kernelId)
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
        yield* scratch.remove(kernelId)
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
            yield* pods.deleteObjects(kernelId, old.podUid, 0).pipe(
              Effect.tapError(() => registry.update(kernelId, (k) => ({ ...k, status: old.status })))
            )
            yield* runners.close(kernelId)
            yield* registry.remove(kernelId)
            yield* nodePorts.release([old.replInPort, old.replOutPort, ...old.servicePorts.map((p) => p.host_port)])
            const info = yield* flow.run(kernelId, kconfig, { reuseScratch: true }).pipe(
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

    const removeObjects = (kernelId: string) =>
      Effect.gen(function*() {
        const pod = yield* pods.readPod(objectName(kernelId)).pipe(Effect.mapError(kubernetesFailure))
        yield* pods.deleteObjects(kernelId, Option.getOrUndefined(Option.map(pod, (p) => p.metadata?.uid)))
        yield* scratch.remove(kernelId)
      })

    return KernelLifecycle.of({
      create,
      destroy,
      reportUnknown,
      restart,
      destroyAll,
      podEnded,
      busy: (kernelId) => Effect.sync(() => FiberMap.hasUnsafe(creates, kernelId) || FiberMap.hasUnsafe(destroys, kernelId)),
      adopt: adoption.adopt,
      removeObjects,
      reapIdle: idlePass(registry, destroy)
    })
  })

  /**
   * The lifecycle and the rooms it coordinates. Needs what it always needed (config, Kubernetes,
   * etcd, registry, NodePorts, events, stats sink, runners, LiveKernels) plus a `FileSystem`.
   */
  static readonly layer = Layer.effect(KernelLifecycle, KernelLifecycle.make).pipe(
    Layer.provide(
      CreateFlow.layer.pipe(
        Layer.provideMerge(Adoption.layer),
        Layer.provideMerge(KernelPods.layer),
        Layer.provideMerge(Layer.mergeAll(PodWaits.layer, ScratchDirs.layer))
      )
    ),
    // the agent's one pod watch, also the Reconciler's
    Layer.provideMerge(KernelPodWatch.layer)
  )

  /** The idle reaper: one pass every 10 s (Clock-driven), for as long as the layer lives. */
  static readonly idleReaper = Layer.effectDiscard(
    Effect.gen(function*() {
      const lifecycle = yield* KernelLifecycle
      yield* idleReaperLoop(lifecycle.reapIdle)
    })
  )
}
