/**
 * Concern: adoption — rebuilding a ready kernel from its Pod and Service (agent start-up, a relist,
 * or a create that found the kernel's ready pod already there). The pod's recovery annotation holds
 * what the manager sent; the Service holds the NodePorts. `adopt` answers `None` for a pod that
 * cannot be adopted (no recovery annotation, no node address); it never deletes anything.
 */
import type * as k8s from "@kubernetes/client-node"
import { Context, Effect, Layer, Option } from "effect"
import { AgentConfig } from "../../config/AgentConfig.ts"
import { KernelCreationFailed, type KubernetesFailure } from "../../domain/Errors.ts"
import { monotonicMillis } from "../../domain/MonotonicClock.ts"
import {
  nodePortsOf,
  objectName,
  podAddresses,
  recoveryOf,
  reportedKernelHost,
  runnerAddressOf,
  runnerEndpoint,
  runnerPorts
} from "../../kube/KernelObjects.ts"
import { NodePorts } from "../../kube/NodePorts.ts"
import { type KernelInfo, KernelTable } from "../KernelTable.ts"
import { RunnerConnections } from "../runner/RunnerConnections.ts"
import { createFailure, KernelPods } from "./KernelPods.ts"

export interface AdoptionShape {
  /** Registers the kernel of a ready pod (and claims its NodePorts, connects its runner). */
  readonly adopt: (pod: k8s.V1Pod, service: k8s.V1Service) => Effect.Effect<Option.Option<KernelInfo>>
  /** A create found this kernel's ready pod (409): adopt it with its Service, or fail the create. */
  readonly adoptFound: (kernelId: string, pod: k8s.V1Pod) => Effect.Effect<KernelInfo, KernelCreationFailed | KubernetesFailure>
}

export class Adoption extends Context.Service<Adoption, AdoptionShape>()("bai-agent/kernel/lifecycle/Adoption") {
  static readonly layer = Layer.effect(
    Adoption,
    Effect.gen(function*() {
      const { config } = yield* AgentConfig
      const registry = yield* KernelTable
      const nodePorts = yield* NodePorts
      const runners = yield* RunnerConnections
      const pods = yield* KernelPods
      const namespace = config.kubernetes.namespace
      const kernelHostOverride = config.container["kernel-host"]

      const adopt = (pod: k8s.V1Pod, service: k8s.V1Service): Effect.Effect<Option.Option<KernelInfo>> =>
        Effect.gen(function*() {
          const rec = recoveryOf(pod)
          if (Option.isNone(rec)) return Option.none()
          const r = rec.value
          const ports = nodePortsOf(service)
          // the runner is reached as recorded for this kernel, whatever kubernetes.runner-address is now
          const addresses = podAddresses(pod)
          const replPorts = runnerPorts(r, ports)
          const endpoint = runnerEndpoint(addresses, runnerAddressOf(r), replPorts, kernelHostOverride)
          if (endpoint.host === "" || reportedKernelHost(addresses, kernelHostOverride) === "") return Option.none()
          const now = yield* monotonicMillis
          const info: KernelInfo = {
            kernelId: r.kernelId,
            namespace,
            objectName: objectName(r.kernelId),
            podUid: pod.metadata?.uid,
            status: "running",
            kernelHost: reportedKernelHost(addresses, kernelHostOverride),
            replInPort: replPorts.replInPort,
            replOutPort: replPorts.replOutPort,
            servicePorts: r.servicePorts.map((p) => ({ ...p, host_port: ports.get(p.container_port) ?? p.host_port })),
            canonicalImage: r.canonicalImage,
            image: r.image,
            resourceSpec: r.resourceSpec,
            scratchDir: r.scratchDir,
            idleTimeout: r.idleTimeout,
            lastUsed: now,
            nodeName: pod.spec?.nodeName
          }
          yield* registry.upsert(info)
          yield* nodePorts.claim(ports.values())
          yield* runners.open(info.kernelId, endpoint).pipe(
            Effect.catch((e) => Effect.logWarning(`adopted kernel: runner connection failed: ${e.message}`))
          )
          return Option.some(info)
        })

      const adoptFound = (kernelId: string, pod: k8s.V1Pod) =>
        Effect.gen(function*() {
          const svc = yield* pods.readService(objectName(kernelId)).pipe(Effect.mapError(createFailure(kernelId)))
          if (Option.isNone(svc)) {
            return yield* new KernelCreationFailed({ kernelId, reason: "KernelObjectsLost", message: "a pod of this kernel exists without its Service" })
          }
          const adopted = yield* adopt(pod, svc.value)
          if (Option.isNone(adopted)) {
            return yield* new KernelCreationFailed({ kernelId, reason: "KernelObjectsLost", message: "the existing pod cannot be adopted" })
          }
          return adopted.value
        })

      return Adoption.of({ adopt, adoptFound })
    })
  )
}
