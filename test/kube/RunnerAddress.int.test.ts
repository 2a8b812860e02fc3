// kubernetes.runner-address = "pod-ip" on the testbed: the agent reaches each runner at the pod's own
// address (the simulated kubelet gives every pod a loopback podIP that answers on its container
// ports, as a host routed to the pod network would see it); the runner ports get no NodePort; the
// mode is recorded per kernel, so agents restarted with the other mode adopt and reach the kernels
// of the first one.
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Option, Scope } from "effect"
import { inject } from "vitest"
import { KernelLifecycle } from "../../src/kernel/KernelLifecycle.ts"
import { KernelTable } from "../../src/kernel/KernelTable.ts"
import { RunnerConnections } from "../../src/kernel/runner/RunnerConnections.ts"
import type { TestbedEnv } from "../testbed/env.ts"
import {
  kernelObjects,
  kubectlJson,
  makeSite,
  pythonConfig,
  type Site,
  startAgent,
  takeEvent
} from "../kernel/KernelLifecycleSupport.ts"

const env: TestbedEnv = inject("testbed")

/** The same site (etcd, namespace, agent id, scratch root, event socket) with another runner-address. */
const withMode = (site: Site, mode: "pod-ip" | "node-port"): Site => {
  assert.include(site.toml, "[kubernetes]\n")
  return { ...site, toml: site.toml.replace("[kubernetes]\n", `[kubernetes]\nrunner-address = "${mode}"\n`) }
}

const podOf = (site: Site, kid: string) => kubectlJson(env, ["-n", site.kubeNs, "get", "pod", `kernel-${kid}`])
const serviceOf = (site: Site, kid: string) => kubectlJson(env, ["-n", site.kubeNs, "get", "service", `kernel-${kid}`])
const nodeIps = () => env.nodes.map((n) => n.ip)

describe("kubernetes.runner-address on the testbed", () => {
  it.live("pod-ip: the runner is reached at status.podIP:2000/2001, the Service has NodePorts only for service ports (none: headless)", () =>
    Effect.gen(function*() {
      const site = withMode(yield* makeSite(env), "pod-ip")
      const agent = yield* startAgent(site)
      yield* Effect.addFinalizer(() => Scope.close(agent.scope, Exit.void))
      const lifecycle = Context.get(agent.context, KernelLifecycle)
      const runners = Context.get(agent.context, RunnerConnections)

      // a kernel with service ports (jupyter 8080, myapp 8081)
      const kid = crypto.randomUUID()
      const created = yield* lifecycle.create(kid, pythonConfig(env))
      const pod = yield* podOf(site, kid)
      const podIP: string = pod.status.podIP
      assert.match(podIP, /^127\./)
      assert.notInclude(nodeIps(), podIP)
      // the manager hears the node (service ports are NodePorts there) and the runner's own ports
      assert.strictEqual(created.kernel_host, pod.status.hostIP)
      assert.deepStrictEqual([created.repl_in_port, created.repl_out_port], [2000, 2001])
      const svc = yield* serviceOf(site, kid)
      assert.strictEqual(svc.spec.type, "NodePort")
      const exposed = (svc.spec.ports as Array<{ name: string; port: number; nodePort: number }>).map((p) => [p.name, p.port, p.nodePort])
      assert.deepStrictEqual(exposed, created.service_ports.map((p) => [`sp-${p.container_port}`, p.container_port, p.host_port]))
      assert.deepStrictEqual(created.service_ports.map((p) => p.container_port), [8080, 8081])
      // the connection the agent holds goes to the pod's address, and the runner answers on it
      const conn = yield* runners.get(kid)
      assert.deepStrictEqual(conn.endpoint, { host: podIP, replInPort: 2000, replOutPort: 2001 })
      yield* conn.status("10 seconds")
      // the recovery annotation records the mode
      assert.strictEqual(JSON.parse(pod.metadata.annotations["backend.ai/kernel"]).runnerAddress, "pod-ip")

      // restart_kernel: a new pod (a new address), reached the same way; still no runner NodePort
      const restarted = yield* lifecycle.restart(kid, pythonConfig(env))
      assert.deepStrictEqual([restarted.repl_in_port, restarted.repl_out_port], [2000, 2001])
      const pod2 = yield* podOf(site, kid)
      assert.notStrictEqual(pod2.metadata.uid, pod.metadata.uid)
      const conn2 = yield* runners.get(kid)
      assert.deepStrictEqual(conn2.endpoint, { host: pod2.status.podIP, replInPort: 2000, replOutPort: 2001 })
      yield* conn2.status("10 seconds")
      const svcAfter = yield* serviceOf(site, kid)
      assert.deepStrictEqual((svcAfter.spec.ports as Array<{ port: number }>).map((p) => p.port), [8080, 8081])

      // a kernel without service ports: a headless Service with no ports, nothing allocated
      const bare = crypto.randomUUID()
      const bareConfig = pythonConfig(env)
      const bareCreated = yield* lifecycle.create(bare, {
        ...bareConfig,
        image: { ...bareConfig.image, labels: { ...bareConfig.image.labels, "ai.backend.service-ports": "" } }
      })
      assert.deepStrictEqual(bareCreated.service_ports, [])
      const bareSvc = yield* serviceOf(site, bare)
      assert.strictEqual(bareSvc.spec.type, "ClusterIP")
      assert.strictEqual(bareSvc.spec.clusterIP, "None")
      assert.deepStrictEqual(bareSvc.spec.ports ?? [], [])
      yield* (yield* runners.get(bare)).status("10 seconds")

      // destroy: every object goes
      for (const k of [kid, bare]) {
        yield* lifecycle.destroy(k, "user-requested")
        assert.strictEqual((yield* takeEvent(site, "kernel_terminated", k)).args[1], "user-requested")
        assert.deepStrictEqual(yield* kernelObjects(env, site.kubeNs, k), [])
      }
    }).pipe(Effect.scoped), { timeout: 240_000 })

  it.live("each kernel keeps the mode it was created with: agents restarted with the other mode adopt and reach both kinds", () =>
    Effect.gen(function*() {
      const site = yield* makeSite(env)
      const podIpSite = withMode(site, "pod-ip")
      const nodePortSite = withMode(site, "node-port")

      // agent A (pod-ip) creates K1 and stops (kernels are detached, not deleted)
      const a = yield* startAgent(podIpSite)
      const k1 = crypto.randomUUID()
      const c1 = yield* Context.get(a.context, KernelLifecycle).create(k1, pythonConfig(env))
      yield* Scope.close(a.scope, Exit.void)

      // agent B (node-port) adopts K1 at its pod address, and creates K2 behind NodePorts
      const b = yield* startAgent(nodePortSite, { withReconciler: true })
      const bInfo = yield* Context.get(b.context, KernelTable).find(k1)
      assert.isTrue(Option.isSome(bInfo), "K1 adopted by the node-port agent")
      if (Option.isSome(bInfo)) {
        assert.strictEqual(bInfo.value.status, "running")
        assert.strictEqual(bInfo.value.kernelHost, c1.kernel_host)
        assert.deepStrictEqual([bInfo.value.replInPort, bInfo.value.replOutPort], [2000, 2001])
        assert.deepStrictEqual(bInfo.value.servicePorts, c1.service_ports)
      }
      const pod1 = yield* podOf(site, k1)
      const b1 = yield* Context.get(b.context, RunnerConnections).get(k1)
      assert.deepStrictEqual(b1.endpoint, { host: pod1.status.podIP, replInPort: 2000, replOutPort: 2001 })
      yield* b1.status("10 seconds")
      const k2 = crypto.randomUUID()
      const c2 = yield* Context.get(b.context, KernelLifecycle).create(k2, pythonConfig(env))
      const svc2 = yield* serviceOf(site, k2)
      const nodePort2 = (port: number) => (svc2.spec.ports as Array<{ port: number; nodePort: number }>).find((p) => p.port === port)?.nodePort
      assert.deepStrictEqual([c2.repl_in_port, c2.repl_out_port], [nodePort2(2000), nodePort2(2001)])
      assert.isAbove(c2.repl_in_port, 2001)
      const b2 = yield* Context.get(b.context, RunnerConnections).get(k2)
      assert.deepStrictEqual(b2.endpoint, { host: c2.kernel_host, replInPort: c2.repl_in_port, replOutPort: c2.repl_out_port })
      yield* b2.status("10 seconds")
      yield* Scope.close(b.scope, Exit.void)

      // agent C (pod-ip) adopts both, each as recorded: K1 at its pod address, K2 through its NodePorts
      const c = yield* startAgent(podIpSite, { withReconciler: true })
      yield* Effect.addFinalizer(() => Scope.close(c.scope, Exit.void))
      const registry = Context.get(c.context, KernelTable)
      const runners = Context.get(c.context, RunnerConnections)
      const i1 = yield* registry.find(k1)
      const i2 = yield* registry.find(k2)
      assert.isTrue(Option.isSome(i1) && Option.isSome(i2), "both kernels adopted by the pod-ip agent")
      if (Option.isSome(i2)) assert.deepStrictEqual([i2.value.replInPort, i2.value.replOutPort, i2.value.kernelHost], [c2.repl_in_port, c2.repl_out_port, c2.kernel_host])
      const r1 = yield* runners.get(k1)
      assert.deepStrictEqual(r1.endpoint, { host: pod1.status.podIP, replInPort: 2000, replOutPort: 2001 })
      yield* r1.status("10 seconds")
      const r2 = yield* runners.get(k2)
      assert.deepStrictEqual(r2.endpoint, { host: c2.kernel_host, replInPort: c2.repl_in_port, replOutPort: c2.repl_out_port })
      yield* r2.status("10 seconds")

      // and destroys both normally
      for (const k of [k1, k2]) {
        yield* Context.get(c.context, KernelLifecycle).destroy(k, "user-requested")
        assert.strictEqual((yield* takeEvent(site, "kernel_terminated", k)).args[1], "user-requested")
        assert.deepStrictEqual(yield* kernelObjects(env, site.kubeNs, k), [])
      }
    }).pipe(Effect.scoped), { timeout: 300_000 })
})
