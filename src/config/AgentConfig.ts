/**
 * agent.toml: search order (spec §4.1), environment overrides (§4.3), validation with one precise
 * message per problem, and the `AgentConfig` service holding the result.
 */
import { Context, Effect, FileSystem, Layer, Predicate, Schema, SchemaIssue } from "effect"
import * as os from "node:os"
import * as path from "node:path"
import { parse as parseToml } from "smol-toml"
import { parseHostPort } from "../domain/Units.ts"
import { type AgentConfigData, AgentConfigSchema } from "./AgentConfigSchema.ts"

export class ConfigError extends Schema.TaggedError<ConfigError>()("ConfigError", {
  /** The file that was read (or the list of places searched). */
  file: Schema.String,
  problems: Schema.Array(Schema.String)
}) {
  override get message(): string {
    return this.problems.map((p) => `${this.file}: ${p}`).join("\n")
  }
}

export interface LoadedConfig {
  readonly file: string
  readonly config: AgentConfigData
  /** Resolved before anything computes a key from it (the original wrote under `nodes/agents/None`). */
  readonly agentId: string
  readonly region: string
  readonly instanceType: string
  readonly warnings: ReadonlyArray<string>
}

export class AgentConfig extends Context.Service<AgentConfig, LoadedConfig>()("bai-agent/config/AgentConfig") {
  static readonly fromLoaded = (loaded: LoadedConfig) => Layer.succeed(AgentConfig, loaded)
}

/** The search order of spec §4.1; only the first file found is read. */
const searchPaths = (env: NodeJS.ProcessEnv, home: string): ReadonlyArray<string> => [
  ...(env.BACKEND_CONFIG_FILE ? [env.BACKEND_CONFIG_FILE] : []),
  "agent.toml",
  path.join(home, ".config", "backend.ai", "agent.toml"),
  "/etc/backend.ai/agent.toml"
]

const findConfigFile = Effect.fn("findConfigFile")(function*(
  explicit: string | undefined,
  env: NodeJS.ProcessEnv
): Effect.fn.Return<string, ConfigError, FileSystem.FileSystem> {
  const fs = yield* FileSystem.FileSystem
  if (explicit !== undefined) {
    const exists = yield* fs.exists(explicit).pipe(Effect.orElseSucceed(() => false))
    if (!exists) return yield* new ConfigError({ file: explicit, problems: ["no such file (given with -f/--config)"] })
    return explicit
  }
  const candidates = searchPaths(env, os.homedir())
  for (const candidate of candidates) {
    if (yield* fs.exists(candidate).pipe(Effect.orElseSucceed(() => false))) return candidate
  }
  return yield* new ConfigError({
    file: candidates.join(", "),
    problems: ["no agent.toml found; pass -f PATH or set BACKEND_CONFIG_FILE"]
  })
})

type Raw = Record<string, unknown>

const sectionOf = (raw: Raw, name: string): Raw => {
  const s = raw[name]
  if (Predicate.isObject(s) && !Array.isArray(s)) return s as Raw
  const fresh: Raw = {}
  raw[name] = fresh
  return fresh
}

/** Environment overrides of spec §4.3, applied to the raw document before validation. */
const applyEnvOverrides = (raw: Raw, env: NodeJS.ProcessEnv): ReadonlyArray<string> => {
  const problems: Array<string> = []
  const set = (sectionName: string, key: string, value: unknown) => {
    sectionOf(raw, sectionName)[key] = value
  }
  const hostPortOf = (sectionName: string, key: string): { host: string; port: number } => {
    const cur = sectionOf(raw, sectionName)[key]
    if (typeof cur === "string") return parseHostPort(cur) ?? { host: "", port: 0 }
    if (Predicate.isObject(cur)) {
      const o = cur as Raw
      return { host: typeof o.host === "string" ? o.host : "", port: typeof o.port === "number" ? o.port : 0 }
    }
    return { host: "", port: 0 }
  }
  const intOf = (name: string, v: string): number | undefined => {
    if (/^\d+$/.test(v)) return Number(v)
    problems.push(`environment ${name}: expected an integer, found ${JSON.stringify(v)}`)
    return undefined
  }
  if (env.BACKEND_NAMESPACE) set("etcd", "namespace", env.BACKEND_NAMESPACE)
  if (env.BACKEND_ETCD_ADDR) {
    const a = parseHostPort(env.BACKEND_ETCD_ADDR)
    if (a) set("etcd", "addr", a)
    else problems.push(`environment BACKEND_ETCD_ADDR: expected "host:port", found ${JSON.stringify(env.BACKEND_ETCD_ADDR)}`)
  }
  if (env.BACKEND_ETCD_USER) set("etcd", "user", env.BACKEND_ETCD_USER)
  if (env.BACKEND_ETCD_PASSWORD) set("etcd", "password", env.BACKEND_ETCD_PASSWORD)
  if (env.BACKEND_AGENT_HOST_OVERRIDE) {
    set("agent", "rpc-listen-addr", {
      ...hostPortOf("agent", "rpc-listen-addr"),
      host: env.BACKEND_AGENT_HOST_OVERRIDE,
      port: hostPortOf("agent", "rpc-listen-addr").port || 6001
    })
  }
  if (env.BACKEND_AGENT_PORT) {
    const port = intOf("BACKEND_AGENT_PORT", env.BACKEND_AGENT_PORT)
    if (port !== undefined) set("agent", "rpc-listen-addr", { host: hostPortOf("agent", "rpc-listen-addr").host, port })
  }
  if (env.BACKEND_PID_FILE) set("agent", "pid-file", env.BACKEND_PID_FILE)
  // like the Python agent's identity module: the environment gives the region only when the file does not
  if (env.BACKEND_REGION && sectionOf(raw, "agent").region === undefined) set("agent", "region", env.BACKEND_REGION)
  if (env.BACKEND_CONTAINER_PORT_RANGE) {
    const m = /^\s*(\d+)\s*[-:,]\s*(\d+)\s*$/.exec(env.BACKEND_CONTAINER_PORT_RANGE)
    if (m) set("container", "port-range", [Number(m[1]), Number(m[2])])
    else {
      problems.push(
        `environment BACKEND_CONTAINER_PORT_RANGE: expected "LOW-HIGH", found ${JSON.stringify(env.BACKEND_CONTAINER_PORT_RANGE)}`
      )
    }
  }
  if (env.BACKEND_KERNEL_HOST_OVERRIDE) set("container", "kernel-host", env.BACKEND_KERNEL_HOST_OVERRIDE)
  if (env.BACKEND_SANDBOX_TYPE) set("container", "sandbox-type", env.BACKEND_SANDBOX_TYPE)
  if (env.BACKEND_SCRATCH_ROOT) set("container", "scratch-root", env.BACKEND_SCRATCH_ROOT)
  if (env.BACKEND_WATCHER_SERVICE_IP || env.BACKEND_WATCHER_SERVICE_PORT) {
    const cur = hostPortOf("watcher", "service-addr")
    const port = env.BACKEND_WATCHER_SERVICE_PORT ? intOf("BACKEND_WATCHER_SERVICE_PORT", env.BACKEND_WATCHER_SERVICE_PORT) : undefined
    set("watcher", "service-addr", {
      host: env.BACKEND_WATCHER_SERVICE_IP || cur.host || "0.0.0.0",
      port: port ?? (cur.port || 6009)
    })
  }
  return problems
}

const valueAt = (raw: unknown, p: ReadonlyArray<PropertyKey>): { found: boolean; value: unknown } => {
  let cur: unknown = raw
  for (const k of p) {
    if (!Predicate.isObject(cur) || !(k in (cur as object))) return { found: false, value: undefined }
    cur = (cur as Record<PropertyKey, unknown>)[k]
  }
  return { found: true, value: cur }
}

const describe = (v: unknown): string => {
  if (typeof v === "string") return JSON.stringify(v)
  if (Array.isArray(v)) return `an array ${JSON.stringify(v)}`
  if (Predicate.isObject(v)) return "a table"
  return String(v)
}

const formatter = SchemaIssue.makeFormatterStandardSchemaV1()

/** Keys whose values are secrets (etcd.password, and any *password/*secret/*token key). */
const isSecretKey = (keyPath: string): boolean => /(password|passwd|secret|token)/i.test(keyPath)

/** A URL with its user-info (`user:password@`) masked. */
const withoutUserinfo = (url: string): string => url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@]*@/i, "$1<redacted>@")

/** One line per problem: key path, what was expected, what was found. */
const describeIssue = (issue: SchemaIssue.Issue, raw: unknown): Array<string> =>
  formatter(issue).issues.map((i) => {
    const keyPath = (i.path ?? []).map((k) => (typeof k === "object" ? String(k.key) : String(k))).join(".")
    const at = valueAt(raw, (i.path ?? []).map((k) => (typeof k === "object" ? k.key : k)))
    const message = i.message === "Missing key" ? "required key is missing" : i.message.replace(/^Expected/, "expected")
    if (!at.found) return `${keyPath}: ${message}`
    // a secret's value is never echoed (logs and terminals outlive the mistake)
    return `${keyPath}: ${message}, found ${isSecretKey(keyPath) ? "<redacted>" : describe(at.value)}`
  })

/** Keys of the file that the schema does not know (warnings, not errors: spec §4.4 allows extras). */
const unknownKeys = (raw: unknown, decoded: unknown, prefix = ""): Array<string> => {
  if (!Predicate.isObject(raw) || !Predicate.isObject(decoded) || Array.isArray(raw)) return []
  const out: Array<string> = []
  for (const [k, v] of Object.entries(raw as Raw)) {
    const d = (decoded as Raw)[k]
    if (!(k in (decoded as Raw))) out.push(`${prefix}${k}`)
    else if (k !== "pkg-ns") out.push(...unknownKeys(v, d, `${prefix}${k}.`))
  }
  return out
}

/** Parse, override, validate. Pure apart from the inputs it is given. */
export const decodeConfigText = Effect.fn("decodeConfigText")(function*(
  file: string,
  text: string,
  env: NodeJS.ProcessEnv,
  hostname: string
): Effect.fn.Return<LoadedConfig, ConfigError> {
  const raw = yield* Effect.try({
    try: () => parseToml(text) as Raw,
    catch: (e) => {
      const where = Predicate.hasProperty(e, "line") && Predicate.hasProperty(e, "column")
        ? ` at line ${String(e.line)}, column ${String(e.column)}`
        : ""
      const first = (e instanceof Error ? e.message : String(e)).split("\n")[0]
      return new ConfigError({ file, problems: [`not valid TOML${where}: ${first}`] })
    }
  })
  const envProblems = applyEnvOverrides(raw, env)
  const decoded = yield* Schema.decodeUnknownEffect(AgentConfigSchema)(raw, { errors: "all" }).pipe(
    Effect.mapError((e) => new ConfigError({ file, problems: [...envProblems, ...describeIssue(e.issue, raw)] }))
  )
  if (envProblems.length > 0) return yield* new ConfigError({ file, problems: envProblems })
  const semantic: Array<string> = []
  const rpcHost = decoded.agent["rpc-listen-addr"].host
  if (rpcHost === "0.0.0.0" || rpcHost === "::" || /^169\.254\./.test(rpcHost) || /^fe80:/i.test(rpcHost)) {
    semantic.push(
      `agent.rpc-listen-addr: expected a concrete IP the manager can dial (or "" to auto-detect), found ${JSON.stringify(rpcHost)}`
    )
  }
  if (decoded.kubernetes.registry.url !== "" && !/^https?:\/\/[^/]+/.test(decoded.kubernetes.registry.url)) {
    semantic.push(
      `kubernetes.registry.url: expected an http(s) URL such as "https://registry:5000", found ${JSON.stringify(withoutUserinfo(decoded.kubernetes.registry.url))}`
    )
  }
  if (semantic.length > 0) return yield* new ConfigError({ file, problems: semantic })
  return {
    file,
    config: decoded,
    agentId: decoded.agent.id ?? `i-${hostname}`,
    region: decoded.agent.region ?? "local",
    instanceType: decoded.agent["instance-type"] ?? "default",
    warnings: unknownKeys(raw, decoded).map((k) => `${file}: unknown key ${k} (ignored)`)
  }
})

export const loadConfig = Effect.fn("loadConfig")(function*(
  explicit: string | undefined,
  env: NodeJS.ProcessEnv
): Effect.fn.Return<LoadedConfig, ConfigError, FileSystem.FileSystem> {
  const fs = yield* FileSystem.FileSystem
  const file = yield* findConfigFile(explicit, env)
  const text = yield* fs.readFileString(file).pipe(
    Effect.mapError((e) => new ConfigError({ file, problems: [`cannot read: ${e.message}`] }))
  )
  return yield* decodeConfigText(file, text, env, os.hostname())
})

/** The effective configuration with secrets redacted, for --check-config and start-up logs. */
export const redacted = (loaded: LoadedConfig): unknown => ({
  ...loaded.config,
  etcd: { ...loaded.config.etcd, password: loaded.config.etcd.password === "" ? "" : "<redacted>" },
  agent: { ...loaded.config.agent, id: loaded.agentId, region: loaded.region, "instance-type": loaded.instanceType }
})
