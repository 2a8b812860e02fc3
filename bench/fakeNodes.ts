// The status of a bench Node whose kubelet endpoint is bench/stats-kubelet.ts on this host (used by
// bench/stats.ts and bench/memory.ts): Ready, InternalIP 127.0.0.1, the helper's port.
import type * as k8s from "@kubernetes/client-node"
import { Effect } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import * as readline from "node:readline"
import { fileURLToPath } from "node:url"
import type { KubeClientShape } from "../src/kube/KubeClient.ts"

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

/** A fake node of bench/stats-kubelet.ts: its name and the pods its Summary lists. */
export interface StatsKubeletNode {
  readonly name: string
  readonly pods: ReadonlyArray<{ readonly name: string; readonly namespace: string; readonly uid: string; readonly container?: string }>
}

/**
 * bench/stats-kubelet.ts in its own process (its CPU is not the bench's) serving `nodes` with the
 * testbed's kubelet certificate (`stateDir`/pki), config and scratch files in `dir`; killed when the
 * scope closes. Succeeds with each node's HTTPS port.
 */
export const startStatsKubelets = (stateDir: string, dir: string, nodes: ReadonlyArray<StatsKubeletNode>) =>
  Effect.gen(function*() {
    const configFile = path.join(dir, "kubelets.json")
    fs.writeFileSync(configFile, JSON.stringify({
      certFile: path.join(stateDir, "pki", "kubelet.crt"),
      keyFile: path.join(stateDir, "pki", "kubelet.key"),
      fsRoot: dir,
      nodes
    }))
    const child: ChildProcess = yield* Effect.acquireRelease(
      Effect.sync(() => spawn(process.execPath, [fileURLToPath(new URL("./stats-kubelet.ts", import.meta.url)), configFile], { stdio: ["pipe", "pipe", "inherit"] })),
      (c) => Effect.sync(() => void c.kill("SIGTERM"))
    )
    return yield* Effect.promise(() =>
      new Promise<Record<string, number>>((resolve) => {
        readline.createInterface({ input: child.stdout! }).once("line", (l) => resolve((JSON.parse(l) as { ports: Record<string, number> }).ports))
      })
    )
  })

/** A Node `name` whose kubelet endpoint is 127.0.0.1:`port` (a stats kubelet), deleted when the scope closes. */
export const registerStatsKubeletNode = (kube: KubeClientShape, name: string, port: number) =>
  Effect.gen(function*() {
    yield* Effect.acquireRelease(
      kube.core("create node", (api) => api.createNode({ body: { metadata: { name, labels: { "backend.ai/bench": "true" } } } })),
      () => kube.core("delete node", (api) => api.deleteNode({ name })).pipe(Effect.ignore)
    )
    yield* kube.core("read node", (api) => api.readNode({ name })).pipe(
      Effect.flatMap((node) => kube.core("node status", (api) => api.replaceNodeStatus({ name, body: { ...node, status: statsKubeletNodeStatus(port) } }))),
      Effect.retry({ while: (e) => e.reason === "Conflict", times: 10 })
    )
  })
