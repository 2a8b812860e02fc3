/**
 * The kubelet Summary API (`stats/v1alpha1`), read through the API server's node proxy:
 * `GET /api/v1/nodes/{node}/proxy/stats/summary`. Only the fields the statistics use are decoded; the
 * kubelet omits empty fields (`omitempty`), so every measurement is optional.
 *
 * The request goes through effect/http's `HttpClient` (Node http/https) with the kubeconfig's TLS material
 * and fresh credentials per request over one keep-alive agent (the generated client opens a new TLS
 * connection per call and cannot be aborted): a node that does not answer within `timeoutSeconds` is
 * abandoned (the request is interrupted) with `KubeError` reason `Timeout`; an answer over
 * {@link MAX_SUMMARY_BYTES} fails with reason `Other`.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { ByteSize, Context, Effect, Layer, Result, Schema } from "effect"
import { HttpIncomingMessage } from "effect/http"
import type * as https from "node:https"
import { KubeClient, KubeError, type KubeErrorReason } from "../kube/KubeClient.ts"

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
 * every node's summary every cycle, ~1,000 pods at 1,000 kernels: the Schema decoder's per-field
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

export interface KubeletSummaryShape {
  /** The node's current summary. */
  readonly fetch: (node: string) => Effect.Effect<Summary, KubeError>
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
    const timeoutSeconds = options?.timeoutSeconds ?? 5
    // TLS material of the kubeconfig, once, for our own keep-alive agent
    const tls: https.RequestOptions = {}
    yield* Effect.tryPromise({
      try: () => kube.config.applyToHTTPSOptions(tls),
      catch: (e) => new KubeError({ reason: "Other", operation: "kubeconfig TLS options", message: String(e) })
    })
    const agent = yield* NodeHttpClient.makeAgent({
      keepAlive: true,
      maxSockets: options?.maxSockets ?? 8,
      ...(tls.ca !== undefined ? { ca: tls.ca } : {}),
      ...(tls.cert !== undefined ? { cert: tls.cert } : {}),
      ...(tls.key !== undefined ? { key: tls.key } : {}),
      ...(tls.rejectUnauthorized !== undefined ? { rejectUnauthorized: tls.rejectUnauthorized } : {})
    })
    const client = yield* NodeHttpClient.makeNodeHttp.pipe(Effect.provideService(NodeHttpClient.HttpAgent, agent))

    // fresh credentials per request (tokens of exec/oidc users rotate)
    const credentials = (operation: string) =>
      Effect.tryPromise({
        try: async () => {
          const opts: https.RequestOptions = {}
          await kube.config.applyToHTTPSOptions(opts)
          const headers: Record<string, string> = {}
          for (const [k, v] of Object.entries(opts.headers ?? {})) if (typeof v === "string") headers[k.toLowerCase()] = v
          if (opts.auth !== undefined && opts.auth !== null) headers.authorization = `Basic ${Buffer.from(opts.auth).toString("base64")}`
          return headers
        },
        catch: (e) => new KubeError({ reason: "Unauthorized", operation, message: `kubeconfig credentials: ${String(e)}` })
      })

    const fetch = (node: string): Effect.Effect<Summary, KubeError> => {
      const operation = `stats summary of node ${node}`
      const url = new URL(`${server.pathname.replace(/\/$/, "")}/api/v1/nodes/${encodeURIComponent(node)}/proxy/stats/summary`, server)
      return credentials(operation).pipe(
        Effect.flatMap((headers) => client.get(url, { headers, accept: "application/json" })),
        Effect.flatMap((res) =>
          res.text.pipe(Effect.flatMap((body) =>
            res.status === 200
              ? Effect.succeed(body)
              : Effect.fail(new KubeError({ reason: reasonOf(res.status), operation, status: res.status, message: body.slice(0, 300) }))
          ))
        ),
        Effect.provideService(HttpIncomingMessage.MaxBodySize, ByteSize.bytes(MAX_SUMMARY_BYTES)),
        Effect.mapError((e) =>
          e._tag === "KubeError"
            ? e
            : e.reason._tag === "DecodeError"
            ? new KubeError({ reason: "Other", operation, message: `unreadable summary (at most ${MAX_SUMMARY_BYTES} bytes are read): ${e.message}` })
            : new KubeError({ reason: "Unavailable", operation, message: e.message })
        ),
        Effect.timeoutOrElse({
          duration: `${timeoutSeconds} seconds`,
          orElse: () => Effect.fail(new KubeError({ reason: "Timeout", operation, message: `no answer within ${timeoutSeconds}s` }))
        }),
        Effect.flatMap((body) =>
          Effect.try({
            try: () => JSON.parse(body) as unknown,
            catch: (e) => new KubeError({ reason: "Other", operation, message: `not JSON: ${String(e)}` })
          })
        ),
        Effect.flatMap((json) =>
          Result.match(projectSummary(json), {
            onFailure: (problem) => Effect.fail(new KubeError({ reason: "Other", operation, message: `unexpected summary: ${problem}` })),
            onSuccess: Effect.succeed
          })
        )
      )
    }
    return KubeletSummary.of({ fetch })
  })

  static readonly layer = Layer.effect(KubeletSummary, KubeletSummary.make())
}
