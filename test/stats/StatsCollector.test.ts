// StatsCollector.layer without servers: the loop's cadence under TestClock, one write (setManyEx) per
// cycle, KernelStatsSink.finalize (long TTL, series stopped), which nodes each cycle reads
// (stats.summary-interval). In-memory Redis and Summary fakes.
import { assert, describe, it } from "@effect/vitest"
import { Clock, Effect, Layer, Option, References } from "effect"
import { TestClock } from "effect/testing"
import { AgentConfig, decodeConfigText } from "../../src/config/AgentConfig.ts"
import { KernelTable } from "../../src/kernel/KernelTable.ts"
import { KubeClient } from "../../src/kube/KubeClient.ts"
import { Redis, type RedisCommand } from "../../src/manager/Redis.ts"
import { decode } from "../../src/codec/Msgpack.ts"
import { KernelStatsSink } from "../../src/stats/KernelStatsSink.ts"
import { KubeError } from "../../src/kube/KubeClient.ts"
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
  /** The namespaces each read asked for. */
  const asked: Array<ReadonlyArray<string> | "all"> = []
  const loaded = yield* decodeConfigText("t.toml", `[etcd]\nnamespace = "ns"\naddr = "127.0.0.1:2379"\n[stats]\ninterval = 2\nttl = 30\nsummary-interval = 2\n`, {}, "unit")
  const deps = Layer.mergeAll(
    AgentConfig.fromLoaded(loaded),
    KernelTable.layer,
    Layer.mock(KubeClient)({ config: undefined as never, server: "" }), // unused: the nodes are given
    Layer.succeed(KubeletSummary, KubeletSummary.of({
      fetch: (_node, namespaces) => Effect.sync(() => (asked.push(namespaces === undefined ? "all" : [...namespaces]), summary((cpu += 1e9))))
    })),
    Layer.mock(Redis)({
      // each write as the commands it stands for (`SET key value EX ttl` per key)
      setManyEx: (keys, values, ttl) => Effect.sync(() => void pipelines.push(keys.map((k, i): RedisCommand => ["SET", k, values[i]!, "EX", ttl]))),
      set: (key, _value, options) => Effect.sync(() => void sets.push({ key, ttl: options?.ttlSeconds }))
    })
  )
  const layer = Layer.unwrap(
    Effect.map(KernelTable, (registry) => StatsCollector.layer({ kernels: registry.list, nodes: Effect.succeed(["n1"]) }))
  ).pipe(Layer.provideMerge(deps))
  return { layer, pipelines, sets, asked }
})

/**
 * A collector reading 10 s summaries every 2 s cycle (stats.summary-interval 10) with `fetch` for the
 * summaries, `nodes` as the worker nodes; each write's keys pushed to `pipelines`.
 */
const scheduledCollector = (
  fetch: KubeletSummary["Service"]["fetch"],
  nodes: Effect.Effect<ReadonlyArray<string>>,
  pipelines: Array<ReadonlyArray<string>>
) =>
  Effect.map(
    decodeConfigText("t.toml", `[etcd]\nnamespace = "ns"\naddr = "127.0.0.1:2379"\n[stats]\ninterval = 2\nttl = 30\nsummary-interval = 10\n`, {}, "unit"),
    (loaded) => {
      const deps = Layer.mergeAll(
        AgentConfig.fromLoaded(loaded),
        KernelTable.layer,
        Layer.mock(KubeClient)({ config: undefined as never, server: "" }),
        Layer.succeed(KubeletSummary, KubeletSummary.of({ fetch })),
        Layer.mock(Redis)({ setManyEx: (keys) => Effect.sync(() => void pipelines.push(keys)), set: () => Effect.void })
      )
      return Layer.unwrap(
        Effect.map(KernelTable, (registry) => StatsCollector.layer({ kernels: registry.list, nodes }))
      ).pipe(Layer.provideMerge(deps))
    }
  )

describe("StatsCollector.layer", () => {
  it.effect("runs one cycle per interval, one write per cycle; finalize writes the last stat with a long TTL", () =>
    Effect.gen(function*() {
      const { asked, layer, pipelines, sets } = yield* setup
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
        // each read asks for the kernels' namespaces' pods only
        assert.deepStrictEqual(asked.slice(-5), [["ns"], ["ns"], ["ns"], ["ns"], ["ns"]])

        const final = yield* (yield* KernelStatsSink).finalize("k1")
        assert.deepStrictEqual(sets, [{ key: "k1", ttl: 300 }])
        // what destroy_kernel returns (the Docker agent's last_stat): the value written last
        assert.deepStrictEqual(Option.getOrUndefined(final), stat)
        assert.isTrue(Option.isNone(yield* (yield* KernelStatsSink).finalize("k1")), "nothing left after the first finalize")
        yield* TestClock.adjust("4 seconds")
        assert.deepStrictEqual(pipelines[pipelines.length - 1]!.map((c) => c[1]), ["i-unit"]) // k1's series stopped
      }).pipe(Effect.provide(layer))
    }).pipe(Effect.provideService(References.MinimumLogLevel, "None")))

  // A summary holds cAdvisor's samples (every 10 s for a node, 10–20 s for a pod): each node is read
  // every summary-interval, the nodes' turns spread over the cycles; a node never read or whose last
  // read failed is read every cycle; a kernel's key is written every cycle from its node's last summary.
  it.effect("reads each node every summary-interval, spread over the cycles; failed and new nodes every cycle", () =>
    Effect.gen(function*() {
      const pipelines: Array<ReadonlyArray<string>> = []
      const reads: Array<Array<string>> = [[]]
      let nodes = Array.from({ length: 10 }, (_, i) => `n${i}`)
      let failing = new Set(["n7"])
      const cpu = new Map<string, number>()
      const fetch = (node: string) =>
        Effect.gen(function*() {
          reads[reads.length - 1]!.push(node)
          if (failing.has(node)) return yield* Effect.fail(new KubeError({ reason: "Unavailable", operation: "summary", message: "away" }))
          const now = new Date(yield* Clock.currentTimeMillis).toISOString()
          const c = (cpu.get(node) ?? 0) + 1e9
          cpu.set(node, c)
          return {
            node: { nodeName: node, cpu: { usageCoreNanoSeconds: c, time: now } },
            pods: [
              { podRef: { name: `kernel-${node}`, namespace: "ns", uid: `u-${node}` }, cpu: { usageCoreNanoSeconds: c, time: now } },
              { podRef: { name: "other", namespace: "tenant", uid: "t" }, cpu: { usageCoreNanoSeconds: 1, time: now } }
            ]
          } satisfies Summary
        })
      const layer = yield* scheduledCollector(fetch, Effect.sync(() => nodes), pipelines)
      yield* Effect.gen(function*() {
        const registry = yield* KernelTable
        for (const node of ["n3", "n7"]) {
          yield* registry.upsert({
            kernelId: `k-${node}`, namespace: "ns", objectName: `kernel-${node}`, podUid: `u-${node}`, status: "running", kernelHost: "",
            replInPort: 0, replOutPort: 0, servicePorts: [], canonicalImage: "", image: "", resourceSpec: "", scratchDir: "", idleTimeout: 0, lastUsed: 0
          })
        }
        const cycle = Effect.gen(function*() {
          reads.push([])
          yield* TestClock.adjust("2 seconds")
        })
        yield* TestClock.adjust("1 millis") // the first cycle
        assert.deepStrictEqual(reads[0], nodes) // every node at first
        for (let i = 0; i < 10; i++) yield* cycle
        // n7 fails every read: read every cycle; every other node once in five cycles, at most two a cycle
        for (const r of reads.slice(1, 11)) {
          assert.include(r, "n7")
          assert.isAtMost(r.filter((n) => n !== "n7").length, 2, JSON.stringify(reads))
        }
        for (const n of nodes.filter((n) => n !== "n7")) assert.strictEqual(reads.slice(1, 11).flat().filter((x) => x === n).length, 2, n)
        // k-n3 written every cycle from n3's last summary; its cpu_util from n3's own samples 10 s apart
        assert.isTrue(pipelines.every((keys) => keys.includes("k-n3")))
        assert.isFalse(pipelines.some((keys) => keys.includes("k-n7")))
        // n7 answers again: read at once, then in its turn; a new node is read at once, a gone one no more
        failing = new Set()
        nodes = [...nodes.filter((n) => n !== "n0"), "n10"]
        yield* cycle
        assert.include(reads[11], "n7")
        assert.include(reads[11], "n10")
        for (let i = 0; i < 10; i++) yield* cycle
        assert.notInclude(reads.slice(11).flat(), "n0")
        for (const n of ["n7", "n10"]) assert.strictEqual(reads.slice(12, 22).flat().filter((x) => x === n).length, 2, n)
        assert.isTrue(pipelines.slice(-5).every((keys) => keys.includes("k-n7")))
      }).pipe(Effect.provide(layer))
    }).pipe(Effect.provideService(References.MinimumLogLevel, "None")))

  // A new kernel's first stats: its node is read in the next cycle, not at the node's turn (up to a
  // summary-interval later); once only (a summary without the pod yet waits for the turn).
  it.effect("a node a new kernel's pod was placed on is read in the next cycle, once", () =>
    Effect.gen(function*() {
      const pipelines: Array<ReadonlyArray<string>> = []
      const reads: Array<Array<string>> = [[]]
      const nodes = Array.from({ length: 10 }, (_, i) => `n${i}`)
      const fetch = (node: string) =>
        Effect.gen(function*() {
          reads[reads.length - 1]!.push(node)
          const now = new Date(yield* Clock.currentTimeMillis).toISOString()
          return {
            node: { nodeName: node, cpu: { usageCoreNanoSeconds: 1e9, time: now } },
            pods: [{ podRef: { name: `kernel-${node}`, namespace: "ns", uid: `u-${node}` }, cpu: { usageCoreNanoSeconds: 1e9, time: now } }]
          } satisfies Summary
        })
      const layer = yield* scheduledCollector(fetch, Effect.succeed(nodes), pipelines)
      yield* Effect.gen(function*() {
        const registry = yield* KernelTable
        const cycle = Effect.gen(function*() {
          reads.push([])
          yield* TestClock.adjust("2 seconds")
        })
        yield* TestClock.adjust("1 millis") // the first cycle: every node
        yield* cycle
        // the node whose turn is furthest: read in this cycle, then not for four
        const justRead = reads[reads.length - 1]!
        const node = justRead.find((n) => n !== undefined)!
        const kernel = {
          kernelId: `k-${node}`, namespace: "ns", objectName: `kernel-${node}`, podUid: `u-${node}`, status: "creating" as const, kernelHost: "",
          replInPort: 0, replOutPort: 0, servicePorts: [], canonicalImage: "", image: "", resourceSpec: "", scratchDir: "", idleTimeout: 0, lastUsed: 0
        }
        // creating: no node yet, nothing read for it
        yield* registry.upsert(kernel)
        yield* cycle
        assert.notInclude(reads[reads.length - 1]!, node)
        // running on its node: read in the next cycle, and its key written from it
        yield* registry.upsert({ ...kernel, status: "running", nodeName: node })
        yield* cycle
        assert.include(reads[reads.length - 1]!, node)
        assert.include(pipelines[pipelines.length - 1]!, `k-${node}`)
        // once: then at its turn again (five cycles after its last regular read)
        yield* cycle
        assert.notInclude(reads[reads.length - 1]!, node)
        // a restart: a new pod of the same kernel on that node is read at once again
        yield* registry.upsert({ ...kernel, status: "running", nodeName: node, podUid: `u2-${node}` })
        yield* cycle
        assert.include(reads[reads.length - 1]!, node)
      }).pipe(Effect.provide(layer))
    }).pipe(Effect.provideService(References.MinimumLogLevel, "None")))
})
