// Kubernetes 1.20 control plane on loopback: its own etcd, kube-apiserver (TLS, token auth, RBAC),
// kube-controller-manager (SA tokens, GC, namespace finalizers) and kube-scheduler, on free ports.
import { execFileSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as https from "node:https"
import * as path from "node:path"
import * as k8s from "@kubernetes/client-node"
import { k8sBinDir } from "./paths.ts"
import { waitUntil } from "./ports.ts"
import { assertAlive, type Daemon, spawnDaemon } from "./processes.ts"

export interface ControlPlanePorts { readonly apiserver: number }

const openssl = (args: ReadonlyArray<string>): void => { execFileSync("openssl", args, { stdio: "ignore" }) }

/** Service-account signing key, admin token, self-signed kubelet serving cert. */
export const makePki = (pki: string): { token: string } => {
  fs.mkdirSync(pki, { recursive: true })
  const key = path.join(pki, "sa.key")
  openssl(["genrsa", "-out", key, "2048"])
  openssl(["rsa", "-in", key, "-pubout", "-out", path.join(pki, "sa.pub")])
  openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj", "/CN=testbed-kubelet",
    "-keyout", path.join(pki, "kubelet.key"), "-out", path.join(pki, "kubelet.crt")])
  const token = randomBytes(16).toString("hex")
  fs.writeFileSync(path.join(pki, "tokens.csv"), `${token},admin,admin,system:masters\n`)
  return { token }
}

export const startApiserver = (stateDir: string, etcdPort: number, port: number, extraArgs: ReadonlyArray<string> = []): Daemon => {
  const pki = path.join(stateDir, "pki")
  return spawnDaemon("kube-apiserver", path.join(k8sBinDir, "kube-apiserver"), [
    `--etcd-servers=http://127.0.0.1:${etcdPort}`,
    "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", `--secure-port=${port}`, "--insecure-port=0",
    `--cert-dir=${pki}`, `--token-auth-file=${path.join(pki, "tokens.csv")}`,
    "--authorization-mode=RBAC",
    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
    `--service-account-key-file=${path.join(pki, "sa.pub")}`,
    `--service-account-signing-key-file=${path.join(pki, "sa.key")}`,
    "--service-cluster-ip-range=10.96.0.0/16", "--service-node-port-range=30000-32767",
    "--allow-privileged=true", "--endpoint-reconciler-type=none",
    "--kubelet-preferred-address-types=InternalIP",
    "--profiling=false",
    ...extraArgs,
  ], path.join(stateDir, "log"))
}

export const writeKubeconfig = (file: string, port: number, token: string): void => {
  fs.writeFileSync(file, [
    "apiVersion: v1", "kind: Config",
    "clusters:", "- name: testbed", `  cluster: {server: "https://127.0.0.1:${port}", insecure-skip-tls-verify: true}`,
    "users:", "- name: admin", `  user: {token: ${token}}`,
    "contexts:", "- name: testbed", "  context: {cluster: testbed, user: admin}",
    "current-context: testbed", "",
  ].join("\n"))
}

export const waitApiserver = (d: Daemon, port: number, token: string): Promise<void> =>
  waitUntil("kube-apiserver /readyz", async () => {
    assertAlive(d)
    // fetch cannot skip TLS verification per request: plain https.get with rejectUnauthorized=false
    return (await rawGet(port, token, "/readyz")).trim() === "ok"
  }, 60_000, 150)

const rawGet = (port: number, token: string, p: string): Promise<string> =>
  new Promise((resolve, reject) => {
    const req = https.get({ host: "127.0.0.1", port, path: p, rejectUnauthorized: false, headers: { authorization: `Bearer ${token}` } }, (res) => {
      let body = ""
      res.setEncoding("utf8").on("data", (c: string) => { body += c }).on("end", () => resolve(body))
    })
    req.on("error", reject)
    req.setTimeout(2000, () => req.destroy(new Error("timeout")))
  })

export const startControllers = (stateDir: string, kubeconfig: string): Array<Daemon> => {
  const pki = path.join(stateDir, "pki")
  const log = path.join(stateDir, "log")
  return [
    spawnDaemon("kube-controller-manager", path.join(k8sBinDir, "kube-controller-manager"), [
      `--kubeconfig=${kubeconfig}`, "--leader-elect=false", "--port=0", "--secure-port=0",
      `--service-account-private-key-file=${path.join(pki, "sa.key")}`, `--root-ca-file=${path.join(pki, "apiserver.crt")}`,
      "--use-service-account-credentials=false",
      "--controllers=*,-nodeipam,-cloud-node-lifecycle,-route,-service",
      "--node-monitor-grace-period=1h", "--pod-eviction-timeout=1h",
      "--concurrent-gc-syncs=5", "--profiling=false",
      // default /usr/libexec/kubernetes/kubelet-plugins/volume/exec: created on the host otherwise
      `--flex-volume-plugin-dir=${path.join(stateDir, "flexvolume")}`,
    ], log),
    spawnDaemon("kube-scheduler", path.join(k8sBinDir, "kube-scheduler"), [
      `--kubeconfig=${kubeconfig}`, "--leader-elect=false", "--port=0", "--secure-port=0", "--profiling=false",
    ], log),
  ]
}

export const coreApi = (kubeconfig: string): k8s.CoreV1Api => {
  const kc = new k8s.KubeConfig()
  kc.loadFromFile(kubeconfig)
  return kc.makeApiClient(k8s.CoreV1Api)
}

const isStatus = (e: unknown, code: number): boolean => (e as { code?: number }).code === code

/** Creates `namespace` with the registry pull secret, and waits for its default ServiceAccount. */
export const ensureNamespace = async (core: k8s.CoreV1Api, namespace: string, secretName: string, dockerConfigJson: string): Promise<void> => {
  await core.createNamespace({ body: { metadata: { name: namespace } } }).catch((e) => { if (!isStatus(e, 409)) throw e })
  await core.createNamespacedSecret({
    namespace,
    body: {
      metadata: { name: secretName }, type: "kubernetes.io/dockerconfigjson",
      data: { ".dockerconfigjson": Buffer.from(dockerConfigJson).toString("base64") },
    },
  }).catch((e) => { if (!isStatus(e, 409)) throw e })
  await waitUntil(`ServiceAccount ${namespace}/default`, async () => {
    await core.readNamespacedServiceAccount({ name: "default", namespace })
    return true
  }, 60_000, 200)
}
