// StatsCollector.layer without servers: the loop's cadence under TestClock, one write (setManyEx) per
// cycle, KernelStatsSink.finalize (long TTL, series stopped). In-memory Redis and Summary fakes.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Option, References } from "effect"
import { TestClock } from "effect/testing"
import { AgentConfig, decodeConfigText } from "../../src/config/AgentConfig.ts"
import { KernelTable } from "../../src/kernel/KernelTable.ts"
import { KubeClient } from "../../src/kube/KubeClient.ts"
import { Redis, type RedisCommand } from "../../src/manager/Redis.ts"
import { decode } from "../../src/codec/Msgpack.ts"
import { KernelStatsSink } from "../../src/stats/KernelStatsSink.ts"
import { KubeletSummary, type Summary } from "../../src/stats/KubeletSummary.ts"
import { StatsCollector } from "../../src/stats/StatsCollector.ts"

const summary = (cpuNs: number): Summary => ({
  node: { nodeName: "n1", cpu: { usageCoreNanoSeconds: cpuNs }, memory: { workingSetBytes: 100, availableBytes: 900 } },
  pods: [{ podRef: { name: "kernel-k1", namespace: "ns", uid: "u1" }, cpu: { usageCoreNanoSeconds: cpuNs }, memory: { workingSetBytes: 50 } }]
})

const setup = Effect.gen(function*() {
  const pipelines: Array<ReadonlyArray<RedisCommand>> = []
  const sets: Array<{ key: string; ttl: number | undefined }> = []
  let cpu = 0
  const loaded = yield* decodeConfigText("t.toml", `[etcd]\nnamespace = "ns"\naddr = "127.0.0.1:2379"\n[stats]\ninterval = 2\nttl = 30\n`, {}, "unit")
  const deps = Layer.mergeAll(
    AgentConfig.fromLoaded(loaded),
    KernelTable.layer,
    Layer.mock(KubeClient)({ config: undefined as never, server: "" }), // unused: the nodes are given
    Layer.succeed(KubeletSummary, KubeletSummary.of({ fetch: () => Effect.sync(() => summary((cpu += 1e9))) })),
    Layer.mock(Redis)({
      // each write as the commands it stands for (`SET key value EX ttl` per key)
      setManyEx: (keys, values, ttl) => Effect.sync(() => void pipelines.push(keys.map((k, i): RedisCommand => ["SET", k, values[i]!, "EX", ttl]))),
      set: (key, _value, options) => Effect.sync(() => void sets.push({ key, ttl: options?.ttlSeconds }))
    })
  )
  const layer = Layer.unwrap(
    Effect.map(KernelTable, (registry) => StatsCollector.layer({ kernels: registry.list, nodes: Effect.succeed(["n1"]) }))
  ).pipe(Layer.provideMerge(deps))
  return { layer, pipelines, sets }
})

describe("StatsCollector.layer", () => {
  it.effect("runs one cycle per interval, one write per cycle; finalize writes the last stat with a long TTL", () =>
    Effect.gen(function*() {
      const { layer, pipelines, sets } = yield* setup
      yield* Effect.gen(function*() {
        const registry = yield* KernelTable
        yield* registry.upsert({
          kernelId: "k1", namespace: "ns", objectName: "kernel-k1", podUid: "u1", status: "running", kernelHost: "", replInPort: 0,
          replOutPort: 0, servicePorts: [], canonicalImage: "", image: "", resourceSpec: "", scratchDir: "", idleTimeout: 0, lastUsed: 0
        })
        yield* TestClock.adjust("1 millis")
        const afterFirst = pipelines.length
        yield* TestClock.adjust("10 seconds")
        assert.strictEqual(pipelines.length - afterFirst, 5) // every 2 s
        const last = pipelines[pipelines.length - 1]!
        assert.deepStrictEqual(last.map((c) => [c[0], c[1], c[3], c[4]]), [["SET", "i-unit", "EX", 30], ["SET", "k1", "EX", 30]])
        const stat = decode(last[1]![2] as Buffer) as Record<string, Record<string, string | null>>
        assert.strictEqual(stat.cpu_used!.current, String(pipelines.length * 1000))
        assert.strictEqual(stat.cpu_util!.pct, "50") // 1 s of CPU every 2 s

        const final = yield* (yield* KernelStatsSink).finalize("k1")
        assert.deepStrictEqual(sets, [{ key: "k1", ttl: 300 }])
        // what destroy_kernel returns (the Docker agent's last_stat): the value written last
        assert.deepStrictEqual(Option.getOrUndefined(final), stat)
        assert.isTrue(Option.isNone(yield* (yield* KernelStatsSink).finalize("k1")), "nothing left after the first finalize")
        yield* TestClock.adjust("4 seconds")
        assert.deepStrictEqual(pipelines[pipelines.length - 1]!.map((c) => c[1]), ["i-unit"]) // k1's series stopped
      }).pipe(Effect.provide(layer))
    }).pipe(Effect.provideService(References.MinimumLogLevel, "None")))
})
