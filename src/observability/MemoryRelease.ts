/**
 * Gives back the memory a burst left behind (issue 17 goal 2: ≤ 150 MiB RSS with 1,000 live kernels).
 *
 * V8 keeps the pages its mark-compacts free in a pool of its own, committed, for the heap to grow into
 * again; it empties the pool only in a memory-reducing GC, which its memory reducer starts only when the
 * allocation rate is low — never with 1,000 kernels, whose stats cycle allocates every 2 s. The pages of a
 * burst (the start-up lists and the adoption of every kernel, a relist of every pod) stayed resident for
 * good: 24–26 MiB pooled after adopting 1,000 kernels (`--trace-gc`: "pooled: 26 MB"; bench/README.md,
 * "V8's page pool").
 *
 * `afterBurst` says that a burst is over. Once no other came for `quiet`, V8 is asked once to reduce its
 * memory — `Isolate::LowMemoryNotification`: memory-reducing full GCs, the page pool emptied, the young
 * generation shrunk — which node reaches through its in-process inspector session
 * (`HeapProfiler.collectGarbage`; no port is opened, no flag is needed; ~20–50 ms of the main thread
 * at a 30–45 MiB heap, two mark-compacts). A node built without the inspector answers `MemoryReleaseFailed`,
 * logged at debug level; nothing else changes then.
 */
import { Context, type Duration, Effect, Layer, Metric, Queue, Schema, Stream } from "effect"
import { memoryReleasesTotal } from "./Metrics.ts"

export class MemoryReleaseFailed extends Schema.TaggedError<MemoryReleaseFailed>()("MemoryReleaseFailed", {
  message: Schema.String,
  cause: Schema.Defect()
}) {}

/** How long no burst must come before the release (a start-up's lists and adoption come within ~2 s of each other). */
export const QUIET = "5 seconds"

/** `Isolate::LowMemoryNotification` through node's in-process inspector (`HeapProfiler.collectGarbage`). */
export const lowMemoryNotification: Effect.Effect<void, MemoryReleaseFailed> = Effect.tryPromise({
  try: () => import("node:inspector"),
  catch: (cause) => new MemoryReleaseFailed({ message: "node:inspector is not available", cause })
}).pipe(
  Effect.flatMap((inspector) =>
    Effect.callback<void, MemoryReleaseFailed>((resume) => {
      const session = new inspector.Session()
      try {
        session.connect()
        session.post("HeapProfiler.collectGarbage", (error) => {
          // disconnected after the callback returned: inside it, node (24.21) hangs
          setImmediate(() => session.disconnect())
          resume(error === null ? Effect.void : Effect.fail(new MemoryReleaseFailed({ message: "HeapProfiler.collectGarbage failed", cause: error })))
        })
      } catch (cause) {
        resume(Effect.fail(new MemoryReleaseFailed({ message: "cannot open an inspector session", cause })))
      }
    })
  )
)

const rssMiB = () => (process.memoryUsage.rss() / 2 ** 20).toFixed(1)

export interface MemoryReleaseShape {
  /** A burst of allocations is over: V8 gives back what it holds unused once no other came for the quiet period. */
  readonly afterBurst: Effect.Effect<void>
}

export class MemoryRelease extends Context.Service<MemoryRelease, MemoryReleaseShape>()("bai-agent/observability/MemoryRelease") {
  /** Releases with `release` once `quiet` passed after the last `afterBurst` (a failed release is logged at debug level, then tried again after the next burst). */
  static readonly make = (options: { readonly quiet: Duration.Input; readonly release: Effect.Effect<void, MemoryReleaseFailed> }) =>
    Effect.gen(function*() {
      const bursts = yield* Queue.sliding<void>(1)
      const releaseOnce = Effect.gen(function*() {
        const before = rssMiB()
        yield* options.release
        yield* Metric.update(memoryReleasesTotal, 1)
        yield* Effect.logDebug(`unused memory released after a burst: RSS ${before} → ${rssMiB()} MiB`)
      }).pipe(Effect.catch((e) => Effect.logDebug(`cannot release unused memory: ${e.message}`, e.cause)))
      yield* Stream.fromQueue(bursts).pipe(
        Stream.debounce(options.quiet),
        Stream.runForEach(() => releaseOnce),
        Effect.forkScoped
      )
      return MemoryRelease.of({ afterBurst: Queue.offer(bursts, undefined).pipe(Effect.asVoid) })
    })

  static readonly layer = Layer.effect(MemoryRelease, MemoryRelease.make({ quiet: QUIET, release: lowMemoryNotification }))

  /** Releases nothing (tests of the services that report bursts). */
  static readonly layerNoop = Layer.succeed(MemoryRelease, MemoryRelease.of({ afterBurst: Effect.void }))
}
