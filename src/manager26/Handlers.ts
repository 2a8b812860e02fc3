/**
 * The RPC methods manager 25.15 / 26.x calls (contract §2), re-signed onto the shared core
 * (KernelLifecycle, KernelTable, KernelExecution, KernelFiles): the same kernels, pods and runner
 * connections as under manager 19.06, different argument lists, results and events.
 *
 * Arguments are bound like Python binds them (positional, then keywords by name); `agent_id=` is
 * accepted on every call and must be this agent's id. Wrong types are a `TypeError` FAILURE.
 */
import { Clock, Effect, Option } from "effect"
import { AgentConfig } from "../config/AgentConfig.ts"
import { KernelExecution } from "../kernel/KernelExecution.ts"
import { KernelLifecycle } from "../kernel/KernelLifecycle.ts"
import { KernelTable } from "../kernel/KernelTable.ts"
import type { CreateKernelResult } from "../domain/KernelResults.ts"
import { CallosumFailure, type CallosumMethod } from "../rpc/callosum/CallosumServer.ts"
import { completeHandlers } from "../rpc/AgentRpcs.ts"
import { bindArguments } from "../rpc/contract/Contract.ts"
import { RunnerHandlers } from "../rpc/handlers/Runner.ts"
import { ManagerConfig } from "../manager/ManagerConfig.ts"
import { formatHostPort } from "../domain/Units.ts"
import * as Bai from "../codec/bai/BaiMsgpack.ts"
import { Presence } from "./Presence.ts"
import { Sessions } from "./Sessions.ts"
import { StreamEvents, timestamp } from "./StreamEvents.ts"

const typeError = (message: string) => new CallosumFailure({ exception: "TypeError", message })

/**
 * Binds `args`/`kwargs` to `params` (a trailing `?` marks an optional one) with the contracts' one
 * binder (`rpc/contract/Contract.ts`); `agent_id` is taken out. Every required parameter must be given.
 */
export const bind = (
  method: string,
  params: ReadonlyArray<string>,
  args: ReadonlyArray<unknown>,
  kwargs: Readonly<Record<string, unknown>>
): Effect.Effect<{ readonly values: Record<string, unknown>; readonly agentId: unknown }, CallosumFailure> =>
  Effect.suspend(() => {
    const names = params.map((p) => p.replace(/\?$/, ""))
    if (args.length > names.length) {
      return Effect.fail(typeError(`${method}() takes ${names.length} positional arguments but ${args.length} were given`))
    }
    const bound = bindArguments(method, params, args, kwargs, "agent_id")
    if (typeof bound === "string") return Effect.fail(typeError(bound))
    const values: Record<string, unknown> = Object.create(null)
    bound.forEach((a, i) => {
      if (a !== undefined) values[names[i]!] = a
    })
    for (const p of params) {
      if (!p.endsWith("?") && !(p in values)) return Effect.fail(typeError(`${method}() missing required argument '${p}'`))
    }
    return Effect.succeed({ values, agentId: kwargs["agent_id"] })
  })

const str = (method: string, name: string, v: unknown): Effect.Effect<string, CallosumFailure> =>
  typeof v === "string"
    ? Effect.succeed(v)
    : v instanceof Bai.Uuid
    ? Effect.succeed(v.toString())
    : Effect.fail(typeError(`${method}: ${name} must be a str`))

const isRecord = (u: unknown): u is Record<string, unknown> =>
  u !== null && typeof u === "object" && !Array.isArray(u) && Object.getPrototypeOf(u) === Object.prototype

const dict = (method: string, name: string, v: unknown): Effect.Effect<Record<string, unknown>, CallosumFailure> =>
  isRecord(v) ? Effect.succeed(v) : v === null || v === undefined ? Effect.succeed({}) : Effect.fail(typeError(`${method}: ${name} must be a dict`))

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
      if (typeof v !== "string" && typeof v !== "number") return yield* typeError(`resource_slots.${k} must be a decimal`)
      slots[k] = String(v)
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
) => ({
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

  /** A method with named parameters; `agent_id`, when sent, must be ours. */
  const method = (
    name: string,
    params: ReadonlyArray<string>,
    body: (v: Record<string, unknown>) => Effect.Effect<unknown, unknown>
  ): readonly [string, CallosumMethod] => [
    name,
    (args, kwargs) =>
      bind(name, params, args, kwargs).pipe(
        Effect.flatMap(({ values, agentId: sent }) =>
          sent !== undefined && sent !== null && sent !== agentId
            ? Effect.fail(new CallosumFailure({ exception: "AgentIdNotFoundError", message: `agent ${String(sent)} is not served here` }))
            : body(values)
        )
      )
  ]

  const now = Clock.currentTimeMillis

  const createOne = (sessionId: string, kernelId: string, raw: unknown) =>
    Effect.gen(function*() {
      const cfg = yield* dict("create_kernels", "config", raw)
      const { config: c1906, slots } = yield* kernelConfig1906(kernelId, cfg)
      yield* sessions.record(kernelId, sessionId)
      const result = yield* lifecycle.create(kernelId, c1906)
      const info = creationInfo26(result, slots, { agentAddr, scalingGroup })
      yield* presence.touch([kernelId])
      yield* stream.publish26("kernel_started", [kernelId, sessionId, "", info])
      return info
    }).pipe(Effect.annotateLogs({ kernelId, sessionId }))

  const methods: ReadonlyArray<readonly [string, CallosumMethod]> = [
    method("ping", ["msg"], (v) => Effect.succeed(v["msg"])),

    method("check_and_pull", ["image_configs"], (v) =>
      Effect.gen(function*() {
        const configs = yield* dict("check_and_pull", "image_configs", v["image_configs"])
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
      })),

    method("create_kernels", ["raw_session_id", "raw_kernel_ids", "raw_configs", "raw_cluster_info?", "kernel_image_refs?"], (v) =>
      Effect.gen(function*() {
        const sessionId = yield* str("create_kernels", "raw_session_id", v["raw_session_id"])
        const ids = v["raw_kernel_ids"]
        const configs = v["raw_configs"]
        if (!Array.isArray(ids) || !Array.isArray(configs) || ids.length !== configs.length || ids.length === 0) {
          return yield* typeError("create_kernels: raw_kernel_ids and raw_configs must be lists of the same non-zero length")
        }
        const kernelIds = yield* Effect.forEach(ids, (id) => str("create_kernels", "raw_kernel_ids[]", id))
        return yield* Effect.forEach(kernelIds, (kid, i) => createOne(sessionId, kid, configs[i]), { concurrency: "unbounded" })
      })),

    method("destroy_kernel", ["kernel_id", "session_id?", "reason?", "suppress_events?"], (v) =>
      Effect.gen(function*() {
        const kernelId = yield* str("destroy_kernel", "kernel_id", v["kernel_id"])
        const sessionId = v["session_id"] === undefined || v["session_id"] === null ? undefined : yield* str("destroy_kernel", "session_id", v["session_id"])
        const reason = typeof v["reason"] === "string" && v["reason"] !== "" ? v["reason"] : "user-requested"
        if (sessionId !== undefined) yield* sessions.record(kernelId, sessionId)
        if (v["suppress_events"] === true) yield* sessions.suppressEvents(kernelId)
        const known = yield* registry.find(kernelId)
        const busy = yield* lifecycle.busy(kernelId)
        if (Option.isNone(known) && !busy) {
          // already gone (crashed, destroyed before): say so, so the manager can finish the session
          if (v["suppress_events"] !== true) {
            yield* stream.publish26("kernel_terminated", [kernelId, sessionId ?? kernelId, "already-terminated", null])
          }
          yield* sessions.forget(kernelId)
          return null
        }
        yield* lifecycle.destroy(kernelId, reason).pipe(
          Effect.catchTag("KernelNotFound", () =>
            v["suppress_events"] === true
              ? Effect.void
              : stream.publish26("kernel_terminated", [kernelId, sessionId ?? kernelId, "already-terminated", null])
          )
        )
        return null
      })),

    method("check_running", ["kernel_id"], (v) =>
      Effect.gen(function*() {
        const kernelId = yield* str("check_running", "kernel_id", v["kernel_id"])
        const known = yield* registry.find(kernelId)
        return Option.isSome(known) && known.value.status !== "terminating"
      })),

    method("check_creating", ["kernel_id"], (v) =>
      Effect.gen(function*() {
        const kernelId = yield* str("check_creating", "kernel_id", v["kernel_id"])
        const known = yield* registry.find(kernelId)
        return Option.isSome(known) ? known.value.status === "creating" : yield* lifecycle.busy(kernelId)
      })),

    method(
      "execute",
      ["session_id", "kernel_id", "api_version", "run_id", "mode", "code", "opts", "flush_timeout?"],
      (v) =>
        Effect.gen(function*() {
          const sessionId = yield* str("execute", "session_id", v["session_id"])
          const kernelId = yield* str("execute", "kernel_id", v["kernel_id"])
          const apiVersion = v["api_version"]
          if (typeof apiVersion !== "number" || !Number.isInteger(apiVersion)) return yield* typeError("execute: api_version must be an int")
          const runId = v["run_id"] === null || v["run_id"] === undefined ? null : yield* str("execute", "run_id", v["run_id"])
          const mode = yield* str("execute", "mode", v["mode"])
          const code = yield* str("execute", "code", v["code"])
          const opts = yield* dict("execute", "opts", v["opts"])
          const flush = v["flush_timeout"]
          if (flush !== undefined && flush !== null && typeof flush !== "number") return yield* typeError("execute: flush_timeout must be a float")
          yield* registry.touch(kernelId)
          yield* stream.publish26("execution_started", [sessionId])
          const result = yield* execution.execute({
            apiVersion: Math.min(apiVersion, 3),
            kernelId,
            runId,
            mode,
            code,
            opts,
            flushTimeout: flush ?? null
          }).pipe(Effect.ensuring(stream.publish26("execution_finished", [sessionId])))
          return { ...result, files: result.files ?? [] }
        })
    ),

    method("interrupt_kernel", ["kernel_id"], (v) =>
      Effect.gen(function*() {
        const kernelId = yield* str("interrupt_kernel", "kernel_id", v["kernel_id"])
        yield* execution.interrupt(kernelId)
        return {}
      })),

    method("get_completions", ["kernel_id", "text", "opts"], (v) =>
      Effect.gen(function*() {
        const kernelId = yield* str("get_completions", "kernel_id", v["kernel_id"])
        const text = yield* str("get_completions", "text", v["text"])
        const opts = yield* dict("get_completions", "opts", v["opts"])
        const r = yield* execution.complete(kernelId, text, opts)
        return { result: { status: r.status, error: null, suggestions: r.completions } }
      })),

    method("start_service", ["kernel_id", "service", "opts"], (v) =>
      Effect.gen(function*() {
        const kernelId = yield* str("start_service", "kernel_id", v["kernel_id"])
        const service = yield* str("start_service", "service", v["service"])
        const opts = yield* dict("start_service", "opts", v["opts"])
        return yield* shared.start_service(kernelId, service, opts)
      })),

    // the operations both contracts have: the 19.06 handler, behind this contract's argument checks
    method("get_logs", ["kernel_id"], (v) =>
      Effect.flatMap(str("get_logs", "kernel_id", v["kernel_id"]), (kernelId) => shared.get_logs(kernelId))),

    method("upload_file", ["kernel_id", "filename", "filedata"], (v) =>
      Effect.gen(function*() {
        const kernelId = yield* str("upload_file", "kernel_id", v["kernel_id"])
        const filename = yield* str("upload_file", "filename", v["filename"])
        const data = v["filedata"]
        if (!(data instanceof Uint8Array)) return yield* typeError("upload_file: filedata must be bytes")
        return yield* shared.upload_file(kernelId, filename, data)
      })),

    method("download_file", ["kernel_id", "filepath"], (v) =>
      Effect.gen(function*() {
        const kernelId = yield* str("download_file", "kernel_id", v["kernel_id"])
        const filepath = yield* str("download_file", "filepath", v["filepath"])
        return yield* shared.download_file(kernelId, filepath)
      })),

    method("list_files", ["kernel_id", "path"], (v) =>
      Effect.gen(function*() {
        const kernelId = yield* str("list_files", "kernel_id", v["kernel_id"])
        const path = yield* str("list_files", "path", v["path"])
        return yield* shared.list_files(kernelId, path)
      })),

    method("sync_kernel_registry", ["raw_kernel_session_ids"], (v) =>
      Effect.gen(function*() {
        const pairs = v["raw_kernel_session_ids"]
        if (!Array.isArray(pairs)) return yield* typeError("sync_kernel_registry: expected a list of (kernel_id, session_id)")
        for (const pair of pairs) {
          if (!Array.isArray(pair) || pair.length !== 2) continue
          const kernelId = yield* str("sync_kernel_registry", "kernel_id", pair[0])
          const sessionId = yield* str("sync_kernel_registry", "session_id", pair[1])
          const known = yield* registry.find(kernelId)
          if (Option.isNone(known) && !(yield* lifecycle.busy(kernelId))) {
            yield* stream.publish26("kernel_terminated", [kernelId, sessionId, "already-terminated", null])
          } else {
            yield* sessions.record(kernelId, sessionId)
          }
        }
        return null
      }))
  ]
  return Object.fromEntries(methods) as Record<string, CallosumMethod>
})

