// The simulated nodes and the configuration the testbed hands the simulated kubelet.
import type { RegistryInfo } from "./registry.ts"

export interface NodeSpec {
  readonly name: string
  readonly ip: string
  readonly cpu: number
  readonly memory: string
  readonly gpu: number
  readonly pods: number
  /** a real kubelet + containerd node (`up --real-node`), not one the simulated kubelet plays */
  readonly real?: boolean
}

/** Two nodes with different capacities; `ipPrefix` is e.g. "127.0.0" (→ .2, .3). */
export const defaultNodes = (ipPrefix: string): Array<NodeSpec> => [
  { name: "tb-node-1", ip: `${ipPrefix}.2`, cpu: 8, memory: "32Gi", gpu: 0, pods: 110 },
  { name: "tb-node-2", ip: `${ipPrefix}.3`, cpu: 32, memory: "64Gi", gpu: 2, pods: 110 },
]

/**
 * Real-node mode: the real node (non-GPU kernels land there) plus the simulated GPU node, which is
 * tainted `nvidia.com/gpu:NoSchedule` so only pods that request GPUs (tolerated automatically by the
 * apiserver's ExtendedResourceToleration admission plugin) go to it.
 */
export const realNodeNodes = (ipPrefix: string, real: NodeSpec): Array<NodeSpec> => [real, defaultNodes(ipPrefix)[1]!]

export const GPU_TAINT = { key: "nvidia.com/gpu", effect: "NoSchedule" } as const

export interface KubeletConfig {
  readonly kubeconfig: string
  readonly nodes: ReadonlyArray<NodeSpec>
  /** kubelet API port, served on every node IP */
  readonly port: number
  readonly certFile: string
  readonly keyFile: string
  readonly registry: RegistryInfo
  /** per-pod logs and fallback work dirs go under here */
  readonly podsDir: string
  /** When set, containers that run `-m ai.backend.kernel python …` get the real 19.06 runner from
   *  `src` (its PYTHONPATH) started by `python` in a sandbox (sandbox.py); the others runner.ts. */
  readonly realRunner?: { readonly src: string; readonly python: string } | undefined
}

export const memoryBytes = (q: string): number => {
  const m = /^(\d+)(Ki|Mi|Gi|Ti)?$/.exec(q)
  if (!m) throw new Error(`bad memory quantity ${q}`)
  const mult: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 }
  return Number(m[1]) * (m[2] !== undefined ? mult[m[2]]! : 1)
}
