/**
 * Test support for deploy/kubernetes/rbac.yaml on the testbed: the manifests rendered into a test's
 * own namespace (cluster-scoped objects named after it, so parallel runs do not collide), applied with
 * the admin kubeconfig and removed with the scope, the service account's token (filled in by the token
 * controller), and a kubeconfig that holds only that token.
 */
import * as k8s from "@kubernetes/client-node"
import { Effect } from "effect"
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import type { TestbedEnv } from "../testbed/env.ts"

const manifestFile = path.join(import.meta.dirname, "..", "..", "deploy", "kubernetes", "rbac.yaml")

export interface KubectlResult {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** kubectl with the given kubeconfig (default: the testbed's admin one); never fails, see `code`. */
export const kubectlAs = (env: TestbedEnv, kubeconfig: string, ...args: Array<string>) =>
  Effect.callback<KubectlResult>((resume) => {
    execFile(env.kubectl, ["--kubeconfig", kubeconfig, ...args], { maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === "number" ? (err as { code: number }).code : 1
      resume(Effect.succeed({ code, stdout, stderr }))
    })
  })

/** Name of the ClusterRole and ClusterRoleBinding rendered for namespace `ns`. */
export const clusterObjectName = (ns: string) => `bai-agent-${ns}`

/** The manifest for namespace `ns`, with cluster-scoped names made unique; the Namespace itself is left out. */
export const manifestFor = (ns: string, file = manifestFile) => {
  const docs = k8s.loadAllYaml(fs.readFileSync(file, "utf8")) as Array<any>
  const out: Array<any> = []
  for (const d of docs) {
    if (d.kind === "Namespace") continue
    if (d.metadata.namespace !== undefined) d.metadata.namespace = ns
    for (const s of d.subjects ?? []) s.namespace = ns
    if (d.kind === "ClusterRole" || d.kind === "ClusterRoleBinding") d.metadata.name = clusterObjectName(ns)
    if (d.kind === "ClusterRoleBinding") d.roleRef.name = clusterObjectName(ns)
    out.push(d)
  }
  return { apiVersion: "v1", kind: "List", items: out }
}

/**
 * Applies the manifest (default: deploy/kubernetes/rbac.yaml) into the existing namespace `ns` (kubectl
 * apply, admin); the ClusterRole and ClusterRoleBinding are deleted when the scope closes (the namespace
 * is the caller's).
 */
export const applyRbac = (env: TestbedEnv, ns: string, manifest = manifestFile) =>
  Effect.gen(function*() {
    const file = path.join(env.stateDir, `rbac-${ns}.json`)
    yield* Effect.acquireRelease(
      Effect.sync(() => fs.writeFileSync(file, JSON.stringify(manifestFor(ns, manifest)))),
      () => Effect.sync(() => fs.rmSync(file, { force: true }))
    )
    yield* Effect.addFinalizer(() =>
      kubectlAs(env, env.kubeconfig, "delete", "--ignore-not-found", "clusterrole,clusterrolebinding", clusterObjectName(ns))
    )
    const applied = yield* kubectlAs(env, env.kubeconfig, "apply", "-f", file)
    if (applied.code !== 0) return yield* Effect.fail(new Error(`kubectl apply ${file}: ${applied.stderr}`))
  })

/** The token of the explicit `bai-agent-token` Secret, once the token controller filled it (≤ 30 s). */
export const serviceAccountToken = (env: TestbedEnv, ns: string) =>
  Effect.gen(function*() {
    for (let i = 0; i < 300; i++) {
      const s = yield* kubectlAs(env, env.kubeconfig, "get", "secret", "bai-agent-token", "-n", ns, "-o", "jsonpath={.data.token}")
      const token = s.code === 0 ? Buffer.from(s.stdout, "base64").toString("utf8") : ""
      if (token !== "") return token
      yield* Effect.sleep("100 millis")
    }
    return yield* Effect.fail(new Error(`the token controller did not fill ${ns}/bai-agent-token`))
  })

/**
 * A kubeconfig with only `token` (server = the testbed's API server, TLS unverified like the testbed's
 * own kubeconfig), default namespace `ns`; removed with the scope. Returns its path.
 */
export const tokenKubeconfig = (env: TestbedEnv, ns: string, token: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const file = path.join(env.stateDir, `rbac-${ns}.kubeconfig`)
      fs.writeFileSync(
        file,
        JSON.stringify({
          apiVersion: "v1",
          kind: "Config",
          clusters: [{ name: "c", cluster: { server: env.apiserver, "insecure-skip-tls-verify": true } }],
          users: [{ name: "bai-agent", user: { token } }],
          contexts: [{ name: "c", context: { cluster: "c", user: "bai-agent", namespace: ns } }],
          "current-context": "c"
        }),
        { mode: 0o600 }
      )
      return file
    }),
    (file) => Effect.sync(() => fs.rmSync(file, { force: true }))
  )
