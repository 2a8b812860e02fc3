/**
 * etcd v3 under `/sorna/{namespace}/`, with the three scopes of spec §5.1 (GLOBAL, SGROUP
 * `sgroup/{scaling-group}`, NODE `nodes/agents/{agent-id}`) and merged reads (NODE, then SGROUP, then
 * GLOBAL; first non-null wins). Every call is bounded by a timeout so an unavailable etcd gives a
 * typed `EtcdError` instead of a hang.
 */
import { Context, Effect, Layer, Schema } from "effect"
import { noop } from "cockatiel"
import { Etcd3 } from "etcd3"
import { AgentConfig } from "../config/AgentConfig.ts"
import { formatHostPort } from "../domain/Units.ts"

export class EtcdError extends Schema.TaggedError<EtcdError>()("EtcdError", {
  reason: Schema.Literals(["Unavailable", "Timeout", "Other"]),
  operation: Schema.String,
  message: Schema.String
}) {}

export type Scope = "global" | "sgroup" | "node"
export type ReadScope = Scope | "merged"

export interface EtcdShape {
  /** Full key for `key` in `scope`: `/sorna/{ns}/{prefix}/{key}`; an empty key keeps the trailing slash. */
  readonly keyOf: (key: string, scope: Scope) => string
  readonly get: (key: string, scope?: ReadScope) => Effect.Effect<string | undefined, EtcdError>
  /** All keys under `prefix/`, relative to it; merged scope layers NODE over SGROUP over GLOBAL. */
  readonly getPrefix: (prefix: string, scope?: ReadScope) => Effect.Effect<Record<string, string>, EtcdError>
  readonly put: (key: string, value: string, scope?: Scope) => Effect.Effect<void, EtcdError>
  readonly putMany: (entries: ReadonlyArray<readonly [key: string, value: string]>, scope?: Scope) => Effect.Effect<void, EtcdError>
  readonly delete: (key: string, scope?: Scope) => Effect.Effect<void, EtcdError>
}

export class Etcd extends Context.Service<Etcd, EtcdShape>()("bai-agent/manager/Etcd") {
  static readonly make = Effect.fn("Etcd.make")(function*(options: {
    readonly addr: { readonly host: string; readonly port: number }
    readonly namespace: string
    readonly user: string
    readonly password: string
    readonly scalingGroup: string
    readonly agentId: string
    readonly timeoutSeconds?: number
  }) {
    const client = yield* Effect.acquireRelease(
      Effect.sync(() =>
        new Etcd3({
          hosts: `http://${formatHostPort(options.addr)}`,
          ...(options.user !== "" ? { auth: { username: options.user, password: options.password } } : {}),
          dialTimeout: 2000,
          // retries are ours (callers use Schedules); the client must fail fast and recover at once
          faultHandling: { global: noop, host: () => noop }
        })
      ),
      (c) => Effect.sync(() => c.close())
    )
    const timeout = options.timeoutSeconds ?? 3
    const root = `/sorna/${options.namespace}/`
    const prefixes: Record<Scope, string> = {
      global: "",
      sgroup: `sgroup/${options.scalingGroup}`,
      node: `nodes/agents/${options.agentId}`
    }
    const keyOf = (key: string, scope: Scope) => {
      const prefix = prefixes[scope]
      return prefix === "" ? `${root}${key}` : `${root}${prefix}/${key}`
    }
    const op = <A>(operation: string, f: () => Promise<A>): Effect.Effect<A, EtcdError> =>
      Effect.tryPromise({
        try: f,
        catch: (e) =>
          new EtcdError({
            reason: /unavailable|ECONNREFUSED|no connection|failed to connect|GRPCConnectFailed/i.test(String((e as Error)?.message ?? e)) ||
                (e as Error)?.name === "GRPCConnectFailedError" || (e as Error)?.name === "GRPCUnavailableError"
              ? "Unavailable"
              : "Other",
            operation,
            message: (e as Error)?.message ?? String(e)
          })
      }).pipe(
        Effect.timeoutOrElse({
          duration: `${timeout} seconds`,
          orElse: () => Effect.fail(new EtcdError({ reason: "Timeout", operation, message: `etcd did not answer within ${timeout}s` }))
        })
      )
    const order: ReadonlyArray<Scope> = ["node", "sgroup", "global"]
    const get = (key: string, scope: ReadScope = "merged") =>
      scope === "merged"
        ? op(`get ${key}`, async () => {
          const values = await Promise.all(order.map((s) => client.get(keyOf(key, s)).string()))
          return values.find((v) => v !== null) ?? undefined
        })
        : op(`get ${key}`, async () => (await client.get(keyOf(key, scope)).string()) ?? undefined)
    const getPrefix = (prefix: string, scope: ReadScope = "merged") => {
      const one = async (s: Scope) => {
        const base = keyOf(prefix.endsWith("/") ? prefix : `${prefix}/`, s)
        const kv = await client.getAll().prefix(base).strings()
        return Object.fromEntries(Object.entries(kv).map(([k, v]) => [k.slice(base.length), v]))
      }
      return scope === "merged"
        ? op(`get prefix ${prefix}`, async () => {
          const layers = await Promise.all([...order].reverse().map(one))
          return Object.assign({}, ...layers) as Record<string, string>
        })
        : op(`get prefix ${prefix}`, () => one(scope))
    }
    return Etcd.of({
      keyOf,
      get,
      getPrefix,
      put: (key, value, scope = "global") => op(`put ${key}`, () => client.put(keyOf(key, scope)).value(value).exec()).pipe(Effect.asVoid),
      putMany: (entries, scope = "global") =>
        // one transaction: the comparison (version > -1) always holds, so every put applies atomically
        op(`put ${entries.map(([k]) => k).join(", ")}`, () =>
          client.if(keyOf(entries[0]?.[0] ?? "", scope), "Version", ">", -1)
            .then(...entries.map(([k, v]) => client.put(keyOf(k, scope)).value(v)))
            .commit()).pipe(Effect.asVoid),
      delete: (key, scope = "global") => op(`delete ${key}`, () => client.delete().key(keyOf(key, scope)).exec()).pipe(Effect.asVoid)
    })
  })

  static readonly layer = Layer.effect(
    Etcd,
    Effect.gen(function*() {
      const { agentId, config } = yield* AgentConfig
      return yield* Etcd.make({
        addr: config.etcd.addr,
        namespace: config.etcd.namespace,
        user: config.etcd.user,
        password: config.etcd.password,
        scalingGroup: config.agent["scaling-group"],
        agentId
      })
    })
  )
}
