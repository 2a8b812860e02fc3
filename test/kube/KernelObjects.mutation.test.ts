/**
 * The pure helpers of the kernel objects against the Kubernetes and Backend.AI formats they write
 * or read: label selectors, registry hosts, resource quantities, NetworkPolicy peers, pod states
 * from kubelet-reported container statuses, and the `kernel_terminated` reasons.
 */
import { assert, describe, it } from "@effect/vitest"
import type * as k8s from "@kubernetes/client-node"
import { createHash } from "node:crypto"
import { Option } from "effect"
import {
  agentSelector,
  buildConfigMap,
  buildPod,
  buildRunnerFence,
  buildService,
  buildServicePolicy,
  classifyCreating,
  describePod,
  endedReason,
  exposedPorts,
  isReadyMarked,
  kernelCapabilities,
  type KernelObjectsInput,
  kernelIdOf,
  kernelSelector,
  krunnerMounts,
  labelsOf,
  nodePortsOf,
  nodeSelectorOf,
  objectName,
  podAddresses,
  podImage,
  READY_ANNOTATION,
  RECOVERY_ANNOTATION,
  recoveryOf,
  recoveryText,
  registryHost,
  resourceQuantities,
  runnerFenceName,
  sourcesToCidrs,
  terminationOf
} from "../../src/kube/KernelObjects.ts"
import type { KernelConfig } from "../../src/spec/KernelConfig.ts"

const KID = "0b7a5b2c-5d0e-4bd4-a4d5-6a3f1a7f8a11"

describe("names, labels, selectors", () => {
  it("object name, labels and selectors", () => {
    assert.strictEqual(objectName(KID), `kernel-${KID}`)
    assert.deepStrictEqual(labelsOf("ag", KID), {
      "app.kubernetes.io/managed-by": "bai-k8s-agent",
      "backend.ai/agent-id": "ag",
      "backend.ai/kernel-id": KID
    })
    assert.strictEqual(agentSelector("ag"), "app.kubernetes.io/managed-by=bai-k8s-agent,backend.ai/agent-id=ag")
    assert.strictEqual(kernelSelector("ag", "k"), "app.kubernetes.io/managed-by=bai-k8s-agent,backend.ai/agent-id=ag,backend.ai/kernel-id=k")
    assert.strictEqual(kernelIdOf({ metadata: { labels: { "backend.ai/kernel-id": "k9" } } }), "k9")
    assert.isUndefined(kernelIdOf({}))
    assert.isUndefined(kernelIdOf({ metadata: {} }))
  })

  it("runner fence name: sha256 of the agent id, 16 hex digits", () => {
    const want = createHash("sha256").update("agent/é", "utf8").digest("hex").slice(0, 16)
    assert.strictEqual(runnerFenceName("agent/é"), `bai-runner-fence-${want}`)
    assert.match(runnerFenceName("x"), /^bai-runner-fence-[0-9a-f]{16}$/)
  })

  it("nodeSelectorOf keeps equality terms only", () => {
    assert.deepStrictEqual(nodeSelectorOf(" a=1 , b==2,c != 3, d in (x), e, f=, =g ,, h = 4"), { a: "1", b: "2", f: "", h: "4" })
    assert.deepStrictEqual(nodeSelectorOf(""), {})
  })

  it("sourcesToCidrs: IPv4 /32, IPv6 /128, CIDRs kept", () => {
    assert.deepStrictEqual(sourcesToCidrs(["10.0.0.1", "fd00::1", "10.1.0.0/16", "fd00::/8"]), ["10.0.0.1/32", "fd00::1/128", "10.1.0.0/16", "fd00::/8"])
  })

  it("exposed ports and node ports", () => {
    assert.deepStrictEqual(exposedPorts([{ name: "j", protocol: "http", containerPort: 8080 }], "node-port"), [2000, 2001, 8080])
    assert.deepStrictEqual(
      [...nodePortsOf({ spec: { ports: [{ port: 2000, nodePort: 30001 }, { port: 2001 }, { port: 8080, nodePort: 30002 }] } })],
      [[2000, 30001], [8080, 30002]]
    )
    assert.strictEqual(nodePortsOf({}).size, 0)
  })

  it("capabilities and krunner mounts per sandbox type", () => {
    assert.deepStrictEqual(kernelCapabilities("docker"), ["CHOWN", "DAC_OVERRIDE", "SETGID", "SETUID"])
    assert.deepStrictEqual(kernelCapabilities("jail"), ["CHOWN", "DAC_OVERRIDE", "SETGID", "SETUID", "SYS_PTRACE"])
    const sp = "/opt/backend.ai/lib/python3.6/site-packages/ai/backend"
    assert.deepStrictEqual(krunnerMounts("ubuntu18.04", "x86_64", "3.6", "jail"), [
      ["/opt/backend.ai", "backendai-krunner.ubuntu18.04"],
      [`${sp}/kernel`, "kernel"],
      [`${sp}/helpers`, "helpers"],
      ["/opt/kernel/entrypoint.sh", "entrypoint.sh"],
      ["/opt/kernel/su-exec", "su-exec.ubuntu18.04.bin"],
      ["/opt/kernel/libbaihook.so", "libbaihook.ubuntu18.04.x86_64.so"],
      ["/opt/kernel/jail", "jail.ubuntu18.04.bin"]
    ])
    assert.strictEqual(krunnerMounts("alpine3.8", "aarch64", "3.8", "docker").length, 6)
  })
})

describe("image and resources", () => {
  it("registryHost strips scheme and path", () => {
    assert.strictEqual(registryHost("https://reg.example:5000/x/y"), "reg.example:5000")
    assert.strictEqual(registryHost(" http://localhost:5000 "), "localhost:5000")
    assert.strictEqual(registryHost("reg.example"), "reg.example")
    assert.strictEqual(registryHost("git+ssh://h/p"), "h")
    assert.strictEqual(registryHost("   "), "")
    assert.strictEqual(registryHost(""), "")
  })

  it("podImage replaces a registry component, else prefixes the host", () => {
    assert.strictEqual(podImage("index.docker.io/lablup/python:3.6", "https://reg:5000"), "reg:5000/lablup/python:3.6")
    assert.strictEqual(podImage("localhost/lablup/python:3.6", "reg.x"), "reg.x/lablup/python:3.6")
    assert.strictEqual(podImage("host:5000/python:3.6", "reg.x"), "reg.x/python:3.6")
    assert.strictEqual(podImage("lablup/python:3.6", "reg.x"), "reg.x/lablup/python:3.6")
    assert.strictEqual(podImage("python:3.6", "reg.x"), "reg.x/python:3.6")
    assert.strictEqual(podImage("lablup/python:3.6", ""), "lablup/python:3.6")
  })

  it("resourceQuantities: positive slots only; exact memory; GPUs rounded up", () => {
    assert.deepStrictEqual(resourceQuantities({ cpu: "1.5", mem: "1073741824.9", "cuda.device": "0.5" }), {
      cpu: "1.5",
      memory: "1073741824",
      "nvidia.com/gpu": "1"
    })
    assert.deepStrictEqual(resourceQuantities({ cpu: "0", mem: "0", "cuda.device": "0" }), {})
    assert.deepStrictEqual(resourceQuantities({}), {})
    assert.deepStrictEqual(resourceQuantities({ mem: "123456789012345678901" }), { memory: "123456789012345678901" })
    assert.deepStrictEqual(resourceQuantities({ "cuda.device": "2" }), { "nvidia.com/gpu": "2" })
  })
})

describe("recovery annotation", () => {
  const r = {
    v: 1 as const,
    kernelId: KID,
    canonicalImage: "c",
    image: "i",
    replInPort: 30000,
    replOutPort: 30001,
    servicePorts: [{ name: "j", protocol: "http", container_port: 8080, host_port: 30002 }],
    resourceSpec: "{}",
    scratchDir: "/s",
    idleTimeout: 0
  }
  it("round-trips; invalid or missing text is none", () => {
    const pod = (text?: string): k8s.V1Pod => ({ metadata: { annotations: text === undefined ? {} : { [RECOVERY_ANNOTATION]: text } } })
    assert.deepStrictEqual(recoveryOf(pod(recoveryText(r))), Option.some(r))
    assert.isTrue(Option.isNone(recoveryOf(pod())))
    assert.isTrue(Option.isNone(recoveryOf(pod("{"))))
    assert.isTrue(Option.isNone(recoveryOf(pod(JSON.stringify({ ...r, v: 2 })))))
    assert.isTrue(Option.isNone(recoveryOf(pod(JSON.stringify({ ...r, replInPort: 1.5 })))))
    assert.isTrue(Option.isNone(recoveryOf({})))
  })
  it("ready mark", () => {
    assert.isTrue(isReadyMarked({ metadata: { annotations: { [READY_ANNOTATION]: "" } } }))
    assert.isFalse(isReadyMarked({ metadata: { annotations: {} } }))
    assert.isFalse(isReadyMarked({}))
  })
})

describe("pod states", () => {
  const waiting = (reason: string, message?: string, image = "img"): k8s.V1Pod => ({
    status: { phase: "Pending", containerStatuses: [{ name: "k", image, imageID: "", ready: false, restartCount: 0, state: { waiting: { reason, ...(message !== undefined ? { message } : {}) } } }] }
  })

  it("image pull failures, for every pull reason", () => {
    for (const reason of ["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable"]) {
      assert.deepStrictEqual(classifyCreating(waiting(reason, "m")), { _tag: "ImagePullFailed", image: "img", reason, message: "m" })
    }
    assert.deepStrictEqual(classifyCreating(waiting("ErrImagePull")), { _tag: "ImagePullFailed", image: "img", reason: "ErrImagePull", message: "ErrImagePull" })
  })

  it("container configuration failures, for every reason", () => {
    for (const reason of ["CreateContainerConfigError", "CreateContainerError", "RunContainerError", "ContainerCannotRun", "CrashLoopBackOff", "PreStartHookError", "PostStartHookError"]) {
      assert.deepStrictEqual(classifyCreating(waiting(reason, "m")), { _tag: "Failed", reason, message: "m" })
    }
    assert.deepStrictEqual(classifyCreating(waiting("CrashLoopBackOff")), { _tag: "Failed", reason: "CrashLoopBackOff", message: "CrashLoopBackOff" })
    assert.deepStrictEqual(classifyCreating(waiting("ContainerCreating")), { _tag: "Pending", description: "phase Pending, waiting ContainerCreating" })
  })

  it("deleted, ended and terminated pods fail; unschedulable; running with a host IP", () => {
    assert.deepStrictEqual(classifyCreating({ metadata: { deletionTimestamp: new Date(0) }, status: { phase: "Running" } }), {
      _tag: "Failed",
      reason: "PodDeleted",
      message: "the pod was deleted while the kernel was being created"
    })
    const ended: k8s.V1Pod = {
      status: {
        phase: "Failed",
        message: "boom",
        containerStatuses: [{ name: "k", image: "i", imageID: "", ready: false, restartCount: 0, state: { terminated: { exitCode: 3, reason: "Error" } } }]
      }
    }
    assert.deepStrictEqual(classifyCreating(ended), { _tag: "Failed", reason: "Error", message: "the pod ended (Failed, exit code 3) boom" })
    assert.deepStrictEqual(classifyCreating({ status: { phase: "Succeeded", reason: "R" } }), { _tag: "Failed", reason: "R", message: "the pod ended (Succeeded, exit code unknown)" })
    assert.deepStrictEqual(classifyCreating({ status: { phase: "Failed" } }), { _tag: "Failed", reason: "Failed", message: "the pod ended (Failed, exit code unknown)" })
    const terminated: k8s.V1Pod = { status: { phase: "Running", containerStatuses: [{ name: "k", image: "i", imageID: "", ready: false, restartCount: 0, state: { terminated: { exitCode: 137 } } }] } }
    assert.deepStrictEqual(classifyCreating(terminated), { _tag: "Failed", reason: "ContainerTerminated", message: "the kernel container exited with code 137" })
    const unsched: k8s.V1Pod = { status: { phase: "Pending", conditions: [{ type: "PodScheduled", status: "False", reason: "Unschedulable", message: "0/3 nodes" }] } }
    assert.deepStrictEqual(classifyCreating(unsched), { _tag: "Unschedulable", message: "0/3 nodes" })
    assert.deepStrictEqual(
      classifyCreating({ status: { phase: "Pending", conditions: [{ type: "PodScheduled", status: "False", reason: "Unschedulable" }] } }),
      { _tag: "Unschedulable", message: "no node can run the kernel" }
    )
    const notYet: k8s.V1Pod = { status: { phase: "Pending", conditions: [{ type: "PodScheduled", status: "False", reason: "SchedulerError", message: "m" }] } }
    assert.deepStrictEqual(classifyCreating(notYet), { _tag: "Pending", description: "phase Pending, not scheduled (SchedulerError: m)" })
    const running = (hostIP: string | undefined, states: ReadonlyArray<k8s.V1ContainerState>): k8s.V1Pod => ({
      status: { phase: "Running", ...(hostIP !== undefined ? { hostIP } : {}), podIP: "10.244.0.9", containerStatuses: states.map((state) => ({ name: "k", image: "i", imageID: "", ready: true, restartCount: 0, state })) }
    })
    assert.deepStrictEqual(classifyCreating(running("10.0.0.2", [{ running: {} }, { running: {} }])), { _tag: "Running", hostIP: "10.0.0.2", podIP: "10.244.0.9" })
    assert.strictEqual(classifyCreating(running("", [{ running: {} }]))._tag, "Pending")
    assert.strictEqual(classifyCreating(running(undefined, [{ running: {} }]))._tag, "Pending")
    assert.strictEqual(classifyCreating(running("10.0.0.2", [{ running: {} }, {}]))._tag, "Pending")
    assert.strictEqual(classifyCreating(running("10.0.0.2", []))._tag, "Pending")
    assert.strictEqual(classifyCreating({ status: { phase: "Pending", hostIP: "10.0.0.2", containerStatuses: [{ name: "k", image: "i", imageID: "", ready: true, restartCount: 0, state: { running: {} } }] } })._tag, "Pending")
    assert.deepStrictEqual(classifyCreating({}), { _tag: "Pending", description: "phase unknown" })
  })

  it("describePod lists phase, scheduling, waiting reasons and deletion", () => {
    const pod: k8s.V1Pod = {
      metadata: { deletionTimestamp: new Date(0) },
      status: {
        phase: "Pending",
        conditions: [{ type: "Ready", status: "False" }, { type: "PodScheduled", status: "False" }],
        containerStatuses: [
          { name: "a", image: "i", imageID: "", ready: false, restartCount: 0, state: { waiting: { reason: "A" } } },
          { name: "b", image: "i", imageID: "", ready: false, restartCount: 0, state: { running: {} } },
          { name: "c", image: "i", imageID: "", ready: false, restartCount: 0, state: { waiting: { reason: "C" } } }
        ]
      }
    }
    assert.strictEqual(describePod(pod), "phase Pending, not scheduled (: ), waiting A,C, being deleted")
    assert.strictEqual(describePod({ status: { phase: "Running", conditions: [{ type: "PodScheduled", status: "True" }] } }), "phase Running")
  })

  it("termination: the first container's state, else its last state", () => {
    const cs = (state: k8s.V1ContainerState, lastState?: k8s.V1ContainerState): k8s.V1Pod => ({
      status: { containerStatuses: [{ name: "k", image: "i", imageID: "", ready: false, restartCount: 1, state, ...(lastState ? { lastState } : {}) }, { name: "x", image: "i", imageID: "", ready: false, restartCount: 0, state: { terminated: { exitCode: 99 } } }] }
    })
    assert.deepStrictEqual(terminationOf(cs({ terminated: { exitCode: 0, reason: "Completed" } })), { exitCode: 0, containerReason: "Completed" })
    assert.deepStrictEqual(terminationOf(cs({ running: {} }, { terminated: { exitCode: 137, reason: "OOMKilled" } })), { exitCode: 137, containerReason: "OOMKilled" })
    assert.deepStrictEqual(terminationOf(cs({ running: {} })), { exitCode: null, containerReason: undefined })
    assert.deepStrictEqual(terminationOf({}), { exitCode: null, containerReason: undefined })
  })

  it("endedReason: evicted / deleted → force-terminated, OOMKilled → oom-killed, ended → self-terminated, else alive", () => {
    const term = (reason: string, exitCode: number) => [{ name: "k", image: "i", imageID: "", ready: false, restartCount: 0, state: { terminated: { exitCode, reason } } }]
    assert.deepStrictEqual(endedReason({ status: { phase: "Failed", reason: "Evicted" } }, false), Option.some({ reason: "force-terminated", exitCode: null }))
    assert.deepStrictEqual(endedReason({ status: { phase: "Failed", containerStatuses: term("OOMKilled", 137) } }, false), Option.some({ reason: "oom-killed", exitCode: 137 }))
    assert.deepStrictEqual(endedReason({ status: { phase: "Succeeded", containerStatuses: term("Completed", 0) } }, true), Option.some({ reason: "self-terminated", exitCode: 0 }))
    assert.deepStrictEqual(endedReason({ status: { phase: "Failed", containerStatuses: term("Error", 2) } }, false), Option.some({ reason: "self-terminated", exitCode: 2 }))
    assert.deepStrictEqual(endedReason({ status: { phase: "Running" } }, true), Option.some({ reason: "force-terminated", exitCode: null }))
    assert.deepStrictEqual(endedReason({ metadata: { deletionTimestamp: new Date(0) }, status: { phase: "Running" } }, false), Option.some({ reason: "force-terminated", exitCode: null }))
    assert.isTrue(Option.isNone(endedReason({ status: { phase: "Running" } }, false)))
    assert.isTrue(Option.isNone(endedReason({}, false)))
  })
})

// ---------------------------------------------------------------------------------------------
// Whole objects, written by hand from the formats they must meet (agent-spec §7.4 "Container spec",
// "Volumes and mounts"; the 19.06 runner's `python -m ai.backend.kernel <lang> [<runtime_path>]`
// (kernel/__init__.py parse_args); entrypoint.sh's LOCAL_USER_ID / LOCAL_GROUP_ID; libbaihook via
// LD_PRELOAD; /home/config/{environ,resource}.txt read by the runner) and the Kubernetes objects the
// agent relies on. The recovery annotation is compared parsed (its JSON key order is not a contract).

const withParsedRecovery = (pod: k8s.V1Pod): unknown => {
  const { annotations, ...meta } = pod.metadata!
  const text = annotations?.[RECOVERY_ANNOTATION]
  return { ...pod, metadata: { ...meta, annotations: { [RECOVERY_ANNOTATION]: text === undefined ? undefined : JSON.parse(text) } } }
}

const KID_A = "3f9e2c41-7a0b-4d5e-9c8f-1e2d3c4b5a69"
const KID_B = "a1b2c3d4-e5f6-4789-8abc-def012345678"

const labelsA = {
  "app.kubernetes.io/managed-by": "bai-k8s-agent",
  "backend.ai/agent-id": "agent-a",
  "backend.ai/kernel-id": KID_A
}
const labelsB = {
  "app.kubernetes.io/managed-by": "bai-k8s-agent",
  "backend.ai/agent-id": "agent-b",
  "backend.ai/kernel-id": KID_B
}

/** A docker-sandboxed nodejs kernel with an explicit runtime path, hostPath volumes, uid/gid 0, no extras. */
const configA: KernelConfig = {
  image: {
    canonical: "lablup/nodejs:12-ubuntu18.04",
    labels: {
      "ai.backend.base-distro": "ubuntu18.04",
      "ai.backend.runtime-type": "nodejs",
      "ai.backend.runtime-path": "/usr/local/bin/node",
      "ai.backend.envs.corecount": " OMP_NUM_THREADS, ,NPROC,,"
    }
  },
  resource_slots: { cpu: "1.5", mem: "536870912" },
  idle_timeout: 0,
  mounts: [],
  environ: { TERM: "xterm" }
}
const inputA: KernelObjectsInput = {
  namespace: "ns-a",
  agentId: "agent-a",
  kernelId: KID_A,
  config: configA,
  servicePorts: [],
  registryUrl: "",
  pullSecret: "",
  krunnerVolume: { type: "hostPath", path: "/opt/backend.ai" },
  scratchVolume: { type: "hostPath", path: "/var/lib/bai/scratches" },
  scratchDir: `/scratches/${KID_A}/work`,
  vfolderMount: "/mnt/vf",
  vfolderFsPrefix: "",
  kernelUid: 0,
  kernelGid: 0,
  sandboxType: "docker",
  jailArgs: [],
  terminationGraceSeconds: 2.5,
  nodeSelector: {},
  runnerAddress: "node-port"
}
const portsA = new Map([[2000, 30100], [2001, 30101]])

/** A jail-sandboxed python kernel (default runtime type, empty runtime path), NFS volumes, vfolders, service ports, pod-ip. */
const configB: KernelConfig = {
  image: { canonical: "index.docker.io/lablup/tensorflow:2.1-py36", labels: { "ai.backend.runtime-path": "" } },
  resource_slots: { cpu: "4", mem: "1073741824", "cuda.device": "0.5" },
  idle_timeout: 600,
  mounts: [
    { name: "data", host: "local", folderId: "f1", permission: "ro" },
    { name: "out", host: "nas", folderId: "f2", permission: "rw" }
  ],
  environ: {}
}
const inputB: KernelObjectsInput = {
  namespace: "ns-b",
  agentId: "agent-b",
  kernelId: KID_B,
  config: configB,
  servicePorts: [{ name: "jupyter", protocol: "http", containerPort: 8080 }, { name: "sshd", protocol: "tcp", containerPort: 2200 }],
  registryUrl: "https://registry.example:5000",
  pullSecret: "regcred",
  krunnerVolume: { type: "nfs", server: "10.0.0.9", path: "/export/krunner", "python-version": "3.8" },
  scratchVolume: { type: "nfs", server: "10.0.0.10", path: "/export/scratch" },
  scratchDir: `/scratches/${KID_B}/work`,
  vfolderMount: "/mnt/vfroot",
  vfolderFsPrefix: "vfs",
  kernelUid: -1,
  kernelGid: -1,
  sandboxType: "jail",
  jailArgs: ["-policy", "/etc/backend.ai/jail/policy.yml"],
  terminationGraceSeconds: 10,
  nodeSelector: { "backend.ai/gpu": "true" },
  runnerAddress: "pod-ip"
}
const portsB = new Map([[8080, 30200], [2200, 30201]])

const krunnerMountsOf = (distro: string, py: string, jail: boolean) => {
  const sp = `/opt/backend.ai/lib/python${py}/site-packages/ai/backend`
  return [
    { name: "krunner", mountPath: "/opt/backend.ai", subPath: `backendai-krunner.${distro}`, readOnly: true },
    { name: "krunner", mountPath: `${sp}/kernel`, subPath: "kernel", readOnly: true },
    { name: "krunner", mountPath: `${sp}/helpers`, subPath: "helpers", readOnly: true },
    { name: "krunner", mountPath: "/opt/kernel/entrypoint.sh", subPath: "entrypoint.sh", readOnly: true },
    { name: "krunner", mountPath: "/opt/kernel/su-exec", subPath: `su-exec.${distro}.bin`, readOnly: true },
    { name: "krunner", mountPath: "/opt/kernel/libbaihook.so", subPath: `libbaihook.${distro}.x86_64.so`, readOnly: true },
    ...(jail ? [{ name: "krunner", mountPath: "/opt/kernel/jail", subPath: `jail.${distro}.bin`, readOnly: true }] : [])
  ]
}

const configVolume = (kid: string) => ({
  name: "config",
  configMap: { name: `kernel-${kid}`, items: [{ key: "environ", path: "environ.txt" }, { key: "resource", path: "resource.txt" }] }
})
const configMount = { name: "config", mountPath: "/home/config", readOnly: true }
const ownerRefTo = (kid: string, uid: string) => ({
  apiVersion: "v1",
  kind: "Pod",
  name: `kernel-${kid}`,
  uid,
  controller: false,
  blockOwnerDeletion: false
})

describe("whole kernel objects", () => {
  it("pod A: docker sandbox, runtime type and path from the labels, hostPath krunner and scratch, uid/gid 0, corecount variables, nothing optional", () => {
    const podSecurity = { seccompProfile: { type: "RuntimeDefault" } }
    const quantities = { cpu: "1.5", memory: "536870912" }
    assert.deepStrictEqual(withParsedRecovery(buildPod(inputA, portsA)), {
      apiVersion: "v1",
      kind: "Pod",
      metadata: {
        name: `kernel-${KID_A}`,
        namespace: "ns-a",
        labels: labelsA,
        annotations: {
          "backend.ai/kernel": {
            v: 1,
            runnerAddress: "node-port",
            kernelId: KID_A,
            canonicalImage: "lablup/nodejs:12-ubuntu18.04",
            image: "lablup/nodejs:12-ubuntu18.04",
            replInPort: 30100,
            replOutPort: 30101,
            servicePorts: [],
            resourceSpec: `{"slots":{"cpu":"1.5","mem":"536870912"},"mounts":[],"scratch_disk_size":0,"idle_timeout":0}`,
            scratchDir: `/scratches/${KID_A}/work`,
            idleTimeout: 0
          }
        }
      },
      spec: {
        restartPolicy: "Never",
        terminationGracePeriodSeconds: 3,
        automountServiceAccountToken: false,
        enableServiceLinks: false,
        securityContext: podSecurity,
        containers: [{
          name: "kernel",
          image: "lablup/nodejs:12-ubuntu18.04",
          imagePullPolicy: "IfNotPresent",
          command: ["sh", "/opt/kernel/entrypoint.sh"],
          args: ["/opt/backend.ai/bin/python", "-m", "ai.backend.kernel", "nodejs", "/usr/local/bin/node"],
          ports: [
            { name: "repl-in", containerPort: 2000, protocol: "TCP" },
            { name: "repl-out", containerPort: 2001, protocol: "TCP" }
          ],
          env: [
            { name: "TERM", value: "xterm" },
            { name: "LD_PRELOAD", value: "/opt/kernel/libbaihook.so" },
            { name: "BACKENDAI_KERNEL_ID", value: KID_A },
            { name: "OMP_NUM_THREADS", value: "2" },
            { name: "NPROC", value: "2" },
            { name: "LOCAL_USER_ID", value: "0" },
            { name: "LOCAL_GROUP_ID", value: "0" }
          ],
          resources: { requests: quantities, limits: quantities },
          securityContext: {
            privileged: false,
            allowPrivilegeEscalation: false,
            capabilities: { drop: ["ALL"], add: ["CHOWN", "DAC_OVERRIDE", "SETGID", "SETUID"] },
            seccompProfile: { type: "RuntimeDefault" }
          },
          volumeMounts: [
            ...krunnerMountsOf("ubuntu18.04", "3.6", false),
            configMount,
            { name: "work", mountPath: "/home/work" }
          ]
        }],
        volumes: [
          { name: "krunner", hostPath: { path: "/opt/backend.ai", type: "Directory" } },
          configVolume(KID_A),
          { name: "work", hostPath: { path: `/var/lib/bai/scratches/${KID_A}/work`, type: "Directory" } }
        ]
      }
    })
  })

  it("pod B: jail sandbox, default runtime type, NFS krunner and scratch (work subPath), vfolders, service ports, node selector, pull secret, no uid/gid", () => {
    const quantities = { cpu: "4", memory: "1073741824", "nvidia.com/gpu": "1" }
    assert.deepStrictEqual(withParsedRecovery(buildPod(inputB, portsB)), {
      apiVersion: "v1",
      kind: "Pod",
      metadata: {
        name: `kernel-${KID_B}`,
        namespace: "ns-b",
        labels: labelsB,
        annotations: {
          "backend.ai/kernel": {
            v: 1,
            runnerAddress: "pod-ip",
            kernelId: KID_B,
            canonicalImage: "index.docker.io/lablup/tensorflow:2.1-py36",
            image: "registry.example:5000/lablup/tensorflow:2.1-py36",
            replInPort: 2000,
            replOutPort: 2001,
            servicePorts: [
              { name: "jupyter", protocol: "http", container_port: 8080, host_port: 30200 },
              { name: "sshd", protocol: "tcp", container_port: 2200, host_port: 30201 }
            ],
            resourceSpec:
              `{"slots":{"cpu":"4","mem":"1073741824","cuda.device":"0.5"},"mounts":[["data","local","f1","ro"],["out","nas","f2","rw"]],"scratch_disk_size":0,"idle_timeout":600}`,
            scratchDir: `/scratches/${KID_B}/work`,
            idleTimeout: 600
          }
        }
      },
      spec: {
        restartPolicy: "Never",
        terminationGracePeriodSeconds: 10,
        automountServiceAccountToken: false,
        nodeSelector: { "backend.ai/gpu": "true" },
        enableServiceLinks: false,
        securityContext: { seccompProfile: { type: "RuntimeDefault" } },
        imagePullSecrets: [{ name: "regcred" }],
        containers: [{
          name: "kernel",
          image: "registry.example:5000/lablup/tensorflow:2.1-py36",
          imagePullPolicy: "IfNotPresent",
          command: ["sh", "/opt/kernel/entrypoint.sh"],
          args: [
            "/opt/kernel/jail",
            "-policy",
            "/etc/backend.ai/jail/policy.yml",
            "/opt/backend.ai/bin/python",
            "-m",
            "ai.backend.kernel",
            "python"
          ],
          ports: [
            { name: "repl-in", containerPort: 2000, protocol: "TCP" },
            { name: "repl-out", containerPort: 2001, protocol: "TCP" },
            { name: "sp-8080", containerPort: 8080, protocol: "TCP" },
            { name: "sp-2200", containerPort: 2200, protocol: "TCP" }
          ],
          env: [
            { name: "LD_PRELOAD", value: "/opt/kernel/libbaihook.so" },
            { name: "BACKENDAI_KERNEL_ID", value: KID_B }
          ],
          resources: { requests: quantities, limits: quantities },
          securityContext: {
            privileged: false,
            allowPrivilegeEscalation: false,
            capabilities: { drop: ["ALL"], add: ["CHOWN", "DAC_OVERRIDE", "SETGID", "SETUID", "SYS_PTRACE"] },
            seccompProfile: { type: "RuntimeDefault" }
          },
          volumeMounts: [
            ...krunnerMountsOf("ubuntu16.04", "3.8", true),
            configMount,
            { name: "work", mountPath: "/home/work", subPath: `${KID_B}/work` },
            { name: "vfolder-0", mountPath: "/home/work/data", readOnly: true },
            { name: "vfolder-1", mountPath: "/home/work/out", readOnly: false }
          ]
        }],
        volumes: [
          { name: "krunner", nfs: { server: "10.0.0.9", path: "/export/krunner", readOnly: true } },
          configVolume(KID_B),
          { name: "work", nfs: { server: "10.0.0.10", path: "/export/scratch", readOnly: false } },
          { name: "vfolder-0", hostPath: { path: "/mnt/vfroot/local/vfs/f1", type: "Directory" } },
          { name: "vfolder-1", hostPath: { path: "/mnt/vfroot/nas/vfs/f2", type: "Directory" } }
        ]
      }
    })
  })

  it("pod: the runtime path is passed only when the label has one; no corecount label sets no variable", () => {
    const argsOf = (labels: Record<string, string>) => {
      const pod = buildPod({ ...inputA, config: { ...configA, image: { ...configA.image, labels } } }, portsA)
      const c = pod.spec!.containers[0]!
      return { args: c.args, env: c.env!.map((e) => e.name) }
    }
    const envBase = ["TERM", "LD_PRELOAD", "BACKENDAI_KERNEL_ID", "LOCAL_USER_ID", "LOCAL_GROUP_ID"]
    assert.deepStrictEqual(argsOf({ "ai.backend.runtime-type": "r" }), {
      args: ["/opt/backend.ai/bin/python", "-m", "ai.backend.kernel", "r"],
      env: envBase
    })
    assert.deepStrictEqual(argsOf({ "ai.backend.runtime-type": "r", "ai.backend.runtime-path": "" }), {
      args: ["/opt/backend.ai/bin/python", "-m", "ai.backend.kernel", "r"],
      env: envBase
    })
    // a corecount variable counts whole CPUs, at least one: cpu 0.25 → 1, cpu 3 → 3
    const envOf = (cpu: string) =>
      buildPod({ ...inputA, config: { ...configA, resource_slots: { cpu } } }, portsA).spec!.containers[0]!.env!.filter((e) => e.name === "NPROC")
    assert.deepStrictEqual(envOf("0.25"), [{ name: "NPROC", value: "1" }])
    assert.deepStrictEqual(envOf("3"), [{ name: "NPROC", value: "3" }])
  })

  it("service (node-port): both runner ports and every service port as NodePorts, Local traffic policy, owned by the pod", () => {
    const input = { ...inputA, servicePorts: [{ name: "jupyter", protocol: "http" as const, containerPort: 8080 }] }
    assert.deepStrictEqual(buildService(input, new Map([[2000, 30100], [2001, 30101], [8080, 30102]]), "uid-a"), {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: `kernel-${KID_A}`, namespace: "ns-a", labels: labelsA, ownerReferences: [ownerRefTo(KID_A, "uid-a")] },
      spec: {
        type: "NodePort",
        externalTrafficPolicy: "Local",
        selector: labelsA,
        ports: [
          { name: "repl-in", protocol: "TCP", port: 2000, targetPort: 2000, nodePort: 30100 },
          { name: "repl-out", protocol: "TCP", port: 2001, targetPort: 2001, nodePort: 30101 },
          { name: "sp-8080", protocol: "TCP", port: 8080, targetPort: 8080, nodePort: 30102 }
        ]
      }
    })
  })

  it("service (pod-ip): a service port numbered 2000 or 2001 is a service port, never the runner's; none → headless", () => {
    const input = { ...inputB, servicePorts: [{ name: "a", protocol: "tcp" as const, containerPort: 2001 }, { name: "b", protocol: "tcp" as const, containerPort: 2000 }] }
    assert.deepStrictEqual(buildService(input, new Map([[2001, 30301], [2000, 30300]]), "uid-b"), {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: `kernel-${KID_B}`, namespace: "ns-b", labels: labelsB, ownerReferences: [ownerRefTo(KID_B, "uid-b")] },
      spec: {
        type: "NodePort",
        externalTrafficPolicy: "Local",
        selector: labelsB,
        ports: [
          { name: "sp-2001", protocol: "TCP", port: 2001, targetPort: 2001, nodePort: 30301 },
          { name: "sp-2000", protocol: "TCP", port: 2000, targetPort: 2000, nodePort: 30300 }
        ]
      }
    })
    assert.deepStrictEqual(buildService({ ...inputB, servicePorts: [] }, new Map(), "uid-b"), {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: `kernel-${KID_B}`, namespace: "ns-b", labels: labelsB, ownerReferences: [ownerRefTo(KID_B, "uid-b")] },
      spec: { type: "ClusterIP", clusterIP: "None", selector: labelsB, ports: [] }
    })
  })

  it("config map: environ and resource texts under the keys the pod's config volume maps to environ.txt / resource.txt", () => {
    assert.deepStrictEqual(buildConfigMap(inputA, { environ: "TERM=xterm\n", resource: "CID=x\n" }, "uid-a"), {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: `kernel-${KID_A}`, namespace: "ns-a", labels: labelsA, ownerReferences: [ownerRefTo(KID_A, "uid-a")] },
      data: { environ: "TERM=xterm\n", resource: "CID=x\n" }
    })
  })

  it("network policies: the agent-wide runner fence and a kernel's service-port policy, whole", () => {
    const fenceName = `bai-runner-fence-${createHash("sha256").update("agent-a", "utf8").digest("hex").slice(0, 16)}`
    const agentLabels = { "app.kubernetes.io/managed-by": "bai-k8s-agent", "backend.ai/agent-id": "agent-a" }
    assert.deepStrictEqual(buildRunnerFence("ns-a", "agent-a", ["10.0.0.5", "fd00::/8"]), {
      apiVersion: "networking.k8s.io/v1",
      kind: "NetworkPolicy",
      metadata: { name: fenceName, namespace: "ns-a", labels: agentLabels },
      spec: {
        podSelector: { matchLabels: agentLabels },
        policyTypes: ["Ingress"],
        ingress: [{
          _from: [{ ipBlock: { cidr: "10.0.0.5/32" } }, { ipBlock: { cidr: "fd00::/8" } }],
          ports: [{ protocol: "TCP", port: 2000 }, { protocol: "TCP", port: 2001 }]
        }]
      }
    })
    assert.deepStrictEqual(buildServicePolicy(inputB, ["192.168.0.0/16"], "uid-b"), {
      apiVersion: "networking.k8s.io/v1",
      kind: "NetworkPolicy",
      metadata: { name: `kernel-${KID_B}`, namespace: "ns-b", labels: labelsB, ownerReferences: [ownerRefTo(KID_B, "uid-b")] },
      spec: {
        podSelector: { matchLabels: labelsB },
        policyTypes: ["Ingress"],
        ingress: [{ _from: [{ ipBlock: { cidr: "192.168.0.0/16" } }], ports: [{ protocol: "TCP", port: 8080 }, { protocol: "TCP", port: 2200 }] }]
      }
    })
    // an image declaring either runner port (2001 too, not only 2000) among its service ports gets no policy
    const withRunnerPort = (containerPort: number) =>
      buildServicePolicy({ ...inputB, servicePorts: [...inputB.servicePorts, { name: "x", protocol: "tcp", containerPort }] }, ["0.0.0.0/0"], "u")
    assert.isUndefined(withRunnerPort(2001))
    assert.isUndefined(withRunnerPort(2000))
  })
})

describe("readers on partial objects", () => {
  it("annotations absent from present metadata: no recovery record, not ready", () => {
    assert.isTrue(Option.isNone(recoveryOf({ metadata: {} })))
    assert.isFalse(isReadyMarked({ metadata: {} }))
    assert.isFalse(isReadyMarked({ metadata: { annotations: { [RECOVERY_ANNOTATION]: "{}" } } }))
  })

  it("podAddresses: both addresses, \"\" for each one not set yet", () => {
    assert.deepStrictEqual(podAddresses({ status: { hostIP: "10.0.0.1", podIP: "10.244.0.5" } }), { hostIP: "10.0.0.1", podIP: "10.244.0.5" })
    assert.deepStrictEqual(podAddresses({ status: { hostIP: "10.0.0.1" } }), { hostIP: "10.0.0.1", podIP: "" })
    assert.deepStrictEqual(podAddresses({ status: {} }), { hostIP: "", podIP: "" })
    assert.deepStrictEqual(podAddresses({}), { hostIP: "", podIP: "" })
  })

  it("nodeSelectorOf: a term with blanks inside is not one equality term", () => {
    assert.deepStrictEqual(nodeSelectorOf("a=1 b=2"), {})
    assert.deepStrictEqual(nodeSelectorOf("x a=1, c=3"), { c: "3" })
  })

  const cs = (extra: Partial<k8s.V1ContainerStatus>): k8s.V1ContainerStatus => ({ name: "kernel", image: "i", imageID: "", ready: false, restartCount: 0, ...extra })

  it("container statuses without a state yet (the kubelet has not reported one) are not running and not failed", () => {
    const pod: k8s.V1Pod = { status: { phase: "Pending", hostIP: "10.0.0.1", podIP: "10.244.0.5", containerStatuses: [cs({})] } }
    assert.deepStrictEqual(classifyCreating(pod), { _tag: "Pending", description: "phase Pending" })
    assert.strictEqual(describePod(pod), "phase Pending")
    const running: k8s.V1Pod = { status: { phase: "Running", hostIP: "10.0.0.1", podIP: "10.244.0.5", containerStatuses: [cs({ state: { running: {} } }), cs({})] } }
    assert.deepStrictEqual(classifyCreating(running), { _tag: "Pending", description: "phase Running" })
    // the first container's last termination when it has no current state
    assert.deepStrictEqual(terminationOf({ status: { containerStatuses: [cs({ lastState: { terminated: { exitCode: 1, reason: "Error" } } })] } }), {
      exitCode: 1,
      containerReason: "Error"
    })
  })

  it("Running needs phase Running, at least one container status, every container running, and both addresses", () => {
    const statuses = [cs({ state: { running: {} } })]
    const addrs = { hostIP: "10.0.0.1", podIP: "10.244.0.5" }
    assert.deepStrictEqual(classifyCreating({ status: { phase: "Running", ...addrs, containerStatuses: statuses } }), { _tag: "Running", ...addrs })
    assert.deepStrictEqual(classifyCreating({ status: { phase: "Pending", ...addrs, containerStatuses: statuses } }), { _tag: "Pending", description: "phase Pending" })
    assert.deepStrictEqual(classifyCreating({ status: { phase: "Running", ...addrs } }), { _tag: "Pending", description: "phase Running" })
    assert.deepStrictEqual(classifyCreating({ status: { phase: "Running", hostIP: "10.0.0.1", podIP: "", containerStatuses: statuses } }), {
      _tag: "Pending",
      description: "phase Running"
    })
  })

  it("the PodScheduled condition is found among others, whatever their order", () => {
    const conditions: Array<k8s.V1PodCondition> = [
      { type: "Initialized", status: "True" },
      { type: "PodScheduled", status: "False", reason: "Unschedulable", message: "0/1 nodes are available" }
    ]
    assert.deepStrictEqual(classifyCreating({ status: { phase: "Pending", conditions } }), { _tag: "Unschedulable", message: "0/1 nodes are available" })
    assert.strictEqual(describePod({ status: { phase: "Pending", conditions } }), "phase Pending, not scheduled (Unschedulable: 0/1 nodes are available)")
  })
})
