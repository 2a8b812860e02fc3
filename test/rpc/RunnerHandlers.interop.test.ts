// execute / interrupt_kernel / get_completions / start_service / get_logs / files end to end against
// the REAL Backend.AI 19.06 kernel runner: the Python aiozmq client (what manager 19.06 uses) talks to
// the agent's RPC socket; kernels are created with create_kernel on the interop testbed, whose
// simulated kubelet runs the real runner (../shared/upstream/backend.ai-kernel-runner-19.06) in each
// python kernel pod, behind NodePorts. Checks are in runner_handlers_real.py; the services cases that
// need the runner's blocking start-service are below, in Effect.
import { execFile } from "node:child_process"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { inject } from "vitest"
import { AgentShutdown } from "../../src/kernel/AgentShutdown.ts"
import { KernelExecution } from "../../src/kernel/KernelExecution.ts"
import { KernelFiles } from "../../src/kernel/KernelFiles.ts"
import { KernelLifecycle } from "../../src/kernel/KernelLifecycle.ts"
import { AgentRpcHandlers } from "../../src/rpc/AgentRpcs.ts"
import { AiozmqServer } from "../../src/rpc/aiozmq/AiozmqServer.ts"
import { HealthHandlers } from "../../src/rpc/handlers/Health.ts"
import { KernelHandlers } from "../../src/rpc/handlers/Kernel.ts"
import { RunnerHandlers } from "../../src/rpc/handlers/Runner.ts"
import { pythonExecutable } from "../interop/python.ts"
import { lifecycleLayer, makeSite, pythonConfig, type Site } from "../kernel/KernelLifecycleSupport.ts"
import type { TestbedEnv } from "../testbed/env.ts"
import { consoleText, executeToEnd, executionLayer } from "./RealRunnerSupport.ts"

const env: TestbedEnv = inject("testbed")

/** The agent's RPC side on a free port, over the lifecycle stack of `site`. */
const agentLayer = (site: Site) => {
  const Core = lifecycleLayer(site)
  const Services = Layer.mergeAll(KernelExecution.layer, KernelFiles.layer, AgentShutdown.layerTest).pipe(Layer.provideMerge(Core))
  const Handlers = AgentRpcHandlers.layer(HealthHandlers, KernelHandlers, RunnerHandlers).pipe(Layer.provide(Services))
  return AiozmqServer.layer({ bind: "tcp://127.0.0.1:*" }).pipe(Layer.provide(Handlers))
}

const python = (args: ReadonlyArray<string>) =>
  Effect.callback<string, Error>((resume) => {
    const child = execFile(
      pythonExecutable,
      [path.join(import.meta.dirname, "runner_handlers_real.py"), ...args],
      { maxBuffer: 16 * 1024 * 1024, timeout: 400_000 },
      (err, stdout, stderr) => resume(err ? Effect.fail(new Error(`${err.message}\n${stderr}`)) : Effect.succeed(stdout))
    )
    return Effect.sync(() => child.kill("SIGKILL"))
  })

/** A user's `notebook.py` in /home/work (the python runner's "jupyter" service runs `<python> -m
 *  notebook --config <file>` there) that waits `delay` seconds, then serves HTTP on the port the runner
 *  wrote into the config file. */
const slowNotebook = (delay: number) =>
  [
    "import http.server, re, sys, time",
    `time.sleep(${delay})`,
    "conf = open(sys.argv[sys.argv.index('--config') + 1]).read()",
    "port = int(re.search(r'c.NotebookApp.port = (\\d+)', conf).group(1))",
    "http.server.HTTPServer(('0.0.0.0', port), http.server.SimpleHTTPRequestHandler).serve_forever()",
    ""
  ].join("\n")

describe("runner-backed RPCs against the real 19.06 runner", () => {
  it.live("manager-side aiozmq client: state, exceptions, media, input (query and batch), interrupt, FIFO, completions, services, logs, files", () =>
    Effect.gen(function*() {
      const site = yield* makeSite(env)
      const server = yield* Layer.build(agentLayer(site))
      const endpoint = (yield* AiozmqServer.pipe(Effect.provideContext(server))).endpoint
      const [kid1, kid2] = [crypto.randomUUID(), crypto.randomUUID()]
      const out = yield* python([endpoint, kid1, kid2, JSON.stringify(pythonConfig(env))])
      const result = JSON.parse(out.trim().split("\n").pop()!) as {
        ok: boolean
        interrupt_seconds: number
        completion_seconds: number
        loop_polls: Array<string>
      }
      assert.isTrue(result.ok)
      yield* Effect.logInfo(
        `interrupt → finished in ${result.interrupt_seconds} s; get_completions answered in ${result.completion_seconds} s; ` +
          `loop polls: ${result.loop_polls.join(",")}`
      )
    }).pipe(Effect.scoped), 420_000)

  it.live("a pty service fails in the runner (NotImplementedError) and the runner keeps serving", () =>
    Effect.gen(function*() {
      const site = yield* makeSite(env)
      const kid = crypto.randomUUID()
      yield* Effect.gen(function*() {
        const config = pythonConfig(env)
        const labels = { ...config.image.labels, "ai.backend.service-ports": "ipython:pty:7681" }
        yield* (yield* KernelLifecycle).create(kid, { ...config, image: { ...config.image, labels } })
        const execution = yield* KernelExecution
        const r = yield* execution.startService(kid, "ipython", {})
        assert.strictEqual(r.status, "failed")
        assert.include(r.error ?? "", "NotImplementedError")
        const q = yield* executeToEnd(kid, "print(6 * 7)")
        assert.strictEqual(consoleText(q, "stdout"), "42\n")
        yield* (yield* KernelLifecycle).destroy(kid, "user-requested")
      }).pipe(Effect.provide(executionLayer(site)))
    }).pipe(Effect.scoped), 180_000)

  // fidelity item 7 (issue 12, fidelity-19.06.md §1.4): the 19.06 Docker agent waits 30 s for
  // `service-result`; the real runner blocks its loop until the service's port opens (no deadline), and
  // the keep-alive `status` pings queued behind it must not be taken as a dead runner. Before the fix
  // the agent waited 10 s → "failed: timeout".
  it.live("start_service waits for a service that opens its port after 15 s (Docker agent: 30 s) and the kernel stays usable", () =>
    Effect.gen(function*() {
      const site = yield* makeSite(env)
      const kid = crypto.randomUUID()
      yield* Effect.gen(function*() {
        const lifecycle = yield* KernelLifecycle
        yield* lifecycle.create(kid, pythonConfig(env))
        const files = yield* KernelFiles
        yield* files.upload(kid, "notebook.py", new TextEncoder().encode(slowNotebook(15)))
        const execution = yield* KernelExecution
        const r = yield* execution.startService(kid, "jupyter", {})
        yield* Effect.logInfo(`start_service of a service slower than 10 s answered ${JSON.stringify(r)}`)
        assert.deepStrictEqual(r, { status: "started" })
        const q = yield* executeToEnd(kid, "print('after the service')")
        assert.strictEqual(consoleText(q, "stdout"), "after the service\n")
        yield* lifecycle.destroy(kid, "user-requested")
      }).pipe(Effect.provide(executionLayer(site)))
    }).pipe(Effect.scoped), 180_000)
})
