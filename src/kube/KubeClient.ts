/**
 * The Kubernetes API as an Effect service: every call is typed (`KubeError` with a `reason`), bounded
 * by the request timeout, and every watch is a scoped `Stream` that aborts its HTTP request when the
 * consumer's scope closes.
 */
import * as k8s from "@kubernetes/client-node"
import { Cause, Context, Effect, Layer, Option, Queue, Schema, Semaphore, Stream } from "effect"
import type * as https from "node:https"
import * as path from "node:path"
import { AgentConfig } from "../config/AgentConfig.ts"

export const KubeErrorReason = Schema.Literals([
  "NotFound",
  "Conflict",
  "AlreadyExists",
  "Invalid",
  "Forbidden",
  "Unauthorized",
  "Gone",
  "Timeout",
  "Unavailable",
  "Other"
])
export type KubeErrorReason = typeof KubeErrorReason.Type

export class KubeError extends Schema.TaggedError<KubeError>()("KubeError", {
  reason: KubeErrorReason,
  operation: Schema.String,
  status: Schema.optionalKey(Schema.Number),
  message: Schema.String
}) {}

/** Status and server message of whatever the client library threw. */
const describeFailure = (e: unknown): { status: number | undefined; message: string; serverReason: string | undefined } => {
  if (e instanceof k8s.ApiException) {
    let message = e.message
    let serverReason: string | undefined
    const body: unknown = e.body
    try {
      const parsed = typeof body === "string" ? JSON.parse(body) : body
      if (parsed && typeof parsed === "object") {
        if (typeof parsed.message === "string") message = parsed.message
        if (typeof parsed.reason === "string") serverReason = parsed.reason
      }
    } catch {
      if (typeof body === "string" && body.length > 0) message = body.slice(0, 500)
    }
    return { status: e.code, message, serverReason }
  }
  // client-node's Watch throws a plain Error with `statusCode` for a non-200 answer; fetch fails with
  // "fetch failed" and the reason (ECONNREFUSED, ENOTFOUND…) in its cause
  const err = e as { statusCode?: unknown; message?: unknown; cause?: { code?: unknown; message?: unknown } }
  const status = typeof err?.statusCode === "number" ? err.statusCode : undefined
  const base = typeof err?.message === "string" ? err.message : String(e)
  const cause = typeof err?.cause?.code === "string" ? err.cause.code : typeof err?.cause?.message === "string" ? err.cause.message : undefined
  return { status, message: cause === undefined ? base : `${base}: ${cause}`, serverReason: undefined }
}

const toKubeError = (operation: string) => (e: unknown): KubeError => {
  const { message, serverReason, status } = describeFailure(e)
  const reason: KubeErrorReason = status === 404
    ? "NotFound"
    : status === 409
    ? serverReason === "AlreadyExists" ? "AlreadyExists" : "Conflict"
    : status === 422
    ? "Invalid"
    : status === 403
    ? "Forbidden"
    : status === 401
    ? "Unauthorized"
    : status === 410
    ? "Gone"
    : status === undefined || status >= 500 || status === 429
    ? "Unavailable"
    : "Other"
  return new KubeError({ reason, operation, message, ...(status === undefined ? {} : { status }) })
}

/** Server-side duration of one watch request (spec'd by the API as `timeoutSeconds`). */
const WATCH_TIMEOUT_SECONDS = 300

export interface WatchEvent<A> {
  readonly type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR"
  readonly object: A
}

/** client-node's (undici's) request dispatcher. */
type Dispatcher = NonNullable<ReturnType<k8s.RequestContext["getDispatcher"]>>
/** What `KubeConfig.createDispatcher` (private in client-node 2.0, called for every request) takes. */
type CreateDispatcher = (cluster: k8s.Cluster | null, agentOptions: https.AgentOptions) => Dispatcher | undefined

/** One text per distinct TLS setup (ca, client certificate and key, server name, verification). */
const dispatcherKey = (options: k8s.DispatcherOptions): string =>
  JSON.stringify(options, (_, v: unknown) => (Buffer.isBuffer(v) ? v.toString("base64") : v))

/**
 * client-node 2.0 builds a new undici Agent for every request (`createDispatcher`, from
 * `applySecurityAuthentication`), i.e. a new TCP connection and TLS handshake per API call, on both
 * sides. Here the KubeConfig keeps one Agent (a pool of kept-alive connections) for as long as its
 * TLS setup stays the same; a changed setup (rotated client certificate) gets a new Agent and the
 * old one is closed once its requests (a watch) are done. Headers (tokens) are still applied per
 * request by client-node.
 */
const reuseDispatchers = (kc: k8s.KubeConfig): boolean => {
  const own = (kc as unknown as { createDispatcher?: unknown }).createDispatcher
  // a private method: a client-node without it (pinned at 2.0.1, see package.json) keeps its own dispatching
  if (typeof own !== "function" || typeof kc.createDispatcherOptions !== "function") return false
  const original = (own as CreateDispatcher).bind(kc)
  let current: { readonly key: string; readonly dispatcher: Dispatcher | undefined } | undefined
  const createDispatcher: CreateDispatcher = (cluster, agentOptions) => {
    const key = dispatcherKey(kc.createDispatcherOptions(cluster, agentOptions))
    if (current?.key === key) return current.dispatcher
    const previous = current?.dispatcher
    current = { key, dispatcher: original(cluster, agentOptions) }
    if (previous !== undefined) previous.close().catch(() => undefined)
    return current.dispatcher
  }
  Object.assign(kc, { createDispatcher })
  return true
}

/** One page of a list, as client-node's list calls answer. */
export interface ListPage<T> {
  readonly items: ReadonlyArray<T>
  readonly metadata?: k8s.V1ListMeta
}

/** A whole list: its objects and the version of the server's snapshot they are (what a watch resumes from). */
export interface ListResult<T> {
  readonly items: ReadonlyArray<T>
  readonly resourceVersion: string | undefined
}

/** Objects per list page (`limit`): a page of kernel pods is ~1.5 MiB of JSON. */
export const LIST_PAGE_SIZE = 250

/** Pages of one list at most (2.5 million objects at 250): past it, the list fails (a server that never ends it). */
export const MAX_LIST_PAGES = 10_000

/**
 * `o` without `metadata.managedFields` — the server's record of which client set which field (server-side
 * apply), 3.3 of the 7.1 KiB a listed kernel pod held, read by nothing here. In place (a listed object
 * is the lister's own), by assignment (a `delete` would turn the metadata object into a dictionary).
 */
export const withoutManagedFields = <T>(o: T): T => {
  const metadata = (o as { metadata?: { managedFields?: unknown } } | null | undefined)?.metadata
  if (typeof metadata === "object" && metadata !== null && metadata.managedFields !== undefined) metadata.managedFields = undefined
  return o
}

export interface KubeClientShape {
  readonly config: k8s.KubeConfig
  /** The API server URL, for messages. */
  readonly server: string
  readonly core: <A>(operation: string, f: (api: k8s.CoreV1Api) => Promise<A>) => Effect.Effect<A, KubeError>
  readonly coordination: <A>(operation: string, f: (api: k8s.CoordinationV1Api) => Promise<A>) => Effect.Effect<A, KubeError>
  /** NetworkPolicies (the kernels' network fence). */
  readonly networking: <A>(operation: string, f: (api: k8s.NetworkingV1Api) => Promise<A>) => Effect.Effect<A, KubeError>
  /**
   * A whole list in pages of `LIST_PAGE_SIZE` objects (`limit` / `continue`: every page from the
   * snapshot of the first; a continue token that expired meanwhile starts the list again), with one
   * page in flight for the whole client: the lists of a start-up (kernel pods, all pods, nodes,
   * Services, ConfigMaps) arrive one page at a time instead of all at once — what is held at once
   * is bounded by the page and what `keep` keeps, not by the cluster. `page` is the list call with
   * the page's options.
   */
  readonly list: <T, B = T>(
    operation: string,
    page: (api: k8s.CoreV1Api, options: { readonly limit: number; readonly _continue?: string }) => Promise<ListPage<T>>,
    /** What is kept of each object, applied as its page arrives (the page itself is then dropped). Total: never throws. */
    keep?: (item: T) => B
  ) => Effect.Effect<ListResult<B>, KubeError>
  /**
   * Watch `path` (e.g. `/api/v1/namespaces/ns/pods`) from `resourceVersion`. The stream ends with a
   * `KubeError` (reason `Gone` when the version expired, so the caller relists) or when the server
   * closes the watch; it never retries by itself.
   */
  readonly watch: <A>(path: string, query: Record<string, string | number | boolean | undefined>) => Stream.Stream<WatchEvent<A>, KubeError>
}

export class KubeClient extends Context.Service<KubeClient, KubeClientShape>()("bai-agent/kube/KubeClient") {
  /** Build from an explicit kubeconfig path, the in-cluster service account, or the default search. */
  static readonly make = Effect.fn("KubeClient.make")(function*(options: {
    readonly kubeconfig: string | undefined
    readonly requestTimeoutSeconds: number
    /** Objects per list page (default `LIST_PAGE_SIZE`). */
    readonly listPageSize?: number
  }) {
    const kc = yield* Effect.try({
      try: () => {
        const kc = new k8s.KubeConfig()
        if (options.kubeconfig !== undefined) kc.loadFromFile(path.resolve(options.kubeconfig))
        else if (process.env.KUBERNETES_SERVICE_HOST) kc.loadFromCluster()
        else kc.loadFromDefault()
        if (kc.getCurrentCluster() === null) throw new Error("the kubeconfig has no current cluster")
        return kc
      },
      catch: (e) =>
        new KubeError({
          reason: "Other",
          operation: "load kubeconfig",
          message: `${options.kubeconfig ?? "(in-cluster/default)"}: ${e instanceof Error ? e.message : String(e)}`
        })
    })
    if (!reuseDispatchers(kc)) {
      yield* Effect.logWarning("client-node has no KubeConfig.createDispatcher: every Kubernetes call opens its own connection (src/kube/KubeClient.ts, reuseDispatchers)")
    }
    const core = kc.makeApiClient(k8s.CoreV1Api)
    const coordination = kc.makeApiClient(k8s.CoordinationV1Api)
    const networking = kc.makeApiClient(k8s.NetworkingV1Api)
    const timeout = `${options.requestTimeoutSeconds} seconds` as const
    const call = <Api>(api: Api) => <A>(operation: string, f: (api: Api) => Promise<A>): Effect.Effect<A, KubeError> =>
      Effect.tryPromise({ try: () => f(api), catch: toKubeError(operation) }).pipe(
        Effect.timeoutOrElse({
          duration: timeout,
          orElse: () =>
            Effect.fail(
              new KubeError({ reason: "Timeout", operation, message: `no answer within ${options.requestTimeoutSeconds}s` })
            )
        })
      )
    const watch = <A>(p: string, query: Record<string, string | number | boolean | undefined>) =>
      Stream.callback<WatchEvent<A>, KubeError>((queue) =>
        Effect.suspend(() => {
          // The server ends the watch after `timeoutSeconds` (jittered, so watches of many agents
          // do not reconnect in step); the client's inactivity timeout (30 s by default in
          // client-node, which made every quiet watch "fail" twice a minute) is set past it, so
          // it only fires when the server really went silent.
          const serverTimeout = typeof query.timeoutSeconds === "number"
            ? query.timeoutSeconds
            : Math.round(WATCH_TIMEOUT_SECONDS * (0.9 + 0.2 * Math.random()))
          const watcher = new k8s.Watch(kc)
          // `requestTimeoutMs` is declared private in client-node 2.0 but is the documented knob
          // (a plain instance field the watch reads on every request).
          Object.assign(watcher, { requestTimeoutMs: (serverTimeout + 30) * 1000 })
          // `watch()` resolves to its AbortController only once the response headers arrived (or its
          // own timeout fired, up to `serverTimeout + 30` s later). It is not awaited: closing the
          // stream must never wait for a silent API server (that hung shutdown for minutes). A
          // watch closed before it started is aborted as soon as its controller exists.
          let controller: AbortController | undefined
          let closed = false
          watcher.watch(
            p,
            { ...query, timeoutSeconds: serverTimeout, allowWatchBookmarks: true },
            (type, object) => {
              if (type === "ERROR") {
                const status = object as { code?: number; message?: string; reason?: string }
                Queue.failCauseUnsafe(
                  queue,
                  Cause.fail(new KubeError({
                    reason: status.code === 410 ? "Gone" : "Other",
                    operation: `watch ${p}`,
                    message: status.message ?? "watch error",
                    ...(status.code === undefined ? {} : { status: status.code })
                  }))
                )
              } else {
                Queue.offerUnsafe(queue, { type: type as WatchEvent<A>["type"], object: object as A })
              }
            },
            (err) => {
              if (err === null || err === undefined || (err as { name?: string }).name === "AbortError") Queue.endUnsafe(queue)
              else Queue.failCauseUnsafe(queue, Cause.fail(toKubeError(`watch ${p}`)(err)))
            }
          ).then(
            (c) => {
              controller = c
              if (closed) c.abort()
            },
            (e) => Queue.failCauseUnsafe(queue, Cause.fail(toKubeError(`watch ${p}`)(e)))
          )
          return Effect.addFinalizer(() =>
            Effect.sync(() => {
              closed = true
              controller?.abort()
            })
          )
        })
      )
    // one list page in flight at a time, whoever lists
    const pageGate = yield* Semaphore.make(1)
    const limit = Math.max(1, Math.floor(options.listPageSize ?? LIST_PAGE_SIZE))
    const list = <T, B = T>(
      operation: string,
      page: (api: k8s.CoreV1Api, options: { readonly limit: number; readonly _continue?: string }) => Promise<ListPage<T>>,
      keep?: (item: T) => B
    ): Effect.Effect<ListResult<B>, KubeError> => {
      const pages = (cont: string | undefined, acc: Array<B>, count: number): Effect.Effect<ListResult<B>, KubeError> =>
        pageGate.withPermits(1)(call(core)(operation, (api) => page(api, cont === undefined ? { limit } : { limit, _continue: cont }))).pipe(
          Effect.flatMap((p) => {
            for (const item of p.items ?? []) acc.push(keep === undefined ? (item as unknown as B) : keep(item))
            const next = p.metadata?._continue
            if (next === undefined || next === "") return Effect.succeed({ items: acc, resourceVersion: p.metadata?.resourceVersion })
            // a server that never ends its list (the same token again, or pages without end) is refused
            if (next === cont || count + 1 >= MAX_LIST_PAGES) {
              return Effect.fail(
                new KubeError({
                  reason: "Other",
                  operation,
                  message: next === cont
                    ? "the server answered a list page with the continue token it was asked with (the list would never end)"
                    : `the list did not end within ${MAX_LIST_PAGES} pages of ${limit}`
                })
              )
            }
            return pages(next, acc, count + 1)
          })
        )
      // 410 on a continued page: the snapshot left the server's history (etcd compacted it); again from the start
      return Effect.suspend(() => pages(undefined, [], 0)).pipe(
        Effect.retry({ times: 2, while: (e) => e.reason === "Gone" })
      )
    }
    return KubeClient.of({
      config: kc,
      server: kc.getCurrentCluster()?.server ?? "",
      core: (operation, f) => call(core)(operation, f),
      list,
      coordination: (operation, f) => call(coordination)(operation, f),
      networking: (operation, f) => call(networking)(operation, f),
      watch
    })
  })

  static readonly layer = Layer.effect(
    KubeClient,
    Effect.gen(function*() {
      const { config } = yield* AgentConfig
      return yield* KubeClient.make({
        kubeconfig: config.kubernetes.kubeconfig,
        requestTimeoutSeconds: config.kubernetes["request-timeout"]
      })
    })
  )
}

/** `Some(a)` for a found object, `None` for a 404; other errors stay errors. */
export const optional = <A, R>(self: Effect.Effect<A, KubeError, R>): Effect.Effect<Option.Option<A>, KubeError, R> =>
  self.pipe(
    Effect.map(Option.some),
    Effect.catchIf((e) => e.reason === "NotFound", () => Effect.succeed(Option.none()))
  )
