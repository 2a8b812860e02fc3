// The testbed's acceptance tests, with the built kubectl as the independent observer.
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as https from "node:https"
import * as path from "node:path"
import { promisify } from "node:util"
import { Etcd3 } from "etcd3"
import { Redis } from "ioredis"
import { unpack } from "msgpackr"
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest"
import { freshEtcdNamespace, freshKubeNamespace, type TestbedEnv } from "./env.ts"
import { sleep } from "./ports.ts"
import { isRunning } from "./processes.ts"
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
const eventually = async <T>(what: string, f: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await f().catch(() => undefined)
    if (v !== undefined) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(200)
  }
}
const image = (tag: string) => `${env.registry.host}/lablup/python:${tag}`

const kernelPod = (ns: string, name: string, tag = "3.6-ubuntu18.04", extra: Record<string, unknown> = {}) => ({
  apiVersion: "v1", kind: "Pod",
  metadata: { name, namespace: ns, labels: { run: name } },
  spec: {
    imagePullSecrets: [{ name: env.registrySecret }],
    containers: [{
      name: "kernel", image: image(tag), env: [{ name: "TESTBED_VAR", value: "hello-env" }],
      ports: [{ containerPort: 2000, name: "repl-in" }, { containerPort: 2001, name: "repl-out" }, { containerPort: 8080, name: "jupyter" }],
      volumeMounts: [{ name: "work", mountPath: "/home/work" }, { name: "environ", mountPath: "/home/config/environ.txt", subPath: "environ" }],
      ...extra,
    }],
    volumes: [
      { name: "work", hostPath: { path: path.join(env.scratchRoot, ns, name, "work"), type: "DirectoryOrCreate" } },
      { name: "environ", configMap: { name: `${name}-configmap`, optional: true } },
    ],
  },
})

const nodePortService = (ns: string, name: string) => ({
  apiVersion: "v1", kind: "Service", metadata: { name, namespace: ns },
  spec: {
    type: "NodePort", selector: { run: name },
    ports: [{ name: "repl-in", port: 2000, targetPort: 2000 }, { name: "repl-out", port: 2001, targetPort: "repl-out" }, { name: "jupyter", port: 8080, targetPort: 8080 }],
  },
})

const connectRunner = async (ns: string, service: string): Promise<RunnerClient> => {
  const svc = await getJson("-n", ns, "service", service)
  const nodePort = (name: string) => svc.spec.ports.find((p: any) => p.name === name).nodePort as number
  return new RunnerClient(env.nodes[0]!.ip, nodePort("repl-in"), nodePort("repl-out"))
}
const KILL_MY_RUNNER = "import os, signal; os.kill(os.getppid(), signal.SIGKILL)"

describe("datastores and registry", () => {
  it("seeds the agent's etcd with the manager/admin keys, also in fresh namespaces", async () => {
    const ns = await freshEtcdNamespace(env)
    const etcd = new Etcd3({ hosts: `http://${env.etcd}` })
    try {
      for (const prefix of [env.etcdNamespace, ns]) {
        const kv = await etcd.getAll().prefix(`/sorna/${prefix}/`).strings()
        expect(kv[`/sorna/${prefix}/nodes/manager/event_addr`]).toBe(env.eventAddr)
        expect(kv[`/sorna/${prefix}/config/redis/addr`]).toBe(env.redis)
        expect(kv[`/sorna/${prefix}/config/docker/registry/${encodeURIComponent(env.registry.host)}`]).toBe(env.registry.url)
        expect(kv[`/sorna/${prefix}/volumes/_mount`]).toBe(env.vfolderMount)
      }
    } finally { etcd.close() }
  })

  it("runs Redis", async () => {
    const [host, port] = env.redis.split(":")
    const redis = new Redis({ host: host!, port: Number(port), lazyConnect: true })
    await redis.connect()
    expect(await redis.ping()).toBe("PONG")
    redis.disconnect()
  })

  it("serves the seeded images behind basic auth, with kernel labels", async () => {
    expect((await fetch(`${env.registry.url}/v2/`)).status).toBe(401)
    const auth = { authorization: `Basic ${Buffer.from(`${env.registry.username}:${env.registry.password}`).toString("base64")}` }
    const tags = await (await fetch(`${env.registry.url}/v2/lablup/python/tags/list`, { headers: auth })).json() as { tags: Array<string> }
    expect(tags.tags.sort()).toEqual(["3.6-ubuntu18.04", "3.9-ubuntu20.04"])
    const manifest = await (await fetch(`${env.registry.url}/v2/lablup/python/manifests/3.6-ubuntu18.04`, {
      headers: { ...auth, accept: "application/vnd.docker.distribution.manifest.v2+json" },
    })).json() as { config: { digest: string } }
    const config = await (await fetch(`${env.registry.url}/v2/lablup/python/blobs/${manifest.config.digest}`, { headers: auth })).json() as any
    expect(config.config.Labels).toMatchObject({
      "ai.backend.kernelspec": "1", "ai.backend.runtime-type": "python", "ai.backend.service-ports": "jupyter:http:8080,myapp:tcp:8081",
    })
  })
})

describe("cluster", () => {
  it("shows the simulated nodes Ready with their capacities", async () => {
    const nodes = await getJson<{ items: Array<any> }>("nodes")
    for (const n of env.nodes) {
      const node = nodes.items.find((x) => x.metadata.name === n.name)
      expect(node, n.name).toBeDefined()
      expect(node.status.conditions.find((c: any) => c.type === "Ready").status).toBe("True")
      expect(node.status.capacity.cpu).toBe(String(n.cpu))
      expect(node.status.capacity.memory).toBe(n.memory)
      expect(node.status.capacity["nvidia.com/gpu"]).toBe(n.gpu > 0 ? String(n.gpu) : undefined)
      expect(node.status.addresses).toContainEqual({ type: "InternalIP", address: n.ip })
    }
  })

  it("survives requests that make the apiserver sort map keys (curl's User-Agent, ?pretty): Debian's reflect2 1.0.2 is vendored", async () => {
    // With the vendored reflect2 v1.0.1 built by Go >= 1.18, the first such request killed the apiserver
    // ("unexpected fault address 0x0 / fatal error: fault" in json-iterator's sortKeysMapEncoder).
    const apiserver = env.pids.find((p) => p.name === "kube-apiserver")!
    const get = (p: string, userAgent: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const u = new URL(env.apiserver)
        const req = https.get({
          host: u.hostname, port: Number(u.port), path: p, rejectUnauthorized: false,
          headers: { authorization: `Bearer ${env.apiserverToken}`, "user-agent": userAgent },
        }, (res) => {
          let body = ""
          res.setEncoding("utf8").on("data", (c: string) => { body += c }).on("end", () => resolve({ status: res.statusCode ?? 0, body }))
        })
        req.on("error", reject)
      })
    // nodes carry label and capacity maps: pretty-printing them sorts map keys
    const pretty = await get(`/api/v1/nodes/${env.nodes[0]!.name}`, "curl/7.88.1")
    expect(pretty.status).toBe(200)
    expect(pretty.body).toContain(`\n  "kind": "Node",\n`) // indented: the pretty printer ran
    const explicit = await get("/api/v1/namespaces?pretty=true", "bai-testbed")
    expect(explicit.status).toBe(200)
    expect(JSON.parse(explicit.body).kind).toBe("NamespaceList")
    expect(isRunning(apiserver)).toBe(true)
    expect((await get("/readyz", "bai-testbed")).body).toBe("ok")
  })

  it("reports a missing image tag as ErrImagePull, then ImagePullBackOff", async () => {
    const ns = await freshKubeNamespace(env)
    await kubectlApply(kernelPod(ns, "missing", "0.0-does-not-exist"))
    const seen = new Set<string>()
    await eventually("ImagePullBackOff", async () => {
      const pod = await getJson("-n", ns, "pod", "missing")
      const reason = pod.status.containerStatuses?.[0]?.state?.waiting?.reason
      if (reason !== undefined) seen.add(reason)
      expect(pod.status.phase).toBe("Pending")
      return reason === "ImagePullBackOff" ? true : undefined
    })
    expect([...seen]).toContain("ImagePullBackOff")
    expect(seen.has("ErrImagePull") || seen.size === 1).toBe(true)
    const events = await getJson<{ items: Array<any> }>("-n", ns, "events")
    expect(events.items.some((e) => e.reason === "Failed" && e.source?.component === "kubelet" && e.message.includes("0.0-does-not-exist"))).toBe(true)
    await kubectl("delete", "namespace", ns, "--wait=false")
  })

  it("leaves a pod asking for 5 GPUs Pending with the scheduler's message", async () => {
    const ns = await freshKubeNamespace(env)
    await kubectlApply(kernelPod(ns, "gpu5", "3.6-ubuntu18.04", { resources: { limits: { "nvidia.com/gpu": "5" } } }))
    const message = await eventually("FailedScheduling", async () => {
      const pod = await getJson("-n", ns, "pod", "gpu5")
      const cond = pod.status.conditions?.find((c: any) => c.type === "PodScheduled" && c.status === "False")
      return cond?.message as string | undefined
    })
    expect(message).toContain("Insufficient nvidia.com/gpu")
    expect((await getJson("-n", ns, "pod", "gpu5")).status.phase).toBe("Pending")
    await kubectl("delete", "namespace", ns, "--wait=false")
  })
})

describe("a kernel pod behind a NodePort service", () => {
  let ns = ""
  let client: RunnerClient
  let host = ""

  beforeAll(async () => {
    ns = await freshKubeNamespace(env)
    await kubectlApply({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "k1-configmap", namespace: ns }, data: { environ: "FROM_ENVIRON=yes\n" } })
    await kubectlApply(kernelPod(ns, "k1"))
    await kubectlApply(nodePortService(ns, "k1"))
    const pod = await eventually("pod Running", async () => {
      const p = await getJson("-n", ns, "pod", "k1")
      return p.status.phase === "Running" ? p : undefined
    })
    expect(pod.status.podIP).toMatch(/^127\./)
    host = pod.status.hostIP
    const svc = await getJson("-n", ns, "service", "k1")
    const nodePort = (name: string) => svc.spec.ports.find((p: any) => p.name === name).nodePort as number
    // kube-proxy semantics: any node IP forwards; dial the node the pod is NOT on when there is one
    const other = env.nodes.find((n) => n.ip !== host)?.ip ?? host
    client = new RunnerClient(other, nodePort("repl-in"), nodePort("repl-out"))
  })

  afterAll(async () => {
    client?.close()
    if (ns !== "") await kubectl("delete", "namespace", ns, "--wait=false").catch(() => undefined)
  })

  it("answers a ZeroMQ status request through the NodePort", async () => {
    await client.send("status")
    const [rec] = await client.collect(["status"])
    expect(typeof (unpack(rec!.data) as { started_at: number }).started_at).toBe("number")
  })

  it("runs python code in the work dir with the container env", async () => {
    await client.send("code", "import os\nprint(os.getcwd(), os.environ['TESTBED_VAR'], os.environ['FROM_ENVIRON'])\nprint('to stderr', file=__import__('sys').stderr)")
    const recs = await client.collect(["finished"])
    expect(textOf(recs, "stdout")).toBe(`${path.join(env.scratchRoot, ns, "k1", "work")} hello-env yes\n`)
    expect(textOf(recs, "stderr")).toBe("to stderr\n")
    expect(exitCodeOf(recs)).toBe(0)
  })

  it("runs batch clean/build/exec, and answers exec after a failed build with 127", async () => {
    await client.send("clean", "echo cleaning > clean.txt")
    await client.send("build", "echo building")
    await client.send("exec", "cat clean.txt; exit 3")
    const ok = await client.collect(["finished"])
    const types = ok.map((r) => r.type).filter((t, i, all) => t !== all[i - 1]) // output may come in several chunks
    expect(types).toEqual(["clean-finished", "stdout", "build-finished", "stdout", "finished"])
    expect(textOf(ok, "stdout")).toBe("building\ncleaning\n")
    expect(exitCodeOf(ok)).toBe(3)

    await client.send("clean", "")
    await client.send("build", "echo broken >&2; exit 2")
    await client.send("exec", "echo must-not-run")
    const failed = await client.collect(["finished"])
    expect(failed.find((r) => r.type === "build-finished")!.data.toString()).toBe('{"exitCode":2}')
    expect(textOf(failed, "stdout")).toBe("")
    expect(exitCodeOf(failed)).toBe(127)
  })

  it("asks for input and feeds it to the program", async () => {
    await client.send("code", "name = input('who? ')\nprint('hello', name)")
    const first = await client.collect(["waiting-input", "finished"])
    expect(first.at(-1)!.type).toBe("waiting-input")
    expect(JSON.parse(first.at(-1)!.data.toString())).toEqual({ is_password: false })
    expect(textOf(first, "stdout")).toBe("who? ")
    await client.send("input", "runner")
    const rest = await client.collect(["finished"])
    expect(textOf(rest, "stdout")).toBe("hello runner\n")
    expect(exitCodeOf(rest)).toBe(0)
  })

  it("interrupts a running program", async () => {
    await client.send("code", "import time\nprint('sleeping', flush=True)\ntime.sleep(60)")
    const started = await client.collectUntil((recs) => textOf(recs, "stdout").endsWith("\n"))
    expect(textOf(started, "stdout")).toBe("sleeping\n")
    await client.send("interrupt")
    // the interrupt, not the end of the 60 s sleep, finished the run: KeyboardInterrupt and a failure exit
    const rest = await client.collect(["finished"])
    expect(textOf(rest, "stderr")).toContain("KeyboardInterrupt")
    expect(exitCodeOf(rest)).not.toBe(0)
  })

  it("completes names and starts services reachable through the NodePort", async () => {
    await client.send("complete", JSON.stringify({ code: "pri", options: {} }))
    const [completion] = await client.collect(["completion"])
    expect(JSON.parse(completion!.data.toString())).toContain("print(")
    const spec = JSON.stringify({ name: "jupyter", port: 8080, protocol: "http", options: {} })
    await client.send("start-service", spec)
    expect(JSON.parse((await client.collect(["service-result"]))[0]!.data.toString())).toEqual({ status: "started" })
    await client.send("start-service", spec)
    expect(JSON.parse((await client.collect(["service-result"]))[0]!.data.toString())).toEqual({ status: "running" })
    const svc = await getJson("-n", ns, "service", "k1")
    const port = svc.spec.ports.find((p: any) => p.name === "jupyter").nodePort
    const res = await fetch(`http://${host}:${port}/`)
    expect(await res.text()).toContain("jupyter")
  })

  it("serves the runner's output to kubectl logs", async () => {
    const logs = await kubectl("-n", ns, "logs", "k1")
    expect(logs).toContain("hello-env")
    expect(logs).toContain("hello runner")
    const last = await kubectl("-n", ns, "logs", "k1", "--tail=1")
    expect(last.trim().split("\n")).toHaveLength(1)
  })

  it("reports the runner's real usage in the stats summary", async () => {
    await client.send("code", "x = 0\nfor i in range(3_000_000): x += i\nprint(x)")
    await client.collect(["finished"])
    const pod = await getJson("-n", ns, "pod", "k1")
    const stats = JSON.parse(await kubectl("get", "--raw", `/api/v1/nodes/${pod.spec.nodeName}/proxy/stats/summary`))
    expect(stats.node.nodeName).toBe(pod.spec.nodeName)
    const ps = stats.pods.find((p: any) => p.podRef.name === "k1" && p.podRef.namespace === ns)
    expect(ps.podRef.uid).toBe(pod.metadata.uid)
    expect(ps.cpu.usageCoreNanoSeconds).toBeGreaterThan(1e8) // the python loop ran in a child of the runner
    expect(ps.memory.workingSetBytes).toBeGreaterThan(10 << 20)
    expect(ps.network.rxBytes).toBeGreaterThan(0)
    expect(ps.network.txBytes).toBeGreaterThan(0)
    expect(ps.volume[0].usedBytes).toBeGreaterThan(0) // clean.txt in the work dir
    expect(ps.containers[0].name).toBe("kernel")
  })

  it("deleting the pod garbage-collects what it owns and stops the runner", async () => {
    await client.send("code", "import os; print(os.getppid())")
    const runnerPid = Number(textOf(await client.collect(["finished"]), "stdout").trim())
    expect(process.kill(runnerPid, 0)).toBe(true)
    const pod = await getJson("-n", ns, "pod", "k1")
    await kubectlApply({
      apiVersion: "v1", kind: "ConfigMap", data: { a: "b" },
      metadata: { name: "k1-owned", namespace: ns, ownerReferences: [{ apiVersion: "v1", kind: "Pod", name: "k1", uid: pod.metadata.uid }] },
    })
    await kubectl("-n", ns, "delete", "pod", "k1", "--timeout=20s")
    await eventually("ConfigMap garbage-collected", async () => {
      const cms = await getJson<{ items: Array<any> }>("-n", ns, "configmaps")
      return cms.items.some((c) => c.metadata.name === "k1-owned") ? undefined : true
    })
    const alive = () => { try { process.kill(runnerPid, 0); return true } catch { return false } }
    await eventually("runner stopped", async () => (alive() ? undefined : true), 5000)
  })
})

describe("runner exits", () => {
  it("marks a restartPolicy=Never pod Failed with the exit code", async () => {
    const ns = await freshKubeNamespace(env)
    const pod = kernelPod(ns, "once") as any
    pod.spec.restartPolicy = "Never"
    await kubectlApply(pod)
    await kubectlApply(nodePortService(ns, "once"))
    await eventually("Running", async () => ((await getJson("-n", ns, "pod", "once")).status.phase === "Running" ? true : undefined))
    const client = await connectRunner(ns, "once")
    try { await client.send("code", KILL_MY_RUNNER) } finally { setTimeout(() => client.close(), 500) }
    const status = await eventually("Failed", async () => {
      const p = await getJson("-n", ns, "pod", "once")
      return p.status.phase === "Failed" ? p.status : undefined
    })
    expect(status.containerStatuses[0].state.terminated).toMatchObject({ exitCode: 137, reason: "Error" })
    await kubectl("delete", "namespace", ns, "--wait=false")
  })

  it("restarts the runner of a Deployment's pod", async () => {
    const ns = await freshKubeNamespace(env)
    const template = kernelPod(ns, "dep") as any
    await kubectlApply({
      apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "dep", namespace: ns },
      spec: { replicas: 1, selector: { matchLabels: { run: "dep" } }, template: { metadata: { labels: { run: "dep" } }, spec: template.spec } },
    })
    await kubectlApply(nodePortService(ns, "dep"))
    const running = async (restarts: number) => {
      const list = await getJson<{ items: Array<any> }>("-n", ns, "pods", "-l", "run=dep")
      const cs = list.items[0]?.status?.containerStatuses?.[0]
      return cs?.state?.running !== undefined && cs.restartCount === restarts ? cs : undefined
    }
    await eventually("Running", () => running(0))
    const client = await connectRunner(ns, "dep")
    await client.send("code", KILL_MY_RUNNER)
    const cs = await eventually("restarted", () => running(1))
    expect(cs.lastState.terminated.exitCode).toBe(137)
    await client.send("status") // the NodePort now reaches the new runner
    expect((await client.collect(["status"]))[0]!.type).toBe("status")
    client.close()
    await kubectl("delete", "namespace", ns, "--wait=false")
  })
})
