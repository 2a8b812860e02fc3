/**
 * List-and-watch, once: a scoped informer over `KubeClient` keeping a cache of one kind of object,
 * keyed by `namespace/name` (`name` for cluster-scoped objects).
 *
 * - **list** → the cache is replaced, `synced` completes (the first time);
 * - **watch** from the list's resourceVersion; each event updates the cache (and the version the
 *   next watch resumes from) and is handed to `onEvent`, in order;
 * - **410 Gone** (the version left the server's history) → relist at once;
 * - the watch **ends** (server timeout) → resume from the last version seen;
 * - **relist** every `relistInterval` whatever the watch does: the watch is cut client-side when the
 *   relist is due, so a watch that went silent (a server or proxy that stopped delivering) costs at
 *   most one interval of staleness;
 * - any other failure (list or watch) → back off (`backoff`: exponential from 0.5 s, capped at 10 s,
 *   jittered) and resume from the last version seen (relist if there is none). The backoff starts
 *   again after a step that ended normally.
 *
 * The cache is a `SubscriptionRef` of an immutable `HashMap`: `changes` streams the current map and
 * every new one; a consumer that derives something from it (NodeResources' snapshot) can memoise on
 * the map's identity. Seam for tests: the informer only talks to `KubeClient`, so a test can hand it
 * a `KubeClient` whose `watch` it controls (e.g. paused) while lists reach the real API server.
 */
import { Cause, Clock, Deferred, Duration, Effect, HashMap, Option, Schedule, type Schema, type Scope, Stream, SubscriptionRef } from "effect"
import { markWatchEvent, markWatchRestart } from "../observability/Metrics.ts"
import { KubeClient, KubeError } from "./KubeClient.ts"

/** What a list gives the informer: raw objects (decoded by the informer) and the version to watch from. */
export interface ListResult {
  readonly items: ReadonlyArray<unknown>
  readonly resourceVersion: string | undefined
}

/** A watch event after decoding, as handed to `onEvent` (bookmarks only move the version). */
export interface InformerEvent<A> {
  readonly type: "ADDED" | "MODIFIED" | "DELETED"
  readonly key: string
  readonly object: A
}

export interface InformerOptions<A, E, R> {
  /** Label of the watch metrics (`resource`) and prefix of the log lines. */
  readonly kind: string
  /** The watched API path, e.g. `/api/v1/nodes`, `/api/v1/namespaces/ns/pods`. */
  readonly path: string
  /** Selectors of the watch (the list must use the same ones). */
  readonly query?: Readonly<Record<string, string | number | boolean | undefined>>
  /** The list: the API call, or a whole pass built around it (the Reconciler's comparison). */
  readonly list: Effect.Effect<ListResult, E, R>
  /** Checks a raw object (hostile input); an undecodable object is logged and left out. */
  readonly decode: (raw: unknown) => Effect.Effect<A, Schema.SchemaError>
  readonly relistInterval: Duration.Input
  /** Delays between failed steps (default `informerBackoff`). */
  readonly backoff?: Schedule.Schedule<unknown, unknown>
  /** Each watch event, after the cache took it, in order (a failure of the handler is its own business). */
  readonly onEvent?: (event: InformerEvent<A>) => Effect.Effect<void, never, R>
  /** After each list went into the cache (no events tell what changed meanwhile: look again). */
  readonly onList?: Effect.Effect<void, never, R>
  /** A list already taken (start-up): fills the cache and the first watch starts from its version. */
  readonly initial?: ListResult
}

export interface Informer<A> {
  /** The cached object under `namespace/name` (or `name`). */
  readonly get: (key: string) => Effect.Effect<Option.Option<A>>
  /** The whole cache now. */
  readonly items: Effect.Effect<HashMap.HashMap<string, A>>
  /** The cache now, then each new one. */
  readonly changes: Stream.Stream<HashMap.HashMap<string, A>>
  /** Completes once the first list went into the cache. */
  readonly synced: Effect.Effect<void>
  readonly isSynced: Effect.Effect<boolean>
}

/** 0.5 s doubling, capped at 10 s, each delay ×[0.8, 1.2]. */
export const informerBackoff: Schedule.Schedule<unknown, unknown> = Schedule.min([
  Schedule.exponential("500 millis"),
  Schedule.spaced("10 seconds")
]).pipe(Schedule.jittered)

// ---------------------------------------------------------------------------------------------
// Pure parts

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

const metadataString = (raw: unknown, field: "name" | "namespace" | "resourceVersion"): string | undefined => {
  if (!isRecord(raw) || !isRecord(raw.metadata)) return undefined
  const v = raw.metadata[field]
  return typeof v === "string" && v !== "" ? v : undefined
}

/** The cache key of a raw object: `namespace/name`, `name` when cluster-scoped, undefined without a name. */
export const objectKey = (raw: unknown): string | undefined => {
  const name = metadataString(raw, "name")
  if (name === undefined) return undefined
  const namespace = metadataString(raw, "namespace")
  return namespace === undefined ? name : `${namespace}/${name}`
}

/** The object's resourceVersion (where the next watch resumes), if it carries one. */
export const resourceVersionOf = (raw: unknown): string | undefined => metadataString(raw, "resourceVersion")

/** The watch expired: the server no longer has the history from our version; only a relist helps. */
export const isGone = (e: KubeError): boolean => e.reason === "Gone" || e.status === 410

/** The cache after one watch event. */
export const applyEvent = <A>(
  cache: HashMap.HashMap<string, A>,
  event: { readonly type: "ADDED" | "MODIFIED" | "DELETED"; readonly key: string; readonly object: A }
): HashMap.HashMap<string, A> =>
  event.type === "DELETED" ? HashMap.remove(cache, event.key) : HashMap.set(cache, event.key, event.object)

/** What to do before the next watch: relist when there is no version or the relist is due. */
export const nextStep = (state: { readonly resourceVersion: string | undefined; readonly relistAt: number }, now: number): "list" | "watch" =>
  state.resourceVersion === undefined || now >= state.relistAt ? "list" : "watch"

// ---------------------------------------------------------------------------------------------

/** Starts the informer in the current scope (it stops with it); returns once the loop is forked. */
export const make = <A, E extends { readonly message: string }, R>(
  options: InformerOptions<A, E, R>
): Effect.Effect<Informer<A>, never, KubeClient | Scope.Scope | R> =>
  Effect.gen(function*() {
    const kube = yield* KubeClient
    const { kind } = options
    const interval = Duration.toMillis(Duration.fromInputUnsafe(options.relistInterval))
    const cache = yield* SubscriptionRef.make(HashMap.empty<string, A>())
    const synced = yield* Deferred.make<void>()
    const state = { resourceVersion: undefined as string | undefined, relistAt: 0, watches: 0 }

    const decodeItems = (items: ReadonlyArray<unknown>) =>
      Effect.gen(function*() {
        const entries: Array<readonly [string, A]> = []
        for (const raw of items) {
          const key = objectKey(raw)
          if (key === undefined) continue
          const decoded = yield* Effect.option(
            options.decode(raw).pipe(Effect.tapError((e) => Effect.logWarning(`${kind}: undecodable object ${key} left out: ${e.message}`)))
          )
          if (Option.isSome(decoded)) entries.push([key, decoded.value])
        }
        return HashMap.fromIterable(entries)
      })

    const fill = (listed: ListResult) =>
      Effect.gen(function*() {
        yield* SubscriptionRef.set(cache, yield* decodeItems(listed.items))
        state.resourceVersion = listed.resourceVersion
        state.relistAt = (yield* Clock.currentTimeMillis) + interval
        yield* Deferred.succeed(synced, undefined)
        yield* Effect.logDebug(`${kind}: listed ${listed.items.length}`)
        if (options.onList !== undefined) yield* options.onList
      })

    const onWatchEvent = (type: string, raw: unknown) =>
      Effect.gen(function*() {
        yield* markWatchEvent(kind)
        const rv = resourceVersionOf(raw)
        if (type !== "ADDED" && type !== "MODIFIED" && type !== "DELETED") {
          // BOOKMARK: only the version moves
          if (rv !== undefined) state.resourceVersion = rv
          return
        }
        const key = objectKey(raw)
        const decoded = key === undefined ? Option.none() : yield* Effect.option(
          options.decode(raw).pipe(Effect.tapError((e) => Effect.logWarning(`${kind}: undecodable watch event ignored: ${e.message}`)))
        )
        if (rv !== undefined) state.resourceVersion = rv
        if (key === undefined || Option.isNone(decoded)) return
        const event: InformerEvent<A> = { type, key, object: decoded.value }
        yield* SubscriptionRef.update(cache, (c) => applyEvent(c, event))
        if (options.onEvent !== undefined) yield* options.onEvent(event)
      })

    /** One watch from the current version, cut when the relist is due. */
    const watch = Effect.gen(function*() {
      const remaining = state.relistAt - (yield* Clock.currentTimeMillis)
      if (remaining <= 0) return
      if (state.watches++ > 0) yield* markWatchRestart(kind)
      yield* kube.watch<unknown>(options.path, {
        ...options.query,
        resourceVersion: state.resourceVersion,
        timeoutSeconds: Math.max(1, Math.ceil(remaining / 1000))
      }).pipe(
        Stream.runForEach((e) => onWatchEvent(e.type, e.object)),
        // the relist is due: a watch that went silent must not keep us on stale state past it
        Effect.timeoutOrElse({ duration: Duration.millis(remaining), orElse: () => Effect.void })
      )
    })

    const step = Effect.gen(function*() {
      if (nextStep(state, yield* Clock.currentTimeMillis) === "list") yield* fill(yield* options.list)
      yield* watch
    }).pipe(
      Effect.catchIf(
        (e): e is KubeError => e instanceof KubeError && isGone(e),
        (e) =>
          Effect.logInfo(`${kind}: watch expired (410: ${e.message}); relisting`).pipe(
            Effect.andThen(Effect.sync(() => void (state.resourceVersion = undefined)))
          )
      ),
      Effect.tapError((e) => Effect.logWarning(`${kind}: list/watch failed, retrying: ${e.message}`))
    )

    if (options.initial !== undefined) yield* fill(options.initial)
    yield* step.pipe(
      Effect.retry(options.backoff ?? informerBackoff),
      Effect.forever,
      // only a defect gets here (failures are retried): said loudly, the cache then stays as it is
      Effect.catchCause((cause) => Cause.hasInterruptsOnly(cause) ? Effect.void : Effect.logError(`${kind}: informer stopped`, cause)),
      Effect.forkScoped
    )

    return {
      get: (key) => Effect.map(SubscriptionRef.get(cache), HashMap.get(key)),
      items: SubscriptionRef.get(cache),
      changes: SubscriptionRef.changes(cache),
      synced: Deferred.await(synced),
      isSynced: Deferred.isDone(synced)
    } satisfies Informer<A>
  })
