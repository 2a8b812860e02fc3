// Start-up reconciliation on the testbed: an agent stops (detaching its kernels), objects are left
// half-made or orphaned, a new agent process-equivalent starts with the reconciler: ready kernels are
// adopted and usable, the rest is torn down; nothing is reported terminated by mistake.
import { assert, describe, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Option, Scope, Stream } from "effect"
import { Etcd3 } from "etcd3"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { inject } from "vitest"
import { KernelLifecycle } from "../../src/kernel/KernelLifecycle.ts"
import { KernelTable } from "../../src/kernel/KernelTable.ts"
import { RunnerConnections } from "../../src/kernel/runner/RunnerConnections.ts"
import type { KubeClientShape, KubeError } from "../../src/kube/KubeClient.ts"
import type { EtcdShape } from "../../src/manager/Etcd.ts"
import { cachelessApiserver, compactEtcd } from "../kube/CachelessApiserver.ts"
import type { TestbedEnv } from "../testbed/env.ts"
import { eventually, kernelObjects, kubectl, kubectlJson, labelledObjects, makeSite, pythonConfig, startAgent, takeEvent } from "./KernelLifecycleSupport.ts"

const env: TestbedEnv = inject("testbed")

const apply = (manifest: unknown) =>
  Effect.gen(function*() {
    const file = path.join(os.tmpdir(), `bai-rec-${crypto.randomUUID()}.json`)
    fs.writeFileSync(file, JSON.stringify(manifest))
    yield* kubectl(env, ["apply", "-f", file]).pipe(Effect.ensuring(Effect.sync(() => fs.rmSync(file, { force: true }))))
  })

describe("Reconciler on the testbed", () => {
  it.live("adopts ready kernels after a restart, tears down half-created ones and orphans", () =>
    Effect.gen(function*() {
      const site = yield* makeSite(env)
      const labels = (kid: string) => ({
        "app.kubernetes.io/managed-by": "bai-k8s-agent",
        "backend.ai/agent-id": site.agentId,
        "backend.ai/kernel-id": kid
      })

      // agent A creates a kernel, then stops: the kernel is detached, not deleted
      const a = yield* startAgent(site)
      const kid = crypto.randomUUID()
      const created = yield* Context.get(a.context, KernelLifecycle).create(kid, pythonConfig(env))
      yield* Scope.close(a.scope, Exit.void)
      assert.strictEqual((yield* kernelObjects(env, site.kubeNs, kid)).length, 3)

      // leftovers: a half-created pod (no ready mark) and an orphan Service and ConfigMap
      const half = crypto.randomUUID()
      yield* apply({
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: `kernel-${half}`, namespace: site.kubeNs, labels: labels(half) },
        spec: { restartPolicy: "Never", containers: [{ name: "kernel", image: `${env.registry.host}/lablup/lua:5.3-alpine3.8` }] }
      })
      fs.mkdirSync(path.join(site.scratchRoot, half, "work"), { recursive: true })
      const orphan = crypto.randomUUID()
      yield* apply({
        apiVersion: "v1",
        kind: "Service",
        metadata: { name: `kernel-${orphan}`, namespace: site.kubeNs, labels: labels(orphan) },
        spec: { type: "ClusterIP", ports: [{ port: 2000 }], selector: labels(orphan) }
      })
      yield* apply({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: `kernel-${orphan}`, namespace: site.kubeNs, labels: labels(orphan) }, data: {} })

      // agent B starts with the reconciler
      const b = yield* startAgent(site, { withReconciler: true })
      yield* Effect.addFinalizer(() => Scope.close(b.scope, Exit.void))
      const registry = Context.get(b.context, KernelTable)
      const info = yield* registry.find(kid)
      assert.isTrue(Option.isSome(info))
      if (Option.isSome(info)) {
        assert.strictEqual(info.value.status, "running")
        assert.strictEqual(info.value.replInPort, created.repl_in_port)
        assert.strictEqual(info.value.kernelHost, created.kernel_host)
        assert.deepStrictEqual(info.value.servicePorts, created.service_ports)
      }
      // usable: its runner connection answers
      const conn = yield* Context.get(b.context, RunnerConnections).get(kid)
      yield* conn.status("10 seconds")
      // the rest is gone
      const left = yield* eventually(labelledObjects(env, site.kubeNs), (xs) => xs.every((x) => x.endsWith(kid)))
      assert.deepStrictEqual(left.sort(), [`ConfigMap/kernel-${kid}`, `Pod/kernel-${kid}`, `Service/kernel-${kid}`])
      // and so is the half-created kernel's scratch dir; the adopted kernel keeps its own
      assert.isFalse(fs.existsSync(path.join(site.scratchRoot, half)))
      assert.isTrue(fs.existsSync(path.join(site.scratchRoot, kid, "work")))

      // and it is destroyed normally through the new agent
      yield* Context.get(b.context, KernelLifecycle).destroy(kid, "user-requested")
      const term = yield* takeEvent(site, "kernel_terminated", kid)
      assert.strictEqual(term.args[1], "user-requested")
      assert.deepStrictEqual(yield* kernelObjects(env, site.kubeNs, kid), [])
    }).pipe(Effect.scoped), { timeout: 180_000 })

  // An agent that kept no records (a version before them) left ready kernels: the one that adopts them
  // records them — all in one etcd transaction after the pass, not one put per kernel while adopting
  // (1,000 puts at once were a one-off ~20 MiB start-up peak of their own).
  it.live("kernels adopted without a record get theirs, in one etcd transaction", () =>
    Effect.gen(function*() {
      const site = yield* makeSite(env)
      const a = yield* startAgent(site)
      const kids = [crypto.randomUUID(), crypto.randomUUID(), crypto.randomUUID()]
      yield* Effect.forEach(kids, (kid) => Context.get(a.context, KernelLifecycle).create(kid, pythonConfig(env)), { concurrency: 3 })
      yield* Scope.close(a.scope, Exit.void)
      // the records go, as if an older agent had made the kernels
      const observer = yield* Effect.acquireRelease(Effect.sync(() => new Etcd3({ hosts: `http://${env.etcd}` })), (c) => Effect.sync(() => c.close()))
      const prefix = `/sorna/${site.etcdNs}/nodes/agents/${site.agentId}/kernels/`
      yield* Effect.promise(() => observer.delete().prefix(prefix).exec())
      const writes: Array<{ readonly op: "put" | "putMany"; readonly keys: ReadonlyArray<string> }> = []
      const recordsEtcd = (etcd: EtcdShape): EtcdShape => ({
        ...etcd,
        put: (key, value, scope) => Effect.sync(() => void writes.push({ op: "put", keys: [key] })).pipe(Effect.andThen(etcd.put(key, value, scope))),
        putMany: (entries, scope) =>
          Effect.sync(() => void writes.push({ op: "putMany", keys: entries.map(([k]) => k) })).pipe(Effect.andThen(etcd.putMany(entries, scope)))
      })
      const b = yield* startAgent(site, { withReconciler: true, recordsEtcd })
      yield* Effect.addFinalizer(() => Scope.close(b.scope, Exit.void))
      for (const kid of kids) assert.isTrue(Option.isSome(yield* Context.get(b.context, KernelTable).find(kid)), kid)
      const recorded = yield* eventually(
        Effect.promise(() => observer.getAll().prefix(prefix).strings()),
        (r) => Object.keys(r).length === kids.length
      )
      assert.deepStrictEqual(Object.keys(recorded).map((k) => k.slice(prefix.length)).sort(), [...kids].sort())
      for (const v of Object.values(recorded)) assert.deepStrictEqual(JSON.parse(v), { state: "live" })
      assert.deepStrictEqual(writes.map((w) => [w.op, [...w.keys].sort()]), [["putMany", kids.map((k) => `kernels/${k}`).sort()]])
    }).pipe(Effect.scoped), { timeout: 180_000 })

  it.live("a kernel whose pod was deleted while the agent was down is reported terminated at start-up", () =>
    Effect.gen(function*() {
      const site = yield* makeSite(env)
      const a = yield* startAgent(site)
      const kid = crypto.randomUUID()
      yield* Context.get(a.context, KernelLifecycle).create(kid, pythonConfig(env))
      yield* Scope.close(a.scope, Exit.void)
      // the pod itself is deleted while the agent is down: the kernel is gone
      yield* kubectl(env, ["-n", site.kubeNs, "delete", "pod", `kernel-${kid}`, "--wait=true"])
      assert.deepStrictEqual(
        (yield* kernelObjects(env, site.kubeNs, kid)).filter((o) => o.startsWith("Pod/")),
        []
      )
      const b = yield* startAgent(site, { withReconciler: true })
      yield* Effect.addFinalizer(() => Scope.close(b.scope, Exit.void))
      const term = yield* takeEvent(site, "kernel_terminated", kid)
      assert.strictEqual(term.args[1], "force-terminated")
      assert.deepStrictEqual(yield* eventually(kernelObjects(env, site.kubeNs, kid), (xs) => xs.length === 0), [])
      assert.isTrue(Option.isNone(yield* Context.get(b.context, KernelTable).find(kid)))
      assert.isFalse(fs.existsSync(path.join(site.scratchRoot, kid)))
    }).pipe(Effect.scoped), { timeout: 180_000 })

  it.live("a kernel whose Service vanished while the agent was down is reported terminated at start-up", () =>
    Effect.gen(function*() {
      const site = yield* makeSite(env)
      const a = yield* startAgent(site)
      const kid = crypto.randomUUID()
      yield* Context.get(a.context, KernelLifecycle).create(kid, pythonConfig(env))
      yield* Scope.close(a.scope, Exit.void)
      // the Service is lost while the agent is down: the kernel cannot be reached any more
      yield* kubectl(env, ["-n", site.kubeNs, "delete", "service", `kernel-${kid}`])
      const b = yield* startAgent(site, { withReconciler: true })
      yield* Effect.addFinalizer(() => Scope.close(b.scope, Exit.void))
      const term = yield* takeEvent(site, "kernel_terminated", kid)
      assert.strictEqual(term.args[1], "force-terminated")
      assert.deepStrictEqual(yield* eventually(kernelObjects(env, site.kubeNs, kid), (xs) => xs.length === 0), [])
      assert.isTrue(Option.isNone(yield* Context.get(b.context, KernelTable).find(kid)))
      assert.isFalse(fs.existsSync(path.join(site.scratchRoot, kid)))
    }).pipe(Effect.scoped), { timeout: 180_000 })

  it.live("relists when the real server answers the pod watch with 410 Gone: a pod deleted meanwhile is reported", () =>
    Effect.gen(function*() {
      // watches served by etcd itself (no watch cache), so a compacted version is really Gone
      const cacheless = yield* cachelessApiserver(env)
      const site = yield* makeSite({ ...env, kubeconfig: cacheless.kubeconfig })
      const failures: Array<KubeError> = []
      // the agent's pod watch: ended when `pause` completes, the next one held until `resume`
      const pause = yield* Deferred.make<void>()
      const held = yield* Deferred.make<void>()
      const resume = yield* Deferred.make<void>()
      const kube = (real: KubeClientShape): KubeClientShape => ({
        ...real,
        watch: <A>(p: string, q: Parameters<KubeClientShape["watch"]>[1]) =>
          Stream.unwrap(Effect.gen(function*() {
            const paused = yield* Deferred.isDone(pause)
            if (paused) yield* Deferred.succeed(held, undefined).pipe(Effect.andThen(Deferred.await(resume)))
            const watch = real.watch<A>(p, q).pipe(Stream.tapError((e) => Effect.sync(() => void failures.push(e))))
            return paused ? watch : watch.pipe(Stream.interruptWhen(Deferred.await(pause)))
          }))
      })
      const a = yield* startAgent(site, { withReconciler: true, kube })
      yield* Effect.addFinalizer(() => Scope.close(a.scope, Exit.void))
      const kid = crypto.randomUUID()
      const created = yield* Context.get(a.context, KernelLifecycle).create(kid, pythonConfig(env))
      // nobody watches: the pod is deleted and the history compacted past the watch's version
      yield* Deferred.succeed(pause, undefined)
      yield* Deferred.await(held).pipe(Effect.timeout("30 seconds"))
      yield* kubectl(env, ["-n", site.kubeNs, "delete", "pod", `kernel-${kid}`, "--wait=true"])
      const compacted = yield* compactEtcd(cacheless.etcd)
      const listed = yield* kubectlJson({ ...env, kubeconfig: cacheless.kubeconfig }, ["-n", site.kubeNs, "get", "pods"])
      assert.isTrue(compacted >= Number(listed.metadata.resourceVersion), `${compacted} >= ${listed.metadata.resourceVersion}`)
      assert.strictEqual(created.id, kid)
      // the watch resumes from its last version (the relist interval is 5 minutes away)
      yield* Deferred.succeed(resume, undefined)
      const term = yield* takeEvent(site, "kernel_terminated", kid)
      assert.strictEqual(term.args[1], "force-terminated")
      // the server itself said Gone: the report came from the relist that followed
      assert.isTrue(failures.some((e) => e.reason === "Gone" && e.status === 410), JSON.stringify(failures))
      assert.isTrue(Option.isNone(yield* Context.get(a.context, KernelTable).find(kid)))
    }).pipe(Effect.scoped), { timeout: 180_000 })
})
