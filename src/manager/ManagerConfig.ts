/**
 * What the agent reads from etcd at start (spec §5.2), as one service other parts consume:
 *
 * - `redis` — `config/redis/{addr,password}` (default 127.0.0.1:6379): the stats engineer's Redis;
 * - `eventAddr` — `nodes/manager/event_addr`; an effect that waits (the manager may start after
 *   the agent): polled with a capped backoff and a visible log line, never a crash;
 * - `vfolderMount` / `vfolderFsPrefix` — `volumes/_mount` (default "/mnt") and `volumes/_fsprefix`
 *   (default ""): vfolder host paths for kernel creation;
 * - `watcherToken` — `config/watcher/token` (undefined when absent: the watcher refuses everyone);
 * - `rpcHost` — `agent.rpc-listen-addr.host`, or auto-detected from `config/network/subnet/agent`
 *   when the host is empty (see HostDetect.ts); `rpcAddr` = that host with the configured port.
 *
 * All keys are read in the merged scope (NODE, SGROUP, GLOBAL). The one-shot values are read when
 * the layer is built; while etcd is unreachable the build retries (capped backoff, logged) instead
 * of failing.
 */
import { Context, Deferred, Effect, Layer, Redacted, Schedule } from "effect"
import { AgentConfig } from "../config/AgentConfig.ts"
import { parseHostPort } from "../domain/Units.ts"
import { Etcd, type EtcdError } from "./Etcd.ts"
import { detectHost } from "./HostDetect.ts"

export interface RedisAddress {
  readonly host: string
  readonly port: number
  readonly password: Redacted.Redacted<string> | undefined
}

export interface ManagerConfigShape {
  readonly redis: RedisAddress
  /** `host:port` of the manager's event socket; waits until the manager has published it. */
  readonly eventAddr: Effect.Effect<string>
  readonly vfolderMount: string
  readonly vfolderFsPrefix: string
  readonly watcherToken: Redacted.Redacted<string> | undefined
  /** The host the manager dials for RPC (also the `ip` written to etcd and sent in heartbeats). */
  readonly rpcHost: string
  readonly rpcAddr: { readonly host: string; readonly port: number }
}

const DEFAULT_REDIS = { host: "127.0.0.1", port: 6379 } as const

/** Retry of etcd reads: 0.5 s doubling, capped at `cap`. */
export const cappedBackoff = (cap: `${number} seconds`) => Schedule.min([Schedule.exponential("500 millis"), Schedule.spaced(cap)])

export class ManagerConfig extends Context.Service<ManagerConfig, ManagerConfigShape>()("bai-agent/manager/ManagerConfig") {
  static readonly make = Effect.fnUntraced(function*(options: {
    readonly rpcListenAddr: { readonly host: string; readonly port: number }
    /** Cap of the event_addr poll interval. Default 10 s. */
    readonly eventAddrPollCap?: `${number} seconds`
  }) {
    const etcd = yield* Etcd

    const readAll = Effect.all({
      redis: etcd.getPrefix("config/redis"),
      mount: etcd.get("volumes/_mount"),
      fsprefix: etcd.get("volumes/_fsprefix"),
      token: etcd.get("config/watcher/token"),
      subnet: options.rpcListenAddr.host === "" ? etcd.get("config/network/subnet/agent") : Effect.succeed(undefined)
    }, { concurrency: "unbounded" })
    const read = yield* readAll.pipe(
      Effect.tapError((e: EtcdError) => Effect.logWarning(`etcd not readable yet (${e.reason}: ${e.message}); retrying`)),
      Effect.retry(cappedBackoff("10 seconds"))
    )

    let redisAddr = parseHostPort(read.redis["addr"] ?? "")
    if (read.redis["addr"] !== undefined && redisAddr === undefined) {
      yield* Effect.logWarning(`config/redis/addr is not host:port (${JSON.stringify(read.redis["addr"])}); using ${DEFAULT_REDIS.host}:${DEFAULT_REDIS.port}`)
    }
    redisAddr ??= DEFAULT_REDIS
    const password = read.redis["password"]

    let rpcHost = options.rpcListenAddr.host
    if (rpcHost === "") {
      const detected = yield* detectHost(read.subnet)
      rpcHost = detected.host
      yield* Effect.logInfo(`RPC host auto-detected: ${rpcHost} (${detected.source})`)
    }

    // --- event_addr: polled in the background until the manager has written it
    const eventAddr = yield* Deferred.make<string>()
    let announced = false
    yield* etcd.get("nodes/manager/event_addr").pipe(
      Effect.flatMap((v) =>
        v !== undefined && v !== ""
          ? Effect.succeed(v)
          : Effect.fail({ _tag: "Missing" as const, message: "nodes/manager/event_addr is not in etcd yet" })
      ),
      Effect.tapError((e) =>
        Effect.suspend(() => {
          if (announced) return Effect.logDebug(`waiting for the manager: ${e.message}`)
          announced = true
          return Effect.logWarning(`waiting for the manager: ${e.message} (retrying with backoff)`)
        })
      ),
      Effect.retry(cappedBackoff(options.eventAddrPollCap ?? "10 seconds")),
      Effect.flatMap((addr) =>
        Effect.logInfo(`manager event address: ${addr}`).pipe(Effect.andThen(Deferred.succeed(eventAddr, addr)))
      ),
      Effect.forkScoped
    )

    return ManagerConfig.of({
      redis: { host: redisAddr.host, port: redisAddr.port, password: password === undefined || password === "" ? undefined : Redacted.make(password) },
      eventAddr: Deferred.await(eventAddr),
      vfolderMount: read.mount !== undefined && read.mount !== "" ? read.mount : "/mnt",
      vfolderFsPrefix: read.fsprefix ?? "",
      watcherToken: read.token === undefined || read.token === "" ? undefined : Redacted.make(read.token),
      rpcHost,
      rpcAddr: { host: rpcHost, port: options.rpcListenAddr.port }
    })
  })

  /** Needs `Etcd` and `AgentConfig`. */
  static readonly layer = Layer.effect(
    ManagerConfig,
    Effect.gen(function*() {
      const { config } = yield* AgentConfig
      return yield* ManagerConfig.make({ rpcListenAddr: config.agent["rpc-listen-addr"] })
    })
  )

  /** Fixed values (tests of consumers). */
  static readonly layerTest = (values: Partial<Omit<ManagerConfigShape, "eventAddr">> & { readonly eventAddr?: string }) =>
    Layer.succeed(
      ManagerConfig,
      ManagerConfig.of({
        redis: values.redis ?? { ...DEFAULT_REDIS, password: undefined },
        eventAddr: values.eventAddr === undefined ? Effect.never : Effect.succeed(values.eventAddr),
        vfolderMount: values.vfolderMount ?? "/mnt",
        vfolderFsPrefix: values.vfolderFsPrefix ?? "",
        watcherToken: values.watcherToken,
        rpcHost: values.rpcHost ?? "127.0.0.1",
        rpcAddr: values.rpcAddr ?? { host: values.rpcHost ?? "127.0.0.1", port: 6001 }
      })
    )
}
