/**
 * The parts of the agent that differ under manager 25.15 / 26.x (`[agent] manager-contract = "26"`):
 * the event channel (Redis stream, {@link StreamEvents}), the RPC transport (Callosum,
 * {@link CallosumServer} with {@link Manager26Handlers}) and kernel presence. Everything else —
 * lifecycle, runner client, stats, Kubernetes model, etcd registration, heartbeat loop — is the
 * shared core that `src/AgentLive.ts` builds for both lines.
 */
import { Effect, Layer } from "effect"
import { AgentConfig } from "../config/AgentConfig.ts"
import { formatHostPort, parseHostPort } from "../domain/Units.ts"
import { Etcd } from "../registry/Etcd.ts"
import { ManagerConfig } from "../registry/ManagerConfig.ts"
import { Redis } from "../registry/Redis.ts"
import { CallosumHandlers, CallosumServer } from "../rpc/callosum/CallosumServer.ts"
import { Manager26Handlers } from "./Handlers.ts"
import { Presence } from "./Presence.ts"
import { Sessions } from "./Sessions.ts"
import { StreamEvents } from "./StreamEvents.ts"

/** Redis databases of the 26.x roles (R268 `common/defs`). */
export const REDIS_DB = { statistics: 0, live: 2, image: 3, stream: 4 } as const

/**
 * `host:port` and password of a Redis role from etcd `config/redis` (`override_configs/<role>/addr`
 * when set, else `addr`; contract §4.3).
 */
export const redisRole = (role: keyof typeof REDIS_DB) =>
  Effect.gen(function*() {
    const etcd = yield* Etcd
    const manager = yield* ManagerConfig
    const cfg = yield* etcd.getPrefix("config/redis").pipe(
      Effect.catch((e) => Effect.logWarning(`config/redis not readable (${e.message}); using ${formatHostPort(manager.redis)}`).pipe(Effect.as({} as Record<string, string>)))
    )
    const override = cfg[`override_configs/${role}/addr`]
    const addr = override !== undefined && parseHostPort(override) !== undefined ? override : formatHostPort(manager.redis)
    const password = cfg[`override_configs/${role}/password`] ?? cfg["password"]
    return { addr, password: password === "" ? undefined : password, db: REDIS_DB[role] }
  })

/** {@link EventPublisher} (translating) + {@link StreamEvents} + {@link Sessions}, on Redis DB 4. */
export const StreamEventsFromEtcd = Layer.unwrap(
  Effect.gen(function*() {
    const { agentId } = yield* AgentConfig
    const role = yield* redisRole("stream")
    return Layer.unwrap(
      Effect.map(Redis.make(role), (redis) => StreamEvents.layer({ agentId, redis }))
    )
  })
).pipe(Layer.provideMerge(Sessions.layer))

/** Kernel presence in Redis DB 2. Needs KernelRegistry. */
export const PresenceFromEtcd = Layer.unwrap(
  Effect.gen(function*() {
    const role = yield* redisRole("live")
    return Layer.unwrap(Effect.map(Redis.make(role), (redis) => Presence.layer({ redis })))
  })
)

/** The Callosum server on `agent.rpc-listen-addr`, serving {@link Manager26Handlers}. */
export const CallosumRpcServer = Layer.unwrap(
  Effect.gen(function*() {
    const { config } = yield* AgentConfig
    const manager = yield* ManagerConfig
    return CallosumServer.layer({
      bind: `tcp://${formatHostPort(manager.rpcAddr)}`,
      maxMessageBytes: config.agent["rpc-max-frame-size"],
      shutdownGrace: `${config.agent["shutdown-grace"]} seconds`
    })
  })
).pipe(Layer.provide(Layer.effect(CallosumHandlers, Effect.map(Manager26Handlers, (m) => new Map(Object.entries(m))))))
