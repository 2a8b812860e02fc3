/**
 * THE contract between manager 25.15 / 26.x and this agent (contract §2.2): one definition per RPC
 * method with its Python parameter names, a tuple Schema for the positional arguments and a Schema
 * for the result (the shape of `rpc/contract/Contract.ts`, like the 19.06 `rpc/AgentRpcs.ts`). The
 * Callosum wire serves it (`CallosumHandlers.fromContract`) with {@link Manager26Handlers}, which
 * take decoded, typed positional arguments.
 *
 * Argument Schemas decode what the manager's codec (`codec/bai/BaiMsgpack.ts`) gives: a `str` is a
 * string or a {@link Uuid} ext value (→ its canonical text), a `dict` a plain record, a decimal a
 * str or a number. A refusal is a Python-like `TypeError` naming the method and the parameter
 * ({@link argumentMessage}: `execute() argument 'kernel_id' must be str, not int`).
 *
 * `agent_id=`, sent on every call by R264+, is not a parameter here: it is taken out before binding
 * and checked once for all methods (`Handlers.ts`, `withAgentId`).
 */
import { Schema, SchemaGetter, type SchemaIssue } from "effect"
import { isKernelId } from "../rpc/AgentRpcs.ts"
import { type AnyContractMethod, method } from "../rpc/contract/Contract.ts"
import {
  CreateKernelResult,
  ExecuteResult,
  GetLogsResult,
  ListFilesResult,
  StartServiceResult
} from "../domain/KernelResults.ts"
import { ImageRef, PyDecimal, PyEnum, Uuid } from "../codec/bai/BaiMsgpack.ts"

// ---------------------------------------------------------------------------------------------
// Argument Schemas: what the manager's codec gives → what the handlers take

const isRecord = (u: unknown): u is Readonly<Record<string, unknown>> =>
  u !== null && typeof u === "object" && !Array.isArray(u) && Object.getPrototypeOf(u) === Object.prototype

/** A value of Python type `expected` (the name the `TypeError` uses), checked by `is`. */
const pyType = <T>(expected: string, is: (u: unknown) => u is T) => Schema.declare(is, { expected })

/** Python `str`: a string, or a `uuid.UUID` (msgpack ext 1) as its canonical text. */
export const Str = pyType("str", (u): u is string | Uuid => typeof u === "string" || u instanceof Uuid).pipe(
  Schema.decodeTo(Schema.String, {
    decode: SchemaGetter.transform((u: string | Uuid) => (typeof u === "string" ? u : u.toString())),
    encode: SchemaGetter.transform((s: string): string | Uuid => s)
  })
)

/** `str | None` (None → null). */
export const OptStr = pyType("str or None", (u): u is string | Uuid | null => u === null || typeof u === "string" || u instanceof Uuid).pipe(
  Schema.decodeTo(Schema.NullOr(Schema.String), {
    decode: SchemaGetter.transform((u: string | Uuid | null) => (u === null || typeof u === "string" ? u : u.toString())),
    encode: SchemaGetter.transform((s: string | null): string | Uuid | null => s)
  })
)

/**
 * A kernel id: the manager sends `str(kid)` of a `uuid4` (or the UUID itself); anything else (`../x`,
 * `""`, uppercase, a NUL…) is refused here, before any handler derives a path, an object name or a
 * label from it — as the 19.06 contract's `KernelId` does.
 */
export const KernelId = Str.check(
  Schema.makeFilter((s: string) => isKernelId(s) || `must be a UUID in canonical form (str(uuid.uuid4())), not ${JSON.stringify(s.slice(0, 80))}`)
)

/** Python `dict` (a plain record; None, as the handlers always took it, is an empty one). */
export const Dict = pyType("dict", (u): u is Readonly<Record<string, unknown>> | null => u === null || isRecord(u)).pipe(
  Schema.decodeTo(Schema.Record(Schema.String, Schema.Unknown), {
    decode: SchemaGetter.transform((u: Readonly<Record<string, unknown>> | null) => u ?? {}),
    encode: SchemaGetter.transform((d: { readonly [k: string]: unknown }): Readonly<Record<string, unknown>> | null => d)
  })
)

/** Python `int` (not a float, not a bool). */
export const Int = pyType("int", (u): u is number => typeof u === "number" && Number.isInteger(u))

/** `float | None` (an int is a float too). */
export const OptFloat = pyType("float or None", (u): u is number | null => u === null || typeof u === "number")

/** `bool | None` (None → False). */
export const OptBool = pyType("bool or None", (u): u is boolean | null => u === null || typeof u === "boolean").pipe(
  Schema.decodeTo(Schema.Boolean, {
    decode: SchemaGetter.transform((u: boolean | null) => u === true),
    encode: SchemaGetter.transform((b: boolean): boolean | null => b)
  })
)

/** Python `bytes` (msgpack bin). */
export const Bytes = pyType("bytes", (u): u is Uint8Array => u instanceof Uint8Array)

/** A Python decimal as the manager sends one: a `Decimal` (ext 3), a str or a number → its text. */
export const Decimal = pyType("decimal (Decimal, str or number)", (u): u is PyDecimal | string | number =>
  u instanceof PyDecimal || typeof u === "string" || (typeof u === "number" && Number.isFinite(u))).pipe(
    Schema.decodeTo(Schema.String, {
      decode: SchemaGetter.transform((u: PyDecimal | string | number) => (typeof u === "string" ? u : u.toString())),
      encode: SchemaGetter.transform((s: string): PyDecimal | string | number => s)
    })
  )

/** A Python `list` (or tuple) of `item`. */
const List = <S extends Schema.Top>(item: S) => Schema.Array(item).annotate({ expected: "list" })

/** `create_kernels`' ids and configs: two lists of the same non-zero length. */
const CreateKernelsArgs = Schema.Tuple([
  Str,
  List(KernelId),
  List(Dict),
  Schema.optional(Schema.Unknown), // raw_cluster_info: single-kernel sessions only, not read
  Schema.optional(Schema.Unknown) // kernel_image_refs ({UUID: ImageRef}): the config's image is used
]).check(
  Schema.makeFilter(([, ids, configs]) =>
    (ids.length === configs.length && ids.length > 0) ||
    "create_kernels(): raw_kernel_ids and raw_configs must be lists of the same non-zero length"
  )
)

// ---------------------------------------------------------------------------------------------
// Result Schemas

/** A service port in the 26.x creation info. */
const ServicePort26 = Schema.Struct({
  name: Schema.String,
  protocol: Schema.String,
  container_ports: Schema.Array(Schema.Int),
  host_ports: Schema.Array(Schema.Int),
  is_inference: Schema.Boolean
})

/** The 26.x kernel creation info (`create_kernels`' items, `kernel_started`'s 4th argument). */
export const CreationInfo26 = Schema.Struct({
  // the 19.06 result's fields (in its order), with the 26.x service ports and resource spec
  ...CreateKernelResult.fields,
  service_ports: Schema.Array(ServicePort26),
  resource_spec: Schema.Struct({
    slots: Schema.Record(Schema.String, Schema.String),
    mounts: Schema.Array(Schema.Unknown),
    scratch_disk_size: Schema.Number,
    allocations: Schema.Record(Schema.String, Schema.Record(Schema.String, Schema.Record(Schema.String, Schema.String)))
  }),
  attached_devices: Schema.Record(Schema.String, Schema.Unknown),
  agent_addr: Schema.String,
  scaling_group: Schema.String
})
export type CreationInfo26 = typeof CreationInfo26.Type

// ---------------------------------------------------------------------------------------------
// The methods (contract §2.2)

export const Contract26 = {
  // `ping(msg)` echoes whatever it is given, like the Python agent (its annotation is not enforced)
  ping: method("ping", ["msg"], Schema.Tuple([Schema.Unknown]), Schema.Unknown),
  check_and_pull: method("check_and_pull", ["image_configs"], Schema.Tuple([Dict]), Schema.Record(Schema.String, Schema.String)),
  create_kernels: method(
    "create_kernels",
    ["raw_session_id", "raw_kernel_ids", "raw_configs", "raw_cluster_info?", "kernel_image_refs?"],
    CreateKernelsArgs,
    Schema.Array(CreationInfo26)
  ),
  destroy_kernel: method(
    "destroy_kernel",
    ["kernel_id", "session_id?", "reason?", "suppress_events?"],
    Schema.Tuple([KernelId, Schema.optional(OptStr), Schema.optional(OptStr), Schema.optional(OptBool)]),
    Schema.Null
  ),
  check_running: method("check_running", ["kernel_id"], Schema.Tuple([KernelId]), Schema.Boolean),
  check_creating: method("check_creating", ["kernel_id"], Schema.Tuple([KernelId]), Schema.Boolean),
  execute: method(
    "execute",
    ["session_id", "kernel_id", "api_version", "run_id", "mode", "code", "opts", "flush_timeout?"],
    Schema.Tuple([Str, KernelId, Int, OptStr, Str, Str, Dict, Schema.optional(OptFloat)]),
    ExecuteResult
  ),
  interrupt_kernel: method("interrupt_kernel", ["kernel_id"], Schema.Tuple([KernelId]), Schema.Record(Schema.String, Schema.Unknown)),
  get_completions: method(
    "get_completions",
    ["kernel_id", "text", "opts"],
    Schema.Tuple([KernelId, Str, Dict]),
    Schema.Struct({
      result: Schema.Struct({ status: Schema.String, error: Schema.Null, suggestions: Schema.Array(Schema.Unknown) })
    })
  ),
  start_service: method("start_service", ["kernel_id", "service", "opts"], Schema.Tuple([KernelId, Str, Dict]), StartServiceResult),
  get_logs: method("get_logs", ["kernel_id"], Schema.Tuple([KernelId]), GetLogsResult),
  upload_file: method("upload_file", ["kernel_id", "filename", "filedata"], Schema.Tuple([KernelId, Str, Bytes]), Schema.Null),
  download_file: method("download_file", ["kernel_id", "filepath"], Schema.Tuple([KernelId, Str]), Schema.NullOr(Schema.Uint8Array)),
  list_files: method("list_files", ["kernel_id", "path"], Schema.Tuple([KernelId, Str]), ListFilesResult),
  sync_kernel_registry: method(
    "sync_kernel_registry",
    ["raw_kernel_session_ids"],
    Schema.Tuple([List(Schema.Tuple([KernelId, Str]).annotate({ expected: "(kernel_id, session_id)" }))]),
    Schema.Null
  )
} as const satisfies Readonly<Record<string, AnyContractMethod>>

export type Contract26 = typeof Contract26

// ---------------------------------------------------------------------------------------------
// Refusals as Python tells them

/** The Python type name of a decoded manager value (for `must be str, not int`). */
export const pythonTypeName = (u: unknown): string => {
  if (u === null || u === undefined) return "NoneType"
  if (typeof u === "boolean") return "bool"
  if (typeof u === "number") return Number.isInteger(u) ? "int" : "float"
  if (typeof u === "string") return "str"
  if (typeof u === "bigint") return "int"
  if (u instanceof Uint8Array) return "bytes"
  if (Array.isArray(u)) return "list"
  if (u instanceof Uuid) return "UUID"
  if (u instanceof PyDecimal) return "Decimal"
  if (u instanceof PyEnum) return u.cls.split(".").pop() ?? "Enum"
  if (u instanceof ImageRef) return "ImageRef"
  if (isRecord(u)) return "dict"
  return u.constructor?.name ?? typeof u
}

/** The first failure of an issue tree (a Schema stops at the first one by default) and where it is. */
const firstLeaf = (
  issue: SchemaIssue.Issue,
  path: ReadonlyArray<PropertyKey>
): { readonly issue: SchemaIssue.Issue; readonly path: ReadonlyArray<PropertyKey> } => {
  switch (issue._tag) {
    case "Pointer":
      return firstLeaf(issue.issue, [...path, ...issue.path])
    case "Composite":
      return firstLeaf(issue.issues[0], path)
    case "AnyOf":
      return issue.issues.length > 0 ? firstLeaf(issue.issues[0]!, path) : { issue, path }
    case "Encoding":
      return firstLeaf(issue.issue, path)
    default:
      return { issue, path }
  }
}

const at = (value: unknown, path: ReadonlyArray<PropertyKey>): unknown => {
  let v = value
  for (const key of path) v = v !== null && typeof v === "object" ? (v as Record<PropertyKey, unknown>)[key] : undefined
  return v
}

const expectedOf = (issue: SchemaIssue.Issue): string | undefined => {
  const annotations = "ast" in issue ? issue.ast.annotations : undefined
  const expected = annotations?.["expected"]
  return typeof expected === "string" ? expected : undefined
}

/**
 * A refused argument list as Python's `TypeError` says it, naming the method and the parameter:
 * `f() takes 2 positional arguments but 3 were given`, `f() missing required argument 'x'`,
 * `f() argument 'x' must be str, not int`, `f() argument 'ids'[1] must be a UUID …`; a check on the
 * whole list says its own message.
 */
export const argumentMessage = (
  name: string,
  params: ReadonlyArray<string>,
  args: ReadonlyArray<unknown>,
  issue: SchemaIssue.Issue
): string => {
  if (args.length > params.length) return `${name}() takes ${params.length} positional arguments but ${args.length} were given`
  const leaf = firstLeaf(issue, [])
  const [index, ...inner] = leaf.path
  if (typeof index !== "number") return leaf.issue._tag === "Filter" ? describeFilter(leaf.issue) : `${name}(): invalid arguments`
  const param = (params[index] ?? `#${index}`).replace(/\?$/, "")
  if (index >= args.length || leaf.issue._tag === "MissingKey") return `${name}() missing required argument '${param}'`
  const item = (keys: ReadonlyArray<PropertyKey>) => `${name}() argument '${param}'${keys.map((k) => `[${String(k)}]`).join("")}`
  if (leaf.issue._tag === "Filter") return `${item(inner)} ${describeFilter(leaf.issue)}`
  if (leaf.issue._tag === "UnexpectedKey") return `${item(inner.slice(0, -1))} has more than ${String(inner.at(-1))} items`
  const where = item(inner)
  const expected = expectedOf(leaf.issue)
  const value = at(args, leaf.path)
  return `${where} must be ${expected ?? "something else"}, not ${pythonTypeName(value)}`
}

/** A failed filter's message: the text its predicate returned. */
const describeFilter = (issue: SchemaIssue.Filter): string => {
  const inner = issue.issue
  if (inner._tag === "InvalidValue") {
    const message = inner.annotations?.["message"]
    if (typeof message === "string") return message
  }
  return "is not valid"
}
