// Golden test of the whole stats cycle as the agent runs it (StatsCollector.make: node list → summaries →
// StatFormat → msgpack → one Redis pipeline; finalize → SET with the long TTL), pinned byte for byte.
// The per-cycle digests below were recorded from the collector BEFORE the allocation work of issue 17
// goal 4 (commit 7826fca): any change to a payload's bytes, a key, a TTL, the command shape, the cycle
// report or the finalize results fails here with the first cycle that differs. The input is a seeded
// pseudo-random run over 3 nodes and ~40 kernels designed to reach every path: fractional msec and
// bytes (half-even ties), counter resets, zero elapsed time, absent optional fields, volumes absent /
// empty / partial, a node failing and coming back, pods missing or with another uid, kernels appearing,
// leaving, changing their resource spec, finalized while still listed, a failed Redis write.
// Cycles 3–8 were re-recorded once, deliberately (issue 17 goal 4): a sample at the series' own time is
// the one it holds, read again, and changes nothing (cycle 3 comes 0 ms after cycle 2; before, it
// counted as a sample with no elapsed time: rate 0, aggregated). Cycles 0–2 are the recording's.
import { assert, describe, it } from "@effect/vitest"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import { Effect, Layer, References } from "effect"
import { TestClock } from "effect/testing"
import { KubeClient, KubeError } from "../../src/kube/KubeClient.ts"
import { Redis, RedisError, type RedisCommand } from "../../src/manager/Redis.ts"
import { KubeletSummary, type PodStats, type Summary } from "../../src/stats/KubeletSummary.ts"
import { type MeasuredKernel, StatsCollector } from "../../src/stats/StatsCollector.ts"
import { prng } from "./summaryDocs.ts"

const NODES = ["n1", "n2", "n3"] as const
const KERNELS = 40
const CYCLES = 9

interface PodCounters { cpuNs: number; rx: number; tx: number }

const hex = (v: unknown) => (Buffer.isBuffer(v) ? `0x${v.toString("hex")}` : v)

const run = Effect.gen(function*() {
  const rnd = prng(17)
  const int = (n: number) => Math.floor(rnd() * n)
  const kid = (i: number) => `k${String(i).padStart(2, "0")}`
  const specs = ["", JSON.stringify({ slots: { mem: "1E+9" } }), JSON.stringify({ slots: { cpu: "1", mem: 268435456 } }), "{\"slots\": {\"cpu\": \"1\"}}", "not json"]
  let kernels: Array<MeasuredKernel> = Array.from({ length: KERNELS }, (_, i) => ({
    kernelId: kid(i),
    namespace: i % 5 === 0 ? "other" : "ns",
    objectName: `kernel-${kid(i)}`,
    podUid: i % 6 === 0 ? undefined : `uid-${i}`,
    resourceSpec: specs[i % specs.length]!
  }))
  const counters = new Map<string, PodCounters>()
  const nodeCpu = new Map<string, number>()
  let cycle = 0
  const failing = new Set<string>()

  const podOf = (k: MeasuredKernel, i: number): PodStats => {
    const c = counters.get(k.kernelId) ?? { cpuNs: int(1e9), rx: int(1000), tx: 0 }
    // counters grow by odd amounts (fractional msec, .5 byte rates), sometimes reset
    c.cpuNs = cycle === 4 && i % 7 === 0 ? int(1e6) : c.cpuNs + int(2e9) + 123_457
    c.rx = cycle === 6 && i % 4 === 0 ? 3 : c.rx + int(5000) * 2 + 1
    c.tx = c.tx + (i % 3 === 0 ? 0 : int(300))
    counters.set(k.kernelId, c)
    const uid = i % 9 === 4 && cycle >= 5 ? "replaced-pod" : (k.podUid ?? `uid-${i}`)
    const vol = i % 4
    return {
      podRef: { name: k.objectName, namespace: k.namespace, uid },
      ...(i % 10 === 3 ? {} : { cpu: { usageNanoCores: int(1e8), usageCoreNanoSeconds: c.cpuNs } }),
      ...(i % 11 === 5 ? {} : { memory: { workingSetBytes: i % 2 === 0 ? int(1e9) : int(1e6) + 0.5, availableBytes: int(1e9) } }),
      ...(i % 8 === 7 ? {} : { network: { rxBytes: c.rx, txBytes: c.tx } }),
      ...(vol === 0 ? {} : vol === 1 ? { volume: [] } : { volume: [{ name: "work", usedBytes: int(1e7) }, { name: "x" }] }),
      ...(i % 3 === 1 ? { "ephemeral-storage": { usedBytes: int(1e6), capacityBytes: 1e11, availableBytes: 5e10 } } : {})
    }
  }

  const summaryOf = (node: string): Summary => {
    const cpu = (nodeCpu.get(node) ?? 0) + int(4e9) + 777_777
    nodeCpu.set(node, cycle === 7 && node === "n1" ? 5 : cpu)
    const pods: Array<PodStats> = []
    kernels.forEach((k, i) => {
      const home = NODES[i % NODES.length]
      // pods missing from a summary now and then (the kernel is not written that cycle)
      if (home === node && !(i % 13 === 2 && cycle % 3 === 1)) pods.push(podOf(k, i))
    })
    return {
      node: {
        nodeName: node,
        cpu: { usageCoreNanoSeconds: nodeCpu.get(node)!, usageNanoCores: int(1e9) },
        memory: node === "n3" && cycle < 3 ? { workingSetBytes: int(1e10) } : { workingSetBytes: int(1e10) + 0.5, availableBytes: int(1e10) },
        network: { rxBytes: cycle * 1001 + int(10), txBytes: cycle * 3 },
        ...(node === "n2" ? {} : { fs: { usedBytes: int(1e9), capacityBytes: 1e11 } })
      },
      ...(node === "n3" && cycle === 2 ? {} : { pods })
    }
  }

  const log: Array<unknown> = []
  let redisDown = false
  const layer = Layer.mergeAll(
    Layer.mock(KubeClient)({ config: undefined as never, server: "" }),
    Layer.succeed(KubeletSummary, KubeletSummary.of({
      fetch: (node) =>
        Effect.suspend(() =>
          failing.has(node)
            ? Effect.fail(new KubeError({ reason: "Unavailable", operation: "summary", message: "node away" }))
            : Effect.succeed(summaryOf(node))
        )
    })),
    Layer.mock(Redis)({
      // recorded as the pipeline of `SET key value EX ttl` the collector sent before setManyEx (same digests)
      setManyEx: (keys: ReadonlyArray<string>, values: ReadonlyArray<Buffer>, ttl: number) =>
        Effect.suspend(() => {
          const commands: ReadonlyArray<RedisCommand> = keys.map((k, i) => ["SET", k, values[i]!, "EX", ttl])
          log.push({ pipeline: commands.map((c) => c.map(hex)) })
          return redisDown
            ? Effect.fail(new RedisError({ reason: "Unavailable", operation: "pipeline", message: "down" }))
            : Effect.void
        }),
      set: (key, value, options) => Effect.sync(() => void log.push({ set: [key, hex(value), options?.ttlSeconds] }))
    })
  )
  const collector = yield* StatsCollector.make({
    agentId: "i-golden",
    intervalSeconds: 2,
    ttlSeconds: 30,
    concurrency: 2,
    nodes: Effect.sync(() => [...NODES]),
    kernels: Effect.sync(() => kernels)
  }).pipe(Effect.provide(layer))

  const digests: Array<string> = []
  const steps = [2000, 1999, 2001, 0, 3000, 2000, 1500, 2500, 2000]
  for (cycle = 0; cycle < CYCLES; cycle++) {
    if (cycle === 3) failing.add("n2")
    if (cycle === 5) failing.delete("n2")
    redisDown = cycle === 6
    if (cycle === 3) kernels = [...kernels, { kernelId: "knew", namespace: "ns", objectName: "kernel-k01", podUid: "uid-1", resourceSpec: specs[1]! }]
    if (cycle === 4) kernels = kernels.map((k) => (k.kernelId === kid(2) ? { ...k, resourceSpec: JSON.stringify({ slots: { mem: "4096" } }) } : k))
    if (cycle === 5) kernels = kernels.filter((k) => k.kernelId !== kid(9))
    if (cycle === 7) kernels = kernels.filter((k) => k.kernelId !== kid(7))
    yield* TestClock.adjust(`${steps[cycle]!} millis`)
    const report = yield* collector.collectOnce
    log.push({ report: { ...report, millis: undefined } })
    if (cycle === 4) log.push({ final: yield* collector.finalize(kid(7)) })
    if (cycle === 6) {
      log.push({ final: yield* collector.finalize(kid(11)) }) // last write failed: the last encoded stat
      log.push({ final: yield* collector.finalize(kid(15)) }) // not measured this cycle (pod missing)
      log.push({ final: yield* collector.finalize("never-measured") })
      log.push({ final: yield* collector.finalize(kid(9)) }) // left the kernel list in cycle 5
    }
    const text = JSON.stringify(log)
    // GOLDEN_DUMP=<file>: the cycles as JSON lines (to diff two builds when a digest changes)
    if (process.env.GOLDEN_DUMP !== undefined) fs.appendFileSync(process.env.GOLDEN_DUMP, `${text}\n`)
    digests.push(createHash("sha256").update(text).digest("hex").slice(0, 16))
    log.length = 0
  }
  return digests
})

describe("StatsCollector golden", () => {
  it.effect("Redis commands, payload bytes, TTLs, reports and finalize results are those of the pre-optimisation collector", () =>
    Effect.gen(function*() {
      const digests = yield* run
      assert.deepStrictEqual(digests, GOLDEN)
    }).pipe(Effect.provideService(References.MinimumLogLevel, "None")))
})

const GOLDEN: ReadonlyArray<string> = [
  "73edf9ea5396c973",
  "167aecde2ae37c70",
  "2befc5cc2d0a8d15",
  "cbca0dd4a625c84b",
  "347fbef15d777504",
  "0ab85d81c58bc2b9",
  "a44b6541db1291d4",
  "12983ff21e4082e5",
  "11573fdd62b3f4db"
]
