// create_kernel / destroy_kernel / restart_kernel on the testbed: real kube-apiserver, scheduler,
// simulated kubelet (runner processes behind NodePorts), etcd; kubectl observes, a ZeroMQ PULL socket
// plays the manager's event receiver.
import { assert, describe, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Fiber, Schedule, Scope } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { inject } from "vitest"
import { KernelLifecycle } from "../../src/kernel/KernelLifecycle.ts"
import { KernelTable } from "../../src/kernel/KernelTable.ts"
import { RunnerConnections } from "../../src/kernel/runner/RunnerConnections.ts"
import { KubeClient, type KubeClientShape } from "../../src/kube/KubeClient.ts"
import { NodePorts } from "../../src/kube/NodePorts.ts"
import { EtcdError, type EtcdShape } from "../../src/manager/Etcd.ts"
import type { TestbedEnv } from "../testbed/env.ts"
import {
  eventually,
  kernelObjects,
  kubectl,
  kubectlJson,
  lifecycleLayer,
  makeSite,
  pythonConfig,
  startAgent,
  takeEvent,
  eventsUntil
} from "./KernelLifecycleSupport.ts"

const env: TestbedEnv = inject("testbed")
const T = { timeout: 180_000 }

const none = (xs: ReadonlyArray<string>) => xs.length === 0

describe("KernelLifecycle on the testbed", () => {
  it.live("create → objects as specified, Running, runner answers through the NodePort; destroy → nothing left, kernel_terminated", () =>
    Effect.gen(function*() {
      const site = yield* makeSite(env)
      const kid = crypto.randomUUID()
      const result = yield* Effect.gen(function*() {
        const lifecycle = yield* KernelLifecycle
        const result = yield* lifecycle.create(kid, pythonConfig(env))
        // events in order
        assert.strictEqual((yield* takeEvent(site, "kernel_preparing", kid)).name, "kernel_preparing")
        assert.strictEqual((yield* takeEvent(site, "kernel_creating", kid)).name, "kernel_creating")
        assert.strictEqual((yield* takeEvent(site, "kernel_started", kid)).name, "kernel_started")

        // the result dict (spec §2.3)
        assert.strictEqual(result.id, kid)
        assert.include(env.nodes.map((n) => n.ip), result.kernel_host)
        assert.isAtLeast(result.repl_in_port, 30000)
        assert.isAtMost(result.repl_in_port, 31000)
        assert.deepStrictEqual(result.service_ports.map((p) => [p.name, p.protocol, p.container_port]), [
          ["jupyter", "http", 8080],
          ["myapp", "tcp", 8081]
        ])
        assert.strictEqual(result.stdin_port, 0)

        // objects, seen by kubectl
        const pod = yield* kubectlJson(env, ["-n", site.kubeNs, "get", "pod", `kernel-${kid}`])
        assert.strictEqual(pod.metadata.labels["app.kubernetes.io/managed-by"], "bai-k8s-agent")
        assert.strictEqual(pod.metadata.labels["backend.ai/agent-id"], site.agentId)
        assert.strictEqual(pod.metadata.labels["backend.ai/kernel-id"], kid)
        assert.strictEqual(result.container_id, pod.metadata.uid)
        assert.strictEqual(pod.status.phase, "Running")
        assert.strictEqual(pod.status.hostIP, result.kernel_host)
        assert.strictEqual(pod.spec.restartPolicy, "Never")
        assert.deepStrictEqual(pod.spec.imagePullSecrets, [{ name: "backend-ai-registry-secret" }])
        const c = pod.spec.containers[0]
        assert.strictEqual(c.image, `${env.registry.host}/lablup/python:3.6-ubuntu18.04`)
        assert.deepStrictEqual(c.resources.limits, { cpu: "1", memory: "268435456" })
        assert.deepStrictEqual(c.resources.requests, c.resources.limits)
        assert.strictEqual(c.securityContext.privileged, false)
        const envOf = Object.fromEntries(c.env.map((e: { name: string; value: string }) => [e.name, e.value]))
        assert.strictEqual(envOf.FOO, "bar")
        assert.strictEqual(envOf.OMP_NUM_THREADS, "1")
        const work = pod.spec.volumes.find((v: { name: string }) => v.name === "work")
        assert.strictEqual(work.hostPath.path, path.join(site.scratchRoot, kid, "work"))
        assert.isTrue(fs.existsSync(path.join(site.scratchRoot, kid, "work")))
        assert.isDefined(pod.metadata.annotations["backend.ai/ready-at"])
        const recovery = JSON.parse(pod.metadata.annotations["backend.ai/kernel"])
        assert.strictEqual(recovery.replInPort, result.repl_in_port)

        const svc = yield* kubectlJson(env, ["-n", site.kubeNs, "get", "service", `kernel-${kid}`])
        assert.strictEqual(svc.spec.type, "NodePort")
        assert.deepStrictEqual(
          svc.spec.ports.map((p: { port: number; nodePort: number }) => [p.port, p.nodePort]),
          [[2000, result.repl_in_port], [2001, result.repl_out_port], ...result.service_ports.map((p) => [p.container_port, p.host_port])]
        )
        assert.deepStrictEqual(svc.metadata.ownerReferences.map((o: { kind: string; uid: string }) => [o.kind, o.uid]), [["Pod", pod.metadata.uid]])
        const cm = yield* kubectlJson(env, ["-n", site.kubeNs, "get", "configmap", `kernel-${kid}`])
        assert.strictEqual(cm.data.environ, "FOO=bar\n")
        assert.match(cm.data.resource, /^CID=.*\nSCRATCH_SIZE=0m\nMOUNTS=\nSLOTS=\{"cpu":"1","mem":"268435456"\}\nIDLE_TIMEOUT=0\nCPU_SHARES=0:1\nMEM_SHARES=root:256m\n$/)
        assert.deepStrictEqual(cm.metadata.ownerReferences.map((o: { uid: string }) => o.uid), [pod.metadata.uid])

        // the runner answers through the NodePort on the node IP (the agent's own connection: a second
        // PULL peer would get only every other record from the runner's PUSH socket)
        const runners = yield* RunnerConnections
        const conn = yield* runners.get(kid)
        assert.deepStrictEqual(conn.endpoint, { host: result.kernel_host, replInPort: result.repl_in_port, replOutPort: result.repl_out_port })
        const st = yield* conn.status("10 seconds")
        assert.isNumber(st.startedAt)

        // idempotent: same id → same kernel
        const again = yield* lifecycle.create(kid, pythonConfig(env))
        assert.deepStrictEqual(again, result)

        // destroy → nothing with the kernel's label remains, kernel_terminated(kid, user-requested, …)
        yield* lifecycle.destroy(kid, "user-requested")
        const term = yield* takeEvent(site, "kernel_terminated", kid)
        assert.strictEqual(term.args[1], "user-requested")
        assert.deepStrictEqual(yield* kernelObjects(env, site.kubeNs, kid), [])
        assert.isFalse(fs.existsSync(path.join(site.scratchRoot, kid)))
        // a second destroy is harmless; an id never known answers None after reporting it
        // kernel_terminated(kid, "self-terminated", None), as the 19.06 Docker agent does (so the
        // manager releases the session instead of leaving it in ERROR)
        assert.isNull(yield* lifecycle.destroy(kid, "user-requested"))
        const stranger = crypto.randomUUID()
        assert.isNull(yield* lifecycle.destroy(stranger, "user-requested"))
        const selfTerm = yield* takeEvent(site, "kernel_terminated", stranger)
        assert.deepStrictEqual(selfTerm.args, [stranger, "self-terminated", null])
        const registry = yield* KernelTable
        assert.strictEqual((yield* registry.list).length, 0)
        return result
      }).pipe(Effect.provide(lifecycleLayer(site)))
      void result
    }).pipe(Effect.scoped), T)

  it.live("concurrent creates of one id share one create", () =>
    Effect.gen(function*() {
      const site = yield* makeSite(env)
      const kid = crypto.randomUUID()
      yield* Effect.gen(function*() {
        const lifecycle = yield* KernelLifecycle
        const results = yield* Effect.all([1, 2, 3].map(() => lifecycle.create(kid, pythonConfig(env))), { concurrency: 3 })
        assert.deepStrictEqual(results[1], results[0])
        assert.deepStrictEqual(results[2], results[0])
        const pods = yield* kubectlJson(env, ["-n", site.kubeNs, "get", "pods", "-l", `backend.ai/kernel-id=${kid}`])
        assert.strictEqual(pods.items.length, 1)
        // destroys in parallel: both succeed, one event
        yield* Effect.all([lifecycle.destroy(kid, "user-requested"), lifecycle.destroy(kid, "user-requested")], { concurrency: 2 })
        assert.deepStrictEqual(yield* kernelObjects(env, site.kubeNs, kid), [])
        // counted up to a marker: a destroy of an id never known is reported after them (events leave
        // in order on one socket), so a duplicate for kid would be seen before the marker's event
        const marker = crypto.randomUUID()
        assert.isNull(yield* lifecycle.destroy(marker, "user-requested"))
        const seen = yield* eventsUntil(site, "kernel_terminated", marker)
        const terminations = seen.filter((e) => e.name === "kernel_terminated" && e.args[0] === kid)
        assert.strictEqual(terminations.length, 1, JSON.stringify(seen.map((e) => [e.name, e.args[0]])))
        assert.strictEqual(terminations[0]!.args[1], "user-requested")
      }).pipe(Effect.provide(lifecycleLayer(site)))
    }).pipe(Effect.scoped), T)

  it.live("bad config, missing image tag, unschedulable: typed errors and zero objects", () =>
    Effect.gen(function*() {
      const site = yield* makeSite(env)
      yield* Effect.gen(function*() {
        const lifecycle = yield* KernelLifecycle
        const bad = crypto.randomUUID()
        const e1 = yield* lifecycle.create(bad, { image: { canonical: "" }, resource_slots: { cpu: "x" } }).pipe(Effect.flip)
        assert.strictEqual(e1._tag, "InvalidKernelConfig")
        assert.deepStrictEqual(yield* kernelObjects(env, site.kubeNs, bad), [])
        const badPorts = yield* lifecycle.create(bad, pythonConfig(env, {
          image: { canonical: "index.docker.io/lablup/python:3.6-ubuntu18.04", labels: { "ai.backend.service-ports": "x:tcp:2000" } }
        })).pipe(Effect.flip)
        assert.strictEqual(badPorts._tag, "InvalidKernelConfig")

        const missing = crypto.randomUUID()
        const e2 = yield* lifecycle.create(missing, pythonConfig(env, {
          image: { canonical: "index.docker.io/lablup/python:9.9-nonexistent", labels: {} }
        })).pipe(Effect.flip)
        assert.strictEqual(e2._tag, "ImagePullFailed", JSON.stringify(e2))
        if (e2._tag === "ImagePullFailed") assert.include(["ErrImagePull", "ImagePullBackOff"], e2.reason)
        assert.deepStrictEqual(yield* kernelObjects(env, site.kubeNs, missing), [])

        const greedy = crypto.randomUUID()
        const e3 = yield* lifecycle.create(greedy, pythonConfig(env, { resource_slots: { cpu: "1", mem: "268435456", "cuda.device": "16" } })).pipe(Effect.flip)
        assert.strictEqual(e3._tag, "Unschedulable", JSON.stringify(e3))
        if (e3._tag === "Unschedulable") assert.match(e3.message, /nvidia\.com\/gpu/)
        assert.deepStrictEqual(yield* kernelObjects(env, site.kubeNs, greedy), [])
        assert.isFalse(fs.existsSync(path.join(site.scratchRoot, greedy)))
        const registry = yield* KernelTable
        assert.strictEqual((yield* registry.list).length, 0)
      }).pipe(Effect.provide(lifecycleLayer(site, { })))
    }).pipe(Effect.scoped), T)

  it.live("a create interrupted half-way (agent shutdown) leaves zero objects", () =>
    Effect.gen(function*() {
      const site = yield* makeSite(env)
      const kid = crypto.randomUUID()
      const agent = yield* startAgent(site)
      const lifecycle = Context.get(agent.context, KernelLifecycle)
      const fiber = yield* lifecycle.create(kid, pythonConfig(env)).pipe(Effect.forkChild)
      // wait until the pod exists, then stop the agent
      yield* eventually(kernelObjects(env, site.kubeNs, kid), (xs) => xs.some((x) => x.startsWith("Pod/")), 30)
      yield* Scope.close(agent.scope, Exit.void)
      const exit = yield* Fiber.await(fiber)
      assert.isTrue(Exit.isFailure(exit))
      assert.deepStrictEqual(yield* kernelObjects(env, site.kubeNs, kid), [])
      assert.isFalse(fs.existsSync(path.join(site.scratchRoot, kid)))
    }).pipe(Effect.scoped), T)

  it.live("restart keeps the kernel id and scratch dir, with a new pod and ports", () =>
    Effect.gen(function*() {
      const site = yield* makeSite(env)
      const kid = crypto.randomUUID()
      yield* Effect.gen(function*() {
        const lifecycle = yield* KernelLifecycle
        const first = yield* lifecycle.create(kid, pythonConfig(env))
        fs.writeFileSync(path.join(site.scratchRoot, kid, "work", "keep.txt"), "kept")
        const second = yield* lifecycle.restart(kid, pythonConfig(env))
        assert.notStrictEqual(second.container_id, first.container_id)
        assert.strictEqual(fs.readFileSync(path.join(site.scratchRoot, kid, "work", "keep.txt"), "utf8"), "kept")
        const pods = yield* kubectlJson(env, ["-n", site.kubeNs, "get", "pods", "-l", `backend.ai/kernel-id=${kid}`])
        assert.deepStrictEqual(pods.items.map((p) => p.metadata.uid), [second.container_id])
        const runners = yield* RunnerConnections
        const conn = yield* runners.get(kid)
        yield* conn.status("10 seconds")
        yield* lifecycle.destroy(kid, "user-requested")
        assert.deepStrictEqual(yield* kernelObjects(env, site.kubeNs, kid), [])
      }).pipe(Effect.provide(lifecycleLayer(site)))
    }).pipe(Effect.scoped), T)

  it.live("restart as manager 19.06 sends it (mounts: [], no idle_timeout) keeps the old kernel's vfolders and idle timeout", () =>
    Effect.gen(function*() {
      const site = yield* makeSite(env)
      const kid = crypto.randomUUID()
      yield* Effect.gen(function*() {
        const lifecycle = yield* KernelLifecycle
        const folderId = crypto.randomUUID().replaceAll("-", "")
        yield* lifecycle.create(kid, pythonConfig(env, { mounts: [["vf1", "local", folderId, "rw"]], idle_timeout: 600 }))
        // manager 19.06 registry.py 819–834: `'mounts': [],  # recovered from container config`, no idle_timeout
        const { idle_timeout: _omitted, ...restartBody } = pythonConfig(env, { mounts: [] })
        const second = yield* lifecycle.restart(kid, restartBody)
        const pod = yield* kubectlJson(env, ["-n", site.kubeNs, "get", "pod", `kernel-${kid}`])
        assert.strictEqual(pod.metadata.uid, second.container_id)
        const mounts = pod.spec.containers[0].volumeMounts.map((m: { mountPath: string }) => m.mountPath)
        assert.include(mounts, "/home/work/vf1", JSON.stringify(mounts))
        const cm = yield* kubectlJson(env, ["-n", site.kubeNs, "get", "configmap", `kernel-${kid}`])
        assert.match(cm.data.resource, /\nMOUNTS=vf1:rw\n/)
        assert.match(cm.data.resource, /\nIDLE_TIMEOUT=600\n/)
        const info = yield* (yield* KernelTable).get(kid)
        assert.strictEqual(info.idleTimeout, 600)
        // a restart that does send mounts and an idle timeout gets those
        yield* lifecycle.restart(kid, pythonConfig(env, { mounts: [], idle_timeout: 30 }))
        assert.strictEqual((yield* (yield* KernelTable).get(kid)).idleTimeout, 30)
        yield* lifecycle.destroy(kid, "user-requested")
      }).pipe(Effect.provide(lifecycleLayer(site)))
    }).pipe(Effect.scoped), T)

  it.live("create_kernel of a ready kernel this agent does not know adopts it and keeps its scratch dir", () =>
    Effect.gen(function*() {
      const site = yield* makeSite(env)
      const kid = crypto.randomUUID()
      // agent A creates the kernel and stops (detach); the user's files are in the scratch dir
      const a = yield* startAgent(site)
      const first = yield* Context.get(a.context, KernelLifecycle).create(kid, pythonConfig(env))
      yield* Scope.close(a.scope, Exit.void)
      fs.writeFileSync(path.join(site.scratchRoot, kid, "work", "keep.txt"), "kept")
      // agent B (no reconciler) gets the same create_kernel: the existing pod is adopted
      yield* Effect.gen(function*() {
        const lifecycle = yield* KernelLifecycle
        const again = yield* lifecycle.create(kid, pythonConfig(env))
        assert.strictEqual(again.container_id, first.container_id)
        assert.isTrue(fs.existsSync(path.join(site.scratchRoot, kid, "work", "keep.txt")))
        yield* lifecycle.destroy(kid, "user-requested")
      }).pipe(Effect.provide(lifecycleLayer(site)))
    }).pipe(Effect.scoped), T)

  it.live("a restart whose new pod fails: kernel_terminated, scratch dir removed, a later destroy is harmless", () =>
    Effect.gen(function*() {
      const site = yield* makeSite(env)
      const kid = crypto.randomUUID()
      yield* Effect.gen(function*() {
        const lifecycle = yield* KernelLifecycle
        yield* lifecycle.create(kid, pythonConfig(env))
        const e = yield* lifecycle.restart(kid, pythonConfig(env, {
          image: { canonical: "index.docker.io/lablup/python:9.9-nonexistent", labels: {} }
        })).pipe(Effect.flip)
        assert.strictEqual(e._tag, "ImagePullFailed", JSON.stringify(e))
        const term = yield* takeEvent(site, "kernel_terminated", kid)
        assert.strictEqual(term.args[1], "restart-failed")
        assert.deepStrictEqual(yield* kernelObjects(env, site.kubeNs, kid), [])
        assert.isFalse(fs.existsSync(path.join(site.scratchRoot, kid)))
        assert.strictEqual((yield* (yield* KernelTable).list).length, 0)
        assert.deepStrictEqual([...(yield* (yield* NodePorts).inUse)], [])
        // the manager's destroy_kernel afterwards
        yield* lifecycle.destroy(kid, "user-requested")
      }).pipe(Effect.provide(lifecycleLayer(site)))
    }).pipe(Effect.scoped), T)

  it.live("idle kernels are destroyed with reason idle-timeout", () =>
    Effect.gen(function*() {
      const site = yield* makeSite(env)
      const kid = crypto.randomUUID()
      yield* Effect.gen(function*() {
        const lifecycle = yield* KernelLifecycle
        yield* lifecycle.create(kid, pythonConfig(env, { idle_timeout: 1 }))
        // reaper passes until the kernel has left the registry (bounded): no sleep standing in for
        // "more than a second has passed"
        const registry = yield* KernelTable
        const known = registry.list.pipe(Effect.map((ks) => ks.some((k) => k.kernelId === kid)))
        const stillKnown = yield* lifecycle.reapIdle.pipe(
          Effect.andThen(known),
          Effect.repeat({ until: (k) => !k, schedule: Schedule.spaced("200 millis") }),
          Effect.timeoutOrElse({ duration: "30 seconds", orElse: () => Effect.succeed(true) })
        )
        assert.isFalse(stillKnown, "reapIdle passes did not destroy a kernel idle for more than its 1 s idle_timeout within 30 s")
        const term = yield* takeEvent(site, "kernel_terminated", kid)
        assert.strictEqual(term.args[1], "idle-timeout")
        assert.deepStrictEqual(yield* kernelObjects(env, site.kubeNs, kid), [])
      }).pipe(Effect.provide(lifecycleLayer(site)))
    }).pipe(Effect.scoped), T)

  it.live("kubectl delete of a kernel's pod → its objects removed, kernel_terminated(force-terminated)", () =>
    Effect.gen(function*() {
      const site = yield* makeSite(env)
      const kid = crypto.randomUUID()
      yield* Effect.gen(function*() {
        const lifecycle = yield* KernelLifecycle
        yield* lifecycle.create(kid, pythonConfig(env))
        yield* kubectl(env, ["-n", site.kubeNs, "delete", "pod", `kernel-${kid}`, "--wait=false"])
        const term = yield* takeEvent(site, "kernel_terminated", kid)
        assert.strictEqual(term.args[1], "force-terminated")
        const left = yield* eventually(kernelObjects(env, site.kubeNs, kid), none)
        assert.deepStrictEqual(left, [])
        const registry = yield* KernelTable
        assert.strictEqual((yield* registry.list).length, 0)
      }).pipe(Effect.provide(lifecycleLayer(site, { withReconciler: true })))
    }).pipe(Effect.scoped), T)

  it.live("the live-kernel record is written beside the scratch dir and the NodePorts, and precedes the pod", () =>
    Effect.gen(function*() {
      const site = yield* makeSite(env)
      const kid = crypto.randomUUID()
      const recordAsked = yield* Deferred.make<void>()
      const recordGate = yield* Deferred.make<void>()
      // the record's etcd write waits for the gate (then goes to the real etcd)
      const recordsEtcd = (etcd: EtcdShape): EtcdShape => ({
        ...etcd,
        put: (key, value, scope) =>
          key === `kernels/${kid}` && value.includes("live")
            ? Deferred.succeed(recordAsked, undefined).pipe(Effect.andThen(Deferred.await(recordGate)), Effect.andThen(etcd.put(key, value, scope)))
            : etcd.put(key, value, scope)
      })
      yield* Effect.gen(function*() {
        const lifecycle = yield* KernelLifecycle
        const create = yield* lifecycle.create(kid, pythonConfig(env)).pipe(Effect.forkScoped)
        yield* Deferred.await(recordAsked).pipe(Effect.timeout("30 seconds"))
        // while the record is being written: the scratch dir is made and the NodePorts are reserved…
        const scratchDir = path.join(site.scratchRoot, kid)
        assert.isTrue(yield* eventually(Effect.sync(() => fs.existsSync(scratchDir)), (made) => made), "scratch dir made beside the record")
        const reserved = yield* eventually((yield* NodePorts).inUse, (ports) => ports.size === 4)
        assert.strictEqual(reserved.size, 4)
        // …but no pod exists before the record does
        assert.deepStrictEqual(yield* kernelObjects(env, site.kubeNs, kid), [])
        yield* Deferred.succeed(recordGate, undefined)
        const result = yield* Fiber.join(create)
        assert.strictEqual(result.id, kid)
        assert.include(yield* kernelObjects(env, site.kubeNs, kid), `Pod/kernel-${kid}`)
      }).pipe(Effect.provide(lifecycleLayer(site, { recordsEtcd })))
    }).pipe(Effect.scoped), T)

  it.live("a record that cannot be written fails the create with nothing left (scratch dir, NodePorts, pod)", () =>
    Effect.gen(function*() {
      const site = yield* makeSite(env)
      const kid = crypto.randomUUID()
      const recordsEtcd = (etcd: EtcdShape): EtcdShape => ({
        ...etcd,
        put: (key, value, scope) =>
          key === `kernels/${kid}`
            ? Effect.fail(new EtcdError({ reason: "Unavailable", operation: `put ${key}`, message: "etcd refused (test)" }))
            : etcd.put(key, value, scope)
      })
      yield* Effect.gen(function*() {
        const e = yield* (yield* KernelLifecycle).create(kid, pythonConfig(env)).pipe(Effect.flip)
        assert.strictEqual(e._tag, "KernelCreationFailed", JSON.stringify(e))
        assert.strictEqual(e._tag === "KernelCreationFailed" ? e.reason : "", "EtcdUnavailable")
        assert.isFalse(fs.existsSync(path.join(site.scratchRoot, kid)))
        assert.deepStrictEqual([...(yield* (yield* NodePorts).inUse)], [])
        assert.deepStrictEqual(yield* kernelObjects(env, site.kubeNs, kid), [])
        assert.strictEqual((yield* (yield* KernelTable).list).length, 0)
      }).pipe(Effect.provide(lifecycleLayer(site, { recordsEtcd })))
    }).pipe(Effect.scoped), T)

  it.live("creates and destroys follow the agent's one pod watch (shared with the Reconciler), none of their own", () =>
    Effect.gen(function*() {
      const site = yield* makeSite(env)
      const podWatches: Array<Readonly<Record<string, unknown>>> = []
      const kube = (real: KubeClientShape): KubeClientShape => ({
        ...real,
        watch: (p, q) => {
          if (p.endsWith("/pods")) podWatches.push({ ...q })
          return real.watch(p, q)
        }
      })
      const kids = [crypto.randomUUID(), crypto.randomUUID()]
      yield* Effect.gen(function*() {
        const lifecycle = yield* KernelLifecycle
        yield* Effect.forEach(kids, (kid) => lifecycle.create(kid, pythonConfig(env)), { concurrency: 2 })
        yield* Effect.forEach(kids, (kid) => lifecycle.destroy(kid, "user-requested"), { concurrency: 2 })
        for (const kid of kids) assert.deepStrictEqual(yield* kernelObjects(env, site.kubeNs, kid), [])
      }).pipe(Effect.provide(lifecycleLayer(site, { withReconciler: true, kube })))
      assert.isAbove(podWatches.length, 0)
      for (const q of podWatches) {
        assert.isUndefined(q.fieldSelector, JSON.stringify(q))
        assert.strictEqual(q.labelSelector, `app.kubernetes.io/managed-by=bai-k8s-agent,backend.ai/agent-id=${site.agentId}`)
      }
    }).pipe(Effect.scoped), T)

  it.live("start-up probe: a port-range outside the cluster's NodePort range is reported, no probe left behind", () =>
    Effect.gen(function*() {
      const site = yield* makeSite(env)
      const kube = yield* KubeClient.make({ kubeconfig: env.kubeconfig, requestTimeoutSeconds: 10 })
      const bad = yield* NodePorts.checkClusterRange(kube, site.kubeNs, [40000, 40010])
      assert.match(bad ?? "", /outside the cluster's NodePort range 30000-32767/)
      const good = yield* NodePorts.checkClusterRange(kube, site.kubeNs, [30000, 31000])
      assert.isUndefined(good)
      const svcs = yield* kubectlJson(env, ["-n", site.kubeNs, "get", "services"])
      assert.deepStrictEqual(svcs.items, [])
    }).pipe(Effect.scoped), T)
})
