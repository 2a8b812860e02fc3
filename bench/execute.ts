/**
 * `node bench/run.ts execute [--calls 200] [--query-calls 40]`
 *
 * Round trip of a trivial run through the agent vs straight to the runner, in one run:
 * - direct: a bare PUSH/PULL client talking to the runner simulator (test/testbed/runner.ts);
 * - agent:  the manager's aiozmq client → this agent's RPC server (`execute` handler, in-process,
 *   sharing the event loop with the client) → RunnerConnections → the same runner.
 * Two workloads: `query` of `pass` (the simulator starts python3 per run, so this is dominated by
 * process start-up) and an empty `batch` (clean/build/exec all '' — the runner answers without
 * running anything; through the agent that is execute + 2 × continue, direct it is 3 frames out and
 * 3 replies back). Prints p50/p99 per workload and the agent's added latency.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Clock, Console, Effect, Layer } from "effect"
import * as Zmq from "zeromq"
import { KernelExecution } from "../src/kernel/KernelExecution.ts"
import { type KernelInfo, KernelTable } from "../src/kernel/KernelTable.ts"
import type { RunnerEndpoint } from "../src/kernel/runner/RunnerConnection.ts"
import { RunnerConnections } from "../src/kernel/runner/RunnerConnections.ts"
import { EventPublisher } from "../src/manager/EventPublisher.ts"
import { AgentRpcHandlers, AgentRpcs, type PartialAgentRpcHandlers } from "../src/rpc/AgentRpcs.ts"
import { AiozmqClient } from "../src/rpc/aiozmq/AiozmqClient.ts"
import { AiozmqServer } from "../src/rpc/aiozmq/AiozmqServer.ts"
import { spawnRunner } from "../test/kernel/RunnerSupport.ts"

/** Kernel ids are UUIDs at the RPC edge. */
const BENCH_KID = "0b7a5b2c-5d0e-4bd4-a4d5-6a3f1a7f8a11"

const argValue = (flag: string, fallback: number): number => {
  const i = process.argv.indexOf(flag)
  return i >= 0 && process.argv[i + 1] !== undefined ? Number(process.argv[i + 1]) : fallback
}
const CALLS = argValue("--calls", 200)
/** `query` runs start python3 each (hundreds of ms on a loaded machine): fewer of them. */
const QUERY_CALLS = argValue("--query-calls", 40)
const WARMUP = 10

const percentile = (sorted: ReadonlyArray<number>, p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!

const timed = <E, R>(n: number, once: Effect.Effect<void, E, R>) =>
  Effect.gen(function*() {
    for (let i = 0; i < WARMUP; i++) yield* once
    const out: Array<number> = []
    for (let i = 0; i < n; i++) {
      const t0 = yield* Clock.currentTimeNanos
      yield* once
      out.push(Number((yield* Clock.currentTimeNanos) - t0) / 1e6)
    }
    return out.sort((a, b) => a - b)
  })

/** A bare runner client: PUSH to repl-in, PULL from repl-out. */
const directClient = (endpoint: RunnerEndpoint) =>
  Effect.gen(function*() {
    const push = yield* Effect.acquireRelease(Effect.sync(() => new Zmq.Push({ linger: 0 })), (s) => Effect.sync(() => s.close()))
    const pull = yield* Effect.acquireRelease(Effect.sync(() => new Zmq.Pull({ linger: 0 })), (s) => Effect.sync(() => s.close()))
    push.connect(`tcp://${endpoint.host}:${endpoint.replInPort}`)
    pull.connect(`tcp://${endpoint.host}:${endpoint.replOutPort}`)
    const waitFor = (type: string): Effect.Effect<void, unknown> =>
      Effect.tryPromise(() => pull.receive()).pipe(
        Effect.flatMap(([t]) => (t!.toString() === type ? Effect.void : waitFor(type)))
      )
    return {
      query: Effect.tryPromise(() => push.send(["code", "pass"])).pipe(Effect.andThen(waitFor("finished"))),
      batch: Effect.tryPromise(async () => {
        await push.send(["clean", ""])
        await push.send(["build", ""])
        await push.send(["exec", ""])
      }).pipe(Effect.andThen(waitFor("finished")))
    }
  })

const kernel = (endpoint: RunnerEndpoint): KernelInfo => ({
  kernelId: BENCH_KID,
  namespace: "bench",
  objectName: "kernel-bench",
  podUid: undefined,
  status: "running",
  kernelHost: endpoint.host,
  replInPort: endpoint.replInPort,
  replOutPort: endpoint.replOutPort,
  servicePorts: [],
  canonicalImage: "bench",
  image: "bench",
  resourceSpec: "",
  scratchDir: "/nonexistent",
  idleTimeout: 0,
  lastUsed: 0
})

const ExecuteOnly = Effect.gen(function*() {
  const execution = yield* KernelExecution
  const handlers: PartialAgentRpcHandlers = {
    execute: (apiVersion, kernelId, runId, mode, code, opts, flushTimeout) =>
      execution.execute({ apiVersion, kernelId, runId, mode, code, opts, flushTimeout })
  }
  return handlers
})

const Core = KernelExecution.layer.pipe(
  Layer.provideMerge(Layer.mergeAll(KernelTable.layer, RunnerConnections.layer, EventPublisher.layerTest([])))
)
const Server = AiozmqServer.layer({ bind: "tcp://127.0.0.1:*" }).pipe(
  Layer.provide(AgentRpcHandlers.layer(ExecuteOnly)),
  Layer.provideMerge(Core)
)

const report = (name: string, direct: ReadonlyArray<number>, agent: ReadonlyArray<number>, rpcs: number) => {
  const n = direct.length
  const f = (x: number) => x.toFixed(3).padStart(8)
  const added = percentile(agent, 50) - percentile(direct, 50)
  return [
    `${name} (${n} runs, ${rpcs} execute RPC${rpcs > 1 ? "s" : ""} per run through the agent)`,
    `  direct  p50 ${f(percentile(direct, 50))} ms   p99 ${f(percentile(direct, 99))} ms`,
    `  agent   p50 ${f(percentile(agent, 50))} ms   p99 ${f(percentile(agent, 99))} ms`,
    `  added   p50 ${f(added)} ms per run, ${f(added / rpcs)} ms per RPC (goal ≤ 2 ms p50)`
  ].join("\n")
}

const main = Effect.gen(function*() {
  const runner = yield* spawnRunner
  // the runner's PUSH round-robins between connected PULL peers: close the direct client first
  const [directQuery, directBatch] = yield* Effect.scoped(Effect.gen(function*() {
    const direct = yield* directClient(runner.endpoint)
    return [yield* timed(QUERY_CALLS, direct.query), yield* timed(CALLS, direct.batch)] as const
  }))

  const server = yield* AiozmqServer
  yield* (yield* KernelTable).upsert(kernel(runner.endpoint))
  yield* (yield* RunnerConnections).open(BENCH_KID, runner.endpoint)
  const client = yield* AiozmqClient.make({ connect: server.endpoint, timeout: "30 seconds", lingerMillis: 0 })
  const exec = (runId: string | null, mode: string, opts: Record<string, unknown>) =>
    client.invoke(AgentRpcs.execute, 3, BENCH_KID, runId, mode, "pass", opts, 10)
  const agentQuery = yield* timed(
    QUERY_CALLS,
    exec(null, "query", {}).pipe(Effect.flatMap((r) => (r?.status === "finished" ? Effect.void : Effect.die(`unexpected ${r?.status}`))))
  )
  const cpu0 = process.cpuUsage()
  const agentBatch = yield* timed(
    CALLS,
    Effect.gen(function*() {
      let r = yield* exec(null, "batch", { clean: "", build: "", exec: "" })
      while (r !== null && r.status !== "finished") r = yield* exec(r.runId, "continue", {})
    })
  )
  const cpu = process.cpuUsage(cpu0)
  // the agent's process (server, RunnerConnections and the in-process client; not the runner):
  // CPU per execute RPC of the empty batch, warm-up included — less sensitive to other load than latency
  const batchCpuPerRpc = (cpu.user + cpu.system) / ((CALLS + WARMUP) * 3)
  yield* Console.log(report("query 'pass'", directQuery, agentQuery, 1))
  yield* Console.log(report("empty batch", directBatch, agentBatch, 3))
  yield* Console.log(`  agent process CPU ${batchCpuPerRpc.toFixed(1)} µs per execute RPC (client and server in this process)`)
})

main.pipe(Effect.provide(Server), Effect.scoped, NodeRuntime.runMain)

