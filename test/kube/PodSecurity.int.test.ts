// A created kernel's pod, Service and NetworkPolicies as the API server stores them (kubectl is the
// observer): the security context, the runner package mounts, typed hostPaths, the runner fence and
// the kernel's service-port policy (issue 13 "The cluster and the network", issue 12 item 2).
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { inject } from "vitest"
import { KernelLifecycle } from "../../src/kernel/KernelLifecycle.ts"
import { runnerFenceName } from "../../src/kube/KernelObjects.ts"
import type { TestbedEnv } from "../testbed/env.ts"
import { eventually, kubectlJson, lifecycleLayer, makeSite, pythonConfig, takeEvent } from "../kernel/KernelLifecycleSupport.ts"

const env: TestbedEnv = inject("testbed")

describe("kernel pod security on the testbed", () => {
  it.live("securityContext, runner package mounts, typed hostPaths, runner fence and service-port policy", () =>
    Effect.gen(function*() {
      const site = yield* makeSite(env, {
        extra: [
          `[kubernetes.network-policy]`,
          `agent-sources = ["10.9.9.9"]`,
          `service-sources = ["192.0.2.0/24"]`
        ].join("\n")
      })
      const kid = crypto.randomUUID()
      yield* Effect.gen(function*() {
        const lifecycle = yield* KernelLifecycle
        // the fence exists before any kernel (applied at start)
        const fence = yield* kubectlJson(env, ["-n", site.kubeNs, "get", "networkpolicy", runnerFenceName(site.agentId)])
        assert.deepStrictEqual(fence.spec.podSelector.matchLabels, {
          "app.kubernetes.io/managed-by": "bai-k8s-agent",
          "backend.ai/agent-id": site.agentId
        })
        assert.deepStrictEqual(fence.spec.policyTypes, ["Ingress"])
        assert.deepStrictEqual(fence.spec.ingress, [{
          from: [{ ipBlock: { cidr: "10.9.9.9/32" } }],
          ports: [{ protocol: "TCP", port: 2000 }, { protocol: "TCP", port: 2001 }]
        }])

        yield* lifecycle.create(kid, pythonConfig(env))
        yield* takeEvent(site, "kernel_started", kid)

        const pod = yield* kubectlJson(env, ["-n", site.kubeNs, "get", "pod", `kernel-${kid}`])
        assert.isFalse(pod.spec.automountServiceAccountToken)
        assert.deepStrictEqual(pod.spec.securityContext.seccompProfile, { type: "RuntimeDefault" })
        const c = pod.spec.containers[0]
        assert.isFalse(c.securityContext.privileged)
        assert.isFalse(c.securityContext.allowPrivilegeEscalation)
        assert.deepStrictEqual(c.securityContext.seccompProfile, { type: "RuntimeDefault" })
        assert.deepStrictEqual(c.securityContext.capabilities.drop, ["ALL"])
        assert.deepStrictEqual([...c.securityContext.capabilities.add].sort(), ["CHOWN", "DAC_OVERRIDE", "SETGID", "SETUID"])
        const mounts = c.volumeMounts.filter((m: { name: string }) => m.name === "krunner")
          .map((m: { mountPath: string; subPath: string; readOnly: boolean }) => [m.mountPath, m.subPath, m.readOnly])
        assert.deepInclude(mounts, ["/opt/backend.ai/lib/python3.6/site-packages/ai/backend/kernel", "kernel", true])
        assert.deepInclude(mounts, ["/opt/backend.ai/lib/python3.6/site-packages/ai/backend/helpers", "helpers", true])
        for (const v of pod.spec.volumes) {
          if (v.hostPath !== undefined) assert.strictEqual(v.hostPath.type, "Directory", v.name)
        }

        const svc = yield* kubectlJson(env, ["-n", site.kubeNs, "get", "service", `kernel-${kid}`])
        assert.strictEqual(svc.spec.externalTrafficPolicy, "Local")

        const policy = yield* kubectlJson(env, ["-n", site.kubeNs, "get", "networkpolicy", `kernel-${kid}`])
        assert.strictEqual(policy.spec.podSelector.matchLabels["backend.ai/kernel-id"], kid)
        assert.deepStrictEqual(policy.spec.ingress, [{
          from: [{ ipBlock: { cidr: "192.0.2.0/24" } }],
          ports: [{ protocol: "TCP", port: 8080 }, { protocol: "TCP", port: 8081 }]
        }])
        assert.deepStrictEqual(policy.metadata.ownerReferences.map((o: { kind: string; uid: string }) => [o.kind, o.uid]), [["Pod", pod.metadata.uid]])

        // destroy: the kernel's policy goes with its pod (garbage collector); the fence stays
        yield* lifecycle.destroy(kid, "user-requested")
        const left = yield* eventually(
          kubectlJson(env, ["-n", site.kubeNs, "get", "networkpolicies"]).pipe(
            Effect.map((l) => l.items.map((o) => o.metadata.name as string))
          ),
          (names) => !names.includes(`kernel-${kid}`),
          60
        )
        assert.deepStrictEqual(left, [runnerFenceName(site.agentId)])
      }).pipe(Effect.provide(lifecycleLayer(site)))
    }).pipe(Effect.scoped), { timeout: 180_000 })
})
