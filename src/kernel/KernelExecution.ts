/**
 * Runner-backed kernel operations (spec §8.4, §8.5): `execute`, `interrupt_kernel`, `get_completions`,
 * `start_service`. Every call looks the kernel up (and refreshes its idle clock) in the
 * {@link KernelTable} and uses the runner connection the lifecycle opened
 * ({@link RunnerConnections.get}).
 *
 * `execute`:
 * - modes `query` (sends `code`), `batch` (`clean`, `build`, `exec` from `opts`, back-to-back),
 *   `input` (sends `input`), `continue` (sends nothing); `run_id` null → a fresh 32-hex id;
 * - runs are FIFO per kernel; a continuation of the current run proceeds at once;
 * - output is collected until a poll-ending record or `flush_timeout` seconds (None → until the end,
 *   capped at {@link MAX_FLUSH} so the answer beats the manager's 30 s RPC timeout; a capped poll
 *   answers `continued`);
 * - a cancelled call never touches the kernel: the run stays current and its output waits for the
 *   next `continue` (spec §11.3 item 7);
 * - API v1 results carry `stdout`/`stderr`/`media`/`html`, v2/v3 a `console` list with consecutive
 *   stdout (resp. stderr) merged and media as `["media", [mime, data]]`; raw-HTML `media` records
 *   are shown as text/html media (spec §11.3 item 15).
 *
 * `get_completions` answers `{"status": "finished", "completions": [...]}`: manager 19.06's REST
 * handler starts from `{"status": "finished", "completions": []}` and replaces it with whatever the
 * agent returns, so this shape keeps its clients working whatever the runner does. A runner that
 * does not answer within {@link COMPLETION_WAIT} (the base runner never does) gives an empty list.
 */
import * as crypto from "node:crypto"
import { Context, Duration, Effect, Layer, Option } from "effect"
import { InvalidRequest, KernelNotFound, RunnerUnavailable, type RunNotFound } from "../domain/Errors.ts"
import { AgentEvents, EventPublisher } from "../manager/EventPublisher.ts"
import type { ExecuteResult, StartServiceResult } from "../domain/KernelResults.ts"
import { KernelTable } from "./KernelTable.ts"
import { SELF_TERMINATED } from "./KernelLifecycle.ts"
import type { RunnerError } from "./runner/RunnerConnection.ts"
import { RunnerConnections } from "./runner/RunnerConnections.ts"
import type { PollResult, RunnerFrame } from "./runner/RunnerRecords.ts"

/** Longest poll: below manager 19.06's 30 s `execute` timeout with room for the round trip. */
export const MAX_FLUSH = Duration.seconds(25)
/** Completion wait: below the manager's 10 s `get_completions` timeout. */
const COMPLETION_WAIT = Duration.seconds(5)
/**
 * `start-service` wait: the 19.06 Docker agent's 30 s (agent/kernel.py `with timeout(30)`). The 19.06
 * runner answers only once the service's port opens (no deadline of its own), and its main loop is
 * blocked meanwhile.
 */
const SERVICE_WAIT = Duration.seconds(30)

export interface ExecuteRequest {
  readonly apiVersion: number
  readonly kernelId: string
  readonly runId: string | null
  readonly mode: string
  readonly code: string
  readonly opts: { readonly [key: string]: unknown }
  /** Seconds; null/undefined → wait for the end (capped). */
  readonly flushTimeout: number | null | undefined
}

export type ExecuteError = KernelNotFound | RunnerUnavailable | RunNotFound | InvalidRequest

// ---------------------------------------------------------------------------------------------
// Pure parts

/** A fresh run id: 32 lowercase hex digits (like Python's `secrets.token_hex(16)`). */
const freshRunId = Effect.sync(() => crypto.randomBytes(16).toString("hex"))

const str = (v: unknown): string => (typeof v === "string" ? v : v === undefined || v === null ? "" : String(v))

/** The frames a mode sends, and whether it may start a new run. */
export const framesOf = (
  mode: string,
  code: string,
  opts: { readonly [key: string]: unknown }
): Option.Option<{ readonly frames: ReadonlyArray<RunnerFrame>; readonly create: boolean }> => {
  switch (mode) {
    case "query":
      return Option.some({ frames: [["code", code]], create: true })
    case "batch":
      return Option.some({
        frames: [["clean", str(opts.clean)], ["build", str(opts.build)], ["exec", str(opts.exec)]],
        create: true
      })
    case "input":
      return Option.some({ frames: [["input", code]], create: false })
    case "continue":
      return Option.some({ frames: [], create: false })
    default:
      return Option.none()
  }
}

/** The poll window for a `flush_timeout` in seconds. */
export const flushWindow = (flushTimeout: number | null | undefined): Duration.Duration => {
  if (flushTimeout === null || flushTimeout === undefined || !Number.isFinite(flushTimeout)) return MAX_FLUSH
  const d = Duration.millis(Math.max(0, Math.round(flushTimeout * 1000)))
  return Duration.min(d, MAX_FLUSH)
}

/** The manager-facing result of one poll (spec §8.4). */
export const toResult = (apiVersion: number, runId: string, poll: PollResult): ExecuteResult => {
  const head = Option.match(poll.end, {
    onNone: () => ({ runId, status: "continued" as const, exitCode: null, options: null, files: [] }),
    onSome: (end) => ({ runId, status: end.status, exitCode: end.exitCode, options: end.options, files: [] })
  })
  if (apiVersion <= 1) {
    let stdout = ""
    let stderr = ""
    const media: Array<readonly [string, string]> = []
    const html: Array<string> = []
    for (const it of poll.items) {
      if (it._tag === "Stream") {
        if (it.stream === "stdout") stdout += it.text
        else stderr += it.text
      } else if (it._tag === "Media") media.push([it.mime, it.data])
      else if (it.type === "html") html.push(it.text)
    }
    return { ...head, stdout, stderr, media, html }
  }
  const console: Array<readonly [string, unknown]> = []
  for (const it of poll.items) {
    const last = console[console.length - 1]
    if (it._tag === "Stream") {
      if (last !== undefined && last[0] === it.stream) console[console.length - 1] = [it.stream, `${last[1] as string}${it.text}`]
      else console.push([it.stream, it.text])
    } else if (it._tag === "Media") console.push(["media", [it.mime, it.data]])
    else console.push([it.type, it.text])
  }
  return { ...head, console }
}

const unavailable = (e: RunnerError) => new RunnerUnavailable({ kernelId: e.kernelId, reason: e.reason, message: e.message })

// ---------------------------------------------------------------------------------------------
// The service

export class KernelExecution extends Context.Service<KernelExecution, {
  readonly execute: (request: ExecuteRequest) => Effect.Effect<ExecuteResult, ExecuteError>
  /** `interrupt` to the runner (SIGINT to the running process); returns at once. */
  readonly interrupt: (kernelId: string) => Effect.Effect<void, KernelNotFound | RunnerUnavailable>
  /** `{"status": "finished", "completions": [...]}` ([] when the runner does not answer in time). */
  readonly complete: (
    kernelId: string,
    text: string,
    opts: { readonly [key: string]: unknown }
  ) => Effect.Effect<{ readonly status: "finished"; readonly completions: ReadonlyArray<unknown> }, KernelNotFound | RunnerUnavailable>
  /** Starts one of the kernel's service ports; unknown names and timeouts are `failed` with a reason. */
  readonly startService: (
    kernelId: string,
    service: string,
    opts: { readonly [key: string]: unknown }
  ) => Effect.Effect<StartServiceResult, KernelNotFound | RunnerUnavailable>
}>()("bai-agent/kernel/KernelExecution") {
  static readonly make = Effect.gen(function*() {
    const registry = yield* KernelTable
    const connections = yield* RunnerConnections
    const events = yield* EventPublisher

    const connectionOf = (kernelId: string) =>
      registry.touch(kernelId).pipe(
        Effect.andThen(connections.get(kernelId).pipe(Effect.mapError(unavailable)))
      )

    const execute = Effect.fn("KernelExecution.execute")(function*(req: ExecuteRequest) {
      const plan = framesOf(req.mode, req.code, req.opts)
      if (Option.isNone(plan)) {
        return yield* new InvalidRequest({ method: "execute", message: `unknown mode '${req.mode}'` })
      }
      if (req.runId === null && !plan.value.create) {
        return yield* new InvalidRequest({ method: "execute", message: `mode '${req.mode}' needs a run id` })
      }
      // an unknown kernel: kernel_terminated(kid, "self-terminated") first, as the 19.06 Docker
      // agent's _execute, so that the manager releases the session; then the error
      const conn = yield* connectionOf(req.kernelId).pipe(
        Effect.tapError((e) =>
          e instanceof KernelNotFound ? events.publish(AgentEvents.kernelTerminated(req.kernelId, SELF_TERMINATED, null)) : Effect.void
        )
      )
      const runId = req.runId ?? (yield* freshRunId)
      yield* Effect.annotateCurrentSpan({ kernelId: req.kernelId, runId, mode: req.mode })
      const window = flushWindow(req.flushTimeout)
      // continue/input of a run this agent does not know (lost with an agent restart, or client
      // misuse): an empty `continued` after the flush window, as the Docker agent answers (its
      // attach_output_queue makes a fresh queue); nothing is sent to the runner
      const unknownRun = Effect.sleep(window).pipe(Effect.as(toResult(req.apiVersion, runId, { items: [], end: Option.none() })))
      const attached = yield* conn.attachRun(runId, plan.value.frames, { create: plan.value.create }).pipe(
        Effect.as(true),
        Effect.catchIf((e) => e.reason === "UnknownRun", () => Effect.succeed(false)),
        Effect.mapError(unavailable)
      )
      if (!attached) return yield* unknownRun
      const poll = yield* conn.poll(runId, window).pipe(
        Effect.map(Option.some),
        Effect.catchIf((e) => e.reason === "UnknownRun", () => Effect.succeed(Option.none<PollResult>())),
        Effect.mapError(unavailable)
      )
      if (Option.isNone(poll)) return yield* unknownRun
      return toResult(req.apiVersion, runId, poll.value)
    })

    const interrupt = Effect.fn("KernelExecution.interrupt")(function*(kernelId: string) {
      const conn = yield* connectionOf(kernelId)
      yield* conn.interrupt.pipe(Effect.mapError(unavailable))
    })

    const complete = Effect.fn("KernelExecution.complete")(function*(
      kernelId: string,
      text: string,
      opts: { readonly [key: string]: unknown }
    ) {
      const conn = yield* connectionOf(kernelId)
      const reply = yield* conn.complete(JSON.stringify({ ...opts, code: text }), COMPLETION_WAIT).pipe(
        Effect.catchTag("RunnerError", (e) =>
          e.reason === "Protocol"
            ? Effect.logWarning(`completion reply not understood: ${e.message}`).pipe(Effect.as(Option.none()))
            : Effect.fail(unavailable(e))
        )
      )
      const completions = Option.match(reply, {
        onNone: () => [],
        onSome: (v) => (Array.isArray(v) ? v : [])
      })
      return { status: "finished" as const, completions }
    })

    const startService = Effect.fn("KernelExecution.startService")(function*(
      kernelId: string,
      service: string,
      opts: { readonly [key: string]: unknown }
    ) {
      const info = yield* registry.touch(kernelId)
      const port = info.servicePorts.find((p) => p.name === service)
      if (port === undefined) return { status: "failed" as const, error: "invalid service name" }
      const conn = yield* connections.get(kernelId).pipe(Effect.mapError(unavailable))
      const payload = JSON.stringify({ name: service, port: port.container_port, protocol: port.protocol, options: opts })
      const reply = yield* conn.startService(payload, SERVICE_WAIT).pipe(
        Effect.catchTag("RunnerError", (e) =>
          e.reason === "Protocol" ? Effect.succeed(Option.some<unknown>({ status: "failed", error: e.message })) : Effect.fail(unavailable(e))
        )
      )
      if (Option.isNone(reply)) return { status: "failed" as const, error: "timeout" }
      const v = reply.value
      const obj = typeof v === "object" && v !== null ? (v as { readonly status?: unknown; readonly error?: unknown }) : {}
      const status = obj.status === "started" || obj.status === "running" || obj.status === "failed" ? obj.status : undefined
      if (status === undefined) return { status: "failed" as const, error: `unexpected runner answer: ${JSON.stringify(v)}` }
      const result: StartServiceResult = typeof obj.error === "string" ? { status, error: obj.error } : { status }
      return result
    })

    return KernelExecution.of({ execute, interrupt, complete, startService })
  })

  static readonly layer = Layer.effect(KernelExecution, KernelExecution.make)
}
