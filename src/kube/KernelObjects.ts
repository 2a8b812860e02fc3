// size: every Kubernetes object of a kernel (Pod, Service, ConfigMap, NetworkPolicy, recovery annotation, runner address) built by pure functions in one place, so names, labels, owner references and ports agree
/**
 * Pure builders and readers of a kernel's Kubernetes objects (design §2): Pod, NodePort Service and
 * ConfigMap, all named `kernel-<kid>` and labelled; the Pod carries the recovery annotation from
 * which a restarted agent rebuilds the kernel's registry entry. Also the pure classification of a
 * pod's state during creation and after it (why it failed, with which exit code).
 */
import type * as k8s from "@kubernetes/client-node"
import { Option, Schema } from "effect"
import { createHash } from "node:crypto"
import * as path from "node:path"
import { type KernelConfig, resourceSpecJson, type ServicePortDef } from "../spec/KernelConfig.ts"
import type { RunnerEndpoint } from "../domain/RunnerEndpoint.ts"
import { slotIntegerPart } from "../spec/SlotDecimal.ts"

export const MANAGED_BY = "app.kubernetes.io/managed-by"
export const MANAGED_BY_VALUE = "bai-k8s-agent"
export const AGENT_ID_LABEL = "backend.ai/agent-id"
const KERNEL_ID_LABEL = "backend.ai/kernel-id"
/** JSON {@link Recovery} of the kernel. */
export const RECOVERY_ANNOTATION = "backend.ai/kernel"
/** Set (ISO time) once the kernel was Running with an answering runner and reported created. */
export const READY_ANNOTATION = "backend.ai/ready-at"

const REPL_IN = 2000
const REPL_OUT = 2001

export const objectName = (kernelId: string): string => `kernel-${kernelId}`

export const labelsOf = (agentId: string, kernelId: string): Record<string, string> => ({
  [MANAGED_BY]: MANAGED_BY_VALUE,
  [AGENT_ID_LABEL]: agentId,
  [KERNEL_ID_LABEL]: kernelId
})

/** Selector of every object of this agent. */
export const agentSelector = (agentId: string): string => `${MANAGED_BY}=${MANAGED_BY_VALUE},${AGENT_ID_LABEL}=${agentId}`

/** Selector of one kernel's objects. */
export const kernelSelector = (agentId: string, kernelId: string): string => `${agentSelector(agentId)},${KERNEL_ID_LABEL}=${kernelId}`

// ---------------------------------------------------------------------------------------------
// Recovery annotation

const RecoveryServicePort = Schema.Struct({
  name: Schema.String,
  protocol: Schema.String,
  container_port: Schema.Int,
  host_port: Schema.Int
})

/**
 * `kubernetes.runner-address`: how the agent reaches a kernel's runner (2000/2001).
 * - `node-port`: at the pod's node (`status.hostIP`, or `container.kernel-host`) through two NodePorts
 *   of the kernel's Service;
 * - `pod-ip`: at the pod's own address (`status.podIP`), ports 2000/2001 themselves, for agents inside
 *   the cluster network: the runner ports get no NodePort at all.
 */
export const RunnerAddress = Schema.Literals(["node-port", "pod-ip"])
export type RunnerAddress = typeof RunnerAddress.Type

/** Everything (besides the pod's hostIP/podIP and uid) needed to rebuild the kernel's `KernelInfo`. */
export const Recovery = Schema.Struct({
  v: Schema.Literal(1),
  /**
   * How this kernel's runner is reached, recorded when it was created: an agent restarted with the
   * other `kubernetes.runner-address` still reaches it. Absent (written by earlier agents) = node-port.
   */
  runnerAddress: Schema.optionalKey(RunnerAddress),
  kernelId: Schema.String,
  canonicalImage: Schema.String,
  image: Schema.String,
  replInPort: Schema.Int,
  replOutPort: Schema.Int,
  servicePorts: Schema.Array(RecoveryServicePort),
  resourceSpec: Schema.String,
  scratchDir: Schema.String,
  idleTimeout: Schema.Number
})
export type Recovery = typeof Recovery.Type

const RecoveryJson = Schema.fromJsonString(Recovery)
const decodeRecovery = Schema.decodeUnknownOption(RecoveryJson)

export const recoveryText = (r: Recovery): string => JSON.stringify(r)

/** The recovery record of a pod, if it has a valid one. */
export const recoveryOf = (pod: k8s.V1Pod): Option.Option<Recovery> => {
  const text = pod.metadata?.annotations?.[RECOVERY_ANNOTATION]
  return text === undefined ? Option.none() : decodeRecovery(text)
}

export const isReadyMarked = (pod: k8s.V1Pod): boolean => pod.metadata?.annotations?.[READY_ANNOTATION] !== undefined

export const kernelIdOf = (obj: { readonly metadata?: k8s.V1ObjectMeta | undefined }): string | undefined =>
  obj.metadata?.labels?.[KERNEL_ID_LABEL]

// ---------------------------------------------------------------------------------------------
// Image and resources

/** Host (and port) of a registry URL: "https://reg.example:5000/x" → "reg.example:5000". */
export const registryHost = (url: string): string => {
  const trimmed = url.trim()
  if (trimmed === "") return ""
  const noScheme = trimmed.replace(/^[a-z][a-z0-9+.-]*:\/\//i, "")
  return noScheme.split("/")[0]!
}

const looksLikeRegistry = (component: string): boolean =>
  component.includes(".") || component.includes(":") || component === "localhost"

/**
 * The image the pod runs: the manager's canonical `manager/namespace/name:tag` with its registry
 * part replaced by the configured registry's host; an empty registry URL keeps the canonical name.
 */
export const podImage = (canonical: string, registryUrl: string): string => {
  const host = registryHost(registryUrl)
  if (host === "") return canonical
  const parts = canonical.split("/")
  if (parts.length > 1 && looksLikeRegistry(parts[0]!)) return [host, ...parts.slice(1)].join("/")
  return `${host}/${canonical}`
}

/** Requests = limits from the resource slots: cpu, mem, `cuda.device` → `nvidia.com/gpu`. */
export const resourceQuantities = (slots: Readonly<Record<string, string>>): Record<string, string> => {
  const out: Record<string, string> = {}
  const num = (k: string) => Number(slots[k] ?? "0")
  if (num("cpu") > 0) out["cpu"] = String(Number(slots["cpu"]))
  if (num("mem") > 0) out["memory"] = String(slotIntegerPart(slots["mem"]!)) // exact bytes (no float rounding)
  if (num("cuda.device") > 0) out["nvidia.com/gpu"] = String(Math.ceil(num("cuda.device")))
  return out
}

// ---------------------------------------------------------------------------------------------
// Builders

export interface VolumeSpec {
  readonly type: "hostPath" | "nfs"
  readonly path: string
  readonly server?: string | undefined
}

export interface KrunnerVolumeSpec extends VolumeSpec {
  /**
   * `kubernetes.krunner-volume.python-version`: the `X.Y` of the krunner env's
   * `lib/pythonX.Y/site-packages`, where the runner package is mounted. Default {@link DEFAULT_KRUNNER_PYTHON}.
   */
  readonly "python-version"?: string | undefined
}

/** The 19.06 krunner env's Python (krunner-env.ubuntu16.04 / alpine3.8 build Python 3.6). */
const DEFAULT_KRUNNER_PYTHON = "3.6"

export interface KernelObjectsInput {
  readonly namespace: string
  readonly agentId: string
  readonly kernelId: string
  readonly config: KernelConfig
  readonly servicePorts: ReadonlyArray<ServicePortDef>
  /** `kubernetes.registry.url` */
  readonly registryUrl: string
  /** `kubernetes.registry.pull-secret`; empty = none */
  readonly pullSecret: string
  readonly krunnerVolume: KrunnerVolumeSpec
  /** Node-side location of the scratch root (`kubernetes.scratch-volume`, else hostPath of `container.scratch-root`). */
  readonly scratchVolume: VolumeSpec
  /** Agent-side `<scratch-root>/<kid>/work`. */
  readonly scratchDir: string
  /** etcd `volumes/_mount` and `volumes/_fsprefix`. */
  readonly vfolderMount: string
  readonly vfolderFsPrefix: string
  readonly kernelUid: number
  readonly kernelGid: number
  readonly sandboxType: "docker" | "jail"
  readonly jailArgs: ReadonlyArray<string>
  readonly terminationGraceSeconds: number
  /** `kubernetes.node-selector` (equality terms `k=v,k2=v2`), as the pod's nodeSelector. */
  readonly nodeSelector: Readonly<Record<string, string>>
  /** `kubernetes.runner-address` at creation (recorded in the recovery annotation). */
  readonly runnerAddress: RunnerAddress
}

/** Equality terms of a label selector string; other terms (`!=`, `in`, …) are not expressible as a nodeSelector. */
export const nodeSelectorOf = (selector: string): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const term of selector.split(",").map((t) => t.trim()).filter((t) => t !== "")) {
    const m = /^([^=!\s]+)\s*==?\s*([^=!\s]*)$/.exec(term)
    if (m !== null) out[m[1]!] = m[2]!
  }
  return out
}

/** `(containerPort → NodePort)`: every port of {@link exposedPorts}. */
export type NodePortMap = ReadonlyMap<number, number>

const ownerRef = (podName: string, podUid: string): k8s.V1OwnerReference => ({
  apiVersion: "v1",
  kind: "Pod",
  name: podName,
  uid: podUid,
  controller: false,
  blockOwnerDeletion: false
})

export const recoveryFor = (input: KernelObjectsInput, ports: NodePortMap): Recovery => ({
  v: 1,
  runnerAddress: input.runnerAddress,
  kernelId: input.kernelId,
  canonicalImage: input.config.image.canonical,
  image: podImage(input.config.image.canonical, input.registryUrl),
  // node-port: the REPL NodePorts; pod-ip: the runner's own ports (what the manager is told too)
  replInPort: input.runnerAddress === "pod-ip" ? REPL_IN : ports.get(REPL_IN) ?? 0,
  replOutPort: input.runnerAddress === "pod-ip" ? REPL_OUT : ports.get(REPL_OUT) ?? 0,
  servicePorts: input.servicePorts.map((p) => ({
    name: p.name,
    protocol: p.protocol,
    container_port: p.containerPort,
    host_port: ports.get(p.containerPort) ?? 0
  })),
  resourceSpec: resourceSpecJson(input.config),
  scratchDir: input.scratchDir,
  idleTimeout: input.config.idle_timeout ?? 0
})

/**
 * What a kernel pod mounts from the krunner volume (read-only), as `[mountPath, subPath]`, in
 * mount order (a nested mount after the mount it lands in). The volume's layout (see deploy/krunner):
 * - `backendai-krunner.<distro>/` → `/opt/backend.ai`: the krunner env (Python, its packages), whose
 *   `lib/python<X.Y>/site-packages/ai/backend/{kernel,helpers}` are EMPTY directories left by the 19.06
 *   krunner build for the agent to mount into;
 * - `kernel/`, `helpers/` → those two directories: the runner package itself (`ai.backend.kernel`,
 *   `ai.backend.helpers` of backend.ai-agent 19.06), as the Docker agent bind-mounts its own copy and K1
 *   mounted PVC subPath `kernel`; without them `python -m ai.backend.kernel` finds no code;
 * - `entrypoint.sh`, `su-exec.<distro>.bin`, `libbaihook.<distro>.<arch>.so`, `jail.<distro>.bin` (jail
 *   sandbox only) under `/opt/kernel`.
 */
export const krunnerMounts = (
  distro: string,
  arch: string,
  pythonVersion: string,
  sandboxType: "docker" | "jail"
): ReadonlyArray<readonly [mountPath: string, subPath: string]> => {
  const sitePackages = `/opt/backend.ai/lib/python${pythonVersion}/site-packages/ai/backend`
  return [
    ["/opt/backend.ai", `backendai-krunner.${distro}`],
    [`${sitePackages}/kernel`, "kernel"],
    [`${sitePackages}/helpers`, "helpers"],
    ["/opt/kernel/entrypoint.sh", "entrypoint.sh"],
    ["/opt/kernel/su-exec", `su-exec.${distro}.bin`],
    ["/opt/kernel/libbaihook.so", `libbaihook.${distro}.${arch}.so`],
    ...(sandboxType === "jail" ? [["/opt/kernel/jail", `jail.${distro}.bin`] as const] : [])
  ]
}

/**
 * Linux capabilities the kernel container keeps (everything else is dropped). The container starts as
 * root only for the 19.06 `entrypoint.sh`, which then `su-exec`s the runner as the user `work`
 * (LOCAL_USER_ID/LOCAL_GROUP_ID), so every capability is gone from the kernel's processes afterwards:
 * - CHOWN: `useradd`/`groupadd` rewrite /etc/passwd, /etc/group, /etc/shadow, /etc/gshadow and give the
 *   new files the old owner and group (root:shadow on Debian/Ubuntu images); the script also chowns
 *   /opt/kernel/agent.sock;
 * - DAC_OVERRIDE: the same tools open /etc/shadow and /etc/gshadow for writing, which are mode 0000 on
 *   RHEL-family images (root's ownership is not enough there);
 * - SETUID, SETGID: `su-exec work:work` (setgroups, setgid, setuid);
 * - SYS_PTRACE, with `container.sandbox-type = "jail"` only: the jail sandbox traces the kernel's
 *   processes (as the Docker agent adds it for jail).
 * NET_BIND_SERVICE, SETPCAP, KILL, FOWNER, FSETID, MKNOD, NET_RAW, SYS_CHROOT, AUDIT_WRITE (the rest of
 * Docker's default set) are not needed: the runner and services bind ports above 1024 as `work`.
 */
export const kernelCapabilities = (sandboxType: "docker" | "jail"): ReadonlyArray<string> => [
  "CHOWN",
  "DAC_OVERRIDE",
  "SETGID",
  "SETUID",
  ...(sandboxType === "jail" ? ["SYS_PTRACE"] : [])
]

const volumeSource = (v: VolumeSpec, subPath: string, readOnly: boolean): Partial<k8s.V1Volume> =>
  v.type === "nfs"
    ? { nfs: { server: v.server ?? "", path: v.path, readOnly } }
    : { hostPath: { path: subPath === "" ? v.path : path.posix.join(v.path, subPath), type: "Directory" } }

export const buildPod = (input: KernelObjectsInput, ports: NodePortMap): k8s.V1Pod => {
  const { config, kernelId } = input
  const name = objectName(kernelId)
  const labels = config.image.labels
  const distro = labels["ai.backend.base-distro"] ?? "ubuntu16.04"
  const runtimeType = labels["ai.backend.runtime-type"] ?? "python"
  const runtimePath = labels["ai.backend.runtime-path"]
  const cpu = Number(config.resource_slots["cpu"] ?? "1")

  const env: Record<string, string> = { ...config.environ }
  env["LD_PRELOAD"] = "/opt/kernel/libbaihook.so"
  env["BACKENDAI_KERNEL_ID"] = kernelId
  for (const v of (labels["ai.backend.envs.corecount"] ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "")) {
    env[v] = String(Math.max(1, Math.ceil(cpu)))
  }
  if (input.kernelUid >= 0) env["LOCAL_USER_ID"] = String(input.kernelUid)
  if (input.kernelGid >= 0) env["LOCAL_GROUP_ID"] = String(input.kernelGid)

  const quantities = resourceQuantities(config.resource_slots)
  const volumes: Array<k8s.V1Volume> = []
  const mounts: Array<k8s.V1VolumeMount> = []

  // krunner (read-only); NFS mounts use subPaths of one volume, hostPath the same
  volumes.push({ name: "krunner", ...volumeSource(input.krunnerVolume, "", true) })
  const pythonVersion = input.krunnerVolume["python-version"] ?? DEFAULT_KRUNNER_PYTHON
  for (const [mountPath, subPath] of krunnerMounts(distro, "x86_64", pythonVersion, input.sandboxType)) {
    mounts.push({ name: "krunner", mountPath, subPath, readOnly: true })
  }
  // config (environ.txt, resource.txt)
  volumes.push({
    name: "config",
    configMap: { name, items: [{ key: "environ", path: "environ.txt" }, { key: "resource", path: "resource.txt" }] }
  })
  mounts.push({ name: "config", mountPath: "/home/config", readOnly: true })
  // scratch work dir: `<scratch volume>/<kid>/work`
  const workSub = `${kernelId}/work`
  if (input.scratchVolume.type === "nfs") {
    volumes.push({ name: "work", ...volumeSource(input.scratchVolume, "", false) })
    mounts.push({ name: "work", mountPath: "/home/work", subPath: workSub })
  } else {
    // the agent made it (owner, mode) before the pod; a kubelet-made one would be root's 0755
    volumes.push({ name: "work", hostPath: { path: path.posix.join(input.scratchVolume.path, workSub), type: "Directory" } })
    mounts.push({ name: "work", mountPath: "/home/work" })
  }
  // vfolders: hostPath `<_mount>/<host>/<_fsprefix>/<folder id>`
  config.mounts.forEach((m, i) => {
    volumes.push({
      name: `vfolder-${i}`,
      hostPath: { path: path.posix.join(input.vfolderMount, m.host, input.vfolderFsPrefix, m.folderId), type: "Directory" }
    })
    mounts.push({ name: `vfolder-${i}`, mountPath: `/home/work/${m.name}`, readOnly: m.permission === "ro" })
  })

  const args = [
    ...(input.sandboxType === "jail" ? ["/opt/kernel/jail", ...input.jailArgs] : []),
    "/opt/backend.ai/bin/python",
    "-m",
    "ai.backend.kernel",
    runtimeType,
    ...(runtimePath !== undefined && runtimePath !== "" ? [runtimePath] : [])
  ]

  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name,
      namespace: input.namespace,
      labels: labelsOf(input.agentId, kernelId),
      annotations: { [RECOVERY_ANNOTATION]: recoveryText(recoveryFor(input, ports)) }
    },
    spec: {
      restartPolicy: "Never",
      terminationGracePeriodSeconds: Math.ceil(input.terminationGraceSeconds),
      automountServiceAccountToken: false,
      ...(Object.keys(input.nodeSelector).length > 0 ? { nodeSelector: { ...input.nodeSelector } } : {}),
      enableServiceLinks: false,
      securityContext: { seccompProfile: { type: "RuntimeDefault" } },
      ...(input.pullSecret !== "" ? { imagePullSecrets: [{ name: input.pullSecret }] } : {}),
      containers: [{
        name: "kernel",
        image: podImage(config.image.canonical, input.registryUrl),
        imagePullPolicy: "IfNotPresent",
        command: ["sh", "/opt/kernel/entrypoint.sh"],
        args,
        ports: [
          { name: "repl-in", containerPort: REPL_IN, protocol: "TCP" },
          { name: "repl-out", containerPort: REPL_OUT, protocol: "TCP" },
          ...input.servicePorts.map((p) => ({ name: `sp-${p.containerPort}`, containerPort: p.containerPort, protocol: "TCP" }))
        ],
        env: Object.entries(env).map(([k, v]) => ({ name: k, value: v })),
        resources: { requests: quantities, limits: quantities },
        securityContext: {
          privileged: false,
          allowPrivilegeEscalation: false,
          capabilities: { drop: ["ALL"], add: [...kernelCapabilities(input.sandboxType)] },
          seccompProfile: { type: "RuntimeDefault" }
        },
        volumeMounts: mounts
      }],
      volumes
    }
  }
}

/**
 * The kernel's Service: a NodePort for each of {@link exposedPorts} (with `runner-address = "pod-ip"`
 * only the user's service ports). A pod-ip kernel without service ports gets a headless Service with
 * no ports: it allocates and exposes nothing, and every kernel keeps the same set of objects (a pod
 * without its Service is a half-made or damaged kernel to adoption, relist and restart alike).
 */
export const buildService = (input: KernelObjectsInput, ports: NodePortMap, podUid: string): k8s.V1Service => {
  const name = objectName(input.kernelId)
  const portName = (containerPort: number) =>
    containerPort === REPL_IN && input.runnerAddress === "node-port"
      ? "repl-in"
      : containerPort === REPL_OUT && input.runnerAddress === "node-port"
      ? "repl-out"
      : `sp-${containerPort}`
  const exposed = exposedPorts(input.servicePorts, input.runnerAddress).map((containerPort): k8s.V1ServicePort => ({
    name: portName(containerPort),
    protocol: "TCP",
    port: containerPort,
    targetPort: containerPort,
    nodePort: ports.get(containerPort)!
  }))
  const metadata: k8s.V1ObjectMeta = {
    name,
    namespace: input.namespace,
    labels: labelsOf(input.agentId, input.kernelId),
    ownerReferences: [ownerRef(name, podUid)]
  }
  const selector = labelsOf(input.agentId, input.kernelId)
  if (exposed.length === 0) {
    return { apiVersion: "v1", kind: "Service", metadata, spec: { type: "ClusterIP", clusterIP: "None", selector, ports: [] } }
  }
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata,
    spec: {
      type: "NodePort",
      // the node that runs the pod answers its NodePorts itself, keeping the client's address (the
      // NetworkPolicy fence matches it); with "Cluster" kube-proxy SNATs every NodePort connection
      // to a node address and any host that reaches a node would pass as the agent
      externalTrafficPolicy: "Local",
      selector,
      ports: exposed
    }
  }
}

export const buildConfigMap = (
  input: KernelObjectsInput,
  texts: { readonly environ: string; readonly resource: string },
  podUid: string
): k8s.V1ConfigMap => {
  const name = objectName(input.kernelId)
  return {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: {
      name,
      namespace: input.namespace,
      labels: labelsOf(input.agentId, input.kernelId),
      ownerReferences: [ownerRef(name, podUid)]
    },
    data: { environ: texts.environ, resource: texts.resource }
  }
}

// ---------------------------------------------------------------------------------------------
// Network fence (NetworkPolicy): runner ports only from the agent, service ports only from the
// configured sources. Policies are allow-lists that add up, so the agent-wide fence allows 2000/2001
// from the agent and each kernel's own policy adds its service ports; a pod selected by any policy
// accepts nothing else.

/** Addresses become /32 or /128 CIDRs. */
export const sourcesToCidrs = (sources: ReadonlyArray<string>): Array<string> =>
  sources.map((s) => (s.includes("/") ? s : s.includes(":") ? `${s}/128` : `${s}/32`))

/** One per agent (agent ids need not be DNS labels). */
export const runnerFenceName = (agentId: string): string =>
  `bai-runner-fence-${createHash("sha256").update(agentId, "utf8").digest("hex").slice(0, 16)}`

/** Every kernel pod of the agent: ingress only to 2000/2001, only from `agentSources` (none: nobody). */
export const buildRunnerFence = (namespace: string, agentId: string, agentSources: ReadonlyArray<string>): k8s.V1NetworkPolicy => ({
  apiVersion: "networking.k8s.io/v1",
  kind: "NetworkPolicy",
  metadata: {
    name: runnerFenceName(agentId),
    namespace,
    labels: { [MANAGED_BY]: MANAGED_BY_VALUE, [AGENT_ID_LABEL]: agentId }
  },
  spec: {
    podSelector: { matchLabels: { [MANAGED_BY]: MANAGED_BY_VALUE, [AGENT_ID_LABEL]: agentId } },
    policyTypes: ["Ingress"],
    ingress: agentSources.length === 0 ? [] : [{
      _from: sourcesToCidrs(agentSources).map((cidr) => ({ ipBlock: { cidr } })),
      ports: [{ protocol: "TCP", port: REPL_IN }, { protocol: "TCP", port: REPL_OUT }]
    }]
  }
})

/**
 * A kernel's service ports from `serviceSources`, owned by its pod; `undefined` when there is nothing
 * to open (no service ports, no sources, or an image that declares a runner port as a service port).
 */
export const buildServicePolicy = (
  input: KernelObjectsInput,
  serviceSources: ReadonlyArray<string>,
  podUid: string
): k8s.V1NetworkPolicy | undefined => {
  const ports = input.servicePorts.map((p) => p.containerPort)
  if (ports.length === 0 || serviceSources.length === 0 || ports.some((p) => p === REPL_IN || p === REPL_OUT)) return undefined
  const name = objectName(input.kernelId)
  return {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: {
      name,
      namespace: input.namespace,
      labels: labelsOf(input.agentId, input.kernelId),
      ownerReferences: [ownerRef(name, podUid)]
    },
    spec: {
      podSelector: { matchLabels: labelsOf(input.agentId, input.kernelId) },
      policyTypes: ["Ingress"],
      ingress: [{
        _from: sourcesToCidrs(serviceSources).map((cidr) => ({ ipBlock: { cidr } })),
        ports: ports.map((port) => ({ protocol: "TCP", port }))
      }]
    }
  }
}

/**
 * The container ports the Service exposes as NodePorts, in order: 2000, 2001 (node-port mode only),
 * then the service ports.
 */
export const exposedPorts = (servicePorts: ReadonlyArray<ServicePortDef>, runnerAddress: RunnerAddress): ReadonlyArray<number> => [
  ...(runnerAddress === "node-port" ? [REPL_IN, REPL_OUT] : []),
  ...servicePorts.map((p) => p.containerPort)
]

// ---------------------------------------------------------------------------------------------
// Where the runner is reached, and what the manager is told

export interface RunnerPorts {
  readonly replInPort: number
  readonly replOutPort: number
}
/** A pod's `status.hostIP` and `status.podIP` ("" when not set). */
export interface PodAddresses {
  readonly hostIP: string
  readonly podIP: string
}

export const podAddresses = (pod: k8s.V1Pod): PodAddresses => ({ hostIP: pod.status?.hostIP ?? "", podIP: pod.status?.podIP ?? "" })

/** The mode recorded for a kernel (records of earlier agents have none: node-port). */
export const runnerAddressOf = (r: Recovery): RunnerAddress => r.runnerAddress ?? "node-port"

/**
 * The runner ports of a recorded kernel, given its Service's NodePorts now: node-port → the REPL
 * NodePorts (the Service's, else the recorded ones); pod-ip → 2000/2001 themselves (a NodePort
 * the Service may have for an image declaring 2000 as a service port is not the runner's).
 */
export const runnerPorts = (r: Recovery, ports: NodePortMap): RunnerPorts =>
  runnerAddressOf(r) === "pod-ip"
    ? { replInPort: REPL_IN, replOutPort: REPL_OUT }
    : { replInPort: ports.get(REPL_IN) ?? r.replInPort, replOutPort: ports.get(REPL_OUT) ?? r.replOutPort }

/**
 * `kernel_host` told to the manager: where the kernel's service ports (NodePorts) are, i.e. the node
 * (`container.kernel-host` when set), in both modes.
 */
export const reportedKernelHost = (a: PodAddresses, kernelHostOverride: string): string =>
  kernelHostOverride !== "" ? kernelHostOverride : a.hostIP

/**
 * Where the agent connects to the runner (`host` empty while the pod has no such address): node-port → the node (or `container.kernel-host`) at the
 * REPL NodePorts `ports`; pod-ip → `status.podIP` at 2000/2001 (`container.kernel-host` does not apply).
 */
export const runnerEndpoint = (a: PodAddresses, mode: RunnerAddress, ports: RunnerPorts, kernelHostOverride: string): RunnerEndpoint =>
  mode === "pod-ip"
    ? { host: a.podIP, replInPort: REPL_IN, replOutPort: REPL_OUT }
    : { host: reportedKernelHost(a, kernelHostOverride), replInPort: ports.replInPort, replOutPort: ports.replOutPort }

/** `containerPort → nodePort` of a Service as the server returned it. */
export const nodePortsOf = (svc: k8s.V1Service): Map<number, number> => {
  const out = new Map<number, number>()
  for (const p of svc.spec?.ports ?? []) if (p.nodePort !== undefined) out.set(p.port, p.nodePort)
  return out
}

// ---------------------------------------------------------------------------------------------
// Pod state

const IMAGE_PULL_REASONS = new Set(["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable"])
const CONTAINER_CONFIG_REASONS = new Set([
  "CreateContainerConfigError",
  "CreateContainerError",
  "RunContainerError",
  "ContainerCannotRun",
  "CrashLoopBackOff",
  "PreStartHookError",
  "PostStartHookError"
])

/** What a pod being created tells us. */
export type CreatingPodState =
  | { readonly _tag: "Pending"; readonly description: string }
  | { readonly _tag: "Running"; readonly hostIP: string; readonly podIP: string }
  | { readonly _tag: "ImagePullFailed"; readonly image: string; readonly reason: string; readonly message: string }
  | { readonly _tag: "Unschedulable"; readonly message: string }
  | { readonly _tag: "Failed"; readonly reason: string; readonly message: string }

export const describePod = (pod: k8s.V1Pod): string => {
  const waiting = (pod.status?.containerStatuses ?? []).map((c) => c.state?.waiting?.reason).filter((r) => r !== undefined)
  const scheduled = pod.status?.conditions?.find((c) => c.type === "PodScheduled")
  return [
    `phase ${pod.status?.phase ?? "unknown"}`,
    ...(scheduled?.status === "False" ? [`not scheduled (${scheduled.reason ?? ""}: ${scheduled.message ?? ""})`] : []),
    ...(waiting.length > 0 ? [`waiting ${waiting.join(",")}`] : []),
    ...(pod.metadata?.deletionTimestamp !== undefined ? ["being deleted"] : [])
  ].join(", ")
}

/** Classifies a pod during `create_kernel`: decisive failures as early as the pod shows them. */
export const classifyCreating = (pod: k8s.V1Pod): CreatingPodState => {
  const status = pod.status ?? {}
  if (pod.metadata?.deletionTimestamp !== undefined) {
    return { _tag: "Failed", reason: "PodDeleted", message: "the pod was deleted while the kernel was being created" }
  }
  if (status.phase === "Failed" || status.phase === "Succeeded") {
    const t = terminationOf(pod)
    return { _tag: "Failed", reason: t.containerReason ?? status.reason ?? status.phase, message: `the pod ended (${status.phase}, exit code ${t.exitCode ?? "unknown"}) ${status.message ?? ""}`.trim() }
  }
  for (const c of status.containerStatuses ?? []) {
    const w = c.state?.waiting
    if (w?.reason !== undefined && IMAGE_PULL_REASONS.has(w.reason)) {
      return { _tag: "ImagePullFailed", image: c.image ?? "", reason: w.reason, message: w.message ?? w.reason }
    }
    if (w?.reason !== undefined && CONTAINER_CONFIG_REASONS.has(w.reason)) {
      return { _tag: "Failed", reason: w.reason, message: w.message ?? w.reason }
    }
    if (c.state?.terminated !== undefined) {
      return { _tag: "Failed", reason: c.state.terminated.reason ?? "ContainerTerminated", message: `the kernel container exited with code ${c.state.terminated.exitCode}` }
    }
  }
  const scheduled = status.conditions?.find((c) => c.type === "PodScheduled")
  if (scheduled?.status === "False" && scheduled.reason === "Unschedulable") {
    return { _tag: "Unschedulable", message: scheduled.message ?? "no node can run the kernel" }
  }
  const running = status.phase === "Running" &&
    (status.containerStatuses ?? []).length > 0 &&
    (status.containerStatuses ?? []).every((c) => c.state?.running !== undefined)
  // both addresses: the kubelet sets podIP with the pod sandbox, before any container runs (a
  // hostNetwork pod's is the node's); the runner is reached at one of them (runnerEndpoint)
  if (running && status.hostIP !== undefined && status.hostIP !== "" && status.podIP !== undefined && status.podIP !== "") {
    return { _tag: "Running", hostIP: status.hostIP, podIP: status.podIP }
  }
  return { _tag: "Pending", description: describePod(pod) }
}

export interface PodTermination {
  readonly exitCode: number | null
  readonly containerReason: string | undefined
}

/** Exit code and reason of the kernel container if it terminated. */
export const terminationOf = (pod: k8s.V1Pod): PodTermination => {
  const c = (pod.status?.containerStatuses ?? [])[0]
  const t = c?.state?.terminated ?? c?.lastState?.terminated
  return { exitCode: t?.exitCode ?? null, containerReason: t?.reason }
}

/**
 * Whether a running kernel's pod has ended and why, as a `kernel_terminated` reason:
 * `oom-killed`, `self-terminated` (the container exited), `force-terminated` (evicted or deleted by
 * someone else). `None` while the pod is alive.
 */
export const endedReason = (pod: k8s.V1Pod, deleted: boolean): Option.Option<{ readonly reason: string; readonly exitCode: number | null }> => {
  const t = terminationOf(pod)
  const phase = pod.status?.phase
  if (pod.status?.reason === "Evicted") return Option.some({ reason: "force-terminated", exitCode: t.exitCode })
  if (phase === "Failed" || phase === "Succeeded") {
    return Option.some({ reason: t.containerReason === "OOMKilled" ? "oom-killed" : "self-terminated", exitCode: t.exitCode })
  }
  if (deleted || pod.metadata?.deletionTimestamp !== undefined) return Option.some({ reason: "force-terminated", exitCode: t.exitCode })
  return Option.none()
}
