import { assert, describe, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { decodeConfigText } from "../../src/config/AgentConfig.ts"
import { decodeKernelConfig, environText, resourceText } from "../../src/spec/KernelConfig.ts"
import {
  buildConfigMap,
  buildPod,
  buildRunnerFence,
  buildService,
  buildServicePolicy,
  classifyCreating,
  endedReason,
  type KernelObjectsInput,
  exposedPorts,
  nodeSelectorOf,
  podAddresses,
  podImage,
  recoveryFor,
  recoveryOf,
  recoveryText,
  reportedKernelHost,
  runnerAddressOf,
  runnerEndpoint,
  runnerPorts,
  registryHost,
  runnerFenceName,
  sourcesToCidrs,
  resourceQuantities
} from "../../src/kube/KernelObjects.ts"
import { allocatedPortsIn, clusterRangeIn, NodePorts } from "../../src/kube/NodePorts.ts"

const kid = "2b1c8a0e-1111-4222-8333-444455556666"

const rawConfig = {
  image: {
    canonical: "index.docker.io/lablup/python:3.6-ubuntu18.04",
    labels: {
      "ai.backend.runtime-type": "python",
      "ai.backend.envs.corecount": "OMP_NUM_THREADS",
      "ai.backend.service-ports": "jupyter:http:8080,myapp:tcp:8081"
    }
  },
  resource_slots: { cpu: "2", mem: 1073741824, "cuda.device": "1" },
  idle_timeout: 600,
  mounts: [["data", "local", "abcdef", "ro"], ["rw1", "local", "123456"]],
  environ: { A: "1", "BAD KEY": "x" }
}

const inputOf = Effect.gen(function*() {
  const config = yield* decodeKernelConfig(kid, rawConfig)
  return {
    namespace: "backend-ai",
    agentId: "i-test",
    kernelId: kid,
    config,
    servicePorts: [{ name: "jupyter", protocol: "http", containerPort: 8080 }, { name: "myapp", protocol: "tcp", containerPort: 8081 }],
    registryUrl: "https://reg.example:5000",
    pullSecret: "backend-ai-registry-secret",
    krunnerVolume: { type: "nfs", path: "/export/krunner", server: "10.0.0.9" },
    scratchVolume: { type: "hostPath", path: "/var/scratches" },
    scratchDir: `/var/scratches/${kid}/work`,
    vfolderMount: "/mnt/vfroot",
    vfolderFsPrefix: "",
    kernelUid: 1000,
    kernelGid: 1001,
    sandboxType: "docker",
    jailArgs: [],
    terminationGraceSeconds: 5,
    nodeSelector: nodeSelectorOf("backend.ai/testbed=true, zone == a"),
    runnerAddress: "node-port"
  } satisfies KernelObjectsInput
})

const ports = new Map([[2000, 30010], [2001, 30011], [8080, 30012], [8081, 30013]])

describe("KernelConfig", () => {
  it.effect("decodes the manager's dict (3-tuple mounts are rw) and rejects bad ones with every problem", () =>
    Effect.gen(function*() {
      const c = yield* decodeKernelConfig(kid, rawConfig)
      assert.deepStrictEqual(c.resource_slots, { cpu: "2", mem: "1073741824", "cuda.device": "1" })
      assert.deepStrictEqual(c.mounts.map((m) => m.permission), ["ro", "rw"])
      const e = yield* decodeKernelConfig(kid, { image: {}, resource_slots: { cpu: "lots" } }).pipe(Effect.flip)
      assert.strictEqual(e._tag, "InvalidKernelConfig")
      assert.match(e.message, /image\.canonical/)
      assert.match(e.message, /resource_slots\.cpu/)
      const p = yield* decodeKernelConfig(kid, { ...rawConfig, image: { canonical: "x/y:z", labels: { "ai.backend.service-ports": "a:udp:9000" } } }).pipe(Effect.flip)
      assert.match(p.message, /service-ports/)
    }))

  it.effect("environ.txt and resource.txt (spec §7.4)", () =>
    Effect.gen(function*() {
      const c = yield* decodeKernelConfig(kid, rawConfig)
      assert.strictEqual(environText(c.environ), "A=1\n")
      assert.strictEqual(
        resourceText(kid, c),
        `CID=${kid}\nSCRATCH_SIZE=0m\nMOUNTS=data:ro,rw1:rw\nSLOTS={"cpu":"2","mem":"1073741824","cuda.device":"1"}\nIDLE_TIMEOUT=600\nCPU_SHARES=0:2\nMEM_SHARES=root:1g\n`
      )
    }))
})

describe("KernelObjects", () => {
  it("maps the canonical image onto the configured registry host", () => {
    assert.strictEqual(registryHost("https://reg.example:5000/v2"), "reg.example:5000")
    assert.strictEqual(podImage("index.docker.io/lablup/python:3.6", "http://127.0.0.1:5050"), "127.0.0.1:5050/lablup/python:3.6")
    assert.strictEqual(podImage("lablup/python:3.6", "https://r:1"), "r:1/lablup/python:3.6")
    assert.strictEqual(podImage("index.docker.io/lablup/python:3.6", ""), "index.docker.io/lablup/python:3.6")
    assert.deepStrictEqual(resourceQuantities({ cpu: "0.5", mem: "1073741824", "cuda.device": "2" }), {
      cpu: "0.5",
      memory: "1073741824",
      "nvidia.com/gpu": "2"
    })
  })

  it.effect("pod: labels, recovery annotation, requests = limits, volumes, env, not privileged, restartPolicy Never", () =>
    Effect.gen(function*() {
      const input = yield* inputOf
      const pod = buildPod(input, ports)
      assert.strictEqual(pod.metadata?.name, `kernel-${kid}`)
      assert.deepStrictEqual(pod.metadata?.labels, {
        "app.kubernetes.io/managed-by": "bai-k8s-agent",
        "backend.ai/agent-id": "i-test",
        "backend.ai/kernel-id": kid
      })
      const rec = recoveryOf(pod)
      assert.isTrue(Option.isSome(rec))
      if (Option.isSome(rec)) {
        assert.strictEqual(rec.value.replInPort, 30010)
        assert.deepStrictEqual(rec.value.servicePorts[1], { name: "myapp", protocol: "tcp", container_port: 8081, host_port: 30013 })
        assert.strictEqual(rec.value.idleTimeout, 600)
      }
      const spec = pod.spec!
      assert.strictEqual(spec.restartPolicy, "Never")
      assert.deepStrictEqual(spec.nodeSelector, { "backend.ai/testbed": "true", zone: "a" })
      assert.deepStrictEqual(spec.imagePullSecrets, [{ name: "backend-ai-registry-secret" }])
      const c = spec.containers[0]!
      assert.strictEqual(c.image, "reg.example:5000/lablup/python:3.6-ubuntu18.04")
      assert.deepStrictEqual(c.resources?.limits, { cpu: "2", memory: "1073741824", "nvidia.com/gpu": "1" })
      assert.deepStrictEqual(c.resources?.requests, c.resources?.limits)
      assert.strictEqual(c.securityContext?.privileged, false)
      const env = Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value]))
      assert.strictEqual(env["LOCAL_USER_ID"], "1000")
      assert.strictEqual(env["LOCAL_GROUP_ID"], "1001")
      assert.strictEqual(env["OMP_NUM_THREADS"], "2")
      const vols = Object.fromEntries((spec.volumes ?? []).map((v) => [v.name, v]))
      assert.deepStrictEqual(vols["krunner"]?.nfs, { server: "10.0.0.9", path: "/export/krunner", readOnly: true })
      assert.strictEqual(vols["work"]?.hostPath?.path, `/var/scratches/${kid}/work`)
      assert.strictEqual(vols["vfolder-0"]?.hostPath?.path, "/mnt/vfroot/local/abcdef")
      const mounts = Object.fromEntries((c.volumeMounts ?? []).filter((m) => m.name.startsWith("vfolder")).map((m) => [m.mountPath, m.readOnly]))
      assert.deepStrictEqual(mounts, { "/home/work/data": true, "/home/work/rw1": false })
    }))

  it.effect("pod: the runner package (krunner subPaths kernel, helpers) is mounted into the krunner env's empty package dirs", () =>
    Effect.gen(function*() {
      const base = yield* inputOf
      const mountsOf = (input: KernelObjectsInput) =>
        (buildPod(input, ports).spec!.containers[0]!.volumeMounts ?? []).filter((m) => m.name === "krunner").map((m) => [m.mountPath, m.subPath, m.readOnly])
      // default python-version 3.6 (the 19.06 krunner's Python); distro from the image label
      const dflt = mountsOf(base)
      assert.deepInclude(dflt, ["/opt/backend.ai/lib/python3.6/site-packages/ai/backend/kernel", "kernel", true])
      assert.deepInclude(dflt, ["/opt/backend.ai/lib/python3.6/site-packages/ai/backend/helpers", "helpers", true])
      assert.deepInclude(dflt, ["/opt/backend.ai", "backendai-krunner.ubuntu16.04", true])
      assert.deepInclude(dflt, ["/opt/kernel/entrypoint.sh", "entrypoint.sh", true])
      // the nested mounts come after the env they are mounted into
      const order = dflt.map((m) => m[0])
      assert.isBelow(order.indexOf("/opt/backend.ai"), order.indexOf("/opt/backend.ai/lib/python3.6/site-packages/ai/backend/kernel"))
      // configured python version (e.g. a venv krunner on Debian 12)
      const v311 = mountsOf({ ...base, krunnerVolume: { ...base.krunnerVolume, "python-version": "3.11" } })
      assert.deepInclude(v311, ["/opt/backend.ai/lib/python3.11/site-packages/ai/backend/kernel", "kernel", true])
      assert.deepInclude(v311, ["/opt/backend.ai/lib/python3.11/site-packages/ai/backend/helpers", "helpers", true])
      assert.notDeepInclude(v311, ["/opt/backend.ai/lib/python3.6/site-packages/ai/backend/kernel", "kernel", true])
      // a hostPath krunner volume is a directory that must exist (never created empty by the kubelet)
      const hp = buildPod({ ...base, krunnerVolume: { type: "hostPath", path: "/opt/backend.ai" } }, ports)
      assert.deepStrictEqual(hp.spec!.volumes!.find((v) => v.name === "krunner")?.hostPath, { path: "/opt/backend.ai", type: "Directory" })
    }))

  it.effect("config: kubernetes.krunner-volume.python-version defaults to 3.6 and must be X.Y", () =>
    Effect.gen(function*() {
      const load = (extra: string) => decodeConfigText("a.toml", `[etcd]\nnamespace = "n"\n${extra}`, {}, "h")
      assert.strictEqual((yield* load("")).config.kubernetes["krunner-volume"]["python-version"], "3.6")
      const nfs = yield* load(`[kubernetes.krunner-volume]\ntype = "nfs"\nserver = "10.0.0.3"\npath = "/x"\npython-version = "3.11"\n`)
      assert.strictEqual(nfs.config.kubernetes["krunner-volume"]["python-version"], "3.11")
      for (const bad of [`"3"`, `"../../etc"`, `"3.6/x"`, `3.6`]) {
        const e = yield* Effect.flip(load(`[kubernetes.krunner-volume]\ntype = "hostPath"\npath = "/x"\npython-version = ${bad}\n`))
        assert.match(e.message, /krunner-volume\.python-version/, bad)
      }
    }))

  it.effect("pod: no privilege escalation, capabilities dropped but the entrypoint's, RuntimeDefault seccomp, no SA token, typed hostPaths", () =>
    Effect.gen(function*() {
      const base = yield* inputOf
      const pod = buildPod({ ...base, krunnerVolume: { type: "hostPath", path: "/opt/backend.ai" } }, ports)
      const spec = pod.spec!
      assert.isFalse(spec.automountServiceAccountToken)
      assert.isFalse(spec.enableServiceLinks)
      assert.isNotTrue(spec.hostNetwork)
      assert.isNotTrue(spec.hostPID)
      assert.isNotTrue(spec.hostIPC)
      assert.deepStrictEqual(spec.securityContext?.seccompProfile, { type: "RuntimeDefault" })
      const sc = spec.containers[0]!.securityContext!
      assert.isFalse(sc.privileged)
      assert.isFalse(sc.allowPrivilegeEscalation)
      assert.deepStrictEqual(sc.seccompProfile, { type: "RuntimeDefault" })
      assert.deepStrictEqual(sc.capabilities?.drop, ["ALL"])
      // entrypoint.sh: useradd/groupadd (CHOWN, DAC_OVERRIDE), su-exec (SETUID, SETGID)
      assert.deepStrictEqual([...(sc.capabilities?.add ?? [])].sort(), ["CHOWN", "DAC_OVERRIDE", "SETGID", "SETUID"])
      // jail traces the kernel's processes
      const jail = buildPod({ ...base, sandboxType: "jail", jailArgs: ["-policy", "x"] }, ports).spec!.containers[0]!.securityContext!
      assert.deepStrictEqual([...(jail.capabilities?.add ?? [])].sort(), ["CHOWN", "DAC_OVERRIDE", "SETGID", "SETUID", "SYS_PTRACE"])
      // every hostPath has a type
      for (const v of spec.volumes ?? []) {
        if (v.hostPath !== undefined) assert.isString(v.hostPath.type, `volume ${v.name}`)
      }
      const vols = Object.fromEntries((spec.volumes ?? []).map((v) => [v.name, v]))
      // the agent made the work dir (with its owner and mode) before the pod: the kubelet must not make a root-owned one
      assert.strictEqual(vols["work"]?.hostPath?.type, "Directory")
      assert.strictEqual(vols["vfolder-0"]?.hostPath?.type, "Directory")
    }))

  it.effect("service and configmap: NodePorts set explicitly, owned by the pod", () =>
    Effect.gen(function*() {
      const input = yield* inputOf
      const svc = buildService(input, ports, "pod-uid")
      assert.strictEqual(svc.spec?.type, "NodePort")
      assert.deepStrictEqual(svc.spec?.ports?.map((p) => [p.name, p.port, p.nodePort]), [
        ["repl-in", 2000, 30010],
        ["repl-out", 2001, 30011],
        ["sp-8080", 8080, 30012],
        ["sp-8081", 8081, 30013]
      ])
      assert.deepStrictEqual(svc.metadata?.ownerReferences?.map((o) => [o.kind, o.uid]), [["Pod", "pod-uid"]])
      const cm = buildConfigMap(input, { environ: "A=1\n", resource: "x" }, "pod-uid")
      assert.deepStrictEqual(cm.data, { environ: "A=1\n", resource: "x" })
      assert.strictEqual(cm.metadata?.ownerReferences?.[0]?.uid, "pod-uid")
    }))

  it.effect("runner-address pod-ip: no NodePort for 2000/2001, NodePorts only for service ports, a headless Service when there are none", () =>
    Effect.gen(function*() {
      const input = { ...(yield* inputOf), runnerAddress: "pod-ip" as const }
      assert.deepStrictEqual(exposedPorts(input.servicePorts, "pod-ip"), [8080, 8081])
      assert.deepStrictEqual(exposedPorts(input.servicePorts, "node-port"), [2000, 2001, 8080, 8081])
      const spPorts = new Map([[8080, 30012], [8081, 30013]])
      const svc = buildService(input, spPorts, "pod-uid")
      assert.strictEqual(svc.spec?.type, "NodePort")
      assert.strictEqual(svc.spec?.externalTrafficPolicy, "Local")
      assert.deepStrictEqual(svc.spec?.ports?.map((p) => [p.name, p.port, p.targetPort, p.nodePort]), [
        ["sp-8080", 8080, 8080, 30012],
        ["sp-8081", 8081, 8081, 30013]
      ])
      // an image declaring 2000 as a service port gets a NodePort for its service, never under the runner's name
      const sneaky = buildService({ ...input, servicePorts: [{ name: "x", protocol: "tcp", containerPort: 2000 }] }, new Map([[2000, 30020]]), "u")
      assert.deepStrictEqual(sneaky.spec?.ports?.map((p) => [p.name, p.port, p.nodePort]), [["sp-2000", 2000, 30020]])
      // no service ports: nothing exposed, nothing allocated (headless: no cluster IP either), still owned by the pod
      const bare = buildService({ ...input, servicePorts: [] }, new Map(), "pod-uid")
      assert.strictEqual(bare.metadata?.name, `kernel-${kid}`)
      assert.deepStrictEqual(bare.metadata?.ownerReferences?.map((o) => [o.kind, o.uid]), [["Pod", "pod-uid"]])
      assert.strictEqual(bare.spec?.type, "ClusterIP")
      assert.strictEqual(bare.spec?.clusterIP, "None")
      assert.deepStrictEqual(bare.spec?.ports, [])
      assert.isUndefined(bare.spec?.externalTrafficPolicy)
      assert.deepStrictEqual(bare.spec?.selector, svc.spec?.selector)
      // node-port mode without service ports still exposes exactly the two runner ports
      const np = buildService({ ...(yield* inputOf), servicePorts: [] }, new Map([[2000, 30010], [2001, 30011]]), "u")
      assert.deepStrictEqual(np.spec?.ports?.map((p) => [p.name, p.port, p.nodePort]), [["repl-in", 2000, 30010], ["repl-out", 2001, 30011]])
    }))

  it.effect("recovery records the runner address per kernel; the endpoint follows the record, kernel_host stays the node", () =>
    Effect.gen(function*() {
      const base = yield* inputOf
      const podIp = recoveryFor({ ...base, runnerAddress: "pod-ip" }, new Map([[8080, 30012], [8081, 30013]]))
      assert.strictEqual(podIp.runnerAddress, "pod-ip")
      // what the manager is told as repl ports: the runner's own ports (it never connects to them)
      assert.deepStrictEqual([podIp.replInPort, podIp.replOutPort], [2000, 2001])
      assert.deepStrictEqual(podIp.servicePorts.map((p) => [p.container_port, p.host_port]), [[8080, 30012], [8081, 30013]])
      const nodePort = recoveryFor(base, ports)
      assert.strictEqual(nodePort.runnerAddress, "node-port")
      assert.deepStrictEqual([nodePort.replInPort, nodePort.replOutPort], [30010, 30011])

      const pod = (r: typeof podIp, status: { hostIP?: string; podIP?: string }) => ({
        metadata: { annotations: { "backend.ai/kernel": recoveryText(r) } },
        status
      })
      const running = { hostIP: "10.0.0.1", podIP: "10.244.1.7" }
      // pod-ip: the pod's address at 2000/2001, whatever NodePorts the Service has and whatever kernel-host says
      const rPod = Option.getOrThrow(recoveryOf(pod(podIp, running)))
      assert.strictEqual(runnerAddressOf(rPod), "pod-ip")
      const svcPorts = new Map([[2000, 30099], [8080, 30012]])
      assert.deepStrictEqual(runnerPorts(rPod, svcPorts), { replInPort: 2000, replOutPort: 2001 })
      assert.deepStrictEqual(runnerEndpoint(podAddresses(pod(podIp, running)), "pod-ip", runnerPorts(rPod, svcPorts), "kh.example"), {
        host: "10.244.1.7",
        replInPort: 2000,
        replOutPort: 2001
      })
      assert.strictEqual(runnerEndpoint(podAddresses(pod(podIp, { hostIP: "10.0.0.1" })), "pod-ip", runnerPorts(rPod, svcPorts), "").host, "")
      // node-port: the node (or container.kernel-host) at the Service's REPL NodePorts, else the recorded ones
      const rNode = Option.getOrThrow(recoveryOf(pod(nodePort, running)))
      assert.deepStrictEqual(runnerPorts(rNode, new Map([[2000, 30110], [2001, 30111]])), { replInPort: 30110, replOutPort: 30111 })
      assert.deepStrictEqual(runnerPorts(rNode, new Map()), { replInPort: 30010, replOutPort: 30011 })
      assert.deepStrictEqual(runnerEndpoint(running, "node-port", runnerPorts(rNode, new Map()), ""), { host: "10.0.0.1", replInPort: 30010, replOutPort: 30011 })
      assert.deepStrictEqual(runnerEndpoint(running, "node-port", runnerPorts(rNode, new Map()), "kh.example").host, "kh.example")
      // kernel_host for the manager (service ports are NodePorts on the node) in both modes
      assert.strictEqual(reportedKernelHost(running, ""), "10.0.0.1")
      assert.strictEqual(reportedKernelHost(running, "kh.example"), "kh.example")
      // a record written by an agent before runner-address existed is a node-port kernel
      const { runnerAddress: _, ...legacy } = nodePort
      const rLegacy = Option.getOrThrow(recoveryOf(pod(legacy as typeof nodePort, running)))
      assert.strictEqual(runnerAddressOf(rLegacy), "node-port")
      // an unknown mode in the annotation is not a record this agent can act on
      assert.isTrue(Option.isNone(recoveryOf(pod({ ...podIp, runnerAddress: "host-net" as "pod-ip" }, running))))
    }))

  it.effect("config: kubernetes.runner-address is node-port by default, pod-ip on request, anything else refused by name", () =>
    Effect.gen(function*() {
      const load = (extra: string) => decodeConfigText("a.toml", `[etcd]\nnamespace = "n"\n${extra}`, {}, "h")
      assert.strictEqual((yield* load("")).config.kubernetes["runner-address"], "node-port")
      assert.strictEqual((yield* load(`[kubernetes]\nrunner-address = "pod-ip"\n`)).config.kubernetes["runner-address"], "pod-ip")
      assert.strictEqual((yield* load(`[kubernetes]\nrunner-address = "node-port"\n`)).config.kubernetes["runner-address"], "node-port")
      for (const bad of [`"podip"`, `"pod_ip"`, `"Pod-IP"`, `""`, `"nodeport"`, `1`, `true`]) {
        const e = yield* Effect.flip(load(`[kubernetes]\nrunner-address = ${bad}\n`))
        assert.include(e.message, "kubernetes.runner-address", bad)
        if (bad.startsWith(`"`)) assert.include(e.message, `expected "node-port" (the runner through NodePorts on the pod's node) or "pod-ip"`, bad)
      }
    }))

  it.effect("network fence: runner ports 2000/2001 only from the agent's sources, service ports only from the configured ones", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(sourcesToCidrs(["10.0.0.5", "10.1.0.0/16", "fd00::1", "fd00::/8"]), ["10.0.0.5/32", "10.1.0.0/16", "fd00::1/128", "fd00::/8"])
      const fence = buildRunnerFence("backend-ai", "i-test", ["10.0.0.5/32"])
      assert.strictEqual(fence.metadata?.name, runnerFenceName("i-test"))
      assert.match(fence.metadata!.name!, /^bai-runner-fence-[0-9a-f]{16}$/)
      assert.notStrictEqual(runnerFenceName("i-test"), runnerFenceName("i-other"))
      assert.deepStrictEqual(fence.spec?.podSelector?.matchLabels, { "app.kubernetes.io/managed-by": "bai-k8s-agent", "backend.ai/agent-id": "i-test" })
      assert.deepStrictEqual(fence.spec?.policyTypes, ["Ingress"])
      assert.deepStrictEqual(fence.spec?.ingress, [{
        _from: [{ ipBlock: { cidr: "10.0.0.5/32" } }],
        ports: [{ protocol: "TCP", port: 2000 }, { protocol: "TCP", port: 2001 }]
      }])
      // no sources: nothing may reach the runner (never "from everyone")
      assert.deepStrictEqual(buildRunnerFence("backend-ai", "i-test", []).spec?.ingress, [])

      const input = yield* inputOf
      const sp = buildServicePolicy(input, ["192.168.1.0/24"], "pod-uid")!
      assert.strictEqual(sp.metadata?.name, `kernel-${kid}`)
      assert.deepStrictEqual(sp.metadata?.ownerReferences?.map((o) => [o.kind, o.uid]), [["Pod", "pod-uid"]])
      assert.deepStrictEqual(sp.spec?.podSelector?.matchLabels, {
        "app.kubernetes.io/managed-by": "bai-k8s-agent",
        "backend.ai/agent-id": "i-test",
        "backend.ai/kernel-id": kid
      })
      assert.deepStrictEqual(sp.spec?.ingress, [{
        _from: [{ ipBlock: { cidr: "192.168.1.0/24" } }],
        ports: [{ protocol: "TCP", port: 8080 }, { protocol: "TCP", port: 8081 }]
      }])
      // the runner ports are never among them, whatever the image declares
      const sneaky = buildServicePolicy({ ...input, servicePorts: [{ name: "x", protocol: "tcp", containerPort: 2000 }] }, ["0.0.0.0/0"], "u")
      assert.isUndefined(sneaky)
      assert.isUndefined(buildServicePolicy({ ...input, servicePorts: [] }, ["0.0.0.0/0"], "u"))
      assert.isUndefined(buildServicePolicy(input, [], "u"))
    }))

  it.effect("service: externalTrafficPolicy Local keeps the client's address for the fence (no SNAT through another node)", () =>
    Effect.gen(function*() {
      const svc = buildService(yield* inputOf, ports, "pod-uid")
      assert.strictEqual(svc.spec?.externalTrafficPolicy, "Local")
    }))

  it("classifies pods being created and pods that ended", () => {
    const waiting = (reason: string) => ({
      status: { phase: "Pending", containerStatuses: [{ name: "kernel", image: "img", imageID: "", ready: false, restartCount: 0, state: { waiting: { reason, message: "m" } } }] }
    })
    assert.strictEqual(classifyCreating(waiting("ErrImagePull"))._tag, "ImagePullFailed")
    assert.strictEqual(classifyCreating(waiting("ImagePullBackOff"))._tag, "ImagePullFailed")
    assert.strictEqual(classifyCreating(waiting("CreateContainerConfigError"))._tag, "Failed")
    assert.strictEqual(classifyCreating(waiting("ContainerCreating"))._tag, "Pending")
    const unsched = classifyCreating({
      status: { phase: "Pending", conditions: [{ type: "PodScheduled", status: "False", reason: "Unschedulable", message: "0/2 nodes: Insufficient nvidia.com/gpu" }] }
    })
    assert.deepStrictEqual(unsched, { _tag: "Unschedulable", message: "0/2 nodes: Insufficient nvidia.com/gpu" })
    const running = classifyCreating({
      status: { phase: "Running", hostIP: "10.0.0.1", podIP: "10.244.1.7", containerStatuses: [{ name: "k", image: "i", imageID: "", ready: true, restartCount: 0, state: { running: {} } }] }
    })
    assert.deepStrictEqual(running, { _tag: "Running", hostIP: "10.0.0.1", podIP: "10.244.1.7" })
    // Running without its pod address yet is not Running for the agent (pod-ip mode connects to it)
    const noPodIP = classifyCreating({
      status: { phase: "Running", hostIP: "10.0.0.1", containerStatuses: [{ name: "k", image: "i", imageID: "", ready: true, restartCount: 0, state: { running: {} } }] }
    })
    assert.strictEqual(noPodIP._tag, "Pending")
    const failed = {
      status: { phase: "Failed", containerStatuses: [{ name: "k", image: "i", imageID: "", ready: false, restartCount: 0, state: { terminated: { exitCode: 137, reason: "OOMKilled" } } }] }
    }
    assert.deepStrictEqual(endedReason(failed, false), Option.some({ reason: "oom-killed", exitCode: 137 }))
    assert.deepStrictEqual(endedReason({ status: { phase: "Failed", reason: "Evicted" } }, false), Option.some({ reason: "force-terminated", exitCode: null }))
    assert.deepStrictEqual(endedReason({ status: { phase: "Running" } }, true), Option.some({ reason: "force-terminated", exitCode: null }))
    assert.isTrue(Option.isNone(endedReason({ status: { phase: "Running" } }, false)))
  })
})

describe("NodePorts", () => {
  it("reads the API server's NodePort messages", () => {
    assert.deepStrictEqual(
      allocatedPortsIn(`Service "kernel-x" is invalid: [spec.ports[0].nodePort: Invalid value: 30001: provided port is already allocated, spec.ports[2].nodePort: Invalid value: 30007: provided port is already allocated]`),
      [30001, 30007]
    )
    assert.deepStrictEqual(
      clusterRangeIn("spec.ports[0].nodePort: Invalid value: 40000: provided port is not in the valid range. The range of valid ports is 30000-32767"),
      [30000, 32767]
    )
  })

  it.effect("reserves distinct ports, never foreign or ours twice, and fails when the range is exhausted", () =>
    Effect.gen(function*() {
      const np = yield* NodePorts.make([30000, 30009])
      yield* np.markForeign([30003])
      const a = yield* np.reserve(4)
      const b = yield* np.reserve(5)
      const all = [...a, ...b]
      assert.strictEqual(new Set(all).size, 9)
      assert.isFalse(all.includes(30003))
      const e = yield* np.reserve(1).pipe(Effect.flip)
      assert.strictEqual(e._tag, "NoFreeNodePort")
      yield* np.release(a)
      assert.strictEqual((yield* np.reserve(4)).length, 4)
    }))
})
