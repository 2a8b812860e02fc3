// Test support for the real-node tests: the real agent process (`node dist/main.js`) configured for
// a fresh etcd namespace and Kubernetes namespace, whose kernels land on the real node (node
// selector), with the krunner volume the testbed built; the manager side is an aiozmq client plus a
// PULL socket for the agent's events.
import { Context, Effect, Layer, Queue, Ref } from "effect"
import { type ChildProcess, execFile, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { inject } from "vitest"
import * as Zmq from "zeromq"
import { AgentRpcs } from "../../../src/rpc/AgentRpcs.ts"
import { AiozmqClient, type AiozmqClientShape } from "../../../src/rpc/aiozmq/AiozmqClient.ts"
import * as Msgpack from "../../../src/codec/Msgpack.ts"
import { freshEtcdNamespace, freshKubeNamespace, type RealNodeEnv, type TestbedEnv } from "../env.ts"
import { freePort } from "../ports.ts"
import { REAL_NODE_LABEL } from "./node.ts"

const root = path.join(import.meta.dirname, "..", "..", "..")
const mainJs = path.join(root, "dist", "main.js")

export interface AgentEvent { readonly name: string; readonly args: ReadonlyArray<unknown> }

export interface SiteOptions {
  /** `kubernetes.registry.pull-secret` ("" = none) */
  readonly pullSecret?: string
  /** `kubernetes.termination-grace` in seconds */
  readonly graceSeconds?: number
  /** `kubernetes.runner-address` (absent: the agent's default) */
  readonly runnerAddress?: "node-port" | "pod-ip"
}

const sh = (cmd: string, args: ReadonlyArray<string>) =>
  Effect.callback<string, Error>((resume) => {
    execFile(cmd, [...args], { maxBuffer: 32 << 20 }, (err, stdout, stderr) => {
      resume(err ? Effect.fail(new Error(`${cmd} ${args.join(" ")}: ${stderr || err.message}`)) : Effect.succeed(stdout))
    })
  })

export const kubectlJson = (env: TestbedEnv, args: ReadonlyArray<string>) =>
  sh(env.kubectl, ["--kubeconfig", env.kubeconfig, ...args, "-o", "json"]).pipe(Effect.map((s) => JSON.parse(s) as any))

/** The body of a GET of `path` on the API server, as the server sent it (`kubectl get --raw`). */
export const kubectlRaw = (env: TestbedEnv, path: string) => sh(env.kubectl, ["--kubeconfig", env.kubeconfig, "get", "--raw", path])

const exited = (c: ChildProcess) => c.exitCode !== null || c.signalCode !== null
const waitExit = (c: ChildProcess) => Effect.callback<void>((resume) => { if (exited(c)) resume(Effect.void); else c.once("exit", () => resume(Effect.void)) })

export class RealNodeAgent extends Context.Service<RealNodeAgent, {
  readonly env: TestbedEnv
  readonly node: RealNodeEnv
  readonly kubeNs: string
  readonly agentId: string
  readonly scratchRoot: string
  readonly graceSeconds: number
  readonly log: string
  readonly client: AiozmqClientShape
  readonly events: Queue.Queue<AgentEvent>
  /** SIGKILL the agent process and start a new one on the same config; resolves when it answers ping */
  readonly restart: Effect.Effect<void, Error>
  /** The same, with `kubernetes.runner-address` changed for this and later starts */
  readonly restartWithRunnerAddress: (mode: "node-port" | "pod-ip") => Effect.Effect<void, Error>
}>()("test/RealNodeAgent") {
  static layer = (options: SiteOptions = {}) => Layer.effect(RealNodeAgent, make(options))
}

const make = (options: SiteOptions) =>
  Effect.gen(function*() {
    const env: TestbedEnv = inject("testbed")
    const node = env.realNode
    if (node === undefined) return yield* Effect.fail(new Error("the testbed has no real node (the realnode project starts it with --real-node)"))
    if (!fs.existsSync(mainJs)) return yield* Effect.fail(new Error("dist/main.js is missing: npm run build"))
    const etcdNs = yield* Effect.promise(() => freshEtcdNamespace(env, "rn"))
    const kubeNs = yield* Effect.promise(() => freshKubeNamespace(env, "rn"))
    yield* Effect.addFinalizer(() => sh(env.kubectl, ["--kubeconfig", env.kubeconfig, "delete", "namespace", kubeNs, "--wait=false"]).pipe(Effect.ignore))
    const scratchRoot = yield* Effect.acquireRelease(
      Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "bai-rn-scratch-"))),
      (d) => Effect.sync(() => fs.rmSync(d, { recursive: true, force: true })),
    )
    // the manager's event socket: seeded as this etcd namespace's event address
    const eventPort = yield* Effect.promise(() => freePort())
    const { seedEtcd } = yield* Effect.promise(() => import("../datastores.ts"))
    yield* Effect.promise(() => seedEtcd(env.etcd, etcdNs, {
      redis: env.redis, eventAddr: `127.0.0.1:${eventPort}`, registry: env.registry, vfolderMount: env.vfolderMount, watcherToken: env.watcherToken,
    }))
    const events = yield* Queue.unbounded<AgentEvent>()
    const pull = yield* Effect.acquireRelease(
      Effect.promise(async () => { const s = new Zmq.Pull({ linger: 0 }); await s.bind(`tcp://127.0.0.1:${eventPort}`); return s }),
      (s) => Effect.sync(() => s.close()),
    )
    yield* Effect.tryPromise(() => pull.receive()).pipe(
      Effect.flatMap(([name, _agent, body]) => Queue.offer(events, { name: name!.toString(), args: Msgpack.decode(body!) as ReadonlyArray<unknown> })),
      Effect.forever, Effect.ignore, Effect.forkScoped,
    )
    const rpcPort = yield* Effect.promise(() => freePort())
    const metricsPort = yield* Effect.promise(() => freePort())
    const agentId = `i-rn-${etcdNs}`
    const graceSeconds = options.graceSeconds ?? 2
    const toml = path.join(scratchRoot, "..", `${path.basename(scratchRoot)}.toml`)
    const log = path.join(env.stateDir, "log", `agent-${etcdNs}.log`)
    const writeToml = (runnerAddress: SiteOptions["runnerAddress"]) => fs.writeFileSync(toml, [
      "[etcd]", `namespace = "${etcdNs}"`, `addr = "${env.etcd}"`,
      "[agent]", `id = "${agentId}"`, `rpc-listen-addr = "127.0.0.1:${rpcPort}"`,
      // kernel-uid/gid: the scratch dir (the pod's /home/work) is given to the entrypoint's `work` user; left
      // unset, it stays root's 0755 and the 19.06 python runner dies at start (mkdir /home/work/.local: EACCES)
      "[container]", `scratch-root = "${scratchRoot}"`, "create-timeout = 120", "kernel-uid = 9001", "kernel-gid = 9001",
      "[kubernetes]", `namespace = "${kubeNs}"`, `kubeconfig = "${env.kubeconfig}"`, `termination-grace = ${graceSeconds}`,
      `node-selector = "${REAL_NODE_LABEL}=true"`,
      ...(runnerAddress !== undefined ? [`runner-address = "${runnerAddress}"`] : []),
      "[kubernetes.registry]", `url = "${env.registry.url}"`,
      ...(options.pullSecret !== undefined ? [`pull-secret = "${options.pullSecret}"`] : []),
      "[kubernetes.krunner-volume]", 'type = "hostPath"', `path = "${node.krunnerRoot}"`, `python-version = "${node.krunnerPythonVersion}"`,
      "[metrics]", `service-addr = "127.0.0.1:${metricsPort}"`,
      "",
    ].join("\n"))
    writeToml(options.runnerAddress)
    yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(toml, { force: true })))

    const current = yield* Ref.make<ChildProcess | undefined>(undefined)
    const startProcess = Effect.sync(() => {
      const out = fs.openSync(log, "a")
      const child = spawn(process.execPath, [mainJs, "-f", toml], { stdio: ["ignore", out, out] })
      fs.closeSync(out)
      return child
    })
    const stopProcess = (signal: NodeJS.Signals) => Effect.gen(function*() {
      const c = yield* Ref.get(current)
      if (c === undefined || exited(c)) return
      c.kill(signal)
      yield* waitExit(c).pipe(Effect.timeoutOrElse({ duration: "60 seconds", orElse: () => Effect.sync(() => c.kill("SIGKILL")).pipe(Effect.andThen(waitExit(c))) }))
    })
    yield* Effect.addFinalizer(() => stopProcess("SIGTERM"))
    const client = yield* AiozmqClient.make({ connect: `tcp://127.0.0.1:${rpcPort}`, timeout: "180 seconds", lingerMillis: 0 })
    const up = Effect.gen(function*() {
      const child = yield* startProcess
      yield* Ref.set(current, child)
      for (let i = 0; i < 120; i++) {
        if (exited(child)) return yield* Effect.fail(new Error(`the agent exited (code ${child.exitCode}) before answering ping; log ${log}`))
        const pong = yield* client.invoke(AgentRpcs.ping, "up").pipe(Effect.timeout("1 second"), Effect.option)
        if (pong._tag === "Some") return
      }
      return yield* Effect.fail(new Error(`the agent did not answer ping; log ${log}`))
    })
    yield* up
    return RealNodeAgent.of({
      env, node, kubeNs, agentId, scratchRoot, graceSeconds, log, client, events,
      restart: stopProcess("SIGKILL").pipe(Effect.andThen(up)),
      restartWithRunnerAddress: (mode) =>
        stopProcess("SIGKILL").pipe(Effect.andThen(Effect.sync(() => writeToml(mode))), Effect.andThen(up)),
    })
  })

/** The next event `name` about `kernelId` (other events are dropped). */
export const takeEvent = (name: string, kernelId: string) =>
  Effect.gen(function*() {
    const { events } = yield* RealNodeAgent
    for (;;) {
      const e = yield* Queue.take(events)
      if (e.name === name && e.args[0] === kernelId) return e
    }
  }).pipe(Effect.timeoutOrElse({ duration: "120 seconds", orElse: () => Effect.fail(new Error(`no ${name} event for ${kernelId} within 120 s`)) }))

export const realImage = (env: TestbedEnv, repoTag: string, labels: Record<string, string>) => ({
  registry: { name: "index.docker.io", url: "https://registry-1.docker.io" },
  canonical: `index.docker.io/${repoTag}`,
  digest: env.images[repoTag] ?? "",
  labels,
})

export const PYTHON_LABELS = {
  "ai.backend.kernelspec": "1",
  "ai.backend.runtime-type": "python",
  "ai.backend.runtime-path": "/usr/bin/python3",
  "ai.backend.envs.corecount": "OPENBLAS_NUM_THREADS,OMP_NUM_THREADS",
  "ai.backend.features": "batch query uid-match user-input",
  "ai.backend.base-distro": "ubuntu18.04",
  "ai.backend.service-ports": "jupyter:http:8080,myapp:tcp:8081",
}

export const kernelConfig = (env: TestbedEnv, slots: { cpu: string; mem: string }, image = realImage(env, "lablup/python:3.6-ubuntu18.04", PYTHON_LABELS)) => ({
  image,
  resource_slots: slots,
  idle_timeout: 0,
  mounts: [],
  environ: { FOO: "bar" },
})

/** Runs `code` in query mode to completion (following `continued`); the result's text (stdout+console) and exit code. */
export const runCode = (kernelId: string, code: string) =>
  Effect.gen(function*() {
    const { client } = yield* RealNodeAgent
    const runId = crypto.randomUUID()
    let r = yield* client.invoke(AgentRpcs.execute, 3, kernelId, runId, "query", code, {}, 30)
    let text = JSON.stringify(r)
    for (let i = 0; i < 20 && r !== null && r.status === "continued"; i++) {
      r = yield* client.invoke(AgentRpcs.execute, 3, kernelId, runId, "continue", "", {}, 30)
      text += JSON.stringify(r)
    }
    return { status: r?.status, exitCode: r?.exitCode ?? null, text, result: r }
  })

/** The kernel's pod as the API server has it. */
export const kernelPod = (kernelId: string) =>
  Effect.gen(function*() {
    const { env, kubeNs } = yield* RealNodeAgent
    const list = yield* kubectlJson(env, ["-n", kubeNs, "get", "pods", "-l", `backend.ai/kernel-id=${kernelId}`])
    return list.items[0] as any
  })
