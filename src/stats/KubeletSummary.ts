/**
 * The kubelet Summary API (`stats/v1alpha1`), read through the API server's node proxy:
 * `GET /api/v1/nodes/{node}/proxy/stats/summary`. Only the fields the statistics use are decoded; the
 * kubelet omits empty fields (`omitempty`), so every measurement is optional.
 *
 * The stats loop reads every worker node's summary every `stats.summary-interval` (20 reads a second
 * at 200 nodes), so one read is kept cheap: one `node:https` GET (`node:http` for an http server) in `Effect.callback` on our
 * own keep-alive agent holding the kubeconfig's TLS material (the generated client opens a new TLS
 * connection per call and cannot be aborted; effect's HttpClient cost twice the CPU per read, measured
 * by bench/summary-fetch.ts), the credentials' headers computed once for a static user and asked per
 * read for a rotating one, the body gathered as Buffers, then `JSON.parse` (with `namespaces`, of those
 * namespaces' pods only: SummarySlice.ts) and {@link projectSummary}.
 * A node that does not answer within `timeoutSeconds` is abandoned (the request is destroyed) with
 * `KubeError` reason `Timeout`; an answer over {@link MAX_SUMMARY_BYTES} (declared or streamed) fails
 * with reason `Other`; a refused or lost connection with `Unavailable`; a status other than 200 with
 * the reason of that status.
 */
import * as k8s from "@kubernetes/client-node"
import { Context, Duration, Effect, Layer, Result, Schema } from "effect"
import * as http from "node:http"
import * as https from "node:https"
import { KubeClient, KubeError, type KubeErrorReason } from "../kube/KubeClient.ts"
import { summaryOfNamespaces } from "./SummarySlice.ts"

const Count = Schema.Number
/**
 * When the kubelet took a measurement (RFC 3339, whole seconds from a real kubelet): cAdvisor samples a
 * pod every 10–20 s and the node every 10 s, so two reads of a summary often carry the same sample.
 */
const Time = Schema.optionalKey(Schema.String)

const CpuStats = Schema.Struct({
  time: Time,
  usageNanoCores: Schema.optionalKey(Count),
  usageCoreNanoSeconds: Schema.optionalKey(Count)
})

const MemoryStats = Schema.Struct({
  time: Time,
  availableBytes: Schema.optionalKey(Count),
  usageBytes: Schema.optionalKey(Count),
  workingSetBytes: Schema.optionalKey(Count)
})

const NetworkStats = Schema.Struct({
  time: Time,
  rxBytes: Schema.optionalKey(Count),
  txBytes: Schema.optionalKey(Count)
})

const FsStats = Schema.Struct({
  time: Time,
  availableBytes: Schema.optionalKey(Count),
  capacityBytes: Schema.optionalKey(Count),
  usedBytes: Schema.optionalKey(Count)
})

const VolumeStats = Schema.Struct({
  name: Schema.String,
  usedBytes: Schema.optionalKey(Count)
})

export const PodStats = Schema.Struct({
  podRef: Schema.Struct({ name: Schema.String, namespace: Schema.String, uid: Schema.String }),
  cpu: Schema.optionalKey(CpuStats),
  memory: Schema.optionalKey(MemoryStats),
  network: Schema.optionalKey(NetworkStats),
  volume: Schema.optionalKey(Schema.Array(VolumeStats)),
  "ephemeral-storage": Schema.optionalKey(FsStats)
})
export type PodStats = typeof PodStats.Type

export const NodeStats = Schema.Struct({
  nodeName: Schema.String,
  cpu: Schema.optionalKey(CpuStats),
  memory: Schema.optionalKey(MemoryStats),
  network: Schema.optionalKey(NetworkStats),
  fs: Schema.optionalKey(FsStats)
})
export type NodeStats = typeof NodeStats.Type

export const Summary = Schema.Struct({
  node: NodeStats,
  pods: Schema.optionalKey(Schema.Array(PodStats))
})
export type Summary = typeof Summary.Type

/**
 * {@link Summary}'s decoding as a checked hand projection of the parsed JSON (the stats loop reads
 * every node's summary, ~1,000 pods at 1,000 kernels: the Schema decoder's per-field
 * effects cost more than the parse): the same acceptance (every declared field of the declared type
 * when present, `node` and every `podRef` required, other fields ignored) and the same value (only the
 * declared fields; test/stats/KubeletSummary.test.ts checks both against the Schema on generated
 * documents). Succeeds with the summary or fails with what does not match, with its path.
 */
export const projectSummary = (json: unknown): Result.Result<Summary, string> => {
  const check: Check = { problem: undefined }
  const node = projectNode(check, json)
  return node === undefined || check.problem !== undefined ? Result.fail(check.problem ?? "node: expected an object") : Result.succeed(node)
}

interface Check {
  problem: string | undefined
}

const mismatch = (check: Check, path: string, expected: string): undefined => {
  check.problem ??= `${path}: expected ${expected}`
  return undefined
}

const isObject = (v: unknown): v is { readonly [key: string]: unknown } => typeof v === "object" && v !== null && !Array.isArray(v)

type Counts<K extends string> = { readonly [k in K]?: number } & { readonly time?: string }
type Writable<A> = { -readonly [K in keyof A]: A[K] }

/**
 * An optional struct of optional numbers and its optional `time` string; undefined when absent (or,
 * with `check.problem` set, not matching).
 */
const counts = <K extends string>(check: Check, parent: { readonly [key: string]: unknown }, key: string, fields: ReadonlyArray<K>, path: string): Counts<K> | undefined => {
  const v = parent[key]
  if (v === undefined) return undefined
  if (!isObject(v)) return mismatch(check, `${path}.${key}`, "an object")
  const out: Record<string, number | string> = {}
  const time = v.time
  if (time !== undefined) {
    if (typeof time !== "string") return mismatch(check, `${path}.${key}.time`, "a string")
    out.time = time
  }
  for (const f of fields) {
    const x = v[f]
    if (x === undefined) continue
    if (typeof x !== "number") return mismatch(check, `${path}.${key}.${f}`, "a number")
    out[f] = x
  }
  return out as Counts<K>
}

const CPU = ["usageNanoCores", "usageCoreNanoSeconds"] as const
const MEMORY = ["availableBytes", "usageBytes", "workingSetBytes"] as const
const NETWORK = ["rxBytes", "txBytes"] as const
const FS = ["availableBytes", "capacityBytes", "usedBytes"] as const

const projectNode = (check: Check, json: unknown): Summary | undefined => {
  if (!isObject(json)) return mismatch(check, "summary", "an object")
  const n = json.node
  if (!isObject(n)) return mismatch(check, "node", "an object")
  if (typeof n.nodeName !== "string") return mismatch(check, "node.nodeName", "a string")
  const cpu = counts(check, n, "cpu", CPU, "node")
  const memory = counts(check, n, "memory", MEMORY, "node")
  const network = counts(check, n, "network", NETWORK, "node")
  const fs = counts(check, n, "fs", FS, "node")
  if (check.problem !== undefined) return undefined
  // absent stays absent (no `undefined` keys), without a spread's temporary object per field
  const node: Writable<NodeStats> = { nodeName: n.nodeName }
  if (cpu !== undefined) node.cpu = cpu
  if (memory !== undefined) node.memory = memory
  if (network !== undefined) node.network = network
  if (fs !== undefined) node.fs = fs
  const list = json.pods
  if (list === undefined) return { node }
  if (!Array.isArray(list)) return mismatch(check, "pods", "an array")
  const pods: Array<PodStats> = new Array(list.length)
  for (let i = 0; i < list.length; i++) {
    const pod = projectPod(check, list[i], i)
    if (pod === undefined) return undefined
    pods[i] = pod
  }
  return { node, pods }
}

const projectPod = (check: Check, p: unknown, i: number): PodStats | undefined => {
  const path = `pods[${i}]`
  if (!isObject(p)) return mismatch(check, path, "an object")
  const ref = p.podRef
  if (!isObject(ref)) return mismatch(check, `${path}.podRef`, "an object")
  const { name, namespace, uid } = ref
  if (typeof name !== "string" || typeof namespace !== "string" || typeof uid !== "string") {
    return mismatch(check, `${path}.podRef`, "name, namespace and uid strings")
  }
  const cpu = counts(check, p, "cpu", CPU, path)
  const memory = counts(check, p, "memory", MEMORY, path)
  const network = counts(check, p, "network", NETWORK, path)
  const ephemeral = counts(check, p, "ephemeral-storage", FS, path)
  if (check.problem !== undefined) return undefined
  let volume: Array<{ name: string; usedBytes?: number }> | undefined
  const vs = p.volume
  if (vs !== undefined) {
    if (!Array.isArray(vs)) return mismatch(check, `${path}.volume`, "an array")
    volume = new Array(vs.length)
    for (let j = 0; j < vs.length; j++) {
      const v: unknown = vs[j]
      if (!isObject(v) || typeof v.name !== "string") return mismatch(check, `${path}.volume[${j}]`, "an object with a name")
      const used = v.usedBytes
      if (used !== undefined && typeof used !== "number") return mismatch(check, `${path}.volume[${j}].usedBytes`, "a number")
      volume[j] = used === undefined ? { name: v.name } : { name: v.name, usedBytes: used }
    }
  }
  const pod: Writable<PodStats> = { podRef: { name, namespace, uid } }
  if (cpu !== undefined) pod.cpu = cpu
  if (memory !== undefined) pod.memory = memory
  if (network !== undefined) pod.network = network
  if (volume !== undefined) pod.volume = volume
  if (ephemeral !== undefined) pod["ephemeral-storage"] = ephemeral
  return pod
}

/** `s` with only the pods in `namespaces`. */
const podsOf = (s: Summary, namespaces: ReadonlySet<string>): Summary =>
  s.pods === undefined ? s : { node: s.node, pods: s.pods.filter((p) => namespaces.has(p.podRef.namespace)) }

/**
 * The largest summary read (a node's summary is ~2 KiB per pod; 110 pods stay far below): a node
 * proxy answering without end fails the read instead of filling the agent's memory.
 */
export const MAX_SUMMARY_BYTES = 16 * 1024 * 1024

const reasonOf = (status: number): KubeErrorReason =>
  status === 404
    ? "NotFound"
    : status === 401
    ? "Unauthorized"
    : status === 403
    ? "Forbidden"
    : status >= 500 || status === 429
    ? "Unavailable"
    : "Other"

/** The body as text the way a fetch `Response.text()` reads it: UTF-8, a leading BOM dropped, invalid bytes replaced. */
const utf8 = new TextDecoder()

/**
 * The kubeconfig's current user and cluster without their TLS files or data (CA, client certificate
 * and key), with its own authenticators: what asks the credentials of a rotating user per read.
 */
const credentialsOnly = (config: k8s.KubeConfig): k8s.KubeConfig => {
  const { caData: _caData, caFile: _caFile, ...cluster } = config.getCurrentCluster()!
  const { certData: _certData, certFile: _certFile, keyData: _keyData, keyFile: _keyFile, ...user } = config.getCurrentUser()!
  const copy = new k8s.KubeConfig()
  copy.loadFromClusterAndUser(cluster, user)
  return copy
}

/** An answer of the node proxy: status and whole body (at most {@link MAX_SUMMARY_BYTES}). */
interface Answer {
  readonly status: number
  readonly body: Buffer
}

export interface KubeletSummaryShape {
  /**
   * The node's current summary; with `namespaces`, only the pods of those namespaces (left out before
   * parsing when the kubelet's layout allows: SummarySlice.ts; else after).
   */
  readonly fetch: (node: string, namespaces?: ReadonlySet<string>) => Effect.Effect<Summary, KubeError>
}

export class KubeletSummary extends Context.Service<KubeletSummary, KubeletSummaryShape>()("bai-agent/stats/KubeletSummary") {
  static readonly make = Effect.fn("KubeletSummary.make")(function*(options?: {
    /** Per-request bound. Default 5 s. */
    readonly timeoutSeconds?: number
    /** Connections kept to the API server. Default 8. */
    readonly maxSockets?: number
  }) {
    const kube = yield* KubeClient
    const server = new URL(kube.server)
    const secure = server.protocol === "https:"
    const timeoutSeconds = options?.timeoutSeconds ?? 5
    // TLS material of the kubeconfig, once, for our own keep-alive agent
    const tls: https.RequestOptions = {}
    yield* Effect.tryPromise({
      try: () => kube.config.applyToHTTPSOptions(tls),
      catch: (e) => new KubeError({ reason: "Other", operation: "kubeconfig TLS options", message: String(e) })
    })
    const agentOptions: https.AgentOptions = {
      keepAlive: true,
      maxSockets: options?.maxSockets ?? 8,
      ...(tls.ca !== undefined ? { ca: tls.ca } : {}),
      ...(tls.cert !== undefined ? { cert: tls.cert } : {}),
      ...(tls.key !== undefined ? { key: tls.key } : {}),
      ...(tls.servername !== undefined ? { servername: tls.servername } : {}),
      ...(tls.rejectUnauthorized !== undefined ? { rejectUnauthorized: tls.rejectUnauthorized } : {})
    }
    const agent = yield* Effect.acquireRelease(
      Effect.sync(() => (secure ? new https.Agent(agentOptions) : new http.Agent(agentOptions))),
      (a) => Effect.sync(() => a.destroy())
    )
    const request = secure ? https.request : http.request
    const hostname = server.hostname.startsWith("[") ? server.hostname.slice(1, -1) : server.hostname
    const port = server.port === "" ? (secure ? 443 : 80) : Number(server.port)
    const prefix = `${server.pathname.replace(/\/$/, "")}/api/v1/nodes/`

    // The credentials' headers. A user whose credentials can change (an exec plugin, an auth provider
    // such as the in-cluster service account's token file, which client-node re-reads) is asked on
    // every read, through a copy of the kubeconfig without the TLS files (the agent above holds them:
    // applyToHTTPSOptions would read the CA, certificate and key files again on every call); a static
    // one (token, basic auth, client certificate only) once.
    const user = kube.config.getCurrentUser()
    const rotating = user !== null && (user.exec !== undefined || user.authProvider !== undefined)
    const asked = rotating ? credentialsOnly(kube.config) : kube.config
    const credentials = (operation: string) =>
      Effect.tryPromise({
        try: async () => {
          const opts: https.RequestOptions = {}
          await asked.applyToHTTPSOptions(opts)
          const headers: Record<string, string> = { accept: "application/json" }
          for (const [k, v] of Object.entries(opts.headers ?? {})) if (typeof v === "string") headers[k.toLowerCase()] = v
          if (opts.auth !== undefined && opts.auth !== null) headers.authorization = `Basic ${Buffer.from(opts.auth).toString("base64")}`
          return headers
        },
        catch: (e) => new KubeError({ reason: "Unauthorized", operation, message: `kubeconfig credentials: ${String(e)}` })
      })
    const fixed = rotating ? undefined : yield* credentials("kubeconfig credentials")
    const timeout = Duration.seconds(timeoutSeconds)

    /** One GET of `path` on the keep-alive agent; the request is destroyed when the read is interrupted. */
    const get = (path: string, headers: http.OutgoingHttpHeaders, operation: string) =>
      Effect.callback<Answer, KubeError>((resume) => {
        let settled = false
        const req = request({ agent, hostname, port, path, method: "GET", headers })
        const settle = (result: Effect.Effect<Answer, KubeError>) => {
          if (settled) return
          settled = true
          resume(result)
        }
        const fail = (reason: KubeErrorReason, message: string) => {
          settle(Effect.fail(new KubeError({ reason, operation, message })))
          req.destroy()
        }
        const tooLarge = () => fail("Other", `unreadable summary (at most ${MAX_SUMMARY_BYTES} bytes are read): the answer is larger`)
        req.on("error", (e) => fail("Unavailable", e.message))
        req.on("response", (res) => {
          const status = res.statusCode ?? 0
          const declared = res.headers["content-length"]
          if (declared !== undefined && Number(declared) > MAX_SUMMARY_BYTES) return tooLarge()
          const chunks: Array<Buffer> = []
          let size = 0
          res.on("data", (chunk: Buffer) => {
            size += chunk.length
            if (size > MAX_SUMMARY_BYTES) return tooLarge()
            chunks.push(chunk)
          })
          res.on("end", () => {
            if (settled) return
            settled = true
            const answer = Effect.succeed({ status, body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size) })
            // resumed on the next tick: Node returns the connection to the agent's free sockets on the
            // tick after the answer's end, so the read that follows reuses it instead of opening another
            process.nextTick(resume, answer)
          })
          res.on("error", (e) => fail("Unavailable", e.message))
          res.on("close", () => {
            if (!res.complete) fail("Unavailable", "the connection closed before the answer's end")
          })
        })
        req.end()
        return Effect.sync(() => {
          if (!settled) {
            settled = true
            req.destroy()
          }
        })
      })

    const fetch = (node: string, namespaces?: ReadonlySet<string>): Effect.Effect<Summary, KubeError> => {
      const operation = `stats summary of node ${node}`
      const path = `${prefix}${encodeURIComponent(node)}/proxy/stats/summary`
      const read = fixed !== undefined ? get(path, fixed, operation) : Effect.flatMap(credentials(operation), (headers) => get(path, headers, operation))
      return read.pipe(
        Effect.timeoutOrElse({
          duration: timeout,
          orElse: () => Effect.fail(new KubeError({ reason: "Timeout", operation, message: `no answer within ${timeoutSeconds}s` }))
        }),
        Effect.flatMap(({ body, status }) => {
          if (status !== 200) return Effect.fail(new KubeError({ reason: reasonOf(status), operation, status, message: utf8.decode(body).slice(0, 300) }))
          // with namespaces: the cut's text, else (another layout) the whole document, filtered below
          const cut = namespaces !== undefined ? summaryOfNamespaces(body, namespaces) : undefined
          let json: unknown
          try {
            json = JSON.parse(cut ?? utf8.decode(body))
          } catch (e) {
            return Effect.fail(new KubeError({ reason: "Other", operation, message: `not JSON: ${String(e)}` }))
          }
          const summary = projectSummary(json)
          if (Result.isFailure(summary)) return Effect.fail(new KubeError({ reason: "Other", operation, message: `unexpected summary: ${summary.failure}` }))
          return Effect.succeed(namespaces !== undefined && cut === undefined ? podsOf(summary.success, namespaces) : summary.success)
        })
      )
    }
    return KubeletSummary.of({ fetch })
  })

  static readonly layer = Layer.effect(KubeletSummary, KubeletSummary.make())
}
