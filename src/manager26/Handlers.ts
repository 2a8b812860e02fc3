/**
 * The handlers of the RPC methods manager 25.15 / 26.x calls ({@link Contract26}, contract §2),
 * re-signed onto the shared core (KernelLifecycle, KernelTable, KernelExecution, KernelFiles): the
 * same kernels, pods and runner connections as under manager 19.06, different argument lists,
 * results and events.
 *
 * The handlers take decoded, typed positional arguments: binding (positional, then keywords by name)
 * and the argument types are the contract's, a refusal a `TypeError` FAILURE. `agent_id=`, accepted
 * on every call, must be this agent's id: one check around all methods ({@link withAgentId}).
 */
import { Clock, Effect, Option, Result, Schema } from "effect"
import { AgentConfig } from "../config/AgentConfig.ts"
import { KernelExecution } from "../kernel/KernelExecution.ts"
import { KernelLifecycle } from "../kernel/KernelLifecycle.ts"
import { KernelTable } from "../kernel/KernelTable.ts"
import type { CreateKernelResult } from "../domain/KernelResults.ts"
import { CallosumFailure, CallosumHandlers } from "../rpc/callosum/CallosumServer.ts"
import { completeHandlers } from "../rpc/AgentRpcs.ts"
import type { ContractHandler } from "../rpc/contract/Contract.ts"
import type { ServedMethod } from "../rpc/contract/ServerCore.ts"
import { RunnerHandlers } from "../rpc/handlers/Runner.ts"
import { ManagerConfig } from "../manager/ManagerConfig.ts"
import { formatHostPort } from "../domain/Units.ts"
import * as Bai from "../codec/bai/BaiMsgpack.ts"
import { argumentMessage, Contract26, type CreationInfo26, Decimal } from "./Contract26.ts"
import { Presence } from "./Presence.ts"
import { Sessions } from "./Sessions.ts"
import { StreamEvents, timestamp } from "./StreamEvents.ts"

const typeError = (message: string) => new CallosumFailure({ exception: "TypeError", message })

const isRecord = (u: unknown): u is Record<string, unknown> =>
  u !== null && typeof u === "object" && !Array.isArray(u) && Object.getPrototypeOf(u) === Object.prototype

const dict = (method: string, name: string, v: unknown): Effect.Effect<Record<string, unknown>, CallosumFailure> =>
  isRecord(v) ? Effect.succeed(v) : v === null || v === undefined ? Effect.succeed({}) : Effect.fail(typeError(`${method}: ${name} must be a dict`))

/** A resource slot amount: the contract's `Decimal` (a Decimal, a str or a finite number → its text). */
const decimal = Schema.decodeUnknownOption(Decimal)

/** `resource_spec` of the creation info: what the kernel was given, incl. `allocations` (occupied slots). */
const resourceSpec26 = (slots: Readonly<Record<string, string>>) => ({
  slots,
  mounts: [],
  scratch_disk_size: 0,
  // {device: {slot: {device id: amount}}} as the Python agent's allocation maps report them
  allocations: Object.fromEntries(
    Object.entries(slots).map(([slot, amount]) => [slot.split(".")[0]!, { [slot]: { [slot === "mem" ? "root" : "0"]: amount } }])
  )
})

/** The 26.x KernelCreationConfig (contract §2.3) → the 19.06 config dict the shared lifecycle takes. */
export const kernelConfig1906 = (kernelId: string, raw: Record<string, unknown>): Effect.Effect<{
  readonly config: Record<string, unknown>
  readonly slots: Record<string, string>
}, CallosumFailure> =>
  Effect.gen(function*() {
    const cfg = Bai.plain(raw) as Record<string, unknown>
    const image = yield* dict("create_kernels", "config.image", cfg["image"])
    const canonical = image["canonical"]
    if (typeof canonical !== "string" || canonical === "") return yield* typeError(`kernel ${kernelId}: config.image.canonical must be a str`)
    const mounts = cfg["mounts"]
    if (Array.isArray(mounts) && mounts.length > 0) {
      return yield* new CallosumFailure({
        exception: "NotImplementedError",
        message: "vfolder mounts are not supported under manager 26 yet (docs/manager-26.md)"
      })
    }
    const rawSlots = yield* dict("create_kernels", "config.resource_slots", cfg["resource_slots"])
    const slots: Record<string, string> = {}
    for (const [k, v] of Object.entries(rawSlots)) {
      const amount = decimal(v)
      if (Option.isNone(amount)) return yield* typeError(`resource_slots.${k} must be a decimal`)
      slots[k] = amount.value
    }
    const environ = yield* dict("create_kernels", "config.environ", cfg["environ"])
    const labels = yield* dict("create_kernels", "config.image.labels", image["labels"])
    const registry = isRecord(image["registry"]) ? image["registry"] : {}
    const strOrNull = (v: unknown) => (typeof v === "string" ? v : null)
    const config = {
      image: {
        canonical,
        digest: strOrNull(image["digest"]),
        registry: {
          ...(typeof registry["name"] === "string" ? { name: registry["name"] } : {}),
          ...(typeof registry["url"] === "string" ? { url: registry["url"] } : {}),
          username: strOrNull(registry["username"]),
          password: strOrNull(registry["password"])
        },
        labels: Object.fromEntries(Object.entries(labels).filter(([, v]) => typeof v === "string"))
      },
      resource_slots: slots,
      idle_timeout: typeof cfg["idle_timeout"] === "number" ? cfg["idle_timeout"] : 0,
      mounts: [],
      environ: Object.fromEntries(Object.entries(environ).filter(([, v]) => typeof v === "string" || typeof v === "number"))
    }
    return { config, slots }
  })

/** The 19.06 `create_kernel` result → the 26.x creation info (`kernel_started`'s 4th argument). */
export const creationInfo26 = (
  result: CreateKernelResult,
  slots: Record<string, string>,
  extra: { readonly agentAddr: string; readonly scalingGroup: string }
): CreationInfo26 => ({
  id: result.id,
  kernel_host: result.kernel_host,
  repl_in_port: result.repl_in_port,
  repl_out_port: result.repl_out_port,
  stdin_port: result.stdin_port,
  stdout_port: result.stdout_port,
  service_ports: result.service_ports.map((p) => ({
    name: p.name,
    protocol: p.protocol,
    container_ports: [p.container_port],
    host_ports: [p.host_port],
    is_inference: false
  })),
  container_id: result.container_id,
  resource_spec: resourceSpec26(slots),
  attached_devices: {},
  agent_addr: extra.agentAddr,
  scaling_group: extra.scalingGroup
})

const VALID_IMAGE = /^[a-z0-9]([a-z0-9._\-/:@]*[a-zA-Z0-9_.\-])?$/i

/** A handler for every method of {@link Contract26}. */
export type Manager26HandlerMap = { readonly [K in keyof Contract26]: ContractHandler<Contract26[K], unknown> }

export const Manager26Handlers = Effect.gen(function*() {
  const { agentId, config } = yield* AgentConfig
  const manager = yield* ManagerConfig
  const lifecycle = yield* KernelLifecycle
  const registry = yield* KernelTable
  const execution = yield* KernelExecution
  const sessions = yield* Sessions
  const stream = yield* StreamEvents
  const presence = yield* Presence
  const shared = completeHandlers(yield* RunnerHandlers)
  const agentAddr = `tcp://${formatHostPort(manager.rpcAddr)}`
  const scalingGroup = config.agent["scaling-group"]

  const now = Clock.currentTimeMillis

  const createOne = (sessionId: string, kernelId: string, cfg: Readonly<Record<string, unknown>>) =>
    Effect.gen(function*() {
      const { config: c1906, slots } = yield* kernelConfig1906(kernelId, cfg)
      yield* sessions.record(kernelId, sessionId)
      const result = yield* lifecycle.create(kernelId, c1906)
      const info = creationInfo26(result, slots, { agentAddr, scalingGroup })
      yield* presence.touch([kernelId])
      yield* stream.publish26("kernel_started", [kernelId, sessionId, "", info])
      return info
    }).pipe(Effect.annotateLogs({ kernelId, sessionId }))

  const handlers: Manager26HandlerMap = {
    ping: (msg) => Effect.succeed(msg),

    check_and_pull: (configs) =>
      Effect.gen(function*() {
        const out: Record<string, string> = {}
        for (const canonical of Object.keys(configs)) {
          out[canonical] = crypto.randomUUID().replace(/-/g, "")
          // The kubelet pulls the image when the kernel's pod starts (with the registry credentials
          // of create_kernels); there is nothing to pull ahead here, and the manager waits for this
          // event (again on every call) to move the kernels to PREPARED.
          if (VALID_IMAGE.test(canonical) && canonical.length <= 512) {
            yield* stream.publish26("image_pull_finished", [canonical, agentId, timestamp(yield* now), "pulled by the kubelet when the kernel starts"])
          } else {
            yield* stream.publish26("image_pull_failed", [canonical, agentId, "not a valid image reference"])
          }
        }
        return out
      }),

    create_kernels: (sessionId, kernelIds, configs) =>
      Effect.forEach(kernelIds, (kid, i) => createOne(sessionId, kid, configs[i]!), { concurrency: "unbounded" }),

    destroy_kernel: (kernelId, session, reasonArg, suppressEvents = false) =>
      Effect.gen(function*() {
        const sessionId = session ?? undefined
        const reason = typeof reasonArg === "string" && reasonArg !== "" ? reasonArg : "user-requested"
        if (sessionId !== undefined) yield* sessions.record(kernelId, sessionId)
        if (suppressEvents) yield* sessions.suppressEvents(kernelId)
        const alreadyTerminated = suppressEvents
          ? Effect.void
          : stream.publish26("kernel_terminated", [kernelId, sessionId ?? kernelId, "already-terminated", null])
        const known = yield* registry.find(kernelId)
        const busy = yield* lifecycle.busy(kernelId)
        if (Option.isNone(known) && !busy) {
          // already gone (crashed, destroyed before): say so, so the manager can finish the session
          yield* alreadyTerminated
          yield* sessions.forget(kernelId)
          return null
        }
        yield* lifecycle.destroy(kernelId, reason).pipe(Effect.catchTag("KernelNotFound", () => alreadyTerminated))
        return null
      }),

    check_running: (kernelId) =>
      Effect.map(registry.find(kernelId), (known) => Option.isSome(known) && known.value.status !== "terminating"),

    check_creating: (kernelId) =>
      Effect.flatMap(registry.find(kernelId), (known) =>
        Option.isSome(known) ? Effect.succeed(known.value.status === "creating") : lifecycle.busy(kernelId)),

    execute: (sessionId, kernelId, apiVersion, runId, mode, code, opts, flushTimeout) =>
      Effect.gen(function*() {
        yield* registry.touch(kernelId)
        yield* stream.publish26("execution_started", [sessionId])
        const result = yield* execution.execute({
          apiVersion: Math.min(apiVersion, 3),
          kernelId,
          runId,
          mode,
          code,
          opts,
          flushTimeout: flushTimeout ?? null
        }).pipe(Effect.ensuring(stream.publish26("execution_finished", [sessionId])))
        return { ...result, files: result.files ?? [] }
      }),

    interrupt_kernel: (kernelId) => Effect.as(execution.interrupt(kernelId), {}),

    get_completions: (kernelId, text, opts) =>
      Effect.map(execution.complete(kernelId, text, opts), (r) => ({
        result: { status: r.status, error: null, suggestions: r.completions }
      })),

    // the operations both contracts have: the 19.06 handler, behind this contract's argument Schemas
    start_service: (kernelId, service, opts) => shared.start_service(kernelId, service, opts),
    get_logs: (kernelId) => shared.get_logs(kernelId),
    upload_file: (kernelId, filename, filedata) => Effect.as(shared.upload_file(kernelId, filename, filedata), null),
    download_file: (kernelId, filepath) => shared.download_file(kernelId, filepath),
    list_files: (kernelId, path) => shared.list_files(kernelId, path),

    sync_kernel_registry: (pairs) =>
      Effect.gen(function*() {
        for (const [kernelId, sessionId] of pairs) {
          const known = yield* registry.find(kernelId)
          if (Option.isNone(known) && !(yield* lifecycle.busy(kernelId))) {
            yield* stream.publish26("kernel_terminated", [kernelId, sessionId, "already-terminated", null])
          } else {
            yield* sessions.record(kernelId, sessionId)
          }
        }
        return null
      })
  }
  return handlers
})

/**
 * The one `agent_id=` check of the 26.x contract, around every served method: when sent (R264+),
 * it must be this agent's id, else `AgentIdNotFoundError` (as the Python agent's
 * `runtime.get_agent(agent_id)` raises it), after the arguments were bound like Python binds them.
 */
export const withAgentId = (agentId: string, methods: ReadonlyMap<string, ServedMethod>): ReadonlyMap<string, ServedMethod> =>
  new Map(
    [...methods].map(([name, served]) => [name, {
      ...served,
      decodeArgs: (args: unknown, kwargs: unknown) =>
        Result.flatMap(served.decodeArgs(args, kwargs), (decoded) => {
          const sent = isRecord(kwargs) ? kwargs["agent_id"] : undefined
          return sent === undefined || sent === null || sent === agentId
            ? Result.succeed(decoded)
            : Result.fail({ name: "AgentIdNotFoundError", args: [`agent ${String(sent)} is not served here`] })
        })
    }])
  )

/** The 26.x methods as the Callosum server serves them: {@link Contract26} with {@link Manager26Handlers}. */
export const Manager26Methods = Effect.gen(function*() {
  const { agentId } = yield* AgentConfig
  const handlers = yield* Manager26Handlers
  return withAgentId(
    agentId,
    CallosumHandlers.fromContract(Contract26, handlers, { ignoreKeyword: "agent_id", describeRefusal: argumentMessage })
  )
})
