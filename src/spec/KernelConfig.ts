/**
 * The `create_kernel` / `restart_kernel` config dict the manager sends (spec §2.2), as a Schema, and
 * what the agent derives from it: service ports (image label `ai.backend.service-ports`, spec §2.3),
 * the ConfigMap texts `environ.txt` and `resource.txt` (spec §7.4) and the `resource_spec` string.
 * Decoding failures become `InvalidKernelConfig` before anything is created.
 */
import { Effect, Schema, SchemaGetter, SchemaIssue } from "effect"
import * as path from "node:path"
import { InvalidKernelConfig } from "../domain/Errors.ts"
import { Int, Str } from "../codec/PySchema.ts"
import { slotIntegerPart, slotValue } from "./SlotDecimal.ts"

/**
 * `{slot: decimal string}`: whatever Python's `Decimal()` accepts that is finite and not below zero
 * (`"1E+1"`, `" 4 "`, `"1_000"`), decoded to an exact plain decimal (`"10"`); numbers are stringified.
 */
const SlotValue = Str.pipe(
  Schema.decodeTo(Schema.String, {
    decode: SchemaGetter.transformEffect((s: string) => {
      const r = slotValue(s)
      return r.ok ? Effect.succeed(r.value) : Effect.fail(new SchemaIssue.InvalidValue({ message: r.message }, s))
    }),
    encode: SchemaGetter.transform((s: string) => s)
  })
)

/**
 * Image labels as the manager sends them: etcd `images/<reg>/<img>/<tag>/labels/<key>` read as a
 * prefix, so a label key containing `/` arrives NESTED (`{"com.example": {"x": "1"}}` for the label
 * `com.example/x`). Flattened back to `{"com.example/x": "1"}` (an empty key stands for the prefix
 * itself); leaves must be strings (numbers are stringified), anything else is refused.
 */
export const flattenLabels = (labels: { readonly [k: string]: unknown }): Record<string, string> | string => {
  const out: Record<string, string> = {}
  const walk = (prefix: string, node: unknown, depth: number): string | undefined => {
    if (typeof node === "string" || typeof node === "number") {
      out[prefix] = String(node)
      return undefined
    }
    if (depth > 16 || node === null || typeof node !== "object" || Array.isArray(node) || node instanceof Uint8Array) {
      return `label ${JSON.stringify(prefix.slice(0, 120))}: expected a string or a nested mapping of strings`
    }
    for (const [k, v] of Object.entries(node)) {
      const problem = walk(prefix === "" ? k : k === "" ? prefix : `${prefix}/${k}`, v, depth + 1)
      if (problem !== undefined) return problem
    }
    return undefined
  }
  for (const [k, v] of Object.entries(labels)) {
    const problem = walk(k, v, 0)
    if (problem !== undefined) return problem
  }
  return out
}

const Labels = Schema.Record(Schema.String, Schema.Unknown).pipe(
  Schema.decodeTo(Schema.Record(Schema.String, Schema.String), {
    decode: SchemaGetter.transformEffect((labels: { readonly [k: string]: unknown }) => {
      const flat = flattenLabels(labels)
      return typeof flat === "string" ? Effect.fail(new SchemaIssue.InvalidValue({ message: flat }, labels)) : Effect.succeed(flat)
    }),
    encode: SchemaGetter.transform((labels: { readonly [k: string]: string }) => labels)
  })
)

export const ImageRef = Schema.Struct({
  registry: Schema.optionalKey(Schema.Struct({
    name: Schema.optionalKey(Schema.String),
    url: Schema.optionalKey(Schema.String),
    username: Schema.optionalKey(Schema.NullOr(Schema.String)),
    password: Schema.optionalKey(Schema.NullOr(Schema.String))
  })),
  digest: Schema.optionalKey(Schema.NullOr(Schema.String)),
  canonical: Schema.String.check(Schema.isNonEmpty()),
  labels: Labels.pipe(Schema.withDecodingDefaultKey(Effect.succeed({})))
})

export interface Mount {
  readonly name: string
  readonly host: string
  readonly folderId: string
  readonly permission: "ro" | "rw" | "wd"
}

const Permission = Schema.Literals(["ro", "rw", "wd"])

/** One plain path component: not empty, no `/`, no NUL, not `.` or `..`. */
export const isPathComponent = (s: string): boolean => s !== "" && s !== "." && s !== ".." && !/[/\0]/.test(s)

/** `[folder_name, host, folder_id, perm]`; legacy 3-tuples mean `rw` (spec §2.2). */
const MountTuple = Schema.Union([
  Schema.Tuple([Schema.String, Schema.String, Schema.String, Permission]),
  Schema.Tuple([Schema.String, Schema.String, Schema.String])
]).pipe(
  Schema.decodeTo(
    Schema.Struct({ name: Schema.String, host: Schema.String, folderId: Schema.String, permission: Permission }),
    {
      decode: SchemaGetter.transform((t) => ({ name: t[0], host: t[1], folderId: t[2], permission: t[3] ?? "rw" })),
      encode: SchemaGetter.transform((m) => [m.name, m.host, m.folderId, m.permission] as const)
    }
  ),
  Schema.check(
    Schema.makeFilter((m: Mount) =>
      (/^[A-Za-z0-9._-]+$/.test(m.name) && m.name !== "." && m.name !== "..") || "folder names must be plain path components"
    ),
    Schema.makeFilter((m: Mount) =>
      isPathComponent(m.host) || `the vfolder host must be one plain path component, got ${JSON.stringify(m.host.slice(0, 80))}`
    ),
    Schema.makeFilter((m: Mount) =>
      isPathComponent(m.folderId) || `the folder id must be one plain path component, got ${JSON.stringify(m.folderId.slice(0, 80))}`
    )
  )
)

/**
 * Where a vfolder lives on the nodes: `<volumes/_mount>/<host>/<volumes/_fsprefix>/<folder id>`
 * (K1), or `undefined` when the joined path would not stay strictly under `volumes/_mount`
 * (`_fsprefix` comes from etcd; `host` and the folder id are single components already).
 */
export const vfolderHostPath = (mountRoot: string, fsprefix: string, m: Pick<Mount, "host" | "folderId">): string | undefined => {
  if (!mountRoot.startsWith("/") || !isPathComponent(m.host) || !isPathComponent(m.folderId)) return undefined
  const root = path.posix.resolve(mountRoot)
  const joined = path.posix.resolve(root, m.host, fsprefix.replace(/^\/+/, ""), m.folderId)
  const under = root === "/" ? joined !== "/" : joined.startsWith(`${root}/`)
  return under && path.posix.basename(joined) === m.folderId ? joined : undefined
}

/** Every mount's node path stays under `volumes/_mount`; else the message naming the first that does not. */
export const checkVfolderPaths = (
  mounts: ReadonlyArray<Mount>,
  vf: { readonly mount: string; readonly fsprefix: string }
): string | undefined => {
  for (const m of mounts) {
    if (vfolderHostPath(vf.mount, vf.fsprefix, m) === undefined) {
      return `the vfolder ${JSON.stringify(m.name)} (host ${JSON.stringify(m.host)}) would not stay under volumes/_mount ${JSON.stringify(vf.mount)}`
    }
  }
  return undefined
}

// ---------------------------------------------------------------------------------------------
// environ (spec §2.2: {str: str} from the user's session request)

/**
 * Variables the agent sets itself: the caller's values are dropped, the agent's win.
 * `LOCAL_USER_ID`/`LOCAL_GROUP_ID` come from `container.kernel-uid`/`kernel-gid` only (the entrypoint
 * creates the kernel's user with them: a caller's `0` would make the kernel root).
 */
export const isAgentSetVariable = (key: string): boolean =>
  key === "LOCAL_USER_ID" || key === "LOCAL_GROUP_ID" || key.startsWith("BACKENDAI_") || key === "LD_PRELOAD"

/**
 * Dynamic-loader variables (glibc and musl read `LD_*`; glibc also `GLIBC_TUNABLES`): the kernel's
 * entrypoint runs as root before dropping to the kernel's user, so a caller's `LD_PRELOAD`,
 * `LD_LIBRARY_PATH` or `LD_AUDIT` would run code as root; they are refused.
 */
export const isLoaderVariable = (key: string): boolean => key.startsWith("LD_") || key === "GLIBC_TUNABLES"

/** Names Kubernetes accepts for container env vars (1.20: `[-._a-zA-Z][-._a-zA-Z0-9]*`). */
const ENV_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/

const Environ = Schema.Record(Schema.String, Str).pipe(
  Schema.decodeTo(Schema.Record(Schema.String, Schema.String), {
    decode: SchemaGetter.transformEffect((env: { readonly [k: string]: string }) => {
      const problems: Array<string> = []
      const out: Record<string, string> = {}
      for (const [key, value] of Object.entries(env)) {
        const shown = JSON.stringify(key.slice(0, 80))
        if (isLoaderVariable(key)) problems.push(`${shown} is a dynamic-loader variable and cannot be set`)
        else if (value.includes("\0")) problems.push(`the value of ${shown} contains a NUL character`)
        // names Kubernetes cannot carry are dropped, as environ.txt always did (see environText)
        else if (ENV_NAME.test(key) && !isAgentSetVariable(key)) out[key] = value
      }
      return problems.length === 0
        ? Effect.succeed(out)
        : Effect.fail(new SchemaIssue.InvalidValue({ message: problems.join(", ") }, env))
    }),
    encode: SchemaGetter.transform((env: { readonly [k: string]: string }) => env)
  })
)

export const KernelConfig = Schema.Struct({
  image: ImageRef,
  resource_slots: Schema.Record(Schema.String, SlotValue),
  idle_timeout: Schema.NullOr(Int).pipe(Schema.withDecodingDefaultKey(Effect.succeed(0))),
  mounts: Schema.Array(MountTuple).pipe(Schema.withDecodingDefaultKey(Effect.succeed([]))),
  environ: Environ.pipe(Schema.withDecodingDefaultKey(Effect.succeed({})))
})
export type KernelConfig = typeof KernelConfig.Type

const formatter = SchemaIssue.makeFormatterStandardSchemaV1()

/** Decodes the manager's dict; a bad one is `InvalidKernelConfig` listing every problem. */
export const decodeKernelConfig = (kernelId: string, raw: unknown): Effect.Effect<KernelConfig, InvalidKernelConfig> =>
  Schema.decodeUnknownEffect(KernelConfig)(raw, { errors: "all" }).pipe(
    Effect.mapError((e) =>
      new InvalidKernelConfig({
        kernelId,
        message: formatter(e.issue).issues.map((i) =>
          `${(i.path ?? []).map((k) => (typeof k === "object" ? String(k.key) : String(k))).join(".") || "config"}: ${i.message}`
        ).join("; ")
      })
    ),
    Effect.flatMap((config) =>
      parseServicePorts(config.image.labels["ai.backend.service-ports"] ?? "").pipe(
        Effect.mapError((message) => new InvalidKernelConfig({ kernelId, message })),
        Effect.as(config)
      )
    )
  )

// ---------------------------------------------------------------------------------------------
// Service ports (spec §2.3)

export interface ServicePortDef {
  readonly name: string
  readonly protocol: "tcp" | "pty" | "http"
  readonly containerPort: number
}

/** `name:protocol:port,…` with protocol tcp|pty|http, port > 1024 and not 2000/2001, unique. */
export const parseServicePorts = (label: string): Effect.Effect<ReadonlyArray<ServicePortDef>, string> =>
  Effect.suspend(() => {
    const out: Array<ServicePortDef> = []
    for (const item of label.split(",").map((s) => s.trim()).filter((s) => s !== "")) {
      const m = /^([^:]+):(tcp|pty|http):(\d+)$/.exec(item)
      if (m === null) return Effect.fail(`ai.backend.service-ports: "${item}" is not name:tcp|pty|http:port`)
      const port = Number(m[3])
      if (port <= 1024 || port > 65535 || port === 2000 || port === 2001) {
        return Effect.fail(`ai.backend.service-ports: port ${port} of "${m[1]}" must be in 1025–65535 and not 2000/2001`)
      }
      if (out.some((p) => p.containerPort === port || p.name === m[1])) {
        return Effect.fail(`ai.backend.service-ports: "${item}" repeats a name or port`)
      }
      out.push({ name: m[1]!, protocol: m[2] as ServicePortDef["protocol"], containerPort: port })
    }
    return Effect.succeed(out)
  })

// ---------------------------------------------------------------------------------------------
// Texts for the ConfigMap (spec §7.4) and the result's resource_spec (spec §2.3)

/** `KEY=VALUE` lines (values with newlines are dropped: the runner reads line by line). */
export const environText = (environ: Readonly<Record<string, string>>): string =>
  Object.entries(environ)
    .filter(([k, v]) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(k) && !v.includes("\n"))
    .map(([k, v]) => `${k}=${v}\n`)
    .join("")

/** Binary size as `1g`, `512m`, `64k` or bytes (K1 `MEM_SHARES`), exact for any byte count. */
export const binarySizeText = (bytes: number | bigint): string => {
  const b = typeof bytes === "bigint" ? bytes : BigInt(Math.trunc(bytes))
  const units: ReadonlyArray<readonly [string, bigint]> = [["t", 1n << 40n], ["g", 1n << 30n], ["m", 1n << 20n], ["k", 1n << 10n]]
  for (const [u, n] of units) if (b >= n && b % n === 0n) return `${b / n}${u}`
  return String(b)
}

/** `resource.txt` in K1's `write_to_text` format. */
export const resourceText = (kernelId: string, config: KernelConfig): string => {
  const slots = config.resource_slots
  const mem = slotIntegerPart(slots["mem"] ?? "0")
  const mounts = config.mounts.map((m) => `${m.name}:${m.permission}`).join(",")
  return [
    `CID=${kernelId}`,
    "SCRATCH_SIZE=0m",
    `MOUNTS=${mounts}`,
    `SLOTS=${JSON.stringify(slots)}`,
    `IDLE_TIMEOUT=${config.idle_timeout ?? 0}`,
    `CPU_SHARES=0:${slots["cpu"] ?? "0"}`,
    `MEM_SHARES=root:${binarySizeText(mem)}`
  ].join("\n") + "\n"
}

/** The result's `resource_spec`: a JSON text of what the kernel was given. */
export const resourceSpecJson = (config: KernelConfig): string =>
  JSON.stringify({
    slots: config.resource_slots,
    mounts: config.mounts.map((m) => [m.name, m.host, m.folderId, m.permission]),
    scratch_disk_size: 0,
    idle_timeout: config.idle_timeout ?? 0
  })
