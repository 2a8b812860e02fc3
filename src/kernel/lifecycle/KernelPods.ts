/**
 * Concern: the Kubernetes operations on one kernel's objects (Pod, Service, ConfigMap, service
 * NetworkPolicy): create, replace, mark ready, read, delete. Conflicts are retried on a `Schedule`:
 * a pod name already taken (409) is either a ready kernel (returned as `FoundReady`, for adoption)
 * or a leftover that is deleted first; a NodePort taken outside this agent (422) is swapped for a
 * fresh one. API failures keep their `KubeError`; `createFailure` maps them for the create path.
 */
import * as k8s from "@kubernetes/client-node"
import { Context, Data, Duration, Effect, Layer, Option, Ref, Schedule } from "effect"
import { AgentConfig } from "../../config/AgentConfig.ts"
import { KernelCreationFailed, type KubernetesFailure, kubernetesFailure } from "../../domain/Errors.ts"
import { buildService, exposedPorts, isReadyMarked, type KernelObjectsInput, objectName, recoveryOf } from "../../kube/KernelObjects.ts"
import { KubeClient, type KubeError, optional } from "../../kube/KubeClient.ts"
import { allocatedPortsIn, NodePorts } from "../../kube/NodePorts.ts"
import { PodWaits } from "./PodWaits.ts"

const isUnavailable = (e: KubeError) => e.reason === "Unavailable" || e.reason === "Timeout"

/**
 * Create-path mapping of API failures: unreachable → KubernetesUnavailable, refused credentials →
 * KubernetesForbidden, anything else (invalid object, conflict) → KernelCreationFailed.
 */
export const createFailure = (kernelId: string) => (e: KubeError): KubernetesFailure | KernelCreationFailed =>
  isUnavailable(e) || e.reason === "Forbidden" || e.reason === "Unauthorized"
    ? kubernetesFailure(e)
    : new KernelCreationFailed({ kernelId, reason: `Kube${e.reason}`, message: `${e.operation}: ${e.message}` })

/** What creating a kernel's pod found: a new pod, or a ready kernel's pod already there (adopt it). */
export type PodCreated = Data.TaggedEnum<{
  Created: { readonly pod: k8s.V1Pod }
  FoundReady: { readonly pod: k8s.V1Pod }
}>
export const PodCreated = Data.taggedEnum<PodCreated>()

/** Two more POSTs after a 409 (a leftover replaced, or a pod that vanished in between). */
const podNameConflicts = Schedule.recurs(2)
/** Up to 20 more POSTs of the Service after a NodePort conflict or a leftover Service. */
const serviceConflicts = Schedule.recurs(20)

export interface KernelPodsShape {
  readonly readPod: (name: string) => Effect.Effect<Option.Option<k8s.V1Pod>, KubeError>
  readonly readService: (name: string) => Effect.Effect<Option.Option<k8s.V1Service>, KubeError>
  /** POST the pod; on 409 a ready kernel's pod is `FoundReady`, a leftover is deleted and the POST retried. */
  readonly createPod: (kernelId: string, body: k8s.V1Pod) => Effect.Effect<PodCreated, KubernetesFailure | KernelCreationFailed>
  /** POST the Service with the NodePorts in `reserved` (swapped in place when taken elsewhere). */
  readonly createService: (
    kernelId: string,
    input: KernelObjectsInput,
    reserved: Ref.Ref<ReadonlyArray<number>>,
    podUid: string
  ) => Effect.Effect<k8s.V1Service, KubernetesFailure | KernelCreationFailed>
  /** POST the ConfigMap, or replace one left by an earlier pod of the kernel. */
  readonly createConfigMap: (kernelId: string, body: k8s.V1ConfigMap) => Effect.Effect<void, KubernetesFailure | KernelCreationFailed>
  /** POST the service NetworkPolicy, or replace the old pod's. */
  readonly createPolicy: (kernelId: string, body: k8s.V1NetworkPolicy) => Effect.Effect<void, KubernetesFailure | KernelCreationFailed>
  /** Merge-patches annotations onto the kernel's pod. */
  readonly annotatePod: (kernelId: string, annotations: Record<string, string>) => Effect.Effect<void, KubernetesFailure | KernelCreationFailed>
  readonly deleteService: (name: string) => Effect.Effect<void, KubeError>
  readonly deleteConfigMap: (name: string) => Effect.Effect<void, KubeError>
  /**
   * Deletes Pod, Service and ConfigMap of a kernel and waits (bounded) for the pod to go; returns
   * the pod's last version. `graceSeconds` defaults to `kubernetes.termination-grace`.
   */
  readonly deleteObjects: (kernelId: string, podUid: string | undefined, graceSeconds?: number) => Effect.Effect<Option.Option<k8s.V1Pod>, KubernetesFailure>
}

export class KernelPods extends Context.Service<KernelPods, KernelPodsShape>()("bai-agent/kernel/lifecycle/KernelPods") {
  static readonly layer = Layer.effect(
    KernelPods,
    Effect.gen(function*() {
      const { config } = yield* AgentConfig
      const kube = yield* KubeClient
      const nodePorts = yield* NodePorts
      const waits = yield* PodWaits
      const namespace = config.kubernetes.namespace
      const grace = config.kubernetes["termination-grace"]

      const readPod = (name: string) => optional(kube.core("read pod", (api) => api.readNamespacedPod({ name, namespace })))
      const readService = (name: string) => optional(kube.core("read service", (api) => api.readNamespacedService({ name, namespace })))

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

      const deleteObjects = (kernelId: string, podUid: string | undefined, graceSeconds: number = grace) =>
        Effect.gen(function*() {
          const name = objectName(kernelId)
          yield* Effect.all([deletePod(name, podUid, graceSeconds), deleteService(name), deleteConfigMap(name)], { concurrency: 3, discard: true })
          return yield* waits.untilGone(name, podUid, Duration.sum(Duration.seconds(graceSeconds), Duration.seconds(15)))
        }).pipe(Effect.mapError(kubernetesFailure))

      const createPod = (kernelId: string, body: k8s.V1Pod) => {
        const name = objectName(kernelId)
        /** A 409: the pod there is a ready kernel (adopt it) or a leftover (deleted; the POST is retried). */
        const nameTaken = (conflict: KubeError) =>
          Effect.gen(function*() {
            const existing = yield* readPod(name).pipe(Effect.mapError(createFailure(kernelId)))
            if (Option.isNone(existing)) return yield* Effect.fail(conflict)
            const pod = existing.value
            if (isReadyMarked(pod) && pod.metadata?.deletionTimestamp === undefined && Option.isSome(recoveryOf(pod))) {
              return PodCreated.FoundReady({ pod })
            }
            yield* Effect.logInfo("replacing leftover pod of a kernel being created").pipe(Effect.annotateLogs({ kernelId }))
            yield* deleteObjects(kernelId, pod.metadata?.uid)
            return yield* Effect.fail(conflict)
          })
        return kube.core("create pod", (api) => api.createNamespacedPod({ namespace, body })).pipe(
          Effect.map((pod) => PodCreated.Created({ pod })),
          Effect.catchIf((e) => e.reason === "AlreadyExists", nameTaken),
          Effect.retry({ while: (e) => e._tag === "KubeError" && e.reason === "AlreadyExists", schedule: podNameConflicts }),
          Effect.mapError((e) => (e._tag === "KubeError" ? createFailure(kernelId)(e) : e))
        )
      }

      const createService: KernelPodsShape["createService"] = (kernelId, input, reserved, podUid) => {
        const wanted = exposedPorts(input.servicePorts, input.runnerAddress)
        /** A 422 naming NodePorts allocated elsewhere: those are marked foreign and swapped for fresh ones. */
        const portsTaken = (e: KubeError) =>
          Effect.gen(function*() {
            const taken = allocatedPortsIn(e.message)
            yield* nodePorts.markForeign(taken)
            yield* nodePorts.release(taken)
            const fresh = yield* nodePorts.reserve(taken.length).pipe(
              Effect.mapError((err) => new KernelCreationFailed({ kernelId, reason: "NoFreeNodePort", message: err.message }))
            )
            yield* Ref.update(reserved, (cur) => cur.map((p) => (taken.includes(p) ? fresh[taken.indexOf(p)]! : p)))
            return yield* Effect.fail(e)
          })
        const portConflict = (e: KubeError) => e.reason === "Invalid" && allocatedPortsIn(e.message).length > 0
        const leftover = (e: KubeError) => e.reason === "AlreadyExists"
        return Ref.get(reserved).pipe(
          Effect.flatMap((ports) => {
            const map = new Map(wanted.map((p, i) => [p, ports[i]!]))
            return kube.core("create service", (api) => api.createNamespacedService({ namespace, body: buildService(input, map, podUid) }))
          }),
          Effect.catchIf(portConflict, portsTaken),
          Effect.catchIf(
            (e: KubeError | KernelCreationFailed) => e._tag === "KubeError" && leftover(e),
            (e) => deleteService(objectName(kernelId)).pipe(Effect.andThen(Effect.fail(e)))
          ),
          Effect.retry({ while: (e) => e._tag === "KubeError" && (portConflict(e) || leftover(e)), schedule: serviceConflicts }),
          Effect.mapError((e) => (e._tag === "KubeError" ? createFailure(kernelId)(e) : e))
        )
      }

      /**
       * POST, or PUT over an object of the same name left by an earlier pod of the kernel. That object
       * hangs off the earlier pod (ownerReferences), so the garbage collector may delete it between the
       * POST's 409 and the PUT (a restart): a PUT answered 404 starts over with the POST.
       */
      const createOrReplace = <A>(kernelId: string, create: Effect.Effect<A, KubeError>, replace: Effect.Effect<A, KubeError>) =>
        create.pipe(
          Effect.catchIf((e) => e.reason === "AlreadyExists", () => replace),
          Effect.retry({ while: (e) => e.reason === "NotFound", schedule: Schedule.recurs(3) }),
          Effect.mapError(createFailure(kernelId)),
          Effect.asVoid
        )
      const createConfigMap = (kernelId: string, body: k8s.V1ConfigMap) =>
        createOrReplace(
          kernelId,
          kube.core("create configmap", (api) => api.createNamespacedConfigMap({ namespace, body })),
          kube.core("replace configmap", (api) => api.replaceNamespacedConfigMap({ name: objectName(kernelId), namespace, body }))
        )
      const createPolicy = (kernelId: string, body: k8s.V1NetworkPolicy) =>
        createOrReplace(
          kernelId,
          kube.networking("create network policy", (api) => api.createNamespacedNetworkPolicy({ namespace, body })),
          kube.networking("replace network policy", (api) => api.replaceNamespacedNetworkPolicy({ name: objectName(kernelId), namespace, body }))
        )

      const annotatePod = (kernelId: string, annotations: Record<string, string>) =>
        kube.core("mark pod ready", (api) =>
          api.patchNamespacedPod(
            { name: objectName(kernelId), namespace, body: { metadata: { annotations } } },
            k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch)
          )).pipe(Effect.mapError(createFailure(kernelId)), Effect.asVoid)

      return KernelPods.of({
        readPod,
        readService,
        createPod,
        createService,
        createConfigMap,
        createPolicy,
        annotatePod,
        deleteService,
        deleteConfigMap,
        deleteObjects
      })
    })
  )
}
