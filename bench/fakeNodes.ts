// The status of a bench Node whose kubelet endpoint is bench/stats-kubelet.ts on this host (used by
// bench/stats.ts and bench/memory.ts): Ready, InternalIP 127.0.0.1, the helper's port.
import type * as k8s from "@kubernetes/client-node"

export const statsKubeletNodeStatus = (port: number, now: Date = new Date()): k8s.V1NodeStatus => ({
  addresses: [{ type: "InternalIP", address: "127.0.0.1" }],
  daemonEndpoints: { kubeletEndpoint: { Port: port } },
  capacity: { cpu: "64", memory: "64Gi", pods: "1000" },
  allocatable: { cpu: "64", memory: "64Gi", pods: "1000" },
  conditions: [{ type: "Ready", status: "True", reason: "KubeletReady", message: "bench", lastHeartbeatTime: now, lastTransitionTime: now }]
})

/**
 * A pod of another tenant (no agent labels) bound to `nodeName`, with cpu/memory requests: the foreign
 * pods of bench/heartbeat.ts and bench/memory.ts (`--foreign-pods`), whose container is `FOREIGN_CONTAINER`.
 */
export const FOREIGN_CONTAINER = "c"
export const foreignPod = (name: string, nodeName: string): k8s.V1Pod => ({
  metadata: { name, labels: { app: "bench-tenant" } },
  spec: {
    nodeName,
    containers: [{ name: FOREIGN_CONTAINER, image: "busybox", resources: { requests: { cpu: "100m", memory: "256Mi" } } }]
  }
})
