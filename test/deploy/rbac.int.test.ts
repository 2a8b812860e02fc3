// deploy/kubernetes/rbac.yaml on the testbed's kube-apiserver (RBAC authorizer, token controller):
// `kubectl auth can-i` for every verb the agent uses (and a few it must not have), then real calls
// with the service account's token through KubeClient.
import * as k8s from "@kubernetes/client-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Stream } from "effect"
import { execFile } from "node:child_process"
import { inject } from "vitest"
import { KubeClient } from "../../src/kube/KubeClient.ts"
import { freshKubeNamespace, type TestbedEnv } from "../testbed/env.ts"
import { applyRbac, kubectlAs, serviceAccountToken, tokenKubeconfig } from "./RbacSupport.ts"

const env: TestbedEnv = inject("testbed")

const kubectl = (...args: Array<string>) => kubectlAs(env, env.kubeconfig, ...args)

/** (verb, resource, namespaced) the agent uses. */
const allowed: ReadonlyArray<readonly [string, string, boolean]> = [
  ...["get", "list", "watch", "create", "delete", "patch"].map((v) => [v, "pods", true] as const),
  ["get", "pods/log", true],
  ["get", "pods/status", true],
  ...["get", "list", "create", "delete"].map((v) => [v, "services", true] as const),
  ...["list", "create", "delete", "update"].map((v) => [v, "configmaps", true] as const),
  ["get", "secrets", true],
  ["create", "networkpolicies.networking.k8s.io", true],
  ["update", "networkpolicies.networking.k8s.io", true],
  ["get", "nodes", false],
  ["list", "nodes", false],
  ["watch", "nodes", false],
  ["get", "nodes/proxy", false],
  ["list", "pods", false],
  ["watch", "pods", false]
]
const denied: ReadonlyArray<readonly [string, string, boolean]> = [
  ["list", "secrets", true],
  ["watch", "secrets", true],
  ["delete", "networkpolicies.networking.k8s.io", true],
  ["patch", "networkpolicies.networking.k8s.io", true],
  ["create", "networkpolicies.networking.k8s.io", false],
  ["update", "pods", true],
  ["update", "pods/status", true],
  ["patch", "pods/status", true],
  ["watch", "services", true],
  ["patch", "services", true],
  ["update", "services", true],
  ["get", "configmaps", true],
  ["watch", "configmaps", true],
  ["patch", "configmaps", true],
  ["list", "events", true],
  ["get", "nodes/stats", false],
  ["create", "nodes/proxy", false],
  ["list", "pods/log", false],
  ["get", "pods/log", false],
  ["list", "namespaces", false],
  ["create", "namespaces", false],
  ["list", "services", false],
  ["list", "configmaps", false],
  ["get", "secrets", false],
  ["create", "secrets", true],
  ["delete", "nodes", false],
  ["patch", "nodes", false],
  ["create", "pods", false],
  ["create", "deployments.apps", true],
  ["create", "pods/exec", true],
  ["get", "pods/exec", true],
  ["create", "pods/eviction", true]
]

describe("deploy/kubernetes/rbac.yaml", () => {
  it.live("grants exactly what the agent uses, and a token of the service account can do it", () =>
    Effect.gen(function*() {
      const ns = yield* Effect.promise(() => freshKubeNamespace(env, "rbac"))
      yield* Effect.addFinalizer(() => kubectl("delete", "namespace", ns, "--wait=false"))
      yield* applyRbac(env, ns)

      const as = `system:serviceaccount:${ns}:bai-agent`
      // `pods/log` on the command line would mean "the pod named log": subresources go in --subresource
      const canI = (verb: string, resource: string, namespaced: boolean) => {
        const [res, sub] = resource.split("/")
        return kubectl(
          "auth", "can-i", verb, res!, ...(sub !== undefined ? [`--subresource=${sub}`] : []),
          `--as=${as}`, ...(namespaced ? ["-n", ns] : ["--all-namespaces"])
        )
      }
      for (const [verb, resource, namespaced] of allowed) {
        const r = yield* canI(verb, resource, namespaced)
        assert.strictEqual(r.stdout.trim(), "yes", `${verb} ${resource} (${namespaced ? ns : "cluster"}): ${r.stderr}`)
      }
      for (const [verb, resource, namespaced] of denied) {
        const r = yield* canI(verb, resource, namespaced)
        assert.strictEqual(r.stdout.trim(), "no", `must not ${verb} ${resource}`)
      }
      // nothing in another namespace
      assert.strictEqual((yield* kubectl("auth", "can-i", "create", "pods", `--as=${as}`, "-n", "default")).stdout.trim(), "no")

      // --- the token (the explicit Secret; on 1.20 the token controller also made bai-agent-token-xxxxx)
      const token = yield* serviceAccountToken(env, ns)
      const sa = yield* kubectl("get", "serviceaccount", "bai-agent", "-n", ns, "-o", "json")
      const autoSecrets = (JSON.parse(sa.stdout).secrets ?? []) as Array<{ name: string }>
      assert.isTrue(autoSecrets.some((s) => s.name.startsWith("bai-agent-token-")), "1.20: the SA got its own token secret")

      const kubeconfig = yield* tokenKubeconfig(env, ns, token)

      // --- real calls with that token
      const kube = yield* KubeClient.make({ kubeconfig, requestTimeoutSeconds: 15 })
      const nodes = yield* kube.core("list nodes", (api) => api.listNode())
      assert.isAbove(nodes.items.length, 0)
      // a node of the simulated kubelet (other tests may register address-less nodes)
      const node = nodes.items.find((n) =>
        (n.status?.addresses ?? []).some((a) => a.type === "InternalIP") &&
        (n.status?.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True")
      )!.metadata!.name!
      yield* kube.core("read node", (api) => api.readNode({ name: node }))
      yield* kube.core("all pods", (api) => api.listPodForAllNamespaces())
      // the kubelet Summary API through the node proxy (the generated client encodes the path's slash: use kubectl --raw)
      const summary = yield* Effect.callback<{ code: number; stdout: string; stderr: string }>((resume) => {
        execFile(env.kubectl, ["--kubeconfig", kubeconfig, "get", "--raw", `/api/v1/nodes/${node}/proxy/stats/summary`], (err, stdout, stderr) =>
          resume(Effect.succeed({ code: err === null ? 0 : 1, stdout, stderr })))
      })
      assert.strictEqual(summary.code, 0, summary.stderr)
      assert.strictEqual(JSON.parse(summary.stdout).node.nodeName, node)
      yield* kube.core("pull secret", (api) => api.readNamespacedSecret({ name: env.registrySecret, namespace: ns }))

      const name = "rbac-probe"
      const labels = { "app.kubernetes.io/managed-by": "bai-k8s-agent" }
      const pod = yield* kube.core("create pod", (api) =>
        api.createNamespacedPod({
          namespace: ns,
          body: {
            metadata: { name, labels },
            spec: {
              restartPolicy: "Never",
              imagePullSecrets: [{ name: env.registrySecret }],
              containers: [{ name: "main", image: `${env.registry.host}/lablup/python:3.6-ubuntu18.04` }]
            }
          }
        }))
      // the watch starts and delivers the pod
      const first = yield* kube.watch<k8s.V1Pod>(`/api/v1/namespaces/${ns}/pods`, { resourceVersion: "0" }).pipe(
        Stream.take(1),
        Stream.runCollect,
        Effect.timeout("30 seconds")
      )
      assert.strictEqual(first[0]?.object.metadata?.name, name)
      yield* kube.core("list pods", (api) => api.listNamespacedPod({ namespace: ns, labelSelector: "app.kubernetes.io/managed-by=bai-k8s-agent" }))
      yield* kube.core("read pod", (api) => api.readNamespacedPod({ name, namespace: ns }))
      yield* kube.core("read pod status", (api) => api.readNamespacedPodStatus({ name, namespace: ns }))
      yield* kube.core("patch pod", (api) =>
        api.patchNamespacedPod(
          { name, namespace: ns, body: { metadata: { annotations: { "backend.ai/probe": "1" } } } },
          k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch)
        ))
      const owner = { apiVersion: "v1", kind: "Pod", name, uid: pod.metadata!.uid! }
      yield* kube.core("create service", (api) =>
        api.createNamespacedService({
          namespace: ns,
          body: {
            metadata: { name, labels, ownerReferences: [owner] },
            spec: { type: "NodePort", selector: labels, ports: [{ name: "repl-in", port: 2000, targetPort: 2000 }] }
          }
        }))
      yield* kube.core("create configmap", (api) =>
        api.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name, labels, ownerReferences: [owner] }, data: { a: "1" } } }))
      yield* kube.core("replace configmap", (api) =>
        api.replaceNamespacedConfigMap({ name, namespace: ns, body: { metadata: { name, labels, ownerReferences: [owner] }, data: { a: "2" } } }))
      const policy = { metadata: { name, labels, ownerReferences: [owner] }, spec: { podSelector: { matchLabels: labels }, policyTypes: ["Ingress"] } }
      yield* kube.networking("create network policy", (api) => api.createNamespacedNetworkPolicy({ namespace: ns, body: policy }))
      yield* kube.networking("replace network policy", (api) => api.replaceNamespacedNetworkPolicy({ name, namespace: ns, body: policy }))
      yield* kube.core("list services", (api) => api.listNamespacedService({ namespace: ns }))
      yield* kube.core("list configmaps", (api) => api.listNamespacedConfigMap({ namespace: ns }))
      // logs: allowed (the pod may not have started yet: anything but Forbidden is fine)
      const logs = yield* Effect.exit(kube.core("pod log", (api) => api.readNamespacedPodLog({ name, namespace: ns })))
      if (Exit.isFailure(logs)) {
        const reasons = logs.cause.reasons.map((r) => (r._tag === "Fail" ? r.error.reason : r._tag))
        assert.notInclude(reasons, "Forbidden")
      }
      yield* kube.core("delete service", (api) => api.deleteNamespacedService({ name, namespace: ns }))
      yield* kube.core("delete configmap", (api) => api.deleteNamespacedConfigMap({ name, namespace: ns }))
      yield* kube.core("delete pod", (api) => api.deleteNamespacedPod({ name, namespace: ns, gracePeriodSeconds: 0 }))

      // and what it must not do
      const mustFail = [
        kube.core("list secrets", (api) => api.listNamespacedSecret({ namespace: ns })),
        kube.core("list events", (api) => api.listNamespacedEvent({ namespace: ns })),
        kube.core("read configmap", (api) => api.readNamespacedConfigMap({ name: "kube-root-ca.crt", namespace: ns })),
        kube.core("list namespaces", (api) => api.listNamespace()),
        kube.core("pull secret elsewhere", (api) => api.readNamespacedSecret({ name: env.registrySecret, namespace: env.namespace }))
      ]
      for (const call of mustFail) {
        const exit = yield* Effect.exit(call)
        assert.isTrue(Exit.isFailure(exit))
        if (Exit.isFailure(exit)) {
          const r = exit.cause.reasons[0]
          assert.strictEqual(r?._tag === "Fail" ? r.error.reason : undefined, "Forbidden", String(exit))
        }
      }
    }).pipe(Effect.scoped), { timeout: 180_000 })
})
