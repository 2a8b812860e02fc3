/**
 * The agent side of the kernel-runner protocol (spec §8.1–§8.3): one connection per kernel, a PUSH
 * socket to the runner's REPL-in port and a PULL socket from its REPL-out port, every message two
 * frames `[type, payload]`.
 *
 * Per connection: one writer fiber (zeromq.js allows one `send` at a time), one reader fiber that
 * decodes and routes records, and a 10 s `status` keep-alive (K2+ behaviour, keeps NAT/conntrack
 * entries alive). The reader decodes stdout/stderr with incremental UTF-8 decoders (multi-byte
 * sequences split across records survive), caps records at 10 MiB, and routes:
 *
 * - output records (stdout, stderr, media, html, log, …) and poll-ending records (waiting-input,
 *   clean-finished, build-finished, finished) to the *current run*'s buffer (dropped when no run is
 *   current, as K1 does);
 * - `completion`, `service-result` and `status` to their own waiters (a reply nobody waits for is
 *   dropped; a reply is copied out of its frame).
 *
 * The kernel is an adversary (issue 13): the PULL socket refuses messages over
 * {@link MESSAGE_MAX_BYTES} (ZeroMQ disconnects the peer, which reconnects) and queues at most
 * {@link RECEIVE_HWM} messages, and every run of a kernel draws on one budget of
 * {@link KERNEL_MAX_BUFFERED_BYTES} for buffered output: a kernel flooding output or unsolicited
 * replies costs a bounded amount of memory (what does not fit is dropped and reported in the run's
 * output).
 *
 * Runs (spec §8.4): a run is attached with {@link RunnerConnection.attachRun}; runs are FIFO per
 * kernel, a second run waits until the current run's `finished` record arrives; attaching the current
 * run again (continue/input) proceeds at once. The frames that start a run are sent in the same step
 * that makes it current, so a caller cancelled while waiting never leaves a run current without its
 * code, and a caller cancelled after that leaves the run current with its output buffered for the next
 * `continue` (spec §11.3 item 7: cancellation never tears the kernel down). Output waits in the run's
 * buffer until {@link RunnerConnection.poll} takes it; a poll is cancel-safe (records leave the buffer
 * in one synchronous step, after the wait).
 *
 *   const conns = yield* RunnerConnections
 *   const conn = yield* conns.open(kid, { host, replInPort, replOutPort })
 *   const { startedAt } = yield* conn.status("5 seconds")
 */
import { Context, Deferred, Duration, Effect, Exit, Layer, Option, Queue, Schedule, Schema, Scope, Semaphore, SynchronizedRef } from "effect"
import * as Zmq from "zeromq"
import { monotonicMillis } from "../domain/MonotonicClock.ts"
import * as Msgpack from "../rpc/msgpack/Msgpack.ts"

// ---------------------------------------------------------------------------------------------
// Public types

export class RunnerError extends Schema.TaggedError<RunnerError>()("RunnerError", {
  reason: Schema.Literals(["Timeout", "Closed", "Protocol", "UnknownRun"]),
  kernelId: Schema.String,
  message: Schema.String
}) {}

export interface RunnerEndpoint {
  readonly host: string
  readonly replInPort: number
  readonly replOutPort: number
}

/** Statuses that end a poll (spec §8.4). */
export type EndStatus = "waiting-input" | "clean-finished" | "build-finished" | "finished" | "exec-timeout"

/** A decoded runner record, as buffered in a run. */
export type OutputItem =
  | { readonly _tag: "Stream"; readonly stream: "stdout" | "stderr"; readonly text: string }
  | { readonly _tag: "Media"; readonly mime: string; readonly data: string }
  | { readonly _tag: "Other"; readonly type: string; readonly text: string }
  | {
    readonly _tag: "End"
    readonly status: EndStatus
    readonly exitCode: number | null
    readonly options: { readonly [key: string]: unknown } | null
  }

export type EndItem = Extract<OutputItem, { readonly _tag: "End" }>

/** What one poll of a run collected: output in arrival order, and the record that ended the poll. */
export interface PollResult {
  readonly items: ReadonlyArray<Exclude<OutputItem, EndItem>>
  /** None: the flush window elapsed (status `continued`). */
  readonly end: Option.Option<EndItem>
}

/** A frame pair to send. */
export type RunnerFrame = readonly [type: string, payload: string | Uint8Array]

export interface RunnerConnection {
  readonly kernelId: string
  readonly endpoint: RunnerEndpoint
  /** send `status`, wait for the `status` reply (msgpack {started_at}) up to `timeout` */
  readonly status: (timeout: Duration.Input) => Effect.Effect<{ readonly startedAt: number }, RunnerError>
  /** Queue one message for the writer fiber. */
  readonly send: (type: string, payload?: string | Uint8Array) => Effect.Effect<void, RunnerError>
  /** `interrupt` (SIGINT to the running process); no reply. */
  readonly interrupt: Effect.Effect<void, RunnerError>
  /**
   * Makes `runId` the current run (FIFO behind the current one) and sends `frames` in the same step.
   * If `runId` is the current run (or a finished run whose output was not collected yet) the frames
   * are sent at once. With `create: false` an unknown run fails with reason `UnknownRun`.
   */
  readonly attachRun: (
    runId: string,
    frames: ReadonlyArray<RunnerFrame>,
    options: { readonly create: boolean }
  ) => Effect.Effect<void, RunnerError>
  /**
   * Collects the run's output until a poll-ending record or until `flushTimeout` elapses (None waits
   * for the end). Records stay buffered when the poll is interrupted. A consumed `finished` forgets
   * the run.
   */
  readonly poll: (runId: string, flushTimeout: Duration.Input) => Effect.Effect<PollResult, RunnerError>
  /** The current run, if any. */
  readonly currentRun: Effect.Effect<Option.Option<string>>
  /** Runs waiting behind the current one. */
  readonly pendingRuns: Effect.Effect<number>
  /**
   * Sends `complete` with `payload` (JSON text) and waits up to `timeout` for the `completion` reply
   * (one request at a time). None on timeout (the base runner never answers).
   */
  readonly complete: (payload: string, timeout: Duration.Input) => Effect.Effect<Option.Option<unknown>, RunnerError>
  /** Sends `start-service` with `payload` (JSON text) and waits up to `timeout` for `service-result`. */
  readonly startService: (payload: string, timeout: Duration.Input) => Effect.Effect<Option.Option<unknown>, RunnerError>
  /** Output bytes buffered for this kernel, all runs together (at most {@link KERNEL_MAX_BUFFERED_BYTES}). */
  readonly bufferedBytes: Effect.Effect<number>
}

/** Limits (spec §12: 10 MiB per record, 4096 records per run). */
export const RECORD_MAX_BYTES = 10 * 1024 * 1024
export const RUN_MAX_ITEMS = 4096
/** Bytes of output a run buffers before dropping (the run queue's 4096 × 10 MiB would be 40 GiB). */
export const RUN_MAX_BYTES = 64 * 1024 * 1024
/** Buffered output of all of a kernel's runs together (uncollected finished runs included). */
export const KERNEL_MAX_BUFFERED_BYTES = 64 * 1024 * 1024
/** ZeroMQ `maxMessageSize` on the PULL socket: one record and some framing. */
export const MESSAGE_MAX_BYTES = RECORD_MAX_BYTES + 64 * 1024
/** How long after a REPL-out disconnect ZeroMQ may take to connect again before the agent reconnects by hand. */
const RECONNECT_CHECK = Duration.seconds(2)
/** ZeroMQ receive high-water mark (messages) on the PULL socket. */
export const RECEIVE_HWM = 16
/** Finished runs whose output was not collected, kept per kernel. */
const MAX_UNCOLLECTED_RUNS = 32
const KEEPALIVE = Duration.seconds(10)

// ---------------------------------------------------------------------------------------------
// Record decoding (pure)

const END_TYPES: ReadonlySet<string> = new Set(["waiting-input", "clean-finished", "build-finished", "finished", "exec-timeout"])

/** Cuts `data` to at most `max` bytes without splitting a UTF-8 sequence. */
export const truncateUtf8 = (data: Uint8Array, max: number): Uint8Array => {
  if (data.length <= max) return data
  let end = max
  // back off over continuation bytes (10xxxxxx) to the start of the sequence that does not fit
  while (end > 0 && end > max - 4 && (data[end]! & 0xc0) === 0x80) end--
  return data.subarray(0, end)
}

const parseJson = (text: string): Option.Option<unknown> => {
  try {
    return Option.some(JSON.parse(text) as unknown)
  } catch {
    return Option.none()
  }
}

const isRecord = (u: unknown): u is { readonly [key: string]: unknown } => typeof u === "object" && u !== null && !Array.isArray(u)

/** A `media` payload: JSON `{type, data}`; anything else (raw HTML, spec §11.3 item 15) is text/html. */
export const decodeMedia = (text: string): { readonly mime: string; readonly data: string } => {
  const parsed = parseJson(text)
  if (Option.isSome(parsed) && isRecord(parsed.value) && typeof parsed.value.type === "string") {
    const data = parsed.value.data
    return { mime: parsed.value.type, data: typeof data === "string" ? data : JSON.stringify(data ?? null) }
  }
  return { mime: "text/html", data: text }
}

/** A poll-ending record's payload: `{"exitCode": n}` / `{"is_password": bool}` / empty. */
export const decodeEnd = (status: EndStatus, text: string): EndItem => {
  const parsed = parseJson(text)
  const obj = Option.isSome(parsed) && isRecord(parsed.value) ? parsed.value : {}
  if (status === "waiting-input") {
    return { _tag: "End", status, exitCode: null, options: { is_password: obj.is_password === true } }
  }
  const code = obj.exitCode
  return {
    _tag: "End",
    status,
    exitCode: typeof code === "number" && Number.isInteger(code) ? code : null,
    options: null
  }
}

const statusStartedAt = (data: Uint8Array): Option.Option<number> => {
  try {
    const v = Msgpack.decode(data)
    if (isRecord(v)) {
      const s = v.started_at
      if (typeof s === "number") return Option.some(s)
      if (s instanceof Msgpack.PyFloat) return Option.some(s.value)
      if (typeof s === "bigint") return Option.some(Number(s))
    }
    return Option.none()
  } catch {
    return Option.none()
  }
}

/** An item's weight against {@link RUN_MAX_BYTES} (UTF-16 units; a bound, not an exact byte count). */
const itemSize = (it: OutputItem): number =>
  it._tag === "Stream" || it._tag === "Other" ? it.text.length : it._tag === "Media" ? it.data.length : 0

const tcp = (host: string, port: number): string => `tcp://${host.includes(":") ? `[${host}]` : host}:${port}`

// ---------------------------------------------------------------------------------------------
// One connection

interface RunState {
  readonly runId: string
  readonly lock: Semaphore.Semaphore
  items: Array<OutputItem>
  bytes: number
  dropped: number
  ended: boolean
  wake: Deferred.Deferred<void> | undefined
}

interface Waiter {
  readonly runId: string
  readonly frames: ReadonlyArray<RunnerFrame>
  readonly deferred: Deferred.Deferred<void, RunnerError>
}

/** Opens a connection whose sockets and fibers live in the enclosing scope. */
export const makeConnection = Effect.fnUntraced(function*(kernelId: string, endpoint: RunnerEndpoint) {
  const err = (reason: RunnerError["reason"], message: string) => new RunnerError({ reason, kernelId, message })
  const log = Effect.annotateLogs({ kernelId })

  let closed = false
  let current: RunState | undefined
  const runs = new Map<string, RunState>()
  const uncollected: Array<string> = []
  const waiters: Array<Waiter> = []
  const statusWaiters = new Set<Deferred.Deferred<{ readonly startedAt: number }, RunnerError>>()
  const decoders = { stdout: new TextDecoder("utf-8"), stderr: new TextDecoder("utf-8") }
  /** Bytes buffered in all runs (one budget per kernel). */
  let buffered = 0
  /** The request waiting for a `completion` / `service-result` reply, if any (one at a time each). */
  const replyWaiters: { completion: Deferred.Deferred<Uint8Array> | undefined; "service-result": Deferred.Deferred<Uint8Array> | undefined } = {
    completion: undefined,
    "service-result": undefined
  }

  const push = yield* Effect.acquireRelease(
    Effect.try({
      try: () => {
        const s = new Zmq.Push({ linger: 50 })
        s.connect(tcp(endpoint.host, endpoint.replInPort))
        return s
      },
      catch: (e) => err("Protocol", `cannot connect to the runner's REPL-in port: ${String(e)}`)
    }),
    (s) => Effect.sync(() => s.close())
  )
  const pull = yield* Effect.acquireRelease(
    Effect.try({
      try: () => {
        const s = new Zmq.Pull({ linger: 50, maxMessageSize: MESSAGE_MAX_BYTES, receiveHighWaterMark: RECEIVE_HWM })
        void s.events // the monitor starts now: a disconnect before the events fiber runs is kept
        s.connect(tcp(endpoint.host, endpoint.replOutPort))
        return s
      },
      catch: (e) => err("Protocol", `cannot connect to the runner's REPL-out port: ${String(e)}`)
    }),
    (s) => Effect.sync(() => s.close())
  )

  const outgoing = yield* Queue.unbounded<RunnerFrame>()
  const completeLock = yield* Semaphore.make(1)
  const serviceLock = yield* Semaphore.make(1)

  const sendUnsafe = (frames: ReadonlyArray<RunnerFrame>): void => {
    for (const f of frames) Queue.offerUnsafe(outgoing, f)
  }

  // ---- runs (all state changes happen in synchronous steps) ----------------------------------

  const wake = (run: RunState): void => {
    const w = run.wake
    run.wake = undefined
    if (w !== undefined) Deferred.doneUnsafe(w, Effect.void)
  }

  const startRun = (runId: string, frames: ReadonlyArray<RunnerFrame>): void => {
    const run: RunState = {
      runId,
      lock: Semaphore.makeUnsafe(1),
      items: [],
      bytes: 0,
      dropped: 0,
      ended: false,
      wake: undefined
    }
    runs.set(runId, run)
    current = run
    sendUnsafe(frames)
  }

  const promote = (): void => {
    while (current === undefined && waiters.length > 0) {
      const w = waiters.shift()!
      if (runs.has(w.runId)) sendUnsafe(w.frames)
      else startRun(w.runId, w.frames)
      Deferred.doneUnsafe(w.deferred, Effect.void)
    }
  }

  const endCurrent = (): void => {
    const run = current
    if (run === undefined) return
    run.ended = true
    current = undefined
    if (runs.has(run.runId)) {
      uncollected.push(run.runId)
      while (uncollected.length > MAX_UNCOLLECTED_RUNS) {
        const old = uncollected.shift()!
        const r = runs.get(old)
        if (r !== undefined && r.ended) {
          runs.delete(old)
          release(r)
        }
      }
    }
    promote()
    wake(run)
  }

  /** Gives a run's buffered bytes back to the kernel's budget. */
  const release = (run: RunState): void => {
    buffered -= run.bytes
    run.bytes = 0
    run.items = []
  }

  const forget = (run: RunState): void => {
    if (runs.get(run.runId) === run) {
      runs.delete(run.runId)
      release(run)
    }
    const i = uncollected.indexOf(run.runId)
    if (i >= 0) uncollected.splice(i, 1)
  }

  const deliver = (item: OutputItem): boolean => {
    const run = current
    if (run === undefined) return false
    const size = itemSize(item)
    if (item._tag !== "End") {
      if (run.bytes + size > RUN_MAX_BYTES || buffered + size > KERNEL_MAX_BUFFERED_BYTES) {
        run.dropped++
        return true
      }
      if (run.items.length >= RUN_MAX_ITEMS) {
        const last = run.items[run.items.length - 1]
        if (!(item._tag === "Stream" && last?._tag === "Stream" && last.stream === item.stream)) {
          run.dropped++
          return true
        }
      }
      run.bytes += size
      buffered += size
      const last = run.items[run.items.length - 1]
      if (item._tag === "Stream" && last?._tag === "Stream" && last.stream === item.stream) {
        run.items[run.items.length - 1] = { ...last, text: last.text + item.text }
      } else run.items.push(item)
    } else if (item.status === "finished" || item.status === "exec-timeout" || run.items.length < RUN_MAX_ITEMS) {
      // a run-ending record comes once per run; the others count against the cap like output
      run.items.push(item)
    } else run.dropped++
    return true
  }

  /** Delivers to the current run and wakes its poller (after every state change: a woken fiber may run at once). */
  const deliverAndWake = (item: OutputItem): void => {
    const run = current
    if (deliver(item) && run !== undefined) wake(run)
  }

  const route = (type: string, raw: Uint8Array): Effect.Effect<void> => {
    const data = truncateUtf8(raw, RECORD_MAX_BYTES)
    const capped = data.length < raw.length
      ? Effect.logWarning(`runner record '${type}' of ${raw.length} bytes truncated to ${data.length}`).pipe(log)
      : Effect.void
    switch (type) {
      case "stdout":
      case "stderr": {
        const text = decoders[type].decode(data, { stream: true })
        return Effect.andThen(capped, Effect.sync(() => void (text.length > 0 && deliverAndWake({ _tag: "Stream", stream: type, text }))))
      }
      case "status":
        return Effect.sync(() => {
          const startedAt = statusStartedAt(data)
          for (const d of statusWaiters) {
            Deferred.doneUnsafe(
              d,
              Option.isSome(startedAt)
                ? Effect.succeed({ startedAt: startedAt.value })
                : Effect.fail(err("Protocol", "malformed status reply"))
            )
          }
          statusWaiters.clear()
        })
      case "completion":
      case "service-result":
        return Effect.suspend(() => {
          const waiter = replyWaiters[type]
          if (waiter === undefined) return Effect.logDebug(`runner '${type}' nobody asked for dropped`).pipe(log)
          replyWaiters[type] = undefined
          // a copy: the reply must not keep the frame's buffer alive
          Deferred.doneUnsafe(waiter, Effect.succeed(Uint8Array.prototype.slice.call(data)))
          return Effect.void
        })
      case "apps-result":
        return Effect.void
      case "media":
        return Effect.andThen(capped, Effect.sync(() => void deliverAndWake({ _tag: "Media", ...decodeMedia(Buffer.from(data).toString("utf8")) })))
      default: {
        if (END_TYPES.has(type)) {
          const status = type as EndStatus
          return Effect.sync(() => {
            if (status === "finished" || status === "exec-timeout") {
              // a run ends: flush the incremental decoders (a dangling partial sequence becomes U+FFFD)
              for (const stream of ["stdout", "stderr"] as const) {
                const rest = decoders[stream].decode()
                if (rest.length > 0) deliver({ _tag: "Stream", stream, text: rest })
              }
            }
            const run = current
            const delivered = deliver(decodeEnd(status, Buffer.from(data).toString("utf8")))
            if (delivered && (status === "finished" || status === "exec-timeout")) endCurrent()
            else if (delivered && run !== undefined) wake(run)
            return delivered
          }).pipe(
            Effect.flatMap((delivered) => delivered ? Effect.void : Effect.logDebug(`runner '${type}' without a current run dropped`).pipe(log))
          )
        }
        return Effect.andThen(
          capped,
          Effect.sync(() => void deliverAndWake({ _tag: "Other", type, text: Buffer.from(data).toString("utf8") }))
        )
      }
    }
  }

  // ---- fibers -------------------------------------------------------------------------------

  yield* Effect.addFinalizer(() =>
    Effect.sync(() => {
      closed = true
      for (const w of waiters.splice(0)) Deferred.doneUnsafe(w.deferred, Effect.fail(err("Closed", "runner connection closed")))
      for (const d of statusWaiters) Deferred.doneUnsafe(d, Effect.fail(err("Closed", "runner connection closed")))
      statusWaiters.clear()
      for (const run of runs.values()) wake(run)
    })
  )

  yield* Queue.take(outgoing).pipe(
    Effect.flatMap(([type, payload]) =>
      Effect.tryPromise(() => push.send([type, payload])).pipe(
        Effect.catch((e) => push.closed ? Effect.interrupt : Effect.logWarning(`runner: '${type}' not sent`, e).pipe(log))
      )
    ),
    Effect.forever,
    Effect.forkScoped
  )

  yield* Effect.tryPromise(() => pull.receive()).pipe(
    Effect.flatMap((frames) =>
      frames.length === 2
        ? route(frames[0]!.toString("latin1"), frames[1]!)
        : Effect.logWarning(`runner: message with ${frames.length} frames dropped`).pipe(log)
    ),
    Effect.forever,
    Effect.catchCause((cause) => pull.closed ? Effect.void : Effect.logError("runner: reader stopped", cause).pipe(log)),
    Effect.forkScoped
  )

  // A message over MESSAGE_MAX_BYTES is a protocol error to ZeroMQ: it drops the connection and,
  // unlike after a network error, never reconnects by itself. So when a disconnect is not followed by
  // a new connection within RECONNECT_CHECK, reconnect by hand. (Reconnecting on every disconnect fed
  // on itself: our own disconnect() reports a disconnect too, and a busy kernel's connection flapped
  // for good, losing its output.)
  const replOut = tcp(endpoint.host, endpoint.replOutPort)
  let connects = 0
  let checking = false
  const reconnectIfStuck = (seen: number) =>
    Effect.sleep(RECONNECT_CHECK).pipe(
      Effect.andThen(Effect.suspend(() =>
        closed || connects !== seen
          ? Effect.void
          : Effect.logWarning("runner: REPL-out connection dropped and not re-established (oversized record?), reconnecting").pipe(
            log,
            Effect.andThen(Effect.try(() => pull.disconnect(replOut)).pipe(Effect.ignore)),
            Effect.andThen(Effect.try(() => pull.connect(replOut))),
            Effect.catch((e) => pull.closed ? Effect.void : Effect.logWarning("runner: reconnect failed", e).pipe(log))
          )
      )),
      Effect.ensuring(Effect.sync(() => (checking = false)))
    )
  yield* Effect.tryPromise(() => pull.events.receive()).pipe(
    Effect.flatMap((event) => {
      if (event.type === "connect" || event.type === "handshake") {
        connects++
        return Effect.void
      }
      if (event.type !== "disconnect" || closed || checking) return Effect.void
      checking = true
      return Effect.forkScoped(reconnectIfStuck(connects))
    }),
    Effect.forever,
    Effect.catchCause(() => Effect.void), // the socket closed
    Effect.forkScoped
  )

  // no pings while a start-service is pending: the 19.06 runner blocks its loop until the service's
  // port opens, so pings would only queue up behind it (issue 12 item 7)
  let servicePending = 0
  yield* Effect.sync(() => (servicePending === 0 ? sendUnsafe([["status", ""]]) : undefined)).pipe(
    Effect.repeat(Schedule.spaced(KEEPALIVE)),
    Effect.forkScoped
  )

  // ---- operations ---------------------------------------------------------------------------

  const ensureOpen = Effect.suspend(() => closed ? Effect.fail(err("Closed", "runner connection closed")) : Effect.void)

  const send = (type: string, payload: string | Uint8Array = "") =>
    Effect.andThen(ensureOpen, Effect.sync(() => sendUnsafe([[type, payload]])))

  const status = (timeout: Duration.Input) =>
    Effect.andThen(
      ensureOpen,
      Effect.suspend(() => {
        const d = Deferred.makeUnsafe<{ readonly startedAt: number }, RunnerError>()
        statusWaiters.add(d)
        sendUnsafe([["status", ""]])
        return Deferred.await(d).pipe(
          Effect.timeoutOrElse({
            duration: timeout,
            orElse: () => Effect.fail(err("Timeout", `no status reply within ${Duration.format(Duration.fromInputUnsafe(timeout))}`))
          }),
          Effect.ensuring(Effect.sync(() => statusWaiters.delete(d)))
        )
      })
    )

  const attachRun = (runId: string, frames: ReadonlyArray<RunnerFrame>, options: { readonly create: boolean }) =>
    Effect.suspend((): Effect.Effect<void, RunnerError> => {
      if (closed) return Effect.fail(err("Closed", "runner connection closed"))
      if (runs.has(runId)) {
        sendUnsafe(frames)
        return Effect.void
      }
      if (!options.create) return Effect.fail(err("UnknownRun", `no run ${runId} on this kernel`))
      if (current === undefined) {
        startRun(runId, frames)
        return Effect.void
      }
      const w: Waiter = { runId, frames, deferred: Deferred.makeUnsafe<void, RunnerError>() }
      waiters.push(w)
      return Deferred.await(w.deferred).pipe(
        Effect.onInterrupt(() =>
          Effect.sync(() => {
            const i = waiters.indexOf(w)
            if (i >= 0) waiters.splice(i, 1)
          })
        )
      )
    })

  const take = (run: RunState, count: number): PollResult => {
    const taken = run.items.splice(0, count)
    let freed = 0
    for (const it of taken) freed += itemSize(it)
    if (run.items.length === 0) freed = run.bytes
    run.bytes -= freed
    buffered -= freed
    const out: Array<Exclude<OutputItem, EndItem>> = []
    if (run.dropped > 0) {
      out.push({ _tag: "Stream", stream: "stderr", text: `[bai-agent: ${run.dropped} output records dropped (run buffer full)]\n` })
      run.dropped = 0
    }
    let end: Option.Option<EndItem> = Option.none()
    for (const it of taken) {
      if (it._tag === "End") end = Option.some(it)
      else out.push(it)
    }
    if (Option.isSome(end) && (end.value.status === "finished" || end.value.status === "exec-timeout")) forget(run)
    return { items: out, end }
  }

  const poll = (runId: string, flushTimeout: Duration.Input) =>
    Effect.suspend(() => {
      const run = runs.get(runId)
      if (run === undefined) return Effect.fail(err("UnknownRun", `no run ${runId} on this kernel`))
      const window = Duration.toMillis(Duration.fromInputUnsafe(flushTimeout))
      return Semaphore.withPermit(
        run.lock,
        Effect.gen(function*() {
          // monotonic: a wall-clock step must neither stretch nor cut the flush window
          const deadline = (yield* monotonicMillis) + window
          while (true) {
            const i = run.items.findIndex((it) => it._tag === "End")
            if (i >= 0) return take(run, i + 1)
            const now = yield* monotonicMillis
            if (now >= deadline) return take(run, run.items.length)
            if (closed) return yield* err("Closed", "runner connection closed")
            const d = Deferred.makeUnsafe<void>()
            run.wake = d
            yield* Deferred.await(d).pipe(Effect.timeoutOption(Duration.millis(deadline - now)))
          }
        })
      )
    })

  const request = (
    lock: Semaphore.Semaphore,
    replyType: "completion" | "service-result",
    type: string,
    payload: string,
    timeout: Duration.Input
  ) =>
    Effect.andThen(
      ensureOpen,
      Semaphore.withPermit(
        lock,
        Effect.gen(function*() {
          const waiter = Deferred.makeUnsafe<Uint8Array>()
          replyWaiters[replyType] = waiter
          sendUnsafe([[type, payload]])
          const reply = yield* Deferred.await(waiter).pipe(
            Effect.timeoutOption(timeout),
            Effect.ensuring(Effect.sync(() => {
              if (replyWaiters[replyType] === waiter) replyWaiters[replyType] = undefined
            }))
          )
          if (Option.isNone(reply)) return Option.none()
          const parsed = parseJson(Buffer.from(reply.value).toString("utf8"))
          if (Option.isNone(parsed)) return yield* err("Protocol", `malformed ${type} reply`)
          return parsed
        })
      )
    )

  const conn: RunnerConnection = {
    kernelId,
    endpoint,
    status,
    send,
    interrupt: send("interrupt", ""),
    attachRun,
    poll,
    currentRun: Effect.sync(() => Option.fromNullishOr(current?.runId)),
    pendingRuns: Effect.sync(() => waiters.length),
    complete: (payload, timeout) => request(completeLock, "completion", "complete", payload, timeout),
    startService: (payload, timeout) =>
      Effect.acquireUseRelease(
        Effect.sync(() => servicePending++),
        () => request(serviceLock, "service-result", "start-service", payload, timeout),
        () => Effect.sync(() => servicePending--)
      ),
    bufferedBytes: Effect.sync(() => buffered)
  }
  return conn
})

// ---------------------------------------------------------------------------------------------
// The per-kernel registry of connections

interface Entry {
  readonly connection: RunnerConnection
  readonly scope: Scope.Closeable
}

const sameEndpoint = (a: RunnerEndpoint, b: RunnerEndpoint): boolean =>
  a.host === b.host && a.replInPort === b.replInPort && a.replOutPort === b.replOutPort

export class RunnerConnections extends Context.Service<RunnerConnections, {
  /** idempotent: connects PUSH→host:replIn and PULL←host:replOut (linger 50 ms) owned by the service's scope, starts the reader/writer fibers and the 10 s `status` keep-alive. A different endpoint for an open kernel replaces its connection. */
  readonly open: (kernelId: string, endpoint: RunnerEndpoint) => Effect.Effect<RunnerConnection, RunnerError>
  /** "Closed" if not open */
  readonly get: (kernelId: string) => Effect.Effect<RunnerConnection, RunnerError>
  readonly close: (kernelId: string) => Effect.Effect<void>
  /** Kernel ids with an open connection. */
  readonly list: Effect.Effect<ReadonlyArray<string>>
}>()("bai-agent/kernel/RunnerConnections") {
  static readonly make = Effect.gen(function*() {
    const serviceScope = yield* Effect.scope
    const state = yield* SynchronizedRef.make<ReadonlyMap<string, Entry>>(new Map())

    const closeEntry = (entry: Entry) => Scope.close(entry.scope, Exit.void)

    const open = Effect.fn("RunnerConnections.open")(function*(kernelId: string, endpoint: RunnerEndpoint) {
      return yield* SynchronizedRef.modifyEffect(
        state,
        Effect.fnUntraced(function*(m) {
          const existing = m.get(kernelId)
          if (existing !== undefined && sameEndpoint(existing.connection.endpoint, endpoint)) {
            return [existing.connection, m] as const
          }
          if (existing !== undefined) yield* closeEntry(existing)
          const scope = yield* Scope.fork(serviceScope)
          const connection = yield* makeConnection(kernelId, endpoint).pipe(
            Scope.provide(scope),
            Effect.onError((cause) => Scope.close(scope, Exit.failCause(cause)))
          )
          yield* Effect.logDebug(`runner connection to ${endpoint.host}:${endpoint.replInPort}/${endpoint.replOutPort}`).pipe(
            Effect.annotateLogs({ kernelId })
          )
          const next = new Map(m).set(kernelId, { connection, scope })
          return [connection, next as ReadonlyMap<string, Entry>] as const
        })
      )
    })

    const get = (kernelId: string) =>
      SynchronizedRef.get(state).pipe(
        Effect.flatMap((m) => {
          const e = m.get(kernelId)
          return e === undefined
            ? Effect.fail(new RunnerError({ reason: "Closed", kernelId, message: "no runner connection for this kernel" }))
            : Effect.succeed(e.connection)
        })
      )

    const close = Effect.fn("RunnerConnections.close")(function*(kernelId: string) {
      yield* SynchronizedRef.updateEffect(
        state,
        Effect.fnUntraced(function*(m) {
          const e = m.get(kernelId)
          if (e === undefined) return m
          yield* closeEntry(e)
          const next = new Map(m)
          next.delete(kernelId)
          return next as ReadonlyMap<string, Entry>
        })
      )
    })

    return RunnerConnections.of({
      open,
      get,
      close,
      list: SynchronizedRef.get(state).pipe(Effect.map((m) => [...m.keys()]))
    })
  })

  static readonly layer = Layer.effect(RunnerConnections, RunnerConnections.make)
}
