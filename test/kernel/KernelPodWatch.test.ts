/**
 * The kernel-pod informer's decoder keeps, of each pod, what the pod watch's consumers read (PodWaits,
 * the Reconciler's watch, CreateFlow's progress text): every classification they make of a cached pod
 * equals the one of the full pod, while managedFields and the pod spec beyond `nodeName` and the
 * containers are not cached (1,000 kernel pods held 7.1 KiB each, 3.3 KiB of it managedFields).
 */
import { assert, describe, it } from "@effect/vitest"
import type * as k8s from "@kubernetes/client-node"
import { Effect, Exit } from "effect"
import { decodeKernelPod, keepKernelPod } from "../../src/kernel/lifecycle/KernelPodWatch.ts"
import { classifyCreating, describePod, endedReason, isReadyMarked, kernelIdOf, podAddresses, READY_ANNOTATION, RECOVERY_ANNOTATION, terminationOf } from "../../src/kube/KernelObjects.ts"

/** A kernel pod as the API server sends it (JSON), with the parts the agent never reads. */
const rawPod = (status: Record<string, unknown>, metadata: Record<string, unknown> = {}): Record<string, unknown> => ({
  kind: "Pod",
  apiVersion: "v1",
  metadata: {
    name: "kernel-k1",
    namespace: "bai",
    uid: "0b0e7c2a-1111-2222-3333-444455556666",
    resourceVersion: "4711",
    creationTimestamp: "2026-12-01T02:00:00Z",
    labels: { "app.kubernetes.io/managed-by": "bai-k8s-agent", "backend.ai/agent-id": "i-a", "backend.ai/kernel-id": "k1" },
    annotations: { [READY_ANNOTATION]: "2026-12-01T02:00:01Z", [RECOVERY_ANNOTATION]: "{\"kernelId\":\"k1\"}" },
    ownerReferences: [],
    managedFields: [{
      manager: "bai-k8s-agent",
      operation: "Update",
      apiVersion: "v1",
      time: "2026-12-01T02:00:00Z",
      fieldsType: "FieldsV1",
      fieldsV1: { "f:metadata": { "f:labels": { ".": {}, "f:backend.ai/kernel-id": {} } }, "f:spec": { "f:containers": { "k:{\"name\":\"kernel\"}": {} } } }
    }],
    ...metadata
  },
  spec: {
    nodeName: "node-1",
    containers: [{ name: "kernel", image: "lablup/python:3.6", resources: { requests: { cpu: "1" } } }],
    volumes: [{ name: "scratch", emptyDir: {} }],
    tolerations: [{ key: "node.kubernetes.io/not-ready", operator: "Exists", effect: "NoExecute", tolerationSeconds: 300 }],
    restartPolicy: "Never",
    schedulerName: "default-scheduler",
    dnsPolicy: "ClusterFirst",
    securityContext: {}
  },
  status
})

const running = { phase: "Running", hostIP: "10.0.0.1", hostIPs: [{ ip: "10.0.0.1" }], podIP: "10.1.0.5", podIPs: [{ ip: "10.1.0.5" }], startTime: "2026-12-01T02:00:00Z", conditions: [{ type: "Ready", status: "True" }, { type: "PodScheduled", status: "True" }], containerStatuses: [{ name: "kernel", image: "lablup/python:3.6", ready: true, restartCount: 0, imageID: "", state: { running: { startedAt: "2026-12-01T02:00:00Z" } } }] }
const cases: ReadonlyArray<readonly [string, Record<string, unknown>]> = [
  ["pending, not scheduled", rawPod({ phase: "Pending", conditions: [{ type: "PodScheduled", status: "False", reason: "Unschedulable", message: "0/4 nodes are available" }] })],
  ["pending, image pull", rawPod({ phase: "Pending", containerStatuses: [{ name: "kernel", image: "x:1", state: { waiting: { reason: "ErrImagePull", message: "not found" } } }] })],
  ["pending, container config", rawPod({ phase: "Pending", containerStatuses: [{ name: "kernel", image: "x:1", state: { waiting: { reason: "CreateContainerConfigError", message: "no secret" } } }] })],
  ["pending, creating", rawPod({ phase: "Pending", containerStatuses: [{ name: "kernel", image: "x:1", state: { waiting: { reason: "ContainerCreating" } } }] })],
  ["running", rawPod(running)],
  ["running, being deleted", rawPod(running, { deletionTimestamp: "2026-12-01T02:01:00Z", deletionGracePeriodSeconds: 30 })],
  ["evicted", rawPod({ phase: "Failed", reason: "Evicted", message: "low on memory" })],
  ["oom-killed", rawPod({ phase: "Failed", containerStatuses: [{ name: "kernel", image: "x:1", state: { terminated: { exitCode: 137, reason: "OOMKilled" } } }] })],
  ["exited, last state", rawPod({ phase: "Succeeded", containerStatuses: [{ name: "kernel", image: "x:1", state: {}, lastState: { terminated: { exitCode: 3, reason: "Error" } } }] })],
  ["no status", rawPod(undefined as never)]
]

const decode = (raw: unknown) => Effect.runSync(Effect.exit(decodeKernelPod(raw)))

describe("KernelPodWatch.decodeKernelPod", () => {
  it("reads the same as the full pod for every consumer of the pod watch", () => {
    for (const [name, raw] of cases) {
      const full = raw as k8s.V1Pod
      const exit = decode(raw)
      assert.isTrue(Exit.isSuccess(exit), name)
      const cached = (exit as Exit.Success<k8s.V1Pod>).value
      assert.deepStrictEqual(classifyCreating(cached), classifyCreating(full), name)
      assert.deepStrictEqual(describePod(cached), describePod(full), name)
      assert.deepStrictEqual(terminationOf(cached), terminationOf(full), name)
      for (const deleted of [false, true]) assert.deepStrictEqual(endedReason(cached, deleted), endedReason(full, deleted), name)
      assert.strictEqual(kernelIdOf(cached), kernelIdOf(full), name)
      assert.strictEqual(isReadyMarked(cached), isReadyMarked(full), name)
      assert.strictEqual(cached.metadata?.uid, full.metadata?.uid, name)
      assert.strictEqual(cached.metadata?.name, full.metadata?.name, name)
      assert.strictEqual(cached.metadata?.namespace, full.metadata?.namespace, name)
      assert.strictEqual(cached.metadata?.resourceVersion, full.metadata?.resourceVersion, name)
      assert.deepStrictEqual(podAddresses(cached), podAddresses(full), name)
      // every annotation but the recovery record (read from the API by adoption, never from this cache)
      const { [RECOVERY_ANNOTATION]: _recovery, ...annotations } = full.metadata?.annotations ?? {}
      assert.deepStrictEqual(cached.metadata?.annotations, annotations, name)
      assert.deepStrictEqual(cached.metadata?.deletionTimestamp, full.metadata?.deletionTimestamp, name)
      assert.strictEqual(cached.spec?.nodeName, full.spec?.nodeName, name)
      assert.deepStrictEqual(cached.spec?.containers, full.spec?.containers.map((c) => ({ name: c.name })), name)
      // the whole status but podIPs and hostIPs (podIP and hostIP are kept)
      if (full.status === undefined) assert.isUndefined(cached.status, name)
      else {
        const { podIPs: _podIPs, hostIPs: _hostIPs, ...status } = full.status
        assert.deepStrictEqual(cached.status, status, name)
      }
    }
  })

  // what no consumer reads of a listed kernel pod: the recovery record (376 of the 3,040 bytes a cached
  // pod held at 1,000 kernels), the containers' spec beyond their names (544 + the array's), podIPs (248), hostIPs
  it("caches neither the recovery record nor the containers' spec beyond their names nor podIPs and hostIPs", () => {
    const raw = rawPod(running)
    const cached = (decode(raw) as Exit.Success<k8s.V1Pod>).value
    assert.isTrue(RECOVERY_ANNOTATION in ((raw.metadata as k8s.V1ObjectMeta).annotations ?? {}))
    assert.deepStrictEqual(cached.metadata?.annotations, { [READY_ANNOTATION]: "2026-12-01T02:00:01Z" })
    assert.deepStrictEqual(cached.spec?.containers, [{ name: "kernel" }])
    assert.isFalse("podIPs" in (cached.status ?? {}))
    assert.isFalse("hostIPs" in (cached.status ?? {}))
    assert.strictEqual(cached.status?.podIP, "10.1.0.5")
    assert.strictEqual(cached.status?.hostIP, "10.0.0.1")
    // a pod with no annotation but the recovery record keeps an empty annotations object (no key invented, none lost)
    const onlyRecovery = rawPod(running, { annotations: { [RECOVERY_ANNOTATION]: "{}" } })
    assert.deepStrictEqual((decode(onlyRecovery) as Exit.Success<k8s.V1Pod>).value.metadata?.annotations, {})
  })

  it("caches no managedFields and nothing else of the spec", () => {
    const exit = decode(rawPod(running))
    assert.isTrue(Exit.isSuccess(exit))
    const cached = (exit as Exit.Success<k8s.V1Pod>).value
    assert.deepStrictEqual(Object.keys(cached).sort(), ["metadata", "spec", "status"])
    assert.deepStrictEqual(Object.keys(cached.metadata ?? {}).sort(), ["annotations", "labels", "name", "namespace", "resourceVersion", "uid"])
    assert.deepStrictEqual(Object.keys(cached.spec ?? {}).sort(), ["containers", "nodeName"])
    const deleting = decode(rawPod(running, { deletionTimestamp: "2026-12-01T02:01:00Z", deletionGracePeriodSeconds: 30 }))
    assert.deepStrictEqual(
      Object.keys((deleting as Exit.Success<k8s.V1Pod>).value.metadata ?? {}).sort(),
      ["annotations", "deletionGracePeriodSeconds", "deletionTimestamp", "labels", "name", "namespace", "resourceVersion", "uid"]
    )
    // nothing invented: a pod without spec or metadata stays without
    const bare = decode({ status: { phase: "Pending" } })
    assert.deepStrictEqual((bare as Exit.Success<k8s.V1Pod>).value, { status: { phase: "Pending" } })
  })

  it("refuses what is not a pod, as before (and, now, labels or annotations that are not objects)", () => {
    for (const bad of [null, "pod", 1, [], { metadata: [] }, { metadata: "x" }, { spec: 3 }, { status: null }, { status: [] }, { metadata: { labels: [] }, spec: {}, status: {} }]) {
      assert.isTrue(Exit.isFailure(decode(bad)), JSON.stringify(bad))
    }
  })
})

describe("KernelPodWatch.keepKernelPod (what a list page keeps)", () => {
  it("decodes to what the whole pod decodes to, and keeps no managedFields, recovery record or containers' spec", () => {
    for (const [name, raw] of cases) {
      const kept = keepKernelPod(structuredClone(raw) as k8s.V1Pod)
      assert.deepStrictEqual(decode(kept), decode(raw), name)
      assert.isFalse("managedFields" in (kept.metadata ?? {}), name)
      assert.isFalse(RECOVERY_ANNOTATION in (kept.metadata?.annotations ?? {}), name)
      assert.deepStrictEqual(kept.spec?.containers, [{ name: "kernel" }], name)
    }
  })

  it("leaves what is not a pod as it came, for the decoder to refuse", () => {
    for (const bad of [null, "pod", 1, [], { metadata: [] }, { metadata: "x" }, { spec: 3 }, { status: null }, { metadata: { labels: [] }, spec: {}, status: {} }]) {
      assert.strictEqual(keepKernelPod(bad as k8s.V1Pod), bad as unknown, JSON.stringify(bad))
      assert.isTrue(Exit.isFailure(decode(keepKernelPod(bad as k8s.V1Pod))), JSON.stringify(bad))
    }
  })
})
