/**
 * The agent watcher's HTTP API (spec §10), served by the separate `watcher` process (src/watcher.ts)
 * on `[watcher] service-addr` (default 0.0.0.0:6009), optionally over TLS.
 *
 * - every request needs `X-BackendAI-Watcher-Token` equal to etcd `config/watcher/token`, else
 *   `403`; compared in constant time. There is no built-in default: while the key is absent (or
 *   empty) every request is refused (the Python watcher fell back to the public literal `insecure`,
 *   which let anyone who reached the port stop the agent);
 * - bind address `[watcher] service-addr` (default `0.0.0.0:6009`: the manager calls it from its own
 *   host); restrict it to the manager-facing interface, or firewall 6009 to the manager's address;
 * - every response carries `Server: BackendAI-AgentWatcher`;
 * - `GET /` → `{"agent-status": <systemctl is-active target-service>, "watcher-status": "active"}`;
 * - `POST /agent/start|stop|restart` → `{"result": "ok"}`;
 * - `POST /soft-reset` (only with `soft-reset-available`) → `systemctl reload`, `{"result": "ok"}`;
 * - without systemd (`systemctl` missing) → `200 {"message": "Agent is not loaded with systemctl."}`.
 * A systemctl action that exits non-zero answers `500 {"result": "failed", "exit-code", "message"}`
 * (the Python watcher answered "ok" regardless).
 *
 * The host-control endpoints of the Docker agent's watcher (`/hard-reset`, `/shutdown`, `/mounts`,
 * `/fstab`) do not apply to a Kubernetes agent and answer 404.
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { Context, Duration, Effect, Layer, Option, Ref, Schedule, Stream } from "effect"
import { HttpRouter, HttpServer, HttpServerRequest, HttpServerResponse } from "effect/http"
import type { ServeError } from "effect/http/HttpServerError"
import { ChildProcess, ChildProcessSpawner } from "effect/process"
import { createHash, timingSafeEqual } from "node:crypto"
import { createServer } from "node:http"
import { createServer as createHttpsServer } from "node:https"

const SERVER_HEADER = "BackendAI-AgentWatcher"
const TOKEN_HEADER = "X-BackendAI-Watcher-Token"
const NOT_LOADED_MESSAGE = "Agent is not loaded with systemctl."

export interface WatcherOptions {
  /** `[watcher] target-service`, e.g. `backendai-agent.service`. */
  readonly targetService: string
  /** `[watcher] soft-reset-available`. */
  readonly softResetAvailable: boolean
  /** Command prefix running systemctl. Default `["systemctl"]`; `["sudo", "-n", "systemctl"]` with a sudo rule. */
  readonly systemctl?: ReadonlyArray<string>
  /** Reads the token (etcd `config/watcher/token`); `undefined` or empty = absent → every request refused. */
  readonly token: Effect.Effect<string | undefined, unknown>
  /** How often the token is read again (it can be rotated in etcd). Default 30 s. */
  readonly tokenRefresh?: Duration.Input
}

/** Constant-time comparison of two strings (equal-length SHA-256 digests). */
export const tokenMatches = (given: string, expected: string): boolean =>
  timingSafeEqual(createHash("sha256").update(given, "utf8").digest(), createHash("sha256").update(expected, "utf8").digest())

interface RunResult {
  readonly exitCode: number
  readonly stdout: string
  readonly stderr: string
}

const collect = <E>(stream: Stream.Stream<Uint8Array, E>) =>
  stream.pipe(Stream.decodeText(), Stream.mkString)

const respond = (body: unknown, status = 200) =>
  HttpServerResponse.jsonUnsafe(body, { status, headers: { server: SERVER_HEADER } })

/** The watcher routes (every path, with the token check), to mount on a router. */
export const routes = (options: WatcherOptions): Layer.Layer<never, never, HttpRouter.HttpRouter | ChildProcessSpawner.ChildProcessSpawner> =>
  HttpRouter.use((router) =>
    Effect.gen(function*() {
      const spawner = yield* ChildProcessSpawner.ChildProcessSpawner
      const prefix = options.systemctl ?? ["systemctl"]

      // --- the token: read at start, then refreshed; the last good value stays on etcd errors
      // None: not read yet (503); Some(None): read, absent (403 for everyone); Some(Some(t)): the token
      const token = yield* Ref.make(Option.none<Option.Option<string>>())
      const load = options.token.pipe(
        Effect.flatMap((t) => {
          const absent = t === undefined || t === ""
          return Ref.getAndSet(token, Option.some(absent ? Option.none() : Option.some(t))).pipe(
            Effect.flatMap((before) =>
              absent && !Option.exists(before, Option.isNone)
                ? Effect.logWarning("watcher: etcd has no config/watcher/token: every request is refused until it is set")
                : Effect.void
            )
          )
        }),
        Effect.tapError((e) => Effect.logWarning(`watcher: cannot read the token from etcd: ${e instanceof Error ? e.message : String(e)}`))
      )
      yield* load.pipe(
        Effect.retry(Schedule.min([Schedule.exponential("200 millis"), Schedule.spaced("10 seconds")])),
        Effect.andThen(Effect.ignore(load).pipe(Effect.repeat(Schedule.spaced(options.tokenRefresh ?? "30 seconds")))),
        Effect.forkScoped
      )

      // --- systemctl
      const run = (args: ReadonlyArray<string>) =>
        Effect.scoped(
          Effect.gen(function*() {
            const handle = yield* spawner.spawn(ChildProcess.make(prefix[0]!, [...prefix.slice(1), ...args], { stdin: "ignore" }))
            const [stdout, stderr, exitCode] = yield* Effect.all([collect(handle.stdout), collect(handle.stderr), handle.exitCode], {
              concurrency: 3
            })
            return { exitCode: Number(exitCode), stdout, stderr } satisfies RunResult
          })
        ).pipe(Effect.timeout("60 seconds"))

      /** Runs systemctl; `None` when systemctl is missing. */
      const systemctl = (args: ReadonlyArray<string>) =>
        run(args).pipe(
          Effect.map(Option.some),
          Effect.catchTag("PlatformError", (e) =>
            e.reason._tag === "NotFound" ? Effect.succeedNone : Effect.fail(e))
        )

      const failure = (e: unknown) =>
        Effect.logError("watcher: systemctl failed", e).pipe(
          Effect.as(respond({ result: "failed", message: e instanceof Error ? e.message : String(e) }, 500))
        )

      const action = (args: ReadonlyArray<string>) =>
        systemctl(args).pipe(
          Effect.map((r) =>
            Option.match(r, {
              onNone: () => respond({ message: NOT_LOADED_MESSAGE }),
              onSome: (r) =>
                r.exitCode === 0
                  ? respond({ result: "ok" })
                  : respond({ result: "failed", "exit-code": r.exitCode, message: (r.stderr || r.stdout).trim() }, 500)
            })
          ),
          Effect.tap(() => Effect.logInfo(`watcher: systemctl ${args.join(" ")}`)),
          Effect.catch(failure)
        )

      const status = systemctl(["is-active", options.targetService]).pipe(
        Effect.map((r) =>
          Option.match(r, {
            onNone: () => respond({ message: NOT_LOADED_MESSAGE }),
            // `is-active` exits 3 for inactive services; its stdout is the answer either way
            onSome: (r) => respond({ "agent-status": r.stdout.trim() || "unknown", "watcher-status": "active" })
          })
        ),
        Effect.catch(failure)
      )

      // --- authentication wraps every handler, including the catch-all 404
      const guarded = <E, R>(handler: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>) =>
        Effect.gen(function*() {
          const request = yield* HttpServerRequest.HttpServerRequest
          const expected = yield* Ref.get(token)
          if (Option.isNone(expected)) {
            return respond({ message: "The watcher token is not loaded yet (etcd unreachable)." }, 503)
          }
          const given = request.headers[TOKEN_HEADER.toLowerCase()]
          if (Option.isNone(expected.value)) {
            return respond({ message: "Forbidden" }, 403)
          }
          if (given === undefined || !tokenMatches(given, expected.value.value)) {
            return respond({ message: "Forbidden" }, 403)
          }
          return yield* handler
        })

      yield* router.add("GET", "/", guarded(status))
      yield* router.add("POST", "/agent/start", guarded(action(["start", options.targetService])))
      yield* router.add("POST", "/agent/stop", guarded(action(["stop", options.targetService])))
      yield* router.add("POST", "/agent/restart", guarded(action(["restart", options.targetService])))
      if (options.softResetAvailable) {
        yield* router.add("POST", "/soft-reset", guarded(action(["reload", options.targetService])))
      }
      yield* router.add("*", "/*", guarded(Effect.succeed(respond({ message: "Not Found" }, 404))))
    })
  )

export interface WatcherServerOptions extends WatcherOptions {
  readonly host: string
  readonly port: number
  /** PEM contents of the certificate chain and private key: serve HTTPS. */
  readonly tls?: { readonly cert: string | Buffer; readonly key: string | Buffer } | undefined
}

/** The watcher HTTP(S) server; outputs the `HttpServer` (its bound address). */
export const layerServer = (options: WatcherServerOptions): Layer.Layer<
  HttpServer.HttpServer,
  ServeError,
  ChildProcessSpawner.ChildProcessSpawner
> => {
  const tls = options.tls
  return HttpRouter.serve(routes(options), { disableLogger: true, disableListenLog: true }).pipe(
    Layer.provideMerge(
      NodeHttpServer.layerServer(
        tls === undefined ? () => createServer() : () => createHttpsServer({ cert: tls.cert, key: tls.key }),
        { host: options.host, port: options.port }
      )
    ),
    Layer.provide(NodeHttpServer.layerHttpServices),
    Layer.tap((ctx) =>
      Effect.logInfo("watcher listening").pipe(
        Effect.annotateLogs({
          address: HttpServer.formatAddress(Context.get(ctx, HttpServer.HttpServer).address),
          tls: tls !== undefined
        })
      )
    )
  )
}
