/**
 * `node bench/run.ts rpc [--calls 5000] [--pipelined 50000] [--inflight 64]`
 *
 * `ping` round trips over aiozmq against (a) this agent's RPC server started in-process from its
 * layer (it shares the event loop with the client: a handicap), (b) the same server in its own
 * process (bench/rpc-server.ts; the like-for-like comparison) and (c) a Python aiozmq server
 * (test/interop/aiozmq_server.py) on the same machine. One client implementation for both:
 * src/rpc/aiozmq/Client.ts. Prints sequential latency p50/p99 and pipelined throughput.
 */
import { NodeRuntime } from "@effect/platform-node"
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { Clock, Console, Deferred, Effect, Layer, Queue } from "effect"
import { AgentRpcHandlers, AgentRpcs } from "../src/rpc/AgentRpcs.ts"
import { AiozmqClient } from "../src/rpc/aiozmq/Client.ts"
import { AiozmqServer } from "../src/rpc/aiozmq/AiozmqServer.ts"
import { HealthHandlers } from "../src/rpc/handlers/Health.ts"
import { spawnPython } from "../test/interop/python.ts"

const argValue = (flag: string, fallback: number): number => {
  const i = process.argv.indexOf(flag)
  return i >= 0 && process.argv[i + 1] !== undefined ? Number(process.argv[i + 1]) : fallback
}
const CALLS = argValue("--calls", 5000)
const PIPELINED = argValue("--pipelined", 50_000)
const INFLIGHT = argValue("--inflight", 64)

interface Result {
  readonly target: string
  readonly p50Micros: number
  readonly p99Micros: number
  readonly meanMicros: number
  readonly throughput: number
}

const percentile = (sorted: ReadonlyArray<number>, p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!

const measure = Effect.fn("bench.measure")(function*(target: string, endpoint: string) {
  const client = yield* AiozmqClient.make({ connect: endpoint, timeout: "10 seconds" })
  // warm-up (connection, JIT)
  for (let i = 0; i < 1000; i++) yield* client.invoke(AgentRpcs.ping, "warm")
  const latencies: Array<number> = []
  for (let i = 0; i < CALLS; i++) {
    const t0 = yield* Clock.currentTimeNanos
    yield* client.invoke(AgentRpcs.ping, "hello")
    const t1 = yield* Clock.currentTimeNanos
    latencies.push(Number(t1 - t0) / 1000)
  }
  latencies.sort((a, b) => a - b)
  const start = yield* Clock.currentTimeNanos
  yield* Effect.forEach(Array.from({ length: PIPELINED }, (_, i) => i), () => client.invoke(AgentRpcs.ping, "hello"), {
    concurrency: INFLIGHT,
    discard: true
  })
  const end = yield* Clock.currentTimeNanos
  const result: Result = {
    target,
    p50Micros: percentile(latencies, 50),
    p99Micros: percentile(latencies, 99),
    meanMicros: latencies.reduce((a, b) => a + b, 0) / latencies.length,
    throughput: PIPELINED / (Number(end - start) / 1e9)
  }
  return result
}, Effect.scoped)

const row = (r: Result) =>
  `${r.target.padEnd(28)} p50 ${r.p50Micros.toFixed(0).padStart(6)} µs   p99 ${r.p99Micros.toFixed(0).padStart(6)} µs   mean ${
    r.meanMicros.toFixed(0).padStart(6)
  } µs   pipelined(${INFLIGHT}) ${r.throughput.toFixed(0).padStart(7)} calls/s`

/** bench/rpc-server.ts in a child node process; its endpoint. */
const ownServerProcess = Effect.gen(function*() {
  const child = yield* Effect.acquireRelease(
    Effect.sync(() =>
      spawn(process.execPath, [fileURLToPath(new URL("./rpc-server.ts", import.meta.url))], { stdio: ["pipe", "pipe", "inherit"] })
    ),
    (c) => Effect.sync(() => c.stdin?.end())
  )
  const endpoint = yield* Deferred.make<string>()
  child.stdout!.once("data", (chunk: Buffer) => Deferred.doneUnsafe(endpoint, Effect.succeed(chunk.toString().trim())))
  return yield* Deferred.await(endpoint)
})

const program = Effect.gen(function*() {
  yield* Console.log(`aiozmq ping: ${CALLS} sequential calls, ${PIPELINED} pipelined calls with ${INFLIGHT} in flight`)
  const server = yield* AiozmqServer
  const ours = yield* measure("bai-k8s-agent (in-process)", server.endpoint)
  yield* Console.log(row(ours))
  const oursOut = yield* measure("bai-k8s-agent (own process)", yield* ownServerProcess)
  yield* Console.log(row(oursOut))

  const python = yield* spawnPython("aiozmq_server.py", ["tcp://127.0.0.1:*"])
  const pyEndpoint = yield* Queue.take(python.lines)
  const theirs = yield* measure("python aiozmq server", pyEndpoint)
  yield* Console.log(row(theirs))
  python.child.stdin?.end()

  for (const r of [ours, oursOut]) {
    yield* Console.log(
      `ratio ${r.target} / python: throughput ${(r.throughput / theirs.throughput).toFixed(2)}x, p99 ${
        (r.p99Micros / theirs.p99Micros).toFixed(2)
      }x   (goals: >= 3x throughput ${r.throughput >= 3 * theirs.throughput ? "met" : "NOT met"}; p99 <= 1000 µs ${
        r.p99Micros <= 1000 ? "met" : "NOT met"
      })`
    )
  }
}).pipe(
  Effect.scoped,
  Effect.provide(
    AiozmqServer.layer({ bind: "tcp://127.0.0.1:*" }).pipe(Layer.provide(AgentRpcHandlers.layer(HealthHandlers)))
  )
)

NodeRuntime.runMain(program)
