/**
 * The internal HTTP server (`[metrics] service-addr`, loopback 127.0.0.1:6019 by default):
 *
 * - `GET /metrics`: Prometheus text exposition of Effect's global metric registry
 *   (src/observability/Metrics.ts defines the agent's metrics);
 * - `GET /health`: `200 ok` while the process runs (liveness);
 * - `GET /ready`: runs the {@link Readiness} checks; `200` when all pass, `503` otherwise, with a
 *   JSON body `{"ready": bool, "checks": {name: {"ok": bool, "error"?: str}}}`.
 *
 * Not authenticated: keep it on loopback or a cluster-internal address.
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { Context, Effect, Layer } from "effect"
import { HttpRouter, HttpServer, HttpServerResponse } from "effect/http"
import type { ServeError } from "effect/http/HttpServerError"
import { PrometheusMetrics } from "effect/observability"
import { createServer } from "node:http"
import { AgentConfig } from "../config/AgentConfig.ts"
import { refreshDerivedMetrics, registerUnlabelled } from "../observability/Metrics.ts"
import { Readiness } from "../observability/Readiness.ts"

/** The routes, to mount on any router. */
const InternalRoutes: Layer.Layer<never, never, HttpRouter.HttpRouter | Readiness> = HttpRouter.use((router) =>
  Effect.gen(function*() {
    const readiness = yield* Readiness
    yield* registerUnlabelled
    yield* router.add(
      "GET",
      "/metrics",
      Effect.gen(function*() {
        yield* refreshDerivedMetrics
        const body = yield* PrometheusMetrics.format()
        return HttpServerResponse.text(body, { contentType: "text/plain; version=0.0.4; charset=utf-8" })
      })
    )
    yield* router.add("GET", "/health", Effect.succeed(HttpServerResponse.text("ok\n")))
    yield* router.add(
      "GET",
      "/ready",
      Effect.map(readiness.run, (report) => HttpServerResponse.jsonUnsafe(report, { status: report.ready ? 200 : 503 }))
    )
  })
)

/** Serves the internal routes on `host:port` (port 0 = any free port); outputs the `HttpServer` (its address). */
export const layerAt = (address: { readonly host: string; readonly port: number }): Layer.Layer<
  HttpServer.HttpServer,
  ServeError,
  Readiness
> =>
  HttpRouter.serve(InternalRoutes, { disableLogger: true, disableListenLog: true }).pipe(
    Layer.provideMerge(NodeHttpServer.layerServer(createServer, { host: address.host, port: address.port })),
    Layer.provide(NodeHttpServer.layerHttpServices),
    Layer.tap((ctx) =>
      Effect.logInfo("internal HTTP (metrics, health, ready) listening").pipe(
        Effect.annotateLogs({ address: HttpServer.formatAddress(Context.get(ctx, HttpServer.HttpServer).address) })
      )
    )
  )

/**
 * The server configured by `[metrics]` (`enabled`, `service-addr`); nothing when disabled.
 * Needs {@link Readiness} (provide `Readiness.layer` with `Layer.provideMerge` so services can register).
 */
export const layer: Layer.Layer<never, ServeError, AgentConfig | Readiness> = Layer.unwrap(
  Effect.map(AgentConfig, ({ config }) =>
    config.metrics.enabled
      ? layerAt(config.metrics["service-addr"]).pipe(Layer.flatMap(() => Layer.empty))
      : Layer.empty
  )
)
