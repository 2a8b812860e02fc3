// The interop testbed's simulated kubelet runs the REAL 19.06 kernel runner for pods whose container
// runs `-m ai.backend.kernel python …`: each in its own network namespace (the runner binds the fixed
// ports 2000/2001 and 127.0.0.1:65000) and mount namespace (/home/work, /home/config), reached through
// NodePorts. kubectl is the observer; the RunnerClient plays the agent.
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { promisify } from "node:util"
import { unpack } from "msgpackr"
import { describe, expect, inject, it } from "vitest"
import { freshKubeNamespace, type TestbedEnv } from "./env.ts"
import { sleep } from "./ports.ts"
import { exitCodeOf, RunnerClient, textOf } from "./runnerClient.ts"

const run = promisify(execFile)
const env: TestbedEnv = inject("testbed")
const kubectl = async (...args: Array<string>): Promise<string> =>
  (await run(env.kubectl, ["--kubeconfig", env.kubeconfig, ...args], { maxBuffer: 16 << 20 })).stdout
const kubectlApply = async (manifest: unknown): Promise<void> => {
  const file = path.join(env.stateDir, `manifest-${process.hrtime.bigint()}.json`)
  fs.writeFileSync(file, JSON.stringify(manifest))
  await kubectl("apply", "-f", file)
}
const getJson = async <T = any>(...args: Array<string>): Promise<T> => JSON.parse(await kubectl("get", "-o", "json", ...args)) as T
const eventually = async <T>(what: string, f: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await f().catch(() => undefined)
    if (v !== undefined) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(200)
  }
}

/** A kernel pod as KernelObjects builds it: the runner command, the ConfigMap at /home/config
 *  (items environ.txt, resource.txt), the scratch dir at /home/work. */
const kernelObjects = (ns: string, name: string, workDir: string) => [
  { apiVersion: "v1", kind: "ConfigMap", metadata: { name, namespace: ns }, data: { environ: "FROM_CONFIG=from-environ-txt\n", resource: "CPU_SHARES=1024\n" } },
  {
    apiVersion: "v1", kind: "Pod",
    metadata: { name, namespace: ns, labels: { run: name } },
    spec: {
      restartPolicy: "Never",
      imagePullSecrets: [{ name: env.registrySecret }],
      containers: [{
        name: "kernel", image: `${env.registry.host}/lablup/python:3.6-ubuntu18.04`,
        command: ["sh", "/opt/kernel/entrypoint.sh"], args: ["/opt/backend.ai/bin/python", "-m", "ai.backend.kernel", "python", "/usr/bin/python3"],
        env: [{ name: "TESTBED_VAR", value: "hello-env" }, { name: "LD_PRELOAD", value: "/opt/kernel/libbaihook.so" }],
        ports: [{ containerPort: 2000, name: "repl-in" }, { containerPort: 2001, name: "repl-out" }],
        volumeMounts: [{ name: "config", mountPath: "/home/config", readOnly: true }, { name: "work", mountPath: "/home/work" }],
      }],
      volumes: [
        { name: "config", configMap: { name, items: [{ key: "environ", path: "environ.txt" }, { key: "resource", path: "resource.txt" }] } },
        { name: "work", hostPath: { path: workDir, type: "DirectoryOrCreate" } },
      ],
    },
  },
  {
    apiVersion: "v1", kind: "Service", metadata: { name, namespace: ns },
    spec: { type: "NodePort", selector: { run: name }, ports: [{ name: "repl-in", port: 2000, targetPort: 2000 }, { name: "repl-out", port: 2001, targetPort: "repl-out" }] },
  },
]

const connect = async (ns: string, name: string): Promise<RunnerClient> => {
  const svc = await getJson("-n", ns, "service", name)
  const nodePort = (n: string) => svc.spec.ports.find((p: any) => p.name === n).nodePort as number
  return new RunnerClient(env.nodes[1]!.ip, nodePort("repl-in"), nodePort("repl-out"), 30_000)
}

const isAlive = (pid: number): boolean => fs.existsSync(`/proc/${pid}`) && !fs.readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z ")

describe("the real 19.06 runner in the simulated kubelet", () => {
  it("runs per pod in its own namespaces, sees /home/work and /home/config, and dies with its pod", async () => {
    const ns = await freshKubeNamespace(env, "rr")
    const names = ["kernel-a", "kernel-b"]
    const workDirs = names.map((n) => path.join(env.scratchRoot, ns, n, "work"))
    for (const [i, n] of names.entries()) {
      fs.mkdirSync(workDirs[i]!, { recursive: true })
      fs.writeFileSync(path.join(workDirs[i]!, "marker.txt"), `marker of ${n}`)
      for (const o of kernelObjects(ns, n, workDirs[i]!)) await kubectlApply(o)
    }
    await eventually("both pods Running", async () => {
      const pods = await getJson<{ items: Array<any> }>("-n", ns, "pods")
      return pods.items.length === 2 && pods.items.every((p) => p.status.phase === "Running") ? true : undefined
    })
    const clients = await Promise.all(names.map((n) => connect(ns, n)))
    try {
      // both answer `status` (each bound 2000/2001 in its own network namespace)
      const statuses = await Promise.all(clients.map(async (c) => {
        await c.send("status")
        const recs = await c.collect(["status"])
        return unpack(recs[recs.length - 1]!.data) as { started_at: number }
      }))
      for (const s of statuses) expect(typeof s.started_at).toBe("number")

      // each runner sees its own work dir at /home/work and its ConfigMap at /home/config
      const probe = "import os\nprint(os.getcwd(), open('marker.txt').read(), os.environ.get('FROM_CONFIG'), os.environ.get('TESTBED_VAR'), " +
        "open('/home/config/resource.txt').read().strip(), os.getpid(), sep='|')"
      const outs = await Promise.all(clients.map(async (c) => {
        await c.send("code", probe)
        const recs = await c.collect(["finished"])
        expect(exitCodeOf(recs)).toBe(0)
        return textOf(recs, "stdout").trim().split("|")
      }))
      const kernelPids: Array<number> = []
      for (const [i, n] of names.entries()) {
        const [cwd, marker, fromConfig, testbedVar, resource, pid] = outs[i]!
        expect([cwd, marker, fromConfig, testbedVar, resource]).toEqual(["/home/work", `marker of ${n}`, "from-environ-txt", "hello-env", "CPU_SHARES=1024"])
        kernelPids.push(Number(pid))
      }
      // /home/config is read-only for the kernel
      await clients[0]!.send("code", "open('/home/config/x', 'w')")
      expect(textOf(await clients[0]!.collect(["finished"]), "stderr")).toContain("Read-only file system")

      // batch input() uses the runner's port 65000: both pods at once
      await Promise.all(clients.map((c) => c.send("exec", "/usr/bin/python3 -c 'print(\"got\", input())'")))
      await Promise.all(clients.map((c) => c.collect(["waiting-input"])))
      await Promise.all(clients.map((c, i) => c.send("input", `answer-${i}`)))
      const answers = await Promise.all(clients.map(async (c) => textOf(await c.collect(["finished"]), "stdout")))
      expect(answers).toEqual(["got answer-0\n", "got answer-1\n"])

      // the runner's output is the container log
      expect(await kubectl("-n", ns, "logs", "kernel-a")).toContain("got answer-0")

      // deleting a pod ends its runner and the runner's ipykernel
      expect(kernelPids.every(isAlive)).toBe(true)
      await kubectl("-n", ns, "delete", "pod", "kernel-a", "--wait=true", "--timeout=60s")
      await eventually("kernel-a's ipykernel gone", async () => (isAlive(kernelPids[0]!) ? undefined : true))
      expect(isAlive(kernelPids[1]!)).toBe(true)
    } finally {
      for (const c of clients) c.close()
      await kubectl("delete", "namespace", ns, "--wait=false").catch(() => undefined)
    }
  }, 180_000)
})
