// size: the registry v2 client (catalog and tags with Link pagination, Basic and Bearer auth whose credentials stay on the registry's origin) and its refresh service: the credential rules stay in one file
/**
 * The images this agent can run, for the heartbeat's `images` field (spec §3.1, §1.6): every tag of
 * the configured registry (`kubernetes.registry.url`) listed through the registry v2 API —
 * `/v2/_catalog`, `/v2/<repo>/tags/list` (both paginated by `Link`), the digest from
 * `HEAD /v2/<repo>/manifests/<tag>` with the schema2 Accept header → `Docker-Content-Digest`.
 * Credentials come from the `kubernetes.io/dockerconfigjson` pull secret
 * `kubernetes.registry.pull-secret` in `kubernetes.namespace` (Basic; a Bearer challenge is answered
 * with a token fetched with the same credentials). Refreshed every 60 s in the background, never on
 * a heartbeat; a failed refresh keeps the previous list.
 *
 * Credentials (the Basic password and the Bearer tokens) go only to the registry's own origin
 * (scheme, host and port of `kubernetes.registry.url`): a Bearer realm elsewhere is asked for an
 * anonymous token (a public registry still lists; a private one answers 401 and the listing fails
 * with `Unauthorized`) — unless it is plain http on another host, which is not asked at all (fails
 * with `Unauthorized`) — and a pagination `Link` to another origin is refused. So a registry answer,
 * or whoever can forge one over plain http, cannot make the agent send the pull secret elsewhere.
 *
 * Image names: `<registry host>/<repo>:<tag>` (e.g. `registry.example:5000/lablup/python:3.6-ubuntu18.04`).
 * Manager 19.06 resolves each name with `ImageRef(name, known_registries).canonical` and SADDs the
 * agent into the Redis set of that canonical name. K1 sent bare `<repo>:<tag>`, which resolves to
 * `index.docker.io/<repo>:<tag>` and never matches the private registry's `images/<host>/…` entries
 * the manager schedules with; a first component containing ':' or '.' (or listed under
 * `config/docker/registry/`) is taken as the registry, so the host-qualified name is canonical as is.
 *
 * Only images manager 19.06 can take are listed (its heartbeat handler has no try/except around
 * `ImageRef(...)`: one odd entry would abort the whole image update on every heartbeat):
 * - the tag matches backend.ai-common 19.06's `ImageRef` tag pattern ({@link isManagerTag}; Docker
 *   allows e.g. `v1-` or `_x`, which raise `ValueError('Invalid image tag')` there);
 * - the image carries the `ai.backend.kernelspec` label, as the 19.06 Docker agent requires
 *   (`if labels and 'ai.backend.kernelspec' in labels`). The labels come from the image config blob
 *   (schema2/OCI manifest → `config.digest`); the answer is cached per manifest digest, which is
 *   content-addressed, so a refresh fetches labels only for new manifests.
 *
 * The packed value is `snappy raw block(msgpack([[name, digest], ...]))` (python-snappy
 * `snappy.compress` / `uncompress` format; snappyjs produces the raw block format).
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { ByteSize, Context, Effect, Layer, Option, Schedule, Schema, type Scope } from "effect"
import { type Headers, HttpClient, HttpClientRequest, HttpIncomingMessage } from "effect/http"
import { createRequire } from "node:module"
import { AgentConfig } from "../config/AgentConfig.ts"
import { KubeClient, optional } from "../kube/KubeClient.ts"
import * as Msgpack from "../codec/Msgpack.ts"

/** snappyjs ships no types; raw block format in both directions (same type out as in). */
const SnappyJS = createRequire(import.meta.url)("snappyjs") as {
  readonly compress: (input: Uint8Array) => Uint8Array
  readonly uncompress: (input: Uint8Array) => Uint8Array
}

export class RegistryError extends Schema.TaggedError<RegistryError>()("RegistryError", {
  reason: Schema.Literals(["Unreachable", "Unauthorized", "BadResponse", "PullSecret"]),
  url: Schema.String,
  message: Schema.String
}) {}

export interface ImageEntry {
  /** `<registry host>/<repo>:<tag>` */
  readonly name: string
  /** `sha256:…` manifest digest */
  readonly digest: string
}

export interface RegistryCredentials {
  readonly username: string
  readonly password: string
}

/** backend.ai-common 19.06 `ImageRef` (docker.py 177, 221–222): a tag the manager accepts. */
export const isManagerTag = (tag: string): boolean => /^[A-Za-z0-9](?:[A-Za-z0-9\-._]*[A-Za-z0-9])?$/.test(tag)

/** Repository path components the manager's `ImageRef` and our `<host>/<repo>:<tag>` names keep intact. */
export const isManagerRepo = (repo: string): boolean =>
  repo.split("/").every((c) => /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/.test(c))

/** Per manifest digest: does the image carry `ai.backend.kernelspec`? (content-addressed, never stale) */
export type KernelspecCache = Map<string, boolean>

export interface ImageListerOptions {
  /** Base URL, e.g. "https://registry.example:5000". */
  readonly url: string
  readonly credentials: RegistryCredentials | undefined
  /** Repositories/tags fetched at once. Default 8. */
  readonly concurrency?: number
  /** `n` of the paginated `_catalog` and `tags/list` requests. Default 1000. */
  readonly pageSize?: number
  /** Per request. Default 10 s. */
  readonly requestTimeoutSeconds?: number
  /** Kept between refreshes (bounded by the caller's listing: entries of vanished digests are dropped). */
  readonly kernelspecCache?: KernelspecCache
}

interface HttpResponse {
  readonly status: number
  readonly headers: Headers.Headers
  readonly body: string
}

/**
 * The largest answer read from the registry or its token realm (a catalog page of 1000 names is
 * ~50 KiB, the registry caps manifests at 4 MiB, image configs are KiBs): a hostile registry cannot
 * make the agent buffer without end.
 */
export const MAX_REGISTRY_ANSWER_BYTES = 8 * 1024 * 1024

const MANIFEST_ACCEPT = [
  "application/vnd.docker.distribution.manifest.v2+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.oci.image.index.v1+json"
].join(", ")

/**
 * The registry's HTTP client: Node's http/https with one keep-alive agent per client (closed with the
 * scope), TLS verified unless `verifyTls` is false, redirects not followed. `listRegistryImages` needs it.
 */
const registryHttpClient = (verifyTls: boolean): Effect.Effect<HttpClient.HttpClient, never, Scope.Scope> =>
  NodeHttpClient.makeAgent({ keepAlive: true, maxSockets: 16, rejectUnauthorized: verifyTls }).pipe(
    Effect.flatMap((agent) => NodeHttpClient.makeNodeHttp.pipe(Effect.provideService(NodeHttpClient.HttpAgent, agent)))
  )

/** {@link registryHttpClient} as a layer. */
export const registryHttpClientLayer = (verifyTls: boolean): Layer.Layer<HttpClient.HttpClient> =>
  Layer.effect(HttpClient.HttpClient, registryHttpClient(verifyTls))

const request = (client: HttpClient.HttpClient, url: URL, method: "GET" | "HEAD", headers: Record<string, string>): Effect.Effect<HttpResponse, RegistryError> =>
  client.execute(HttpClientRequest.make(method)(url, { headers })).pipe(
    Effect.flatMap((res) =>
      (method === "HEAD" ? Effect.succeed("") : res.text).pipe(
        Effect.map((body): HttpResponse => ({ status: res.status, headers: res.headers, body }))
      )
    ),
    Effect.provideService(HttpIncomingMessage.MaxBodySize, ByteSize.bytes(MAX_REGISTRY_ANSWER_BYTES)),
    // no b3/traceparent headers to a third party (the registry or a realm on another origin)
    Effect.provideService(HttpClient.TracerPropagationEnabled, false),
    Effect.mapError((e) =>
      e.reason._tag === "DecodeError"
        ? new RegistryError({ reason: "BadResponse", url: url.href, message: `unreadable answer (at most ${MAX_REGISTRY_ANSWER_BYTES} bytes are read): ${e.message}` })
        : e.reason._tag === "StatusCodeError" // only through `filterStatusOk` (the token endpoint)
        ? new RegistryError({ reason: "Unauthorized", url: url.href, message: `answered HTTP ${e.reason.response.status}` })
        : new RegistryError({ reason: "Unreachable", url: url.href, message: e.message })
    )
  )

/** `rel="next"` target of a `Link` header, resolved against `base`. */
export const nextLink = (link: string | undefined, base: URL): URL | undefined => {
  if (link === undefined) return undefined
  const m = /<([^>]+)>\s*;\s*rel="?next"?/.exec(link)
  return m === null ? undefined : new URL(m[1]!, base)
}

/** Parameters of a `WWW-Authenticate: Bearer realm="…",service="…",scope="…"` challenge. */
export const parseBearerChallenge = (header: string | undefined): Record<string, string> | undefined => {
  if (header === undefined || !/^bearer\s/i.test(header)) return undefined
  const out: Record<string, string> = {}
  for (const m of header.slice(7).matchAll(/(\w+)="([^"]*)"/g)) out[m[1]!] = m[2]!
  return out.realm === undefined ? undefined : out
}

const CatalogBody = Schema.Struct({ repositories: Schema.optional(Schema.NullOr(Schema.Array(Schema.String))) })
const TagsBody = Schema.Struct({ tags: Schema.optional(Schema.NullOr(Schema.Array(Schema.String))) })
const TokenBody = Schema.Struct({ token: Schema.optional(Schema.String), access_token: Schema.optional(Schema.String) })
const ManifestBody = Schema.Struct({
  config: Schema.optional(Schema.Struct({ digest: Schema.String })),
  manifests: Schema.optional(Schema.Array(Schema.Struct({ digest: Schema.String })))
})
const ConfigBody = Schema.Struct({
  config: Schema.optional(Schema.NullOr(Schema.Struct({ Labels: Schema.optional(Schema.NullOr(Schema.Record(Schema.String, Schema.String))) })))
})

const parseJson = <S extends Schema.Top & { readonly DecodingServices: never }>(schema: S, url: URL, body: string) =>
  Effect.try({
    try: () => JSON.parse(body) as unknown,
    catch: () => new RegistryError({ reason: "BadResponse", url: url.href, message: "not JSON" })
  }).pipe(
    Effect.flatMap((u) => Schema.decodeUnknownEffect(schema)(u)),
    Effect.mapError((e) => e._tag === "RegistryError" ? e : new RegistryError({ reason: "BadResponse", url: url.href, message: e.message }))
  )

/** Lists every `<host>/<repo>:<tag>` of the registry with its manifest digest (sorted by name). */
export const listRegistryImages = (options: ImageListerOptions): Effect.Effect<ReadonlyArray<ImageEntry>, RegistryError, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const base = new URL(options.url.endsWith("/") ? options.url : `${options.url}/`)
    const host = base.host
    const timeout = `${options.requestTimeoutSeconds ?? 10} seconds` as const
    const basic = options.credentials === undefined
      ? undefined
      : `Basic ${Buffer.from(`${options.credentials.username}:${options.credentials.password}`).toString("base64")}`
    // Bearer tokens per scope, fetched on demand (registries with token auth: Harbor, distribution+token)
    const tokens = new Map<string, string>()

    /** The credentials go to this origin only (scheme://host:port). */
    const sameOrigin = (url: URL) => url.origin === base.origin

    const fetchToken = (challenge: Record<string, string>) =>
      Effect.gen(function*() {
        const url = yield* Effect.try({
          try: () => new URL(challenge.realm!),
          catch: () => new RegistryError({ reason: "BadResponse", url: base.href, message: "the Bearer realm is not a URL" })
        })
        if (url.protocol !== "https:" && url.protocol !== "http:") {
          return yield* new RegistryError({ reason: "BadResponse", url: url.href, message: "the Bearer realm is not an http(s) URL" })
        }
        if (challenge.service !== undefined) url.searchParams.set("service", challenge.service)
        if (challenge.scope !== undefined) url.searchParams.set("scope", challenge.scope)
        if (!sameOrigin(url) && url.protocol === "http:" && url.hostname !== base.hostname) {
          return yield* new RegistryError({ reason: "Unauthorized", url: url.href, message: `the Bearer realm ${url.origin} is plain http on another host than the registry ${base.origin}: refused` })
        }
        const withCredentials = basic !== undefined && sameOrigin(url)
        if (basic !== undefined && !withCredentials) {
          yield* Effect.logWarning(`registry token realm ${url.origin} is not the registry's origin ${base.origin}: asking it for an anonymous token (credentials are never sent elsewhere)`)
        }
        // any answer but 200 fails as Unauthorized (see `request`)
        const res = yield* request(HttpClient.filterStatusOk(client), url, "GET", withCredentials ? { authorization: basic } : {})
        const body = yield* parseJson(TokenBody, url, res.body)
        const token = body.token ?? body.access_token
        if (token === undefined) return yield* new RegistryError({ reason: "BadResponse", url: url.href, message: "no token in the answer" })
        return token
      })

    const call = (url: URL, method: "GET" | "HEAD", scope: string, accept?: string): Effect.Effect<HttpResponse, RegistryError> =>
      Effect.gen(function*() {
        if (!sameOrigin(url)) {
          return yield* new RegistryError({ reason: "BadResponse", url: url.href, message: `refusing to follow the registry to another origin than ${base.origin}` })
        }
        const headers = (): Record<string, string> => {
          const h: Record<string, string> = accept === undefined ? {} : { accept }
          const token = tokens.get(scope)
          if (token !== undefined) h.authorization = `Bearer ${token}`
          else if (basic !== undefined) h.authorization = basic
          return h
        }
        let res = yield* request(client, url, method, headers())
        const challenge = res.status === 401 ? parseBearerChallenge(res.headers["www-authenticate"]) : undefined
        if (challenge !== undefined) {
          tokens.set(scope, yield* fetchToken(challenge))
          res = yield* request(client, url, method, headers())
        }
        if (res.status === 401 || res.status === 403) {
          return yield* new RegistryError({ reason: "Unauthorized", url: url.href, message: `HTTP ${res.status}` })
        }
        return res
      }).pipe(
        Effect.timeoutOrElse({
          duration: timeout,
          orElse: () => Effect.fail(new RegistryError({ reason: "Unreachable", url: url.href, message: `no answer within ${timeout}` }))
        })
      )

    const paginate = <A>(first: URL, scope: string, items: (body: string, url: URL) => Effect.Effect<ReadonlyArray<A>, RegistryError>, okMissing: boolean) =>
      Effect.gen(function*() {
        const out: Array<A> = []
        let url: URL | undefined = first
        for (let page = 0; url !== undefined && page < 1000; page++) {
          const res: HttpResponse = yield* call(url, "GET", scope)
          if (res.status === 404 && okMissing) return out
          if (res.status !== 200) return yield* new RegistryError({ reason: "BadResponse", url: url.href, message: `HTTP ${res.status}` })
          out.push(...(yield* items(res.body, url)))
          url = nextLink(res.headers.link, url)
        }
        return out
      })

    const n = options.pageSize ?? 1000
    const repos = yield* paginate(new URL(`v2/_catalog?n=${n}`, base), "registry:catalog:*", (body, url) =>
      parseJson(CatalogBody, url, body).pipe(Effect.map((b) => b.repositories ?? [])), false)

    const perRepo = Effect.forEach(repos, (repo) =>
      Effect.gen(function*() {
        const scope = `repository:${repo}:pull`
        const tags = yield* paginate(new URL(`v2/${repo}/tags/list?n=${n}`, base), scope, (body, url) =>
          parseJson(TagsBody, url, body).pipe(Effect.map((b) => b.tags ?? [])), true)
        // names the manager cannot parse are left out (see the module comment)
        return isManagerRepo(repo) ? tags.filter(isManagerTag).map((tag) => ({ repo, tag, scope })) : []
      }), { concurrency: options.concurrency ?? 8 })

    const cache: KernelspecCache = options.kernelspecCache ?? new Map()
    const seen = new Set<string>()
    /** `ai.backend.kernelspec` in the image config's labels (an index: its first manifest). */
    const hasKernelspec = (repo: string, scope: string, reference: string, depth: number): Effect.Effect<boolean, RegistryError> =>
      Effect.gen(function*() {
        const url = new URL(`v2/${repo}/manifests/${encodeURIComponent(reference)}`, base)
        const res = yield* call(url, "GET", scope, MANIFEST_ACCEPT)
        if (res.status === 404) return false
        if (res.status !== 200) return yield* new RegistryError({ reason: "BadResponse", url: url.href, message: `HTTP ${res.status}` })
        const manifest = yield* parseJson(ManifestBody, url, res.body)
        const first = manifest.manifests?.[0]
        if (manifest.config === undefined) return first !== undefined && depth === 0 ? yield* hasKernelspec(repo, scope, first.digest, 1) : false
        const blobUrl = new URL(`v2/${repo}/blobs/${encodeURIComponent(manifest.config.digest)}`, base)
        const blob = yield* call(blobUrl, "GET", scope)
        if (blob.status !== 200) return yield* new RegistryError({ reason: "BadResponse", url: blobUrl.href, message: `HTTP ${blob.status}` })
        const config = yield* parseJson(ConfigBody, blobUrl, blob.body)
        return config.config?.Labels?.["ai.backend.kernelspec"] !== undefined
      })

    const refs = (yield* perRepo).flat()
    const entries = yield* Effect.forEach(refs, ({ repo, scope, tag }) =>
      Effect.gen(function*() {
        const url = new URL(`v2/${repo}/manifests/${encodeURIComponent(tag)}`, base)
        const res = yield* call(url, "HEAD", scope, MANIFEST_ACCEPT)
        if (res.status === 404) return undefined // deleted between the listing and now
        if (res.status !== 200) return yield* new RegistryError({ reason: "BadResponse", url: url.href, message: `HTTP ${res.status}` })
        const header = res.headers["docker-content-digest"]
        const digest = typeof header === "string" ? header : ""
        if (digest !== "") seen.add(digest)
        const known = digest === "" ? undefined : cache.get(digest)
        const kernelspec = known ?? (yield* hasKernelspec(repo, scope, digest === "" ? tag : digest, 0))
        if (digest !== "") cache.set(digest, kernelspec)
        return kernelspec ? { name: `${host}/${repo}:${tag}`, digest } : undefined
      }), { concurrency: options.concurrency ?? 8 })
    // forget digests no longer listed (the cache stays as large as the registry)
    for (const d of [...cache.keys()]) if (!seen.has(d)) cache.delete(d)
    return entries.filter((e): e is ImageEntry => e !== undefined).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  })

/** snappy raw block of msgpack `[[name, digest], ...]`: the heartbeat's `images` bytes. */
export const packImages = (entries: ReadonlyArray<ImageEntry>): Uint8Array =>
  SnappyJS.compress(Msgpack.encode(entries.map((e) => [e.name, e.digest])))

/** The inverse of {@link packImages} (tests). */
export const unpackImages = (packed: Uint8Array): ReadonlyArray<ImageEntry> =>
  (Msgpack.decode(SnappyJS.uncompress(packed)) as ReadonlyArray<ReadonlyArray<string>>).map(([name, digest]) => ({ name: name!, digest: digest! }))

// ---------------------------------------------------------------------------------------------
// Pull secret

const DockerConfigJson = Schema.Struct({
  auths: Schema.Record(Schema.String, Schema.Struct({
    username: Schema.optional(Schema.String),
    password: Schema.optional(Schema.String),
    auth: Schema.optional(Schema.String)
  }))
})

/** Credentials for `host` in a `.dockerconfigjson` document (keys may be `host`, `https://host/v2/`…). */
export const credentialsFor = (dockerConfigJson: string, host: string): Effect.Effect<RegistryCredentials | undefined, RegistryError> =>
  Effect.try({
    try: () => JSON.parse(dockerConfigJson) as unknown,
    catch: () => new RegistryError({ reason: "PullSecret", url: host, message: ".dockerconfigjson is not JSON" })
  }).pipe(
    Effect.flatMap((u) => Schema.decodeUnknownEffect(DockerConfigJson)(u)),
    Effect.mapError((e) => e._tag === "RegistryError" ? e : new RegistryError({ reason: "PullSecret", url: host, message: e.message })),
    Effect.map((doc) => {
      const keyHost = (k: string) => k.replace(/^[a-z]+:\/\//i, "").replace(/\/.*$/, "")
      const entry = Object.entries(doc.auths).find(([k]) => keyHost(k) === host)?.[1]
      if (entry === undefined) return undefined
      if (entry.username !== undefined && entry.password !== undefined) return { username: entry.username, password: entry.password }
      if (entry.auth !== undefined) {
        const decoded = Buffer.from(entry.auth, "base64").toString("utf8")
        const i = decoded.indexOf(":")
        if (i > 0) return { username: decoded.slice(0, i), password: decoded.slice(i + 1) }
      }
      return undefined
    })
  )

// ---------------------------------------------------------------------------------------------
// The service

export interface ImageRegistryShape {
  /** Last listing (empty until the first success). */
  readonly entries: Effect.Effect<ReadonlyArray<ImageEntry>>
  /** {@link packImages} of `entries`, computed once per refresh. */
  readonly packed: Effect.Effect<Uint8Array>
  /** Lists now (also what the background loop runs). */
  readonly refresh: Effect.Effect<void, RegistryError>
}

export class ImageRegistry extends Context.Service<ImageRegistry, ImageRegistryShape>()("bai-agent/images/ImageRegistry") {
  static readonly make = Effect.fnUntraced(function*(options: {
    readonly url: string
    readonly pullSecret: string
    readonly namespace: string
    readonly verifyTls: boolean
    /** Default 60 s. */
    readonly refreshInterval?: `${number} seconds`
    readonly concurrency?: number
  }) {
    const kube = yield* KubeClient
    let state: { entries: ReadonlyArray<ImageEntry>; packed: Uint8Array } = { entries: [], packed: packImages([]) }
    let lastError: string | undefined

    const credentials = Effect.gen(function*() {
      if (options.pullSecret === "") return undefined
      const secret = yield* optional(
        kube.core("read pull secret", (api) => api.readNamespacedSecret({ name: options.pullSecret, namespace: options.namespace }))
      ).pipe(Effect.mapError((e) => new RegistryError({ reason: "PullSecret", url: options.url, message: e.message })))
      if (Option.isNone(secret)) {
        yield* Effect.logWarning(`pull secret ${options.namespace}/${options.pullSecret} not found; listing the registry without credentials`)
        return undefined
      }
      const data = secret.value.data?.[".dockerconfigjson"]
      if (data === undefined) return undefined
      return yield* credentialsFor(Buffer.from(data, "base64").toString("utf8"), new URL(options.url).host)
    })

    const kernelspecCache: KernelspecCache = new Map()
    // one keep-alive client for the service's lifetime
    const client = yield* registryHttpClient(options.verifyTls)
    const refresh = Effect.gen(function*() {
      const creds = yield* credentials
      const entries = yield* listRegistryImages({
        url: options.url,
        credentials: creds,
        kernelspecCache,
        ...(options.concurrency === undefined ? {} : { concurrency: options.concurrency })
      }).pipe(Effect.provideService(HttpClient.HttpClient, client))
      state = { entries, packed: packImages(entries) }
      if (lastError !== undefined) yield* Effect.logInfo(`registry listing works again: ${entries.length} images`)
      else yield* Effect.logDebug(`registry listing: ${entries.length} images`)
      lastError = undefined
    }).pipe(
      Effect.tapError((e) =>
        Effect.suspend(() => {
          const repeated = lastError === e.message
          lastError = e.message
          return repeated ? Effect.logDebug(`registry listing failed again: ${e.message}`) : Effect.logWarning(`registry listing failed (keeping ${state.entries.length} images): ${e.reason}: ${e.message}`)
        })
      ),
      Effect.withSpan("ImageRegistry.refresh")
    )

    if (options.url === "") {
      yield* Effect.logWarning("kubernetes.registry.url is empty: heartbeats report no images")
    } else {
      // the first listing before the first heartbeat (bounded), then every refreshInterval
      const interval = options.refreshInterval ?? "60 seconds"
      yield* refresh.pipe(Effect.ignore, Effect.timeoutOption("10 seconds"))
      yield* Effect.sleep(interval).pipe(
        Effect.andThen(refresh.pipe(Effect.ignore, Effect.repeat(Schedule.spaced(interval)))),
        Effect.forkScoped
      )
    }
    return ImageRegistry.of({
      entries: Effect.sync(() => state.entries),
      packed: Effect.sync(() => state.packed),
      refresh: options.url === "" ? Effect.void : refresh
    })
  })

  /** Needs `KubeClient` and `AgentConfig` (`kubernetes.registry.*`, `kubernetes.namespace`). */
  static readonly layer = Layer.effect(
    ImageRegistry,
    Effect.gen(function*() {
      const { config } = yield* AgentConfig
      return yield* ImageRegistry.make({
        url: config.kubernetes.registry.url,
        pullSecret: config.kubernetes.registry["pull-secret"],
        namespace: config.kubernetes.namespace,
        verifyTls: config.kubernetes.registry["verify-tls"]
      })
    })
  )

  static readonly layerTest = (entries: ReadonlyArray<ImageEntry>): Layer.Layer<ImageRegistry> =>
    Layer.succeed(ImageRegistry, ImageRegistry.of({ entries: Effect.succeed(entries), packed: Effect.succeed(packImages(entries)), refresh: Effect.void }))
}
