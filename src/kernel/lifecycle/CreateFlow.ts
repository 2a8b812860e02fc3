/**
 * Concern: the create flow — one kernel's objects made in order, each step an `acquireRelease` in
 * the create's own `Scope` (a rollback step). The steps: validated service ports and vfolder host
 * paths, then (independent, concurrently) the scratch dir and the NodePorts — all of it beside the
 * caller's `record` (the etcd live-kernel record), which is awaited before the Pod; the Pod; then
 * (concurrently, all owned by the pod) ConfigMap, Service and NetworkPolicy; the registry entry;
 * Running (pod watch), the runner's `status` answer, the ready mark. The rollback steps run unless
 * the create commits: a failure, an interruption (destroy, agent shutdown) or a ready pod found in
 * place (adopted instead, `PodCreated.FoundReady`) removes what this create made.
 */
import type * as k8s from "@kubernetes/client-node"
import { Clock, Context, Data, Duration, Effect, Layer, Ref, Schedule } from "effect"
import * as path from "node:path"
import { AgentConfig } from "../../config/AgentConfig.ts"
import {
  ImagePullFailed,
  InvalidKernelConfig,
  KernelCreationFailed,
  KernelCreationTimeout,
  type KubernetesFailure,
  Unschedulable
} from "../../domain/Errors.ts"
import { monotonicMillis } from "../../domain/MonotonicClock.ts"
import {
  buildConfigMap,
  buildPod,
  buildServicePolicy,
  classifyCreating,
  exposedPorts,
  type KernelObjectsInput,
  nodePortsOf,
  nodeSelectorOf,
  objectName,
  type PodAddresses,
  READY_ANNOTATION,
  RECOVERY_ANNOTATION,
  recoveryFor,
  recoveryText,
  reportedKernelHost,
  runnerEndpoint,
  type VolumeSpec
} from "../../kube/KernelObjects.ts"
import { NodePorts } from "../../kube/NodePorts.ts"
import { type KernelStartPhase, recordKernelStartPhase } from "../../observability/Metrics.ts"
import { Etcd } from "../../manager/Etcd.ts"
import { AgentEvents, EventPublisher } from "../../manager/EventPublisher.ts"
import { checkVfolderPaths, environText, type KernelConfig, parseServicePorts, resourceText } from "../../spec/KernelConfig.ts"
import { type KernelInfo, KernelTable } from "../KernelTable.ts"
import { RunnerConnections } from "../runner/RunnerConnections.ts"
import { Adoption } from "./Adoption.ts"
import { createFailure, KernelPods } from "./KernelPods.ts"
import { PodWaits } from "./PodWaits.ts"
import { ScratchDirs } from "./ScratchDirs.ts"

export type CreateError =
  | InvalidKernelConfig
  | ImagePullFailed
  | Unschedulable
  | KernelCreationFailed
  | KernelCreationTimeout
  | KubernetesFailure

export interface CreateOptions {
  /** A restart: the scratch dir is the old pod's (kept on failure). */
  readonly reuseScratch: boolean
  /**
   * What must be durable before the pod is POSTed (the live-kernel record): run concurrently with
   * the preparation (validation, scratch dir, NodePorts), never interrupted once started, and
   * awaited before the pod exists.
   */
  readonly record?: Effect.Effect<void, CreateError>
}

export interface CreateFlowShape {
  /** Creates the kernel's objects and waits until its runner answers. */
  readonly run: (kernelId: string, kconfig: KernelConfig, options: CreateOptions) => Effect.Effect<KernelInfo, CreateError>
}

/** How the scoped part of a create ended: a ready kernel, or a ready pod of it already there (adopt it). */
type Outcome = Data.TaggedEnum<{
  Ready: { readonly info: KernelInfo }
  FoundReady: { readonly pod: k8s.V1Pod }
}>
const Outcome = Data.taggedEnum<Outcome>()

/** The runner's `status` is asked again at this pace until it answers (within the create timeout). */
const statusRetry = Schedule.spaced("300 millis")

/**
 * `bai_kernel_start_phase_seconds`: each phase once, timed from the previous one (`total` from the
 * start, with `runner-ready`).
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

/** A pod state `classifyCreating` found decisive, as the create's outcome: the pod's addresses or the failure. */
const decided = (kernelId: string, pod: k8s.V1Pod): Effect.Effect<PodAddresses, CreateError> => {
  const state = classifyCreating(pod)
  switch (state._tag) {
    case "Running":
      return Effect.succeed(state)
    case "ImagePullFailed":
      return Effect.fail(new ImagePullFailed({ kernelId, image: state.image, reason: state.reason, message: state.message }))
    case "Unschedulable":
      return Effect.fail(new Unschedulable({ kernelId, message: state.message }))
    case "Failed":
      return Effect.fail(new KernelCreationFailed({ kernelId, reason: state.reason, message: state.message }))
    case "Pending":
      return Effect.die(new Error("a pending pod is not decisive"))
  }
}

const podStateText = (pod: k8s.V1Pod): string => {
  const state = classifyCreating(pod)
  return state._tag === "Pending" ? state.description : pod.status?.phase ?? ""
}

export class CreateFlow extends Context.Service<CreateFlow, CreateFlowShape>()("bai-agent/kernel/lifecycle/CreateFlow") {
  static readonly layer = Layer.effect(
    CreateFlow,
    Effect.gen(function*() {
      const { agentId, config } = yield* AgentConfig
      const pods = yield* KernelPods
      const waits = yield* PodWaits
      const scratch = yield* ScratchDirs
      const adoption = yield* Adoption
      const registry = yield* KernelTable
      const nodePorts = yield* NodePorts
      const events = yield* EventPublisher
      const runners = yield* RunnerConnections
      const etcd = yield* Etcd

      const namespace = config.kubernetes.namespace
      const createTimeout = config.container["create-timeout"]
      const kernelHostOverride = config.container["kernel-host"]
      const fence = config.kubernetes["network-policy"]
      // A relative hostPath means "relative to the agent's working directory" (the testbed's nodes are
      // this host); Kubernetes would take it as is, and a real kubelet would refuse it.
      const configuredScratch = config.kubernetes["scratch-volume"]
      const scratchVolume: VolumeSpec = configuredScratch === undefined
        ? { type: "hostPath", path: scratch.root }
        : configuredScratch.type === "hostPath"
        ? { ...configuredScratch, path: path.resolve(configuredScratch.path) }
        : configuredScratch
      const nodeSelector = nodeSelectorOf(config.kubernetes["node-selector"])

      const objectsInput = (
        kernelId: string,
        kconfig: KernelConfig,
        vf: { mount: string; fsprefix: string },
        servicePorts: KernelObjectsInput["servicePorts"],
        scratchDir: string
      ): KernelObjectsInput => ({
        namespace,
        agentId,
        kernelId,
        config: kconfig,
        servicePorts,
        registryUrl: config.kubernetes.registry.url,
        pullSecret: config.kubernetes.registry["pull-secret"],
        krunnerVolume: config.kubernetes["krunner-volume"],
        scratchVolume,
        scratchDir,
        vfolderMount: vf.mount,
        vfolderFsPrefix: vf.fsprefix,
        kernelUid: config.container["kernel-uid"],
        kernelGid: config.container["kernel-gid"],
        sandboxType: config.container["sandbox-type"],
        jailArgs: config.container["jail-args"],
        terminationGraceSeconds: config.kubernetes["termination-grace"],
        nodeSelector,
        runnerAddress: config.kubernetes["runner-address"]
      })

      const vfolderHost = (kernelId: string, kconfig: KernelConfig) =>
        kconfig.mounts.length === 0
          ? Effect.succeed({ mount: "", fsprefix: "" })
          : Effect.all({ mount: etcd.get("volumes/_mount"), fsprefix: etcd.get("volumes/_fsprefix") }, { concurrency: 2 }).pipe(
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

      const statusPing = (kernelId: string, host: string, replIn: number, replOut: number) =>
        Effect.gen(function*() {
          const conn = yield* runners.open(kernelId, { host, replInPort: replIn, replOutPort: replOut }).pipe(
            Effect.withSpan("CreateFlow.runnerOpen", { attributes: { kernelId } })
          )
          yield* conn.status("2 seconds").pipe(Effect.retry(statusRetry), Effect.withSpan("CreateFlow.runnerReply", { attributes: { kernelId } }))
        }).pipe(Effect.mapError((e) => new KernelCreationFailed({ kernelId, reason: "RunnerUnreachable", message: e.message })))

      const run = (kernelId: string, kconfig: KernelConfig, options: CreateOptions) =>
        Effect.gen(function*() {
          /** Set once the kernel is ready: from then on the rollback steps keep what was made. */
          const committed = yield* Ref.make(false)
          const undo = <E>(what: string, effect: Effect.Effect<unknown, E>) =>
            Effect.flatMap(Ref.get(committed), (kept) =>
              kept ? Effect.void : effect.pipe(Effect.catchCause((cause) => Effect.logWarning(`rollback: ${what} failed`, cause))))
          const step = <A, E>(acquire: Effect.Effect<A, E>, what: string, release: (a: A) => Effect.Effect<unknown, unknown>) =>
            Effect.acquireRelease(acquire, (a) => undo(what, release(a)))

          const phase = yield* startPhases
          const name = objectName(kernelId)
          /** A span per stage of the create (`CreateFlow.<stage>`, attribute kernelId): where its time goes. */
          const stage = (what: string) => Effect.withSpan(`CreateFlow.${what}`, { attributes: { kernelId } })

          // The record (an etcd write) only has to precede the pod: it runs beside the preparation.
          // It is not interrupted once started (a failed create then forgets the record strictly
          // after it was written); a failed record interrupts the preparation, whose steps release.
          const prepare = Effect.gen(function*() {
            const servicePorts = yield* parseServicePorts(kconfig.image.labels["ai.backend.service-ports"] ?? "").pipe(
              Effect.mapError((message) => new InvalidKernelConfig({ kernelId, message }))
            )
            const [vf, workDir] = yield* Effect.all([vfolderHost(kernelId, kconfig), scratch.workDir(kernelId)], { concurrency: 2 })
            const input = objectsInput(kernelId, kconfig, vf, servicePorts, workDir)
            // never blocks (an in-process queue), so it costs the steps below nothing
            yield* events.publish(AgentEvents.kernelCreating(kernelId))
            // independent of each other: the scratch dir (the pod's /home/work; removed on failure
            // only if this create made it) and the NodePorts (reserved now, released if the create fails)
            const wanted = exposedPorts(servicePorts, input.runnerAddress)
            const [, reserved] = yield* Effect.all([
              step(scratch.prepare(kernelId).pipe(stage("scratchDir")), "remove scratch dir", (made) =>
                options.reuseScratch || !made ? Effect.void : scratch.remove(kernelId)),
              step(
                nodePorts.reserve(wanted.length).pipe(
                  Effect.mapError((e) => new KernelCreationFailed({ kernelId, reason: "NoFreeNodePort", message: e.message })),
                  Effect.flatMap((ports) => Ref.make(ports)),
                  stage("nodePorts")
                ),
                "release NodePorts",
                (ref) => Ref.get(ref).pipe(Effect.flatMap(nodePorts.release))
              )
            ], { concurrency: 2 })
            return { input, wanted, reserved }
          })
          const [, { input, reserved, wanted }] = yield* Effect.all(
            [Effect.uninterruptible(options.record ?? Effect.void).pipe(stage("record")), prepare.pipe(stage("prepare"))],
            { concurrency: 2 }
          )
          const portMap = (ports: ReadonlyArray<number>) => new Map(wanted.map((p, i) => [p, ports[i]!]))

          // Pod (owner of the rest); a ready kernel's pod already there is adopted after the rollback
          const created = yield* Ref.get(reserved).pipe(
            Effect.flatMap((ports) => pods.createPod(kernelId, buildPod(input, portMap(ports)))),
            stage("podPost")
          )
          if (created._tag === "FoundReady") return Outcome.FoundReady({ pod: created.pod })
          const pod = yield* step(Effect.succeed(created.pod), "delete pod", (p) => pods.deleteObjects(kernelId, p.metadata?.uid))
          const podUid = pod.metadata!.uid!
          // ConfigMap, Service and NetworkPolicy all hang off the pod (ownerReferences) and not off each
          // other: created concurrently, each with its own rollback step (an acquisition is not
          // interruptible, so a sibling's failure still registers the release of what was made)
          const configMap = buildConfigMap(input, { environ: environText(kconfig.environ), resource: resourceText(kernelId, kconfig) }, podUid)
          // the kernel's service ports, only from kubernetes.network-policy.service-sources (a restart
          // replaces the old pod's policy)
          const servicePolicy = fence.enabled ? buildServicePolicy(input, fence["service-sources"], podUid) : undefined
          const [, service] = yield* Effect.all([
            step(pods.createConfigMap(kernelId, configMap), "delete configmap", () => pods.deleteConfigMap(name)),
            step(pods.createService(kernelId, input, reserved, podUid), "delete service", () => pods.deleteService(name)),
            servicePolicy === undefined ? Effect.void : pods.createPolicy(kernelId, servicePolicy)
          ], { concurrency: "unbounded" }).pipe(stage("ownedObjects"))
          const ports = nodePortsOf(service)
          const recovery = recoveryFor(input, ports)
          const info: KernelInfo = {
            kernelId,
            namespace,
            objectName: name,
            podUid,
            status: "creating",
            kernelHost: kernelHostOverride,
            replInPort: recovery.replInPort,
            replOutPort: recovery.replOutPort,
            servicePorts: recovery.servicePorts,
            canonicalImage: recovery.canonicalImage,
            image: recovery.image,
            resourceSpec: recovery.resourceSpec,
            scratchDir: recovery.scratchDir,
            idleTimeout: recovery.idleTimeout,
            lastUsed: yield* monotonicMillis
          }
          yield* step(registry.upsert(info), "registry entry", () => registry.remove(kernelId))

          // Running, and a runner that answers, within container.create-timeout
          const lastState = yield* Ref.make("pod created")
          const scheduled = phase("scheduled")
          const running = yield* Effect.gen(function*() {
            const running = yield* waits.untilDecided(name, podUid, pod, (p) =>
              Ref.set(lastState, podStateText(p)).pipe(Effect.andThen(p.spec?.nodeName ? scheduled : Effect.void))).pipe(
                Effect.mapError((e) =>
                  e._tag === "PodVanished"
                    ? new KernelCreationFailed({ kernelId, reason: "PodDeleted", message: "the pod disappeared while the kernel was being created" })
                    : createFailure(kernelId)(e)
                ),
                stage("waitRunning")
              )
            const addresses = yield* decided(kernelId, running)
            yield* scheduled
            yield* phase("running")
            yield* Ref.set(lastState, "pod Running, waiting for the runner's status answer")
            yield* step(Effect.void, "close runner", () => runners.close(kernelId))
            const endpoint = runnerEndpoint(addresses, input.runnerAddress, info, kernelHostOverride)
            yield* statusPing(kernelId, endpoint.host, endpoint.replInPort, endpoint.replOutPort).pipe(stage("runnerStatus"))
            yield* phase("runner-ready")
            return { addresses, nodeName: running.spec?.nodeName }
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
          yield* pods.annotatePod(kernelId, { [READY_ANNOTATION]: readyAt, [RECOVERY_ANNOTATION]: recoveryText(recovery) }).pipe(stage("readyPatch"))
          const ready: KernelInfo = {
            ...info,
            status: "running",
            kernelHost: reportedKernelHost(running.addresses, kernelHostOverride),
            nodeName: running.nodeName
          }
          yield* registry.upsert(ready)
          yield* nodePorts.claim(ports.values())
          yield* Ref.set(committed, true)
          return Outcome.Ready({ info: ready })
        }).pipe(
          Effect.scoped,
          Effect.flatMap((outcome) => (outcome._tag === "FoundReady" ? adoption.adoptFound(kernelId, outcome.pod) : Effect.succeed(outcome.info))),
          Effect.withSpan("CreateFlow.run", { attributes: { kernelId } }),
          Effect.annotateLogs({ kernelId })
        )

      return CreateFlow.of({ run })
    })
  )
}
