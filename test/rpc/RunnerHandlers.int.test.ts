// execute / interrupt_kernel / get_completions / start_service / get_logs / files end to end: the
// Python aiozmq client (what manager 19.06 uses) talks to the agent's RPC socket; kernels are created
// with create_kernel on the testbed (real kube-apiserver, simulated kubelet running the runner
// simulator behind NodePorts). Checks are in runner_handlers_client.py.
import { execFile } from "node:child_process"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { inject } from "vitest"
import { AgentShutdown } from "../../src/kernel/AgentShutdown.ts"
import { KernelExecution } from "../../src/kernel/KernelExecution.ts"
import { KernelFiles } from "../../src/kernel/KernelFiles.ts"
import { AgentRpcHandlers } from "../../src/rpc/AgentRpcs.ts"
import { AiozmqServer } from "../../src/rpc/aiozmq/AiozmqServer.ts"
import { HealthHandlers } from "../../src/rpc/handlers/Health.ts"
import { KernelHandlers } from "../../src/rpc/handlers/Kernel.ts"
import { RunnerHandlers } from "../../src/rpc/handlers/Runner.ts"
import { pythonExecutable } from "../interop/python.ts"
import { lifecycleLayer, makeSite, pythonConfig, type Site } from "../kernel/KernelLifecycleSupport.ts"
import type { TestbedEnv } from "../testbed/env.ts"

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
      [path.join(import.meta.dirname, "runner_handlers_client.py"), ...args],
      { maxBuffer: 16 * 1024 * 1024, timeout: 400_000 },
      (err, stdout, stderr) => resume(err ? Effect.fail(new Error(`${err.message}\n${stderr}`)) : Effect.succeed(stdout))
    )
    return Effect.sync(() => child.kill("SIGKILL"))
  })

describe("runner-backed RPCs through the agent's socket", () => {
  it.live("manager-side aiozmq client: execute modes, interrupt, FIFO, completions, services, logs, files", () =>
    Effect.gen(function*() {
      const site = yield* makeSite(env)
      const server = yield* Layer.build(agentLayer(site))
      const endpoint = (yield* AiozmqServer.pipe(Effect.provideContext(server))).endpoint
      const [kid1, kid2] = [crypto.randomUUID(), crypto.randomUUID()]
      const out = yield* python([endpoint, kid1, kid2, JSON.stringify(pythonConfig(env))])
      const result = JSON.parse(out.trim().split("\n").pop()!) as { ok: boolean; interrupt_seconds: number; loop_polls: Array<string> }
      assert.isTrue(result.ok)
      yield* Effect.logInfo(`interrupt → finished in ${result.interrupt_seconds} s; loop polls: ${result.loop_polls.join(",")}`)
    }).pipe(Effect.scoped), 420_000)
})
