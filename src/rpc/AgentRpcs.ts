/**
 * THE contract between manager 19.06 and this agent (spec §2.1, K1 / D19): one definition per
 * RPC method with its Python parameter names, a tuple Schema for the positional arguments and a
 * Schema for the result (the shape of `contract/Contract.ts`). Independent of the framing: the
 * aiozmq wire (`aiozmq/AiozmqServer.ts`) serves it through the one server core (`contract/ServerCore.ts`).
 *
 * Argument schemas decode the msgpack-decoded positional-argument array (lenient like aiozmq's
 * annotation coercion); result schemas encode the handler's value into something the Python-
 * semantics msgpack encoder writes byte-exactly (floats as float64, bytes as bin, None as nil).
 */
import { Context, Effect, Layer, Schema, SchemaGetter } from "effect"
import { type DomainError, NotImplemented } from "../domain/Errors.ts"
import {
  CreateKernelResult,
  ExecuteResult,
  GetLogsResult,
  ListFilesResult,
  RestartKernelResult,
  StartServiceResult
} from "../domain/KernelResults.ts"
import { type AnyContractMethod, type ContractMethod, method } from "./contract/Contract.ts"
import * as Py from "../codec/PySchema.ts"

/** One RPC method (the contract shape of `contract/Contract.ts`). */
export type AgentRpc<
  Name extends string,
  Args extends Schema.Codec<ReadonlyArray<any>, unknown>,
  Success extends Schema.Codec<any, unknown>
> = ContractMethod<Name, Args, Success>

/** Any method definition, as seen by a transport. */
export type AnyAgentRpc = AnyContractMethod

const rpc = method

// Result shapes (spec §2.1, §2.3, §8.4): the kernel services' answers, defined in domain/

export {
  CreateKernelResult,
  ExecuteResult,
  GetLogsResult,
  ListFilesResult,
  RestartKernelResult,
  ServicePort,
  StartServiceResult
} from "../domain/KernelResults.ts"

// ---------------------------------------------------------------------------------------------
// Arguments needing more than a plain tuple

/**
 * A kernel id: manager 19.06 only ever sends `str(uuid.uuid4())`, the canonical lowercase form.
 * Anything else (`../x`, `""`, uppercase, a NUL…) is refused here, at the edge, before any handler
 * derives a path, an object name or a label from it: the caller gets aiozmq's `ParametersError`.
 */
const KERNEL_ID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/** A kernel id as manager 19.06 and 26.x send it: `str(uuid.uuid4())`. */
export const isKernelId = (s: string): boolean => KERNEL_ID_PATTERN.test(s)

export const KernelId = Py.Str.check(
  Schema.makeFilter((s: string) => isKernelId(s) || `kernel_id must be a UUID in canonical form (str(uuid.uuid4())), got ${JSON.stringify(s.slice(0, 80))}`)
)

/** `get_completions(kid, text, opts)`; manager 19.06 sends `(kid, mode, text, opts)` (spec §2.1). */
const GetCompletionsArgs3 = Schema.Tuple([KernelId, Py.Str, Py.Dict])
const GetCompletionsArgs = Schema.Union([
  GetCompletionsArgs3,
  Schema.Tuple([KernelId, Py.Str, Py.Str, Py.Dict]).pipe(
    Schema.decodeTo(Schema.toType(GetCompletionsArgs3), {
      decode: SchemaGetter.transform(([kid, _mode, text, opts]) => [kid, text, opts] as const),
      encode: SchemaGetter.transform(([kid, text, opts]) => [kid, "query", text, opts] as const)
    })
  )
])

// ---------------------------------------------------------------------------------------------
// The methods (spec §2.1)

export const AgentRpcs = {
  ping: rpc("ping", ["msg"], Schema.Tuple([Py.Str]), Schema.String),
  ping_kernel: rpc("ping_kernel", ["kernel_id"], Schema.Tuple([KernelId]), Py.None),
  create_kernel: rpc("create_kernel", ["kernel_id", "config"], Schema.Tuple([KernelId, Py.Dict]), CreateKernelResult),
  destroy_kernel: rpc(
    "destroy_kernel",
    ["kernel_id", "reason?"],
    Schema.Tuple([KernelId, Schema.optionalKey(Schema.NullOr(Py.Str))]),
    // K1 returns None; D19 returns the kernel's last stat dict
    Schema.Union([Py.Dict, Py.None])
  ),
  restart_kernel: rpc("restart_kernel", ["kernel_id", "new_config"], Schema.Tuple([KernelId, Py.Dict]), RestartKernelResult),
  interrupt_kernel: rpc("interrupt_kernel", ["kernel_id"], Schema.Tuple([KernelId]), Py.None),
  execute: rpc(
    "execute",
    ["api_version", "kernel_id", "run_id", "mode", "code", "opts", "flush_timeout?"],
    Schema.Tuple([
      Py.Int,
      KernelId,
      Schema.NullOr(Py.Str),
      Py.Str,
      Py.Str,
      Py.Dict,
      Schema.optionalKey(Schema.NullOr(Py.Float))
    ]),
    // None when the run was cancelled (the manager maps it to a synthetic `finished`, exit 130)
    Schema.NullOr(ExecuteResult)
  ),
  // Dict first: Py.None (Schema.Void) accepts anything and would turn the dict into None
  get_completions: rpc("get_completions", ["kernel_id", "text", "opts"], GetCompletionsArgs, Schema.Union([Py.Dict, Py.None])),
  get_logs: rpc("get_logs", ["kernel_id"], Schema.Tuple([KernelId]), GetLogsResult),
  refresh_idle: rpc("refresh_idle", ["kernel_id"], Schema.Tuple([KernelId]), Py.None),
  start_service: rpc(
    "start_service",
    ["kernel_id", "service", "opts"],
    Schema.Tuple([KernelId, Py.Str, Py.Dict]),
    StartServiceResult
  ),
  upload_file: rpc("upload_file", ["kernel_id", "filename", "filedata"], Schema.Tuple([KernelId, Py.Str, Py.Bytes]), Py.None),
  download_file: rpc("download_file", ["kernel_id", "filepath"], Schema.Tuple([KernelId, Py.Str]), Schema.NullOr(Py.Bytes)),
  list_files: rpc("list_files", ["kernel_id", "path"], Schema.Tuple([KernelId, Py.Str]), ListFilesResult),
  shutdown_agent: rpc("shutdown_agent", ["terminate_kernels"], Schema.Tuple([Py.Bool]), Py.None),
  reset_agent: rpc("reset_agent", [], Schema.Tuple([]), Py.None),
  clean_all_kernels: rpc("clean_all_kernels", ["reason"], Schema.Tuple([Schema.NullOr(Py.Str)]), Py.None)
} as const

export type AgentRpcs = typeof AgentRpcs
export type AgentRpcName = keyof AgentRpcs

/** The handler of one method: decoded positional arguments in, result or domain error out. */
export type AgentRpcHandler<R extends AnyAgentRpc> = (
  ...args: R["args"]["Type"]
) => Effect.Effect<R["success"]["Type"], DomainError>

/** A handler for every method. */
export type AgentRpcHandlerMap = { readonly [K in AgentRpcName]: AgentRpcHandler<AgentRpcs[K]> }

/** Some handlers: what one handler group (`handlers/*.ts`) provides. */
export type PartialAgentRpcHandlers = Partial<AgentRpcHandlerMap>

const notImplemented = (method: string) => () => Effect.fail(new NotImplemented({ method }))

/** Completes a partial handler record: missing methods fail with {@link NotImplemented}. */
export const completeHandlers = (...groups: ReadonlyArray<PartialAgentRpcHandlers>): AgentRpcHandlerMap => {
  const merged: PartialAgentRpcHandlers = Object.assign({}, ...groups)
  const out: Record<string, unknown> = {}
  for (const name of Object.keys(AgentRpcs)) {
    out[name] = merged[name as AgentRpcName] ?? notImplemented(name)
  }
  return out as AgentRpcHandlerMap
}

/**
 * The handlers of every method of {@link AgentRpcs}, transport-independent.
 * Build with {@link AgentRpcHandlers.layer} from handler groups (effects that may use services).
 */
export class AgentRpcHandlers extends Context.Service<AgentRpcHandlers, AgentRpcHandlerMap>()(
  "bai-agent/rpc/AgentRpcHandlers"
) {
  /**
   * Merges handler groups (later groups win); methods no group implements answer `NotImplemented`.
   *
   *   AgentRpcHandlers.layer(HealthHandlers, KernelHandlers)
   */
  static readonly layer = <const Groups extends ReadonlyArray<Effect.Effect<PartialAgentRpcHandlers, any, any>>>(
    ...groups: Groups
  ): Layer.Layer<AgentRpcHandlers, Effect.Error<Groups[number]>, Effect.Services<Groups[number]>> => {
    // one element type for Effect.all: the union of the groups' errors and requirements
    const all: ReadonlyArray<Effect.Effect<PartialAgentRpcHandlers, Effect.Error<Groups[number]>, Effect.Services<Groups[number]>>> =
      groups
    return Layer.effect(
      AgentRpcHandlers,
      Effect.map(Effect.all(all), (parts) => AgentRpcHandlers.of(completeHandlers(...parts)))
    )
  }

  /** Handlers from plain records (tests). */
  static readonly layerOf = (...groups: ReadonlyArray<PartialAgentRpcHandlers>): Layer.Layer<AgentRpcHandlers> =>
    Layer.succeed(AgentRpcHandlers, AgentRpcHandlers.of(completeHandlers(...groups)))
}
