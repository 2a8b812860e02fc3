/**
 * Statistics for the manager (spec §6 "D19 / A19.09 (reference format)", §9): every `stats.interval`
 * (2 s) the kubelet Summary API of the worker nodes is read through the API server node proxy
 * (bounded concurrency, per-node timeout), turned into D19 metric records (StatFormat.ts) and written
 * to Redis DB 0 in one round trip (`Redis.setManyEx`: one script call per 250 keys, not one client command per key).
 *
 * **Each node is read every `stats.summary-interval` (10 s), its reads spread over the cycles** (the
 * kubelet's cAdvisor samples a node every 10 s, a pod every 10–20 s; a read every 2 s at 200 nodes cost
 * a fifth of a core): NodeReads.ts; the nodes not read count with their last summary, so their
 * kernels' values are written again as they were. A node a kernel's pod was just placed on (a new or
 * restarted kernel) is read in the next cycle: its first stats come within a cycle, not a summary-interval.
 *
 * - `<agent_id>` = msgpack `{"node": {metric: M}, "devices": {metric: {node name: M}}}` — the cluster as
 *   one node, each Kubernetes node a device;
 * - `<kernel_id>` = msgpack `{metric: M}` for every kernel of `options.kernels` whose pod was measured;
 *
 * each with `EX stats.ttl` (30 s). A failing node or a failing Redis write is counted (Metrics) and
 * logged (once per transition), never thrown: the loop keeps its cadence and resumes when Redis or
 * the node is back (ioredis reconnects by itself).
 *
 * `finalize(kid)` (KernelStatsSink; the lifecycle calls it right before `kernel_terminated`) writes the
 * kernel's last stat once more with `finalTtlSeconds` (default 300 s), long enough for the manager
 * to read it when it handles the event (M1906 `mark_kernel_terminated` reads `<kid>` from DB 0), and
 * stops the kernel's series: later cycles never write that key again (so they cannot shorten the TTL).
 */
import { Cause, Clock, Context, Effect, Layer, Metric, Option, Ref, Result, Schedule, Semaphore } from "effect"
import { AgentConfig } from "../config/AgentConfig.ts"
import { KubeClient, type KubeError } from "../kube/KubeClient.ts"
import { Redis } from "../manager/Redis.ts"
import * as Msgpack from "../codec/Msgpack.ts"
import { type KernelStat, KernelStatsSink } from "./KernelStatsSink.ts"
import { KubeletSummary } from "./KubeletSummary.ts"
import { NodeReads, summaryIntervalMsOf } from "./NodeReads.ts"
import { type CollectorState, emptyState, type KernelRef, memoryLimitOf, type NodeResult, step, writeSeriesSet } from "./StatFormat.ts"

import {
  statsCycleSeconds as cycleSeconds,
  statsCyclesTotal as cyclesTotal,
  statsNodeFailuresTotal as nodeFailuresTotal,
  statsSummaryReadsTotal as summaryReadsTotal,
  statsWriteFailuresTotal as writeFailuresTotal
} from "../observability/Metrics.ts"
export { cycleSeconds, cyclesTotal, nodeFailuresTotal, summaryReadsTotal, writeFailuresTotal }

export interface StatsCollectorOptions<E = never> {
  readonly agentId: string
  /** Seconds between cycles (`stats.interval`, 2). */
  readonly intervalSeconds: number
  /** Expiry of every key (`stats.ttl`, 30). */
  readonly ttlSeconds: number
  /** Nodes queried at once (`stats.concurrency`, 8). */
  readonly concurrency: number
  /** Expiry of a terminated kernel's last stat. Default 300 s. */
  readonly finalTtlSeconds?: number
  /** Bound of one node's summary. Default max(1, interval) seconds. */
  readonly nodeTimeoutSeconds?: number
  /**
   * Seconds between two reads of one node's summary (`stats.summary-interval`, 10), kept between
   * `intervalSeconds` and `ttlSeconds / 2`. Default `intervalSeconds`: every node every cycle.
   */
  readonly summaryIntervalSeconds?: number
  /** The worker nodes to read; a failure keeps the previous list. */
  readonly nodes: Effect.Effect<ReadonlyArray<string>, E>
  /** The agent's kernels, read once per cycle (the kernel table's `list`: stats do not import kernel/). */
  readonly kernels: Effect.Effect<ReadonlyArray<MeasuredKernel>>
}

/** A kernel as the stats see it: whose pod to measure, and its memory limit (`resourceSpec`). */
export interface MeasuredKernel {
  readonly kernelId: string
  readonly namespace: string
  /** The pod's name. */
  readonly objectName: string
  readonly podUid: string | undefined
  readonly resourceSpec: string
  /** The pod's node, once known: a new pod's node is read in the next cycle, not at its turn. */
  readonly nodeName?: string | undefined
}

export interface CycleReport {
  readonly nodes: number
  readonly nodeFailures: number
  /** Kernels whose key was (to be) written. */
  readonly kernels: number
  /** Whether the Redis write succeeded. */
  readonly written: boolean
  /** Bytes of msgpack written. */
  readonly bytes: number
  readonly millis: number
}

export interface StatsCollectorShape {
  /** One cycle: read, format, write. Never fails. */
  readonly collectOnce: Effect.Effect<CycleReport>
  /** See the module comment. Never fails; bounded in time. */
  readonly finalize: (kernelId: string) => Effect.Effect<Option.Option<KernelStat>>
}

/** Worker nodes (spec §7.5: nodes labelled as master / control-plane are skipped), by label selector. */
export const listWorkerNodes = (kube: KubeClient["Service"], labelSelector: string): Effect.Effect<ReadonlyArray<string>, KubeError> =>
  kube.core("list nodes", (api) => api.listNode(labelSelector !== "" ? { labelSelector } : {})).pipe(
    Effect.map((list) =>
      list.items
        .filter((n) => {
          const labels = n.metadata?.labels ?? {}
          return !("node-role.kubernetes.io/master" in labels) && !("node-role.kubernetes.io/control-plane" in labels)
        })
        .map((n) => n.metadata?.name ?? "")
        .filter((name) => name !== "")
    )
  )

export class StatsCollector extends Context.Service<StatsCollector, StatsCollectorShape>()("bai-agent/stats/StatsCollector") {
  static readonly make = Effect.fnUntraced(function*<E>(options: StatsCollectorOptions<E>) {
    const redis = yield* Redis
    const summaries = yield* KubeletSummary

    const nominalMs = options.intervalSeconds * 1000
    const ttl = Math.max(1, Math.round(options.ttlSeconds))
    const finalTtl = Math.max(ttl, Math.round(options.finalTtlSeconds ?? 300))
    const nodeTimeoutMs = Math.round((options.nodeTimeoutSeconds ?? Math.max(1, options.intervalSeconds)) * 1000)
    const summaryMs = summaryIntervalMsOf(options.intervalSeconds, options.ttlSeconds, options.summaryIntervalSeconds)
    if (options.summaryIntervalSeconds !== undefined && summaryMs !== Math.round(options.summaryIntervalSeconds * 1000)) {
      yield* Effect.logWarning("stats: summary-interval kept between interval and ttl / 2").pipe(
        Effect.annotateLogs({ configured: options.summaryIntervalSeconds, used: summaryMs / 1000 })
      )
    }
    const reads = new NodeReads(summaryMs, nominalMs)
    /** The pods (uid) seen placed on a node by the last cycle. */
    let placedPods = new Set<string>()

    const state = yield* Ref.make<CollectorState>(emptyState)
    /**
     * The last encoded `<kernel_id>` value of every measured kernel (what finalize writes, and decodes
     * for the stat it returns: no record objects kept from one cycle to the next). Updated in place,
     * only while holding `writeLock` (a cycle's write or a finalize): no map and no entry object per
     * kernel per cycle.
     */
    const lastPayloads = new Map<string, Buffer>()
    /** Per kernel record: what the stats need of it (the memory limit parses its resource spec once). */
    const kernelRefs = new WeakMap<MeasuredKernel, KernelRef>()
    const refOf = (k: MeasuredKernel): KernelRef => {
      let ref = kernelRefs.get(k)
      if (ref === undefined) {
        ref = { kernelId: k.kernelId, namespace: k.namespace, podName: k.objectName, podUid: k.podUid, memoryLimit: memoryLimitOf(k.resourceSpec) }
        kernelRefs.set(k, ref)
      }
      return ref
    }
    /** Finalized kernels: never written by a cycle again (purged once `options.kernels` no longer lists them). */
    const finalized = yield* Ref.make<ReadonlySet<string>>(new Set())
    /** Serializes "format + write" of cycles with finalize, so a cycle never overwrites a final TTL. */
    const writeLock = yield* Semaphore.make(1)
    const nodeList = yield* Ref.make<ReadonlyArray<string>>([])
    const failingNodes = yield* Ref.make<ReadonlySet<string>>(new Set())
    const writeHealthy = yield* Ref.make(true)

    const currentNodes = options.nodes.pipe(
      Effect.tap((list) => Ref.set(nodeList, list)),
      Effect.catchCause((cause) =>
        Effect.logWarning("stats: cannot list nodes; using the previous list", cause).pipe(Effect.andThen(Ref.get(nodeList)))
      )
    )

    const readNode = (node: string, namespaces: ReadonlySet<string>): Effect.Effect<NodeResult> =>
      summaries.fetch(node, namespaces).pipe(
        Effect.timeoutOrElse({
          duration: `${nodeTimeoutMs} millis`,
          orElse: () => Effect.fail({ _tag: "Timeout" as const, message: `no summary within ${nodeTimeoutMs} ms` })
        }),
        Effect.result,
        Effect.flatMap((r) =>
          Effect.gen(function*() {
            const at = yield* Clock.currentTimeMillis
            const failing = yield* Ref.get(failingNodes)
            if (Result.isSuccess(r)) {
              if (failing.has(node)) {
                yield* Ref.update(failingNodes, (s) => new Set([...s].filter((x) => x !== node)))
                yield* Effect.logInfo("stats: node summary available again").pipe(Effect.annotateLogs({ node }))
              }
              return { node, summary: r.success, at }
            }
            yield* Metric.update(nodeFailuresTotal, 1)
            if (!failing.has(node)) {
              yield* Ref.update(failingNodes, (s) => new Set([...s, node]))
              yield* Effect.logWarning("stats: node summary failed").pipe(
                Effect.annotateLogs({ node, error: r.failure.message })
              )
            } else {
              yield* Effect.logDebug("stats: node summary still failing").pipe(Effect.annotateLogs({ node, error: r.failure.message }))
            }
            return { node, summary: undefined, at }
          })
        )
      )

    const collectOnce: Effect.Effect<CycleReport> = Effect.gen(function*() {
      const started = yield* Clock.currentTimeMillis
      const nodes = yield* currentNodes
      const kernelInfos = yield* options.kernels
      // a pod on a node for the first time (a new kernel, a restarted one): its node is read now, so its
      // first stats come within a cycle, not within a summary-interval (once per pod: a summary that does
      // not hold it yet, cAdvisor not having sampled it, waits for the node's turn)
      const urgent = new Set<string>()
      const placed = new Set<string>()
      for (const k of kernelInfos) {
        if (k.podUid === undefined || k.nodeName === undefined || k.nodeName === "") continue
        placed.add(k.podUid)
        if (!placedPods.has(k.podUid)) urgent.add(k.nodeName)
      }
      placedPods = placed
      const due = reads.due(nodes, urgent)
      yield* Metric.update(summaryReadsTotal, due.length)
      // the kernels' namespaces: only their pods are parsed and kept (a cluster's other pods are not counted)
      const namespaces = new Set<string>()
      for (const k of kernelInfos) namespaces.add(k.namespace)
      const read = yield* Effect.forEach(due, (node) => readNode(node, namespaces), { concurrency: options.concurrency })
      const results = reads.results(nodes, read)
      const report = yield* writeLock.withPermits(1)(Effect.gen(function*() {
        const at = yield* Clock.currentTimeMillis
        const fin = yield* Ref.get(finalized)
        const refs: Array<KernelRef> = []
        for (const k of kernelInfos) if (!fin.has(k.kernelId)) refs.push(refOf(k))
        const before = yield* Ref.get(state)
        const out = step(before, {
          at,
          nominalMs,
          staleAfterMs: ttl * 1000,
          nodes: results,
          kernels: refs
        })
        yield* Ref.set(state, out.state)
        yield* Ref.update(finalized, (s) => {
          if (s.size === 0) return s
          const live = new Set(kernelInfos.map((k) => k.kernelId))
          return new Set([...s].filter((kid) => live.has(kid)))
        })

        // one synchronous pass: encode every value (the payloads of kernels not measured this cycle but
        // still alive stay; those of kernels the state no longer holds go)
        const keys: Array<string> = []
        const values: Array<Buffer> = []
        let bytes = 0
        const encodeFailed = yield* Effect.try(() => {
          if (out.agent !== undefined) {
            const v = Msgpack.encode(out.agent)
            bytes += v.length
            keys.push(options.agentId)
            values.push(v)
          }
          for (const [kid, set] of out.kernels) {
            // a set the step left as it was (its pod's samples read again) has the value encoded last
            const last = before.kernels.get(kid) === set ? lastPayloads.get(kid) : undefined
            const v = last ?? Msgpack.encodeBy((w) => writeSeriesSet(w, set))
            bytes += v.length
            lastPayloads.set(kid, v)
            keys.push(kid)
            values.push(v)
          }
          return false
        }).pipe(Effect.catchCause((cause) => Effect.logError("stats: cannot encode", cause).pipe(Effect.as(true))))
        for (const kid of lastPayloads.keys()) {
          if (!out.state.kernels.has(kid)) lastPayloads.delete(kid)
        }
        const written = encodeFailed ? false : yield* redis.setManyEx(keys, values, ttl).pipe(
          Effect.as(true),
          Effect.catch((error) =>
            Effect.gen(function*() {
              yield* Metric.update(writeFailuresTotal, 1)
              if (yield* Ref.getAndSet(writeHealthy, false)) {
                yield* Effect.logWarning("stats: Redis write failed; will retry every cycle").pipe(
                  Effect.annotateLogs({ reason: error.reason, error: error.message })
                )
              }
              return false
            })
          )
        )
        if (written && !(yield* Ref.getAndSet(writeHealthy, true))) yield* Effect.logInfo("stats: Redis writes resumed")
        let nodeFailures = 0
        for (const r of results) if (r.summary === undefined) nodeFailures++
        return { nodes: nodes.length, nodeFailures, kernels: out.kernels.size, written, bytes }
      }))
      const ended = yield* Clock.currentTimeMillis
      yield* Metric.update(cycleSeconds, (ended - started) / 1000)
      yield* Metric.update(cyclesTotal, 1)
      return { ...report, millis: ended - started }
    }).pipe(
      Effect.catchCause((cause) =>
        Effect.logError("stats: cycle failed", cause).pipe(
          Effect.as({ nodes: 0, nodeFailures: 0, kernels: 0, written: false, bytes: 0, millis: 0 })
        )
      )
    )

    const finalize = (kernelId: string): Effect.Effect<Option.Option<KernelStat>> =>
      Ref.update(finalized, (s) => new Set([...s, kernelId])).pipe(
        Effect.andThen(writeLock.withPermits(1)(Effect.gen(function*() {
          const payload = lastPayloads.get(kernelId)
          lastPayloads.delete(kernelId)
          yield* Ref.update(state, (s) => {
            if (!s.kernels.has(kernelId)) return s
            const kernels = new Map(s.kernels)
            kernels.delete(kernelId)
            return { ...s, kernels }
          })
          if (payload === undefined) {
            yield* Effect.logDebug("stats: no stat to finalize").pipe(Effect.annotateLogs({ kernelId }))
            return Option.none<KernelStat>()
          }
          yield* redis.set(kernelId, payload, { ttlSeconds: finalTtl }).pipe(
            Effect.catch((error) =>
              Effect.logWarning("stats: cannot write the last stat of a terminated kernel").pipe(
                Effect.annotateLogs({ kernelId, error: error.message })
              )
            )
          )
          // our own encoding of `{metric: {field: str | nil}}` (writeSeriesSet): it decodes as that
          const stat = Msgpack.decodeResult(payload)
          if (!stat.ok) {
            yield* Effect.logError("stats: cannot decode the last stat of a terminated kernel").pipe(
              Effect.annotateLogs({ kernelId, error: stat.message })
            )
            return Option.none<KernelStat>()
          }
          return Option.some(stat.value as KernelStat)
        }))),
        Effect.timeoutOption("5 seconds"),
        Effect.map(Option.flatten)
      )

    return StatsCollector.of({ collectOnce, finalize })
  })

  /** The collection loop (`Schedule.fixed`: one cycle every interval; a slow cycle is not made up). */
  static readonly loop = (collector: StatsCollectorShape, intervalSeconds: number): Effect.Effect<never> =>
    collector.collectOnce.pipe(
      Effect.repeat(Schedule.fixed(`${Math.round(intervalSeconds * 1000)} millis`)),
      Effect.catchCause((cause) => Effect.logError("stats loop ended", cause).pipe(Effect.andThen(Effect.die(Cause.squash(cause))))),
      Effect.andThen(Effect.never)
    )

  /**
   * The collector from AgentConfig (`stats.*`, agent id), with its loop running when `stats.enabled`,
   * also serving as the KernelStatsSink. Kernels: `options.kernels` (the kernel table's `list`). Worker
   * nodes: `options.nodes` (e.g. from NodeResources), else listed through KubeClient
   * (`kubernetes.node-selector`, masters skipped; refreshed every 30 s).
   */
  static readonly layer = <E = never>(options: {
    readonly kernels: Effect.Effect<ReadonlyArray<MeasuredKernel>>
    readonly nodes?: Effect.Effect<ReadonlyArray<string>, E>
    readonly finalTtlSeconds?: number
  }): Layer.Layer<StatsCollector | KernelStatsSink, never, Redis | KubeletSummary | KubeClient | AgentConfig> =>
    Layer.effectContext(Effect.gen(function*() {
      const { agentId, config } = yield* AgentConfig
      const kube = yield* KubeClient
      const listed = yield* Effect.cachedWithTTL(listWorkerNodes(kube, config.kubernetes["node-selector"]), "30 seconds")
      const collector = yield* StatsCollector.make<E | KubeError>({
        agentId,
        intervalSeconds: config.stats.interval,
        ttlSeconds: config.stats.ttl,
        concurrency: config.stats.concurrency,
        summaryIntervalSeconds: config.stats["summary-interval"],
        nodes: options.nodes ?? listed,
        kernels: options.kernels,
        ...(options.finalTtlSeconds !== undefined ? { finalTtlSeconds: options.finalTtlSeconds } : {})
      })
      if (config.stats.enabled) yield* Effect.forkScoped(StatsCollector.loop(collector, config.stats.interval))
      else yield* Effect.logInfo("stats: disabled (stats.enabled = false)")
      return Context.make(StatsCollector, collector).pipe(
        Context.add(KernelStatsSink, KernelStatsSink.of({ finalize: collector.finalize }))
      )
    }))
}
