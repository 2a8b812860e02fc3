/**
 * Redis as a scoped Effect service (spec §6: the agent writes statistics to DB 0).
 *
 * Why ioredis and not the node-redis client that @effect/platform-node pulls in as a peer: the project
 * keeps ONE Redis client, and ioredis gives us pipelines of raw commands with Buffer values, built-in
 * reconnection with a retry strategy, and a switch to fail fast while disconnected (no offline queue).
 *
 * Behaviour while Redis is away: commands fail at once with `RedisError` (reason `Unavailable`) instead of
 * queueing; ioredis keeps reconnecting in the background (back-off up to 2 s), so callers that retry on
 * their own schedule (the stats loop) resume by themselves once Redis is back. Every call is bounded by
 * `commandTimeoutSeconds` (K1 used `timeout=3.0` for its pool, server.py:232–237).
 */
import { createHash } from "node:crypto"
import { Context, Effect, Layer, Ref, Schema } from "effect"
import { Redis as IORedis } from "ioredis"
import { parseHostPort } from "../domain/Units.ts"

export class RedisError extends Schema.TaggedError<RedisError>()("RedisError", {
  /** Unavailable: not connected; Timeout: no answer in time; Command: Redis answered with an error. */
  reason: Schema.Literals(["Unavailable", "Timeout", "Command", "Other"]),
  operation: Schema.String,
  message: Schema.String
}) {}

export type RedisArg = string | Buffer | number
/** One command: name and arguments, e.g. `["SET", key, value, "EX", 30]`. */
export type RedisCommand = readonly [name: string, ...args: ReadonlyArray<RedisArg>]

export interface RedisShape {
  /**
   * Sends the commands in one round trip (a pipeline: not atomic) and returns their replies in order.
   * Fails if the connection is not usable or if any command was answered with an error.
   */
  readonly pipeline: (commands: ReadonlyArray<RedisCommand>) => Effect.Effect<ReadonlyArray<unknown>, RedisError>
  /** One command; bulk string replies come back as Buffers. */
  readonly command: (name: string, ...args: ReadonlyArray<RedisArg>) => Effect.Effect<unknown, RedisError>
  /** `GET` as bytes; undefined when the key is absent. */
  readonly getBuffer: (key: string) => Effect.Effect<Buffer | undefined, RedisError>
  /**
   * `SET keys[i] values[i] EX ttlSeconds` for every i, as ONE command per {@link SET_MANY_CHUNK} keys (an
   * `EVALSHA` of {@link SET_MANY_LUA}) instead of a pipeline of one command per key: the same keys,
   * values and expiry in Redis, without a client-side command object, promise and reply per key (the
   * stats loop writes ~1,000 keys every 2 s). Each chunk is atomic: Redis runs the script as one
   * command and serves nobody else meanwhile (~1.7 ms per 250 keys of ~580 bytes measured, ~3× the
   * time of the plain SETs; bench/README.md "Goal 4, the stats write and parse"); chunks are not. Fails with reason
   * `Other` (nothing sent) if the lengths differ or the TTL is not a positive whole number. Where Redis
   * refuses scripts for good (an ACL without `@scripting`, EVAL renamed away), the same SETs go as a
   * pipeline, from then on.
   */
  readonly setManyEx: (keys: ReadonlyArray<string>, values: ReadonlyArray<Buffer>, ttlSeconds: number) => Effect.Effect<void, RedisError>
  /** `SET key value [EX ttl]`. */
  readonly set: (key: string, value: string | Buffer, options?: { readonly ttlSeconds?: number }) => Effect.Effect<void, RedisError>
  /** The client's connection state (`connecting`, `ready`, `reconnecting`, `end`, …), for health reporting. */
  readonly status: Effect.Effect<string>
}

export interface RedisOptions<E = never, R = never> {
  /** `host:port` (etcd `config/redis/addr`, default `127.0.0.1:6379`), or an effect that yields it. */
  readonly addr: string | Effect.Effect<string, E, R>
  /** etcd `config/redis/password`; empty or absent = no AUTH. */
  readonly password?: string | Effect.Effect<string | undefined, E, R> | undefined
  /** Database number; the statistics live in DB 0 (`REDIS_STAT_DB`). */
  readonly db?: number
  /** Bound of every call. Default 3 s. */
  readonly commandTimeoutSeconds?: number
  /** How long `make` waits for the first connection before going on without it. Default 3 s. */
  readonly connectTimeoutSeconds?: number
}

/** KEYS = the keys, ARGV = their values then the TTL in seconds. Returns the number of keys set. */
export const SET_MANY_LUA = "local ttl = ARGV[#KEYS + 1]\n" +
  "for i = 1, #KEYS do redis.call('SET', KEYS[i], ARGV[i], 'EX', ttl) end\n" +
  "return #KEYS\n"
const SET_MANY_SHA = createHash("sha1").update(SET_MANY_LUA).digest("hex")
/** Keys per script call: bounds the time Redis is blocked by one call (~1.7 ms) and the call's argument count. */
export const SET_MANY_CHUNK = 250

/**
 * A reply saying this Redis will not run the script for this client, whatever the moment: an ACL without
 * `@scripting` (`NOPERM`), `EVALSHA`/`EVAL` renamed away (`unknown command`), scripting disabled by a proxy.
 * A transient refusal (`OOM`, `BUSY`, `LOADING`) is not one: the next cycle tries the script again.
 */
const refusesScripts = (message: string): boolean =>
  !/^(OOM|BUSY|LOADING|MASTERDOWN|TRYAGAIN)\b/.test(message) && /^NOPERM|unknown command|scripting|CROSSSLOT/i.test(message)

const describe = (e: unknown): string => (e instanceof Error ? e.message : String(e))

const isConnectionFailure = (message: string): boolean =>
  /enableOfflineQueue|Connection is closed|ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|ENOTFOUND|EHOSTUNREACH|not connected|Stream isn't writeable|MaxRetriesPerRequest/i
    .test(message)

export class Redis extends Context.Service<Redis, RedisShape>()("bai-agent/manager/Redis") {
  static readonly make = Effect.fnUntraced(function*<E = never, R = never>(options: RedisOptions<E, R>) {
    const addrText = typeof options.addr === "string" ? options.addr : yield* options.addr
    const password = options.password === undefined || typeof options.password === "string"
      ? options.password
      : yield* options.password
    const addr = parseHostPort(addrText) ?? (/^[\w.-]+$/.test(addrText) ? { host: addrText, port: 6379 } : undefined)
    if (addr === undefined) {
      return yield* new RedisError({ reason: "Other", operation: "parse address", message: `not a host:port: ${addrText}` })
    }
    const commandTimeoutMs = Math.round((options.commandTimeoutSeconds ?? 3) * 1000)
    const connectTimeoutMs = Math.round((options.connectTimeoutSeconds ?? 3) * 1000)

    const client = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const c = new IORedis({
          host: addr.host,
          port: addr.port,
          db: options.db ?? 0,
          ...(password !== undefined && password !== "" ? { password } : {}),
          connectTimeout: connectTimeoutMs,
          commandTimeout: commandTimeoutMs,
          // fail fast while disconnected; the caller's own schedule is the retry
          enableOfflineQueue: false,
          autoResendUnfulfilledCommands: false,
          maxRetriesPerRequest: 0,
          retryStrategy: (times: number) => Math.min(times * 100, 2000)
        })
        // ioredis emits `error` on every failed (re)connect; without a listener Node prints it. The
        // failures reach callers as RedisError on their commands.
        c.on("error", () => {})
        return c
      }),
      (c) =>
        Effect.tryPromise(() => c.quit()).pipe(
          Effect.timeoutOption("1 second"),
          Effect.ignore,
          Effect.andThen(Effect.sync(() => c.disconnect()))
        )
    )

    // Wait (bounded) for the first connection so the first calls do not fail needlessly.
    const ready = yield* Effect.callback<boolean>((resume) => {
      if (client.status === "ready") {
        resume(Effect.succeed(true))
        return
      }
      const onReady = () => resume(Effect.succeed(true))
      client.once("ready", onReady)
      return Effect.sync(() => void client.removeListener("ready", onReady))
    }).pipe(Effect.timeoutOption(`${connectTimeoutMs} millis`))
    if (ready._tag === "None") {
      yield* Effect.logWarning("Redis not reachable yet; reconnecting in the background").pipe(
        Effect.annotateLogs({ addr: addrText })
      )
    }

    const fail = (operation: string) => (e: unknown): RedisError => {
      const message = describe(e)
      return new RedisError({
        reason: /timed out/i.test(message) ? "Timeout" : isConnectionFailure(message) ? "Unavailable" : "Command",
        operation,
        message
      })
    }
    const bounded = <A>(operation: string, f: () => Promise<A>): Effect.Effect<A, RedisError> =>
      Effect.suspend(() =>
        client.status === "ready"
          ? Effect.tryPromise({ try: f, catch: fail(operation) })
          : Effect.fail(new RedisError({ reason: "Unavailable", operation, message: `connection ${client.status}` }))
      ).pipe(
        Effect.timeoutOrElse({
          duration: `${commandTimeoutMs + 500} millis`,
          orElse: () =>
            Effect.fail(new RedisError({ reason: "Timeout", operation, message: `no answer within ${commandTimeoutMs} ms` }))
        })
      )

    const pipeline = (commands: ReadonlyArray<RedisCommand>): Effect.Effect<ReadonlyArray<unknown>, RedisError> => {
      const operation = `pipeline of ${commands.length}`
      if (commands.length === 0) return Effect.succeed([])
      return bounded(operation, () => {
        const p = client.pipeline()
        for (const [name, ...args] of commands) void p.call(name, ...args)
        return p.exec()
      }).pipe(
        Effect.flatMap((replies) => {
          if (replies === null) {
            return Effect.fail(new RedisError({ reason: "Unavailable", operation, message: "pipeline discarded" }))
          }
          const failed = replies.find(([err]) => err !== null)
          return failed !== undefined ? Effect.fail(fail(operation)(failed[0])) : Effect.succeed(replies.map(([, r]) => r))
        })
      )
    }

    /** Set once Redis refused the script for good (ACL without `@scripting`, EVAL renamed away): plain SETs from then on. */
    const scriptsRefused = yield* Ref.make(false)

    /** One chunk: EVALSHA, or EVAL when Redis does not hold the script (first call, after a restart or `SCRIPT FLUSH`). */
    const setChunk = (numKeys: number, args: ReadonlyArray<string | Buffer | number>): Promise<unknown> =>
      client.evalsha(SET_MANY_SHA, numKeys, ...args).catch((e: unknown) =>
        e instanceof Error && e.message.startsWith("NOSCRIPT") ? client.eval(SET_MANY_LUA, numKeys, ...args) : Promise.reject(e)
      )

    const setManyEx = (keys: ReadonlyArray<string>, values: ReadonlyArray<Buffer>, ttlSeconds: number): Effect.Effect<void, RedisError> => {
      const operation = `SET of ${keys.length} keys`
      if (keys.length !== values.length) {
        return Effect.fail(new RedisError({ reason: "Other", operation, message: `${keys.length} keys but ${values.length} values` }))
      }
      if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds < 1) {
        return Effect.fail(new RedisError({ reason: "Other", operation, message: `not a TTL in whole seconds: ${ttlSeconds}` }))
      }
      if (keys.length === 0) return Effect.void
      const plainSets = Effect.suspend(() => pipeline(keys.map((key, i): RedisCommand => ["SET", key, values[i]!, "EX", ttlSeconds]))).pipe(Effect.asVoid)
      const scripted = bounded(operation, () => {
        const calls: Array<Promise<unknown>> = []
        for (let from = 0; from < keys.length; from += SET_MANY_CHUNK) {
          const to = Math.min(keys.length, from + SET_MANY_CHUNK)
          const args: Array<string | Buffer | number> = new Array(1 + 2 * (to - from))
          let i = 0
          for (let k = from; k < to; k++) args[i++] = keys[k]!
          for (let k = from; k < to; k++) args[i++] = values[k]!
          args[i] = ttlSeconds
          calls.push(setChunk(to - from, args))
        }
        return Promise.all(calls)
      }).pipe(Effect.asVoid)
      return Ref.get(scriptsRefused).pipe(Effect.flatMap((refused) =>
        refused ? plainSets : scripted.pipe(
          Effect.catchIf(
            (e) => e.reason === "Command" && refusesScripts(e.message),
            (e) =>
              Ref.set(scriptsRefused, true).pipe(
                Effect.andThen(Effect.logWarning("Redis refuses scripts: the stats are written as one SET per key from now on").pipe(
                  Effect.annotateLogs({ reply: e.message })
                )),
                Effect.andThen(plainSets)
              )
          )
        )
      ))
    }

    return Redis.of({
      pipeline,
      setManyEx,
      command: (name, ...args) => bounded(name, () => client.callBuffer(name, ...args)),
      getBuffer: (key) =>
        bounded(`GET ${key}`, () => client.getBuffer(key)).pipe(Effect.map((b) => b ?? undefined)),
      set: (key, value, opts) =>
        bounded(
          `SET ${key}`,
          () => opts?.ttlSeconds !== undefined ? client.set(key, value, "EX", opts.ttlSeconds) : client.set(key, value)
        ).pipe(Effect.asVoid),
      status: Effect.sync(() => client.status)
    })
  })

  /** The client for the layer's lifetime; the address may come from etcd (`config/redis`). */
  static readonly layer = <E = never, R = never>(options: RedisOptions<E, R>): Layer.Layer<Redis, E | RedisError, R> =>
    Layer.effect(Redis, Redis.make(options))
}
