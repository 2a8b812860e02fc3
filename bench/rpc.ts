/**
 * `node bench/run.ts rpc [--method ping|list_files] [--rounds 3] [--workers 2] [--inflight 64] [--seconds 3] [--calls 3000] [--ts-client]`
 *
 * `ping` (or `list_files` with a fixed 10-entry reply, bench/list-files-reply.json) over aiozmq:
 * this agent's RPC server in its own process (bench/rpc-server.ts) against a Python aiozmq server
 * (bench/aiozmq_bench_server.py) on the same machine, both driven by the
 * same independent load generator (bench/rpc_load.py: pyzmq DEALERs sending raw frames, checking
 * every reply). Each round measures, for each server (alternating which goes first):
 *
 * - sequential latency: one client, `--calls` round trips one after the other (p50, p99);
 * - load: `--workers` client processes, each keeping `--inflight` requests in flight for
 *   `--seconds`; calls/s, and the server's CPU time per call (utime+stime of the server process
 *   from /proc, all its threads), which is what a server costs independently of how much CPU the
 *   neighbours leave us: `1e6 / cpu µs per call` is the capacity of one core.
 *
 * The machine is shared and small (2 cores, other test suites running), so everything is repeated
 * `--rounds` times and reported as min / median / max; ratios use the medians.
 * `--ts-client` also runs the previous measurement (our own TypeScript client, in this process).
 * `--only agent` skips the Python server (for quick before/after comparisons while profiling);
 * `--server-args "--trace-gc"` passes node flags to the agent's server process;
 * `--baseline /tmp/base/bench/rpc-server.ts` adds a third server (e.g. a `git worktree` of an older
 * commit) measured in the same rounds, for A/B comparisons under the same noise.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { type ChildProcess, spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { Clock, Console, Deferred, Effect, Queue, Schema, type Scope } from "effect"
import { AgentRpcs } from "../src/rpc/AgentRpcs.ts"
import { AiozmqClient } from "../src/rpc/aiozmq/AiozmqClient.ts"
import { pythonExecutable } from "../test/interop/python.ts"

const argValue = (flag: string, fallback: number): number => {
  const i = process.argv.indexOf(flag)
  return i >= 0 && process.argv[i + 1] !== undefined ? Number(process.argv[i + 1]) : fallback
}
const ROUNDS = argValue("--rounds", 3)
const WORKERS = argValue("--workers", 2)
const INFLIGHT = argValue("--inflight", 64)
const SECONDS = argValue("--seconds", 3)
const CALLS = argValue("--calls", 3000)
const TS_CLIENT = process.argv.includes("--ts-client")
const BASELINE = (() => {
  const i = process.argv.indexOf("--baseline")
  return i >= 0 ? process.argv[i + 1] : undefined
})()
const METHOD = process.argv.includes("--method") ? process.argv[process.argv.indexOf("--method") + 1]! : "ping"
if (METHOD !== "ping" && METHOD !== "list_files") throw new Error(`--method: ping or list_files, not ${METHOD}`)
const ONLY_AGENT = process.argv.includes("--only") && process.argv[process.argv.indexOf("--only") + 1] === "agent"
const SERVER_ARGS = (() => {
  const i = process.argv.indexOf("--server-args")
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]!.split(" ").filter((s) => s !== "") : []
})()

class BenchError extends Schema.TaggedError<BenchError>()("BenchError", { message: Schema.String }) {}

/** A child process with its stdout split into lines; killed when the scope closes. */
interface Child {
  readonly process: ChildProcess
  readonly lines: Queue.Dequeue<string>
}

const spawnChild = (command: string, args: ReadonlyArray<string>): Effect.Effect<Child, never, Scope.Scope> =>
  Effect.gen(function*() {
    const lines = yield* Queue.unbounded<string>()
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => spawn(command, args, { stdio: ["pipe", "pipe", "inherit"] })),
      (c) =>
        Effect.sync(() => c.stdin?.end()).pipe(
          Effect.andThen(
            c.exitCode !== null
              ? Effect.void
              : Effect.callback<void>((resume) => {
                c.once("exit", () => resume(Effect.void))
              }).pipe(Effect.timeoutOption("3 seconds"))
          ),
          Effect.andThen(Effect.sync(() => c.exitCode === null && c.signalCode === null && c.kill("SIGKILL")))
        )
    )
    let partial = ""
    child.stdout!.on("data", (chunk: Buffer) => {
      partial += chunk.toString("utf8")
      const parts = partial.split("\n")
      partial = parts.pop()!
      for (const line of parts) Queue.offerUnsafe(lines, line)
    })
    return { process: child, lines }
  })

const firstLine = (child: Child, what: string) =>
  Queue.take(child.lines).pipe(
    Effect.timeoutOrElse({ duration: "30 seconds", orElse: () => Effect.fail(new BenchError({ message: `${what}: no output` })) })
  )

/** A server's endpoint line; other lines before it (e.g. `--trace-gc` output) are skipped. */
const endpointLine = (child: Child, what: string) =>
  Queue.take(child.lines).pipe(
    Effect.repeat({ until: (line) => line.startsWith("tcp://") }),
    Effect.timeoutOrElse({ duration: "30 seconds", orElse: () => Effect.fail(new BenchError({ message: `${what}: no output` })) })
  )

/** utime+stime of a process, in µs (all threads). */
const cpuMicros = (pid: number) =>
  Effect.try({
    try: () => {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      // fields[0] is field 3 (state): utime is field 14, stime field 15; clock ticks of 10 ms
      return (Number(fields[11]) + Number(fields[12])) * 10_000
    },
    catch: (e) => new BenchError({ message: `cannot read /proc/${pid}/stat: ${String(e)}` })
  })

const LoadResult = Schema.fromJsonString(Schema.Struct({
  calls: Schema.Number,
  seconds: Schema.Number,
  errors: Schema.Number,
  latencies_us: Schema.Array(Schema.Number)
}))
const decodeLoadResult = Schema.decodeUnknownEffect(LoadResult)

const loadScript = fileURLToPath(new URL("./rpc_load.py", import.meta.url))

/** Runs `workers` load generators at once (started together after all are warm). */
const runLoad = (endpoint: string, workers: number, extra: ReadonlyArray<string>) =>
  Effect.scoped(Effect.gen(function*() {
    const children = yield* Effect.forEach(
      Array.from({ length: workers }, (_, i) => i),
      () => spawnChild(pythonExecutable, [loadScript, endpoint, ...extra])
    )
    for (const c of children) {
      const line = yield* firstLine(c, "load generator")
      if (line !== "ready") return yield* new BenchError({ message: `load generator said ${line}` })
    }
    for (const c of children) c.process.stdin!.write("go\n")
    return yield* Effect.forEach(children, (c) =>
      Queue.take(c.lines).pipe(
        Effect.flatMap(decodeLoadResult),
        Effect.mapError((e) => new BenchError({ message: `load generator: ${e.message}` }))
      ))
  }))

const percentile = (sorted: ReadonlyArray<number>, p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!

interface Round {
  readonly p50: number
  readonly p99: number
  readonly throughput: number
  readonly cpuPerCall: number
  readonly errors: number
}

const measureRound = Effect.fn("bench.measureRound")(function*(endpoint: string, pid: number) {
  const [seq] = yield* runLoad(endpoint, 1, ["--method", METHOD, "--sequential", String(CALLS)])
  const latencies = [...seq!.latencies_us].sort((a, b) => a - b)
  const cpu0 = yield* cpuMicros(pid)
  const results = yield* runLoad(endpoint, WORKERS, ["--method", METHOD, "--inflight", String(INFLIGHT), "--seconds", String(SECONDS)])
  const cpu1 = yield* cpuMicros(pid)
  const calls = results.reduce((n, r) => n + r.calls, 0)
  const throughput = results.reduce((n, r) => n + r.calls / r.seconds, 0)
  const round: Round = {
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    throughput,
    // the drain after each worker's window adds at most workers × inflight calls to the CPU time
    cpuPerCall: (cpu1 - cpu0) / (calls + WORKERS * INFLIGHT),
    errors: seq!.errors + results.reduce((n, r) => n + r.errors, 0)
  }
  return round
})

/** The previous measurement: our TypeScript client in this process (its own cost included). */
const measureTsClient = Effect.fn("bench.measureTsClient")(function*(endpoint: string) {
  const client = yield* AiozmqClient.make({ connect: endpoint, timeout: "10 seconds" })
  for (let i = 0; i < 1000; i++) yield* client.invoke(AgentRpcs.ping, "warm")
  const latencies: Array<number> = []
  for (let i = 0; i < CALLS; i++) {
    const t0 = yield* Clock.currentTimeNanos
    yield* client.invoke(AgentRpcs.ping, "hello")
    const t1 = yield* Clock.currentTimeNanos
    latencies.push(Number(t1 - t0) / 1000)
  }
  latencies.sort((a, b) => a - b)
  const n = 30_000
  const start = yield* Clock.currentTimeNanos
  yield* Effect.forEach(Array.from({ length: n }, (_, i) => i), () => client.invoke(AgentRpcs.ping, "hello"), {
    concurrency: 64,
    discard: true
  })
  const end = yield* Clock.currentTimeNanos
  return `p50 ${percentile(latencies, 50).toFixed(0)} µs  p99 ${percentile(latencies, 99).toFixed(0)} µs  pipelined(64) ${
    (n / (Number(end - start) / 1e9)).toFixed(0)
  } calls/s`
}, Effect.scoped)

const stats = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return { min: s[0]!, median: s[Math.floor((s.length - 1) / 2)]!, max: s[s.length - 1]! }
}
const fmt = (xs: ReadonlyArray<number>, digits = 0) => {
  const s = stats(xs)
  return `${s.min.toFixed(digits)} / ${s.median.toFixed(digits)} / ${s.max.toFixed(digits)}`
}

const loadAverage = () =>
  Effect.try({ try: () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" "), catch: () => "?" }).pipe(
    Effect.orElseSucceed(() => "?")
  )

const program = Effect.gen(function*() {
  yield* Console.log(
    `aiozmq ${METHOD}, ${ROUNDS} rounds: sequential ${CALLS} calls (1 client); load ${WORKERS} pyzmq clients × ${INFLIGHT} in flight for ${SECONDS} s`
  )
  yield* Console.log(`load average before: ${yield* loadAverage()}`)
  const ours = yield* spawnChild(process.execPath, [
    ...SERVER_ARGS,
    fileURLToPath(new URL("./rpc-server.ts", import.meta.url)),
    "tcp://127.0.0.1:*"
  ])
  const oursEndpoint = yield* endpointLine(ours, "bench/rpc-server.ts")
  const targets = [
    { name: "bai-k8s-agent", endpoint: oursEndpoint, pid: ours.process.pid!, rounds: [] as Array<Round> }
  ]
  if (!ONLY_AGENT) {
    const python = yield* spawnChild(pythonExecutable, [
      fileURLToPath(new URL("./aiozmq_bench_server.py", import.meta.url)),
      "tcp://127.0.0.1:*"
    ])
    const endpoint = yield* endpointLine(python, "aiozmq_bench_server.py")
    targets.push({ name: "python aiozmq", endpoint, pid: python.process.pid!, rounds: [] })
  }
  if (BASELINE !== undefined) {
    const base = yield* spawnChild(process.execPath, [...SERVER_ARGS, BASELINE, "tcp://127.0.0.1:*"])
    const endpoint = yield* endpointLine(base, BASELINE)
    targets.push({ name: "agent baseline", endpoint, pid: base.process.pid!, rounds: [] })
  }
  for (let r = 0; r < ROUNDS; r++) {
    // rotate the order so that no server always runs first (or right after the same neighbour)
    const order = targets.map((_, i) => targets[(i + r) % targets.length]!)
    for (const t of order) {
      const round = yield* measureRound(t.endpoint, t.pid)
      t.rounds.push(round)
      yield* Console.log(
        `round ${r + 1} ${t.name.padEnd(14)} p50 ${round.p50.toFixed(0).padStart(5)} µs  p99 ${round.p99.toFixed(0).padStart(5)} µs  ${
          round.throughput.toFixed(0).padStart(6)
        } calls/s  ${round.cpuPerCall.toFixed(1).padStart(5)} CPU µs/call${round.errors > 0 ? `  ERRORS ${round.errors}` : ""}`
      )
    }
  }
  yield* Console.log(`load average after: ${yield* loadAverage()}`)
  yield* Console.log("\nmin / median / max over rounds")
  for (const t of targets) {
    yield* Console.log(
      `${t.name.padEnd(14)} p50 ${fmt(t.rounds.map((r) => r.p50))} µs | p99 ${fmt(t.rounds.map((r) => r.p99))} µs | ${
        fmt(t.rounds.map((r) => r.throughput))
      } calls/s | ${fmt(t.rounds.map((r) => r.cpuPerCall), 1)} CPU µs/call`
    )
  }
  const baseline = targets.find((t) => t.name === "agent baseline")
  if (baseline !== undefined) {
    const median = (rounds: ReadonlyArray<Round>, f: (r: Round) => number) => stats(rounds.map(f)).median
    const min = (rounds: ReadonlyArray<Round>, f: (r: Round) => number) => stats(rounds.map(f)).min
    const a = targets[0]!.rounds
    const b = baseline.rounds
    yield* Console.log(
      `agent / baseline: throughput ${(median(a, (r) => r.throughput) / median(b, (r) => r.throughput)).toFixed(2)}x (medians), CPU µs/call ${
        (median(a, (r) => r.cpuPerCall) / median(b, (r) => r.cpuPerCall)).toFixed(2)
      }x (medians) ${(min(a, (r) => r.cpuPerCall) / min(b, (r) => r.cpuPerCall)).toFixed(2)}x (minima)`
    )
  }
  if (ONLY_AGENT) return
  const [o, p] = targets.slice(0, 2).map((t) => ({
    p99: stats(t.rounds.map((r) => r.p99)).median,
    throughput: stats(t.rounds.map((r) => r.throughput)).median,
    cpu: stats(t.rounds.map((r) => r.cpuPerCall)).median
  }))
  const tRatio = o!.throughput / p!.throughput
  const goal = METHOD === "ping" ? 2 : 1.5 // issue 17 goal 3
  const cRatio = p!.cpu / o!.cpu
  yield* Console.log(
    `ratio bai-k8s-agent / python (medians): throughput ${tRatio.toFixed(2)}x, calls per CPU second ${cRatio.toFixed(2)}x, p99 ${
      (o!.p99 / p!.p99).toFixed(2)
    }x`
  )
  yield* Console.log(
    `goals: calls per CPU second >= ${goal}x ${cRatio >= goal ? "met" : "NOT met"}; sequential p99 <= 1000 µs ${
      o!.p99 <= 1000 ? "met" : "NOT met"
    }`
  )
  if (TS_CLIENT) {
    yield* Console.log(`\nTypeScript client (in this process) → bai-k8s-agent: ${yield* measureTsClient(oursEndpoint)}`)
    yield* Console.log(`TypeScript client (in this process) → python aiozmq: ${yield* measureTsClient(targets[1]!.endpoint)}`)
  }
}).pipe(Effect.scoped)

NodeRuntime.runMain(program)
