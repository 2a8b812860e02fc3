/**
 * The shape of a manager contract: one definition per RPC method — its Python parameter names, a
 * Schema for the positional arguments and a Schema for the result — independent of the wire. The
 * 19.06 contract is `rpc/AgentRpcs.ts`, the 25.15 / 26.x one `manager26/Contract26.ts`; a wire
 * (`rpc/aiozmq`, `rpc/callosum`) serves a contract's handlers through `ServerCore` with
 * {@link servedMethods}, adding only how the wire names an argument error.
 *
 * Argument binding is Python's (`inspect.Signature.bind`): positional arguments, then keywords by
 * name; a parameter ending in `?` may be left out. The argument Schema then decodes the positions.
 */
import { Cause, type Effect, Exit, Option, Result, Schema, type SchemaIssue } from "effect"
import type { PythonError } from "../../domain/Errors.ts"
import { trackRpc } from "../../observability/Metrics.ts"
import type { ServedMethod } from "./ServerCore.ts"

/** One RPC method of a contract. */
export interface ContractMethod<
  Name extends string,
  Args extends Schema.Codec<ReadonlyArray<any>, unknown>,
  Success extends Schema.Codec<any, unknown>
> {
  readonly name: Name
  /** Python parameter names, in order; a trailing `?` marks one that may be left out. */
  readonly params: ReadonlyArray<string>
  /** Positional arguments, decoded from the bound argument array. */
  readonly args: Args
  /** The result, encoded before the wire's codec. */
  readonly success: Success
}

/** Any method definition, as seen by a transport. */
export type AnyContractMethod = ContractMethod<string, Schema.Codec<ReadonlyArray<any>, unknown>, Schema.Codec<any, unknown>>

/** Defines a method: `method("ping", ["msg"], Schema.Tuple([Py.Str]), Schema.String)`. */
export const method = <
  const Name extends string,
  Args extends Schema.Codec<ReadonlyArray<any>, unknown>,
  Success extends Schema.Codec<any, unknown>
>(name: Name, params: ReadonlyArray<string>, args: Args, success: Success): ContractMethod<Name, Args, Success> => ({
  name,
  params,
  args,
  success
})

/** The handler of one method: decoded positional arguments in, result or failure out. */
export type ContractHandler<M extends AnyContractMethod, E> = (...args: M["args"]["Type"]) => Effect.Effect<M["success"]["Type"], E>

const isMapping = (u: unknown): u is Readonly<Record<string, unknown>> =>
  u !== null && typeof u === "object" && !Array.isArray(u) && !(u instanceof Uint8Array)

/**
 * Binds positional and keyword arguments to `params` like `inspect.Signature.bind`: the positions of
 * the call (a left-out optional parameter before a given one is `undefined`; trailing left-out ones
 * are absent), or Python's `TypeError` text. The keyword `ignore` is taken out before binding. A
 * call without keywords is returned as it is: its arity is the argument Schema's to check.
 */
export const bindArguments = (
  name: string,
  params: ReadonlyArray<string>,
  args: unknown,
  kwargs: unknown,
  ignore?: string
): ReadonlyArray<unknown> | string => {
  if (!Array.isArray(args)) return "arguments are not a sequence"
  if (!isMapping(kwargs)) return "keyword arguments are not a mapping"
  let keywords = 0
  for (const key in kwargs) if (key !== ignore) keywords++
  // positional only: how many there may be is the argument Schema's to say (19.06 get_completions
  // takes an extra leading `mode` its Python signature does not name)
  if (keywords === 0) return args
  if (args.length > params.length) return `${name}() takes ${params.length} positional arguments but ${args.length} were given`
  const out: Array<unknown> = [...args]
  for (const key in kwargs) {
    if (key === ignore) continue
    const index = params.findIndex((p) => p === key || p === `${key}?`)
    if (index < 0) return `${name}() got an unexpected keyword argument '${key}'`
    if (index < args.length) return `${name}() got multiple values for argument '${key}'`
  }
  let bound = args.length
  for (let i = args.length; i < params.length; i++) {
    const param = params[i]!
    const optional = param.endsWith("?")
    const key = optional ? param.slice(0, -1) : param
    if (keywords > 0 && Object.prototype.hasOwnProperty.call(kwargs, key) && key !== ignore) {
      out.push(kwargs[key])
      keywords--
      bound = out.length
    } else if (optional) out.push(undefined)
    else return `${name}() missing required argument '${key}'`
  }
  out.length = bound // trailing left-out optional parameters are absent, not undefined
  return out
}

/**
 * How a contract tells a refused argument list: the method, its parameters, the bound positional
 * arguments and the argument Schema's issue → the error text. Default: the `SchemaError`'s message.
 */
export type DescribeRefusal = (
  name: string,
  params: ReadonlyArray<string>,
  args: ReadonlyArray<unknown>,
  issue: SchemaIssue.Issue
) => string

/** What an argument Schema's refusal says (`describe`, else its `SchemaError` message; a defect while decoding, squashed). */
const schemaMessage = (
  cause: Cause.Cause<Schema.SchemaError>,
  describe: ((issue: SchemaIssue.Issue) => string) | undefined
): string => {
  const error = Cause.findErrorOption(cause)
  return Option.isSome(error) ? (describe === undefined ? error.value.message : describe(error.value.issue)) : String(Cause.squash(cause))
}

/**
 * The methods of `contract` with their `handlers`, ready for `ServerCore`: arguments bound and
 * decoded by the method's Schemas (a refusal becomes `argumentError(message)`: aiozmq's
 * `ParametersError`, Callosum's `TypeError`; `describeRefusal` words the message), results encoded
 * by its result Schema. `ignoreKeyword` is taken out of the keywords before binding (the 26.x
 * `agent_id=`, which the caller checks around the served methods).
 */
export const servedMethods = (
  contract: Readonly<Record<string, AnyContractMethod>>,
  handlers: Readonly<Record<string, (...args: ReadonlyArray<any>) => Effect.Effect<unknown, unknown>>>,
  argumentError: (message: string) => PythonError,
  options?: { readonly ignoreKeyword?: string; readonly describeRefusal?: DescribeRefusal }
): ReadonlyMap<string, ServedMethod> => {
  const describeRefusal = options?.describeRefusal
  const out = new Map<string, ServedMethod>()
  for (const [name, m] of Object.entries(contract)) {
    const handler = handlers[name]
    if (handler === undefined) continue
    const decode = Schema.decodeUnknownExit(m.args)
    const encodeSuccess = Schema.encodeExit(m.success)
    out.set(name, {
      name,
      decodeArgs: (args, kwargs) => {
        const bound = bindArguments(name, m.params, args, kwargs, options?.ignoreKeyword)
        if (typeof bound === "string") return Result.fail(argumentError(bound))
        const exit = decode(bound)
        if (Exit.isSuccess(exit)) return Result.succeed(exit.value)
        const describe = describeRefusal === undefined ? undefined : (issue: SchemaIssue.Issue) => describeRefusal(name, m.params, bound, issue)
        return Result.fail(argumentError(schemaMessage(exit.cause, describe)))
      },
      handler,
      encodeSuccess,
      track: trackRpc(name)
    })
  }
  return out
}
