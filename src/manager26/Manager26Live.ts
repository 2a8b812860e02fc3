/**
 * The parts of the agent that differ under manager 25.15 / 26.x (`[agent] manager-contract = "26"`):
 * the event channel (Redis stream, {@link StreamEvents}), the RPC transport (Callosum,
 * {@link CallosumServer} with {@link Manager26Methods}) and kernel presence. Everything else —
 * lifecycle, runner client, stats, Kubernetes model, etcd registration, heartbeat loop — is the
 * shared core that `src/AgentLive.ts` builds for both lines.
 */
import { Effect, Layer } from "effect"
import { AgentConfig } from "../config/AgentConfig.ts"
import { formatHostPort, parseHostPort } from "../domain/Units.ts"
import { Etcd } from "../manager/Etcd.ts"
import { ManagerConfig } from "../manager/ManagerConfig.ts"
import { Redis } from "../manager/Redis.ts"
import { CallosumHandlers, CallosumServer } from "../rpc/callosum/CallosumServer.ts"
import { CurveConfigError, readCertificate } from "../rpc/callosum/Curve.ts"
import { Manager26Methods } from "./Handlers.ts"
import { Presence } from "./Presence.ts"
import { Sessions } from "./Sessions.ts"
import { StreamEvents } from "./StreamEvents.ts"

/** Redis databases of the 26.x roles (R268 `common/defs`). */
const REDIS_DB = { statistics: 0, live: 2, image: 3, stream: 4 } as const

/**
 * `host:port` and password of a Redis role from etcd `config/redis` (`override_configs/<role>/addr`
 * when set, else `addr`; contract §4.3).
 */
const redisRole = (role: keyof typeof REDIS_DB) =>
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

/**
 * The CURVE keys of `[agent] rpc-auth-agent-keypair` / `rpc-auth-manager-public-key` (contract §1.7);
 * undefined when neither is set.
 */
const curveKeys = Effect.gen(function*() {
  const { config } = yield* AgentConfig
  const agentFile = config.agent["rpc-auth-agent-keypair"]
  const managerFile = config.agent["rpc-auth-manager-public-key"]
  if (agentFile === undefined && managerFile === undefined) return undefined
  if (agentFile === undefined || managerFile === undefined) {
    return yield* new CurveConfigError({
      file: agentFile ?? managerFile ?? "",
      message: "rpc-auth-agent-keypair and rpc-auth-manager-public-key go together"
    })
  }
  const agent = yield* readCertificate(agentFile)
  if (agent.secretKey === undefined) return yield* new CurveConfigError({ file: agentFile, message: "no secret-key" })
  const manager = yield* readCertificate(managerFile)
  return { publicKey: agent.publicKey, secretKey: agent.secretKey, managerPublicKey: manager.publicKey }
})

/** {@link EventPublisher} (translating) + {@link StreamEvents} + {@link Sessions}, on Redis DB 4. */
export const StreamEventsFromEtcd = Layer.unwrap(
  Effect.gen(function*() {
    const { agentId } = yield* AgentConfig
    const role = yield* redisRole("stream")
    const curve = yield* curveKeys
    // the heartbeat's public_key: the agent's Z85 public key as bytes when CURVE is on
    const publicKey = curve === undefined ? null : Buffer.from(curve.publicKey, "latin1")
    return Layer.unwrap(
      Effect.map(Redis.make(role), (redis) => StreamEvents.layer({ agentId, redis, publicKey }))
    )
  })
).pipe(Layer.provideMerge(Sessions.layer))

/** Kernel presence in Redis DB 2. Needs KernelTable. */
export const PresenceFromEtcd = Layer.unwrap(
  Effect.gen(function*() {
    const role = yield* redisRole("live")
    return Layer.unwrap(Effect.map(Redis.make(role), (redis) => Presence.layer({ redis })))
  })
)

/** The Callosum server on `agent.rpc-listen-addr`, serving {@link Manager26Methods}. */
export const CallosumRpcServer = Layer.unwrap(
  Effect.gen(function*() {
    const { config } = yield* AgentConfig
    const manager = yield* ManagerConfig
    const curve = yield* curveKeys
    if (curve !== undefined) yield* Effect.logInfo(`RPC authenticated with CURVE (agent public key ${curve.publicKey})`)
    return CallosumServer.layer({
      bind: `tcp://${formatHostPort(manager.rpcAddr)}`,
      ...(curve === undefined ? {} : { curve: { secretKey: curve.secretKey, allowedClientKeys: [curve.managerPublicKey] } }),
      maxMessageBytes: config.agent["rpc-max-frame-size"],
      shutdownGrace: `${config.agent["shutdown-grace"]} seconds`
    })
  })
).pipe(Layer.provide(Layer.effect(CallosumHandlers, Manager26Methods)))
