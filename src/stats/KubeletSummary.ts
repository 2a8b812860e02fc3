/**
 * The kubelet Summary API (`stats/v1alpha1`), read through the API server's node proxy:
 * `GET /api/v1/nodes/{node}/proxy/stats/summary`. Only the fields the statistics use are decoded; the
 * kubelet omits empty fields (`omitempty`), so every measurement is optional.
 *
 * The request is a raw HTTPS request with the kubeconfig's credentials over one keep-alive agent (the
 * generated client opens a new TLS connection per call and cannot be aborted): a node that does not
 * answer within `timeoutSeconds` is abandoned (the request is aborted) with `KubeError` reason `Timeout`.
 */
import { Context, Effect, Layer, Schema } from "effect"
import * as http from "node:http"
import * as https from "node:https"
import { KubeClient, KubeError, type KubeErrorReason } from "../kube/KubeClient.ts"

const Count = Schema.Number

export const CpuStats = Schema.Struct({
  usageNanoCores: Schema.optionalKey(Count),
  usageCoreNanoSeconds: Schema.optionalKey(Count)
})

export const MemoryStats = Schema.Struct({
  availableBytes: Schema.optionalKey(Count),
  usageBytes: Schema.optionalKey(Count),
  workingSetBytes: Schema.optionalKey(Count)
})

export const NetworkStats = Schema.Struct({
  rxBytes: Schema.optionalKey(Count),
  txBytes: Schema.optionalKey(Count)
})

export const FsStats = Schema.Struct({
  availableBytes: Schema.optionalKey(Count),
  capacityBytes: Schema.optionalKey(Count),
  usedBytes: Schema.optionalKey(Count)
})

export const VolumeStats = Schema.Struct({
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

const decodeSummary = Schema.decodeUnknownEffect(Summary)

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
    const secure = server.protocol === "https:"
    const timeoutSeconds = options?.timeoutSeconds ?? 5
    // TLS material of the kubeconfig, once, for our own keep-alive agent
    const tls: https.RequestOptions = {}
    yield* Effect.tryPromise({
      try: () => kube.config.applyToHTTPSOptions(tls),
      catch: (e) => new KubeError({ reason: "Other", operation: "kubeconfig TLS options", message: String(e) })
    })
    const agent = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const common = { keepAlive: true, maxSockets: options?.maxSockets ?? 8 }
        return secure
          ? new https.Agent({
            ...common,
            ...(tls.ca !== undefined ? { ca: tls.ca } : {}),
            ...(tls.cert !== undefined ? { cert: tls.cert } : {}),
            ...(tls.key !== undefined ? { key: tls.key } : {}),
            ...(tls.rejectUnauthorized !== undefined ? { rejectUnauthorized: tls.rejectUnauthorized } : {})
          })
          : new http.Agent(common)
      }),
      (a) => Effect.sync(() => a.destroy())
    )

    const get = (node: string, operation: string, signal: AbortSignal) =>
      new Promise<string>((resolve, reject) => {
        // fresh credentials per request (tokens of exec/oidc users rotate)
        const opts: https.RequestOptions = {}
        kube.config.applyToHTTPSOptions(opts).then(() => {
          const req = (secure ? https : http).request({
            protocol: server.protocol,
            hostname: server.hostname,
            port: server.port,
            path: `${server.pathname.replace(/\/$/, "")}/api/v1/nodes/${encodeURIComponent(node)}/proxy/stats/summary`,
            method: "GET",
            headers: { ...opts.headers, accept: "application/json" },
            ...(opts.auth !== undefined ? { auth: opts.auth } : {}),
            agent,
            signal
          }, (res) => {
            const chunks: Array<Buffer> = []
            res.on("data", (c: Buffer) => chunks.push(c))
            res.on("error", reject)
            res.on("end", () => {
              const body = Buffer.concat(chunks).toString("utf8")
              const status = res.statusCode ?? 0
              if (status === 200) resolve(body)
              else {
                reject(new KubeError({ reason: reasonOf(status), operation, status, message: body.slice(0, 300) }))
              }
            })
          })
          req.on("error", reject)
          req.end()
        }, reject)
      })

    const fetch = (node: string): Effect.Effect<Summary, KubeError> => {
      const operation = `stats summary of node ${node}`
      return Effect.tryPromise({
        try: (signal) => get(node, operation, signal),
        catch: (e) =>
          e instanceof KubeError ? e : new KubeError({
            reason: "Unavailable",
            operation,
            message: e instanceof Error ? e.message : String(e)
          })
      }).pipe(
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
          decodeSummary(json).pipe(
            Effect.mapError((e) => new KubeError({ reason: "Other", operation, message: `unexpected summary: ${e.message}` }))
          )
        )
      )
    }
    return KubeletSummary.of({ fetch })
  })

  static readonly layer = Layer.effect(KubeletSummary, KubeletSummary.make())
}
