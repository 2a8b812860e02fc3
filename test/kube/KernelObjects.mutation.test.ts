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
  classifyCreating,
  describePod,
  endedReason,
  exposedPorts,
  isReadyMarked,
  kernelCapabilities,
  kernelIdOf,
  kernelSelector,
  krunnerMounts,
  labelsOf,
  nodePortsOf,
  nodeSelectorOf,
  objectName,
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
