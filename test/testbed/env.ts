// What a running testbed publishes (env.json), how tests get it (vitest provide/inject), and helpers
// that give a test its own etcd namespace or Kubernetes namespace.
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import type { NodeSpec } from "./nodes.ts"
import type { RegistryInfo } from "./registry.ts"

export interface TestbedEnv {
  readonly name: string
  readonly mode: "dev" | "test"
  /** agent's etcd, "127.0.0.1:port" */
  readonly etcd: string
  readonly etcdNamespace: string
  /** "127.0.0.1:port" */
  readonly redis: string
  readonly registry: RegistryInfo
  readonly registrySecret: string
  readonly kubeconfig: string
  /** "https://127.0.0.1:port" */
  readonly apiserver: string
  readonly apiserverToken: string
  readonly kubectl: string
  readonly namespace: string
  readonly nodes: ReadonlyArray<NodeSpec>
  readonly kubeletPort: number
  /** "127.0.0.1:port" reserved for the manager-side event PULL socket */
  readonly eventAddr: string
  readonly scratchRoot: string
  readonly vfolderMount: string
  readonly watcherToken: string
  readonly stateDir: string
  readonly images: Readonly<Record<string, string>>
  readonly pids: ReadonlyArray<{ readonly name: string; readonly pid: number; readonly startTicks: number; readonly log: string }>
  readonly startedAt: string
  readonly bringUpSeconds: number
  /** source tree of the real 19.06 runner the kubelet runs python kernels with (interop testbeds) */
  readonly realRunner?: string | undefined
  /** `up --real-node` only: the real node (containerd + kubelet + kube-proxy), see realnode/node.ts */
  readonly realNode?: RealNodeEnv
}

export interface RealNodeEnv {
  readonly name: string
  readonly ip: string
  readonly kubeletPort: number
  readonly containerdSock: string
  /** hostPath of the krunner volume (kubernetes.krunner-volume.path for an agent on this testbed) */
  readonly krunnerRoot: string
  /** kubernetes.krunner-volume.python-version */
  readonly krunnerPythonVersion: string
  /** image (repo:tag, registry-relative) whose PID 1 ignores SIGTERM */
  readonly sigtermImage: string
  readonly podCidr: string
}

declare module "vitest" {
  export interface ProvidedContext {
    testbed: TestbedEnv
  }
}

export const readEnvFile = (file: string): TestbedEnv => JSON.parse(fs.readFileSync(file, "utf8")) as TestbedEnv

/** The testbed of this test run (inside a vitest worker). */
export const testbed = async (): Promise<TestbedEnv> => {
  const { inject } = await import("vitest")
  return inject("testbed")
}

const suffix = (): string => randomBytes(4).toString("hex")

/** Seeds a new `/sorna/<ns>/` with the manager/admin keys of the testbed; returns `<ns>`. */
export const freshEtcdNamespace = async (env: TestbedEnv, prefix = "t"): Promise<string> => {
  const { seedEtcd } = await import("./datastores.ts")
  const ns = `${prefix}${suffix()}`
  await seedEtcd(env.etcd, ns, {
    redis: env.redis, eventAddr: env.eventAddr, registry: env.registry, vfolderMount: env.vfolderMount, watcherToken: env.watcherToken,
  })
  return ns
}

/** Creates a new Kubernetes namespace with the registry pull secret and its default ServiceAccount. */
export const freshKubeNamespace = async (env: TestbedEnv, prefix = "t"): Promise<string> => {
  const { coreApi, ensureNamespace } = await import("./controlplane.ts")
  const { dockerConfigJson } = await import("./registry.ts")
  const ns = `${prefix}-${suffix()}`
  await ensureNamespace(coreApi(env.kubeconfig), ns, env.registrySecret, dockerConfigJson(env.registry))
  return ns
}
