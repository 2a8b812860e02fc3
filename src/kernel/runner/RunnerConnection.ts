// size: one kernel's two runner sockets (opened on first use) and their fibers, performing the run queue's commands in one synchronous step; the unused connection's shell (LazyConnection) at the end
/**
 * One kernel's connection to its runner (spec §8.1–§8.3): a PUSH socket to the runner's REPL-in port
 * and a PULL socket from its REPL-out port.
 *
 * **The sockets open on first use and stay open until the connection closes** (issue 17 goal 2: two
 * zeromq sockets per kernel cost ~0.1 MiB of native memory, ~75 MiB at 1,000 adopted kernels nobody
 * calls). Until its first operation a connection is only its kernel id, endpoint and scope
 * (`LazyConnection`, ~0.6 KiB of heap instead of ~7 KiB: test/kernel/RunnerFootprint.test.ts); its
 * run queue, waiters and record decoder are made, in the enclosing scope from `open`, by the first
 * operation that needs them; the sockets and their fibers by the first operation that needs them (`status`,
 * `send`, `interrupt`, `attachRun`, `complete`, `startService`; `poll` needs none: a run it can ask
 * for was attached, which opened them) in a child scope of the connection's, under one permit
 * (`gate`: operations at once open one pair), and are closed only with the connection
 * (`RunnerConnections.close`: destroy, restart, a replaced endpoint, the agent's shutdown). An open
 * that fails (a host libzmq refuses) leaves nothing open, and the next operation tries anew.
 *
 * **Never closed for idleness.** Branch `sock3` closed the sockets after an idle period and opened
 * them again on the next call. Closing our PULL does not end the runner's side at once: its PUSH
 * keeps the old pipe active in its load balancer until it processes the pipe's `pipe_term` command,
 * which happens only inside one of its own sends, and a record written to that stale pipe is lost.
 * Under load in the testbed such a pipe lived for minutes, and a run's output was lost (bench/README.md,
 * "Tried again and not landed"). Without a reopen there is no pipe of ours that can go stale while
 * the runner lives, so the settling probe `sock3` ran after a reopen is gone too. It is not run on the
 * first open either: the only stale pipe a first open can meet is a previous agent process's, whose
 * FIN the runner's I/O thread read long before (an agent restart takes seconds), and the runner's PUSH,
 * idle since, processes its mailbox unthrottled at its first send — main opens eagerly at adoption
 * under the same condition, without a probe, and a probe would delay every kernel's first call by
 * three round trips (up to its bound with a runner whose loop is blocked). One close followed by an
 * open against a live runner remains, as on main: `RunnerConnections.open` with a new endpoint for an
 * open kernel replaces its connection; the replacement's sockets now open at its first call, later
 * than main's, which only gives the runner more time to drop the old pipes.
 *
 * **Forked without the caller.** A forked fiber starts with its parent's context, and
 * `Effect.addFinalizer` keeps the context it was added in. The sockets' fibers are forked by their
 * first use — inside an execute RPC's span, or CreateFlow's `runnerOpen` — and would keep the
 * caller's span (with the `Error` `Effect.withSpan` captures) and stack frame (an `Effect.fn`'s
 * call-site `Error`), whose structured stacks hold the caller's closures (an adoption's V1Pod and
 * V1Service, an execute's request) for as long as the kernel lives; so would the connection's
 * finalizer. The connection is made, and its sockets opened, with `Tracer.ParentSpan` and
 * `References.CurrentStackFrame` taken out of the context (`detached`; RunnerConnections.test.ts,
 * "keeps nothing of the caller's closure alive").
 *
 * Once open, per connection: one writer fiber (zeromq.js allows one `send` at a time), one reader
 * fiber that decodes records (./RunnerRecords.ts) and feeds them to the run queue (./RunQueue.ts, a
 * pure state machine whose commands this file performs), and a 10 s `status` keep-alive (K2+
 * behaviour, keeps NAT/conntrack entries alive). `completion`, `service-result` and `status` replies
 * go to their own waiters (a reply nobody waits for is dropped). Every socket is made in the ZeroMQ
 * context RunnerConnections gives (room for 65,536 sockets, see RunnerConnections.ts).
 *
 * The kernel is an adversary (issue 13): the PULL socket refuses messages over
 * {@link MESSAGE_MAX_BYTES} (ZeroMQ disconnects the peer) and queues at most {@link RECEIVE_HWM}
 * messages; the run queue bounds what a kernel's runs buffer.
 *
 * Cancellation (spec §11.3 item 7) never tears the kernel down: an attach cancelled while waiting gives
 * up its place without its frames being sent; a poll is cancel-safe (records leave the run's buffer in
 * one synchronous step, after the wait).
 *
 * (About 450 lines: the sockets, the REPL-out reconnect rule, the run queue's command interpreter and
 * the request/reply waiters share one state and one reader; the rules themselves live in RunQueue.ts
 * and RunnerRecords.ts.)
 */
import { Context, Deferred, Duration, Effect, Exit, Option, Queue, References, Schedule, Schema, Scope, Semaphore, Tracer } from "effect"
import * as Zmq from "zeromq"
import { monotonicMillis } from "../../domain/MonotonicClock.ts"
import { parseJson, type PollResult, RECEIVE_HWM, MESSAGE_MAX_BYTES, makeRecordDecoder, type RunnerFrame } from "./RunnerRecords.ts"
import * as RunQueue from "./RunQueue.ts"
import type { RunnerEndpoint } from "../../domain/RunnerEndpoint.ts"

export type { RunnerEndpoint }

export class RunnerError extends Schema.TaggedError<RunnerError>()("RunnerError", {
  reason: Schema.Literals(["Timeout", "Closed", "Protocol", "UnknownRun"]),
  kernelId: Schema.String,
  message: Schema.String
}) {}

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
  /** Output bytes buffered for this kernel, all runs together (at most `KERNEL_MAX_BUFFERED_BYTES`). */
  readonly bufferedBytes: Effect.Effect<number>
  /** Whether the runner sockets are open (from the first operation that needs them until the connection closes). */
  readonly socketsOpen: Effect.Effect<boolean>
}

/** How long after a REPL-out disconnect ZeroMQ may take to connect again before the agent reconnects by hand. */
const RECONNECT_CHECK = Duration.seconds(2)
const KEEPALIVE = Duration.seconds(10)
/**
 * How long a connection may wait for the runner's ZMTP greeting before ZeroMQ drops it and redials
 * (libzmq's default is 30 s). The runner's libzmq I/O thread greets at once; a peer that accepts and
 * stays silent is not the runner: kube-proxy's own NodePort socket, reached while it switches a new
 * kernel's rules, held create_kernel for 30 s on the real node (test/kernel/RunnerPortHolder.test.ts).
 */
const HANDSHAKE_MILLIS = 5_000
/**
 * How long a TCP connect may stay unanswered before ZeroMQ gives it up and redials (libzmq's default:
 * never, so the kernel retransmits the SYN on the same 4-tuple for ~127 s). A tuple pinned to a dead
 * path — a conntrack entry made before kube-proxy's DNAT rule existed (kept 120 s in SYN-SENT), a full
 * accept queue — stays dead for as long; a redial comes from a new source port. 3 s lets one lost SYN
 * be retransmitted (after 1 s) first (test/kernel/RunnerConnectTimeout.test.ts).
 */
const CONNECT_MILLIS = 3_000

const tcp = (host: string, port: number): string => `tcp://${host.includes(":") ? `[${host}]` : host}:${port}`

/**
 * Runs `self` (which forks the connection's long-lived fibers and adds its finalizers) without the
 * caller's span and stack frame in its context. A forked fiber starts with its parent's context and
 * `Effect.addFinalizer` keeps the context it was added in; a span holds the `Error` `Effect.withSpan`
 * captured at its call site and a stack frame an `Effect.fn`'s, and their structured stacks hold the
 * caller's closures (CreateFlow's pod, an adoption's V1Pod and V1Service) for as long as the kernel
 * lives (RunnerConnections.test.ts, "keeps nothing of the caller's closure alive").
 */
const detached = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.updateContext(self, (context: Context.Context<R>) => Context.omit(Tracer.ParentSpan, References.CurrentStackFrame)(context) as Context.Context<R>)

/**
 * The connection's machinery in the current scope (the connection's): the run queue, the waiters, the
 * record decoder and the operations; its sockets and their fibers are made by the first operation that
 * needs them and live until the connection closes. Made by the first operation of a {@link LazyConnection}.
 */
const makeMachinery = Effect.fnUntraced(function*(kernelId: string, endpoint: RunnerEndpoint, context: Zmq.Context | undefined) {
  const err = (reason: RunnerError["reason"], message: string) => new RunnerError({ reason, kernelId, message })
  const log = Effect.annotateLogs({ kernelId })
  const connectionScope = yield* Effect.scope
  const inContext = context === undefined ? {} : { context }

  /** Frames for the writer (queued before the sockets open, they wait for it). */
  const outgoing = yield* Queue.unbounded<RunnerFrame>()

  // ---- the run queue: one state, changed only by `apply`, whose commands run in the same step ----

  let queue: RunQueue.RunQueue = RunQueue.empty
  let nextTicket = 0
  /** Attaches waiting for their turn, by ticket. */
  const tickets = new Map<number, Deferred.Deferred<void, RunnerError>>()
  /** The pending poll of a run, woken when the run changes. */
  const pollers = new Map<string, Deferred.Deferred<void>>()
  /** One poll at a time per run. */
  const pollLocks = new Map<string, Semaphore.Semaphore>()

  const isClosed = () => queue._tag === "Closed"

  const wake = (runId: string): void => {
    const d = pollers.get(runId)
    pollers.delete(runId)
    if (d !== undefined) Deferred.doneUnsafe(d, Effect.void)
  }

  const settle = (ticket: number, outcome: Effect.Effect<void, RunnerError>): void => {
    const d = tickets.get(ticket)
    tickets.delete(ticket)
    if (d !== undefined) Deferred.doneUnsafe(d, outcome)
  }

  const sendUnsafe = (frames: ReadonlyArray<RunnerFrame>): void => {
    for (const f of frames) Queue.offerUnsafe(outgoing, f)
  }

  const perform = (c: RunQueue.Command): void => {
    switch (c._tag) {
      case "Send":
        return sendUnsafe(c.frames)
      case "Admit":
        return settle(c.ticket, Effect.void)
      case "Refuse":
        return settle(c.ticket, Effect.fail(err(c.reason, c.reason === "Closed" ? "runner connection closed" : `no run ${c.runId} on this kernel`)))
      case "Wake":
        return wake(c.runId)
      case "Forget":
        pollLocks.delete(c.runId)
        return wake(c.runId)
      default:
        return // answers and notices: read by the caller of `apply`
    }
  }

  /** One transition of the run queue and its commands, in one synchronous step. */
  const apply = (event: RunQueue.Event): ReadonlyArray<RunQueue.Command> => {
    const [next, commands] = RunQueue.transition(queue, event)
    queue = next
    for (const c of commands) perform(c)
    return commands
  }

  // ---- replies ------------------------------------------------------------------------------

  const statusWaiters = new Set<Deferred.Deferred<{ readonly startedAt: number }, RunnerError>>()
  /** The request waiting for a `completion` / `service-result` reply, if any (one at a time each). */
  const replyWaiters = new Map<"completion" | "service-result", Deferred.Deferred<Uint8Array>>()

  // ---- the reader ---------------------------------------------------------------------------

  const decode = makeRecordDecoder()

  const route = (type: string, raw: Uint8Array): Effect.Effect<void> =>
    Effect.suspend(() => {
      const { record, truncatedFrom } = decode(type, raw)
      const capped = Option.isSome(truncatedFrom)
        ? Effect.logWarning(`runner record '${type}' of ${truncatedFrom.value} bytes truncated`).pipe(log)
        : Effect.void
      switch (record._tag) {
        case "Output":
          apply(RunQueue.Event.Output({ items: record.items }))
          return capped
        case "End": {
          apply(RunQueue.Event.Output({ items: record.flushed }))
          const dropped = apply(RunQueue.Event.End({ end: record.end })).some((c) => c._tag === "Dropped")
          return dropped ? Effect.logDebug(`runner '${type}' without a current run dropped`).pipe(log) : capped
        }
        case "Status": {
          const { startedAt } = record
          for (const d of statusWaiters) {
            Deferred.doneUnsafe(
              d,
              Option.isSome(startedAt) ? Effect.succeed({ startedAt: startedAt.value }) : Effect.fail(err("Protocol", "malformed status reply"))
            )
          }
          statusWaiters.clear()
          return Effect.void
        }
        case "Reply": {
          const waiter = replyWaiters.get(record.type)
          if (waiter === undefined) return Effect.logDebug(`runner '${type}' nobody asked for dropped`).pipe(log)
          replyWaiters.delete(record.type)
          Deferred.doneUnsafe(waiter, Effect.succeed(record.data))
          return Effect.void
        }
        case "Ignored":
          return Effect.void
      }
    })

  // ---- the sockets: opened by the first operation that needs them ---------------------------

  /** Whether the sockets are open: set with `gate`'s permit once they are, cleared when the connection closes. */
  let opened = false
  const gate = yield* Semaphore.make(1)
  // no pings while a start-service is pending: the 19.06 runner blocks its loop until the service's
  // port opens, so pings would only queue up behind it (issue 12 item 7)
  let servicePending = 0

  /** Both sockets and their fibers, in the current scope (a child of the connection's). */
  const openSockets = Effect.gen(function*() {
    const push = yield* Effect.acquireRelease(
      Effect.try({
        try: () => {
          const s = new Zmq.Push({ linger: 50, handshakeInterval: HANDSHAKE_MILLIS, connectTimeout: CONNECT_MILLIS, ...inContext })
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
          const s = new Zmq.Pull({ linger: 50, handshakeInterval: HANDSHAKE_MILLIS, connectTimeout: CONNECT_MILLIS, maxMessageSize: MESSAGE_MAX_BYTES, receiveHighWaterMark: RECEIVE_HWM, ...inContext })
          void s.events // the monitor starts now: a disconnect before the events fiber runs is kept
          s.connect(tcp(endpoint.host, endpoint.replOutPort))
          return s
        },
        catch: (e) => err("Protocol", `cannot connect to the runner's REPL-out port: ${String(e)}`)
      }),
      (s) => Effect.sync(() => s.close())
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
          isClosed() || connects !== seen
            ? Effect.void
            : Effect.logWarning("runner: REPL-out connection dropped and not re-established within 2 s (the runner stopped, or it sent a record over the size limit), reconnecting").pipe(
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
        if (event.type !== "disconnect" || isClosed() || checking) return Effect.void
        checking = true
        return Effect.forkScoped(reconnectIfStuck(connects))
      }),
      Effect.forever,
      Effect.catchCause(() => Effect.void), // the socket closed
      Effect.forkScoped
    )

    // the keep-alive: from the opening on
    yield* Effect.sync(() => (servicePending === 0 ? sendUnsafe([["status", ""]]) : undefined)).pipe(
      Effect.repeat(Schedule.spaced(KEEPALIVE)),
      Effect.forkScoped
    )
  })

  /**
   * Opens the sockets unless they are open, with `gate`'s permit. They live in a scope forked from the
   * connection's: a scope forked from a closing scope is born closed, so nothing opens live sockets
   * once the connection is closing. A failed open closes what it made and leaves them closed.
   */
  const openIfClosed: Effect.Effect<void, RunnerError> = Semaphore.withPermit(
    gate,
    Effect.suspend(() => {
      if (isClosed()) return Effect.fail(err("Closed", "runner connection closed"))
      if (opened) return Effect.void
      return Effect.gen(function*() {
        const scope = yield* Scope.fork(connectionScope)
        yield* openSockets.pipe(
          detached,
          Scope.provide(scope),
          Effect.onError((cause) => Scope.close(scope, Exit.failCause(cause)))
        )
        opened = true
        yield* Effect.logDebug("runner sockets opened").pipe(log)
      })
    })
  )

  /** Runs `op` with the sockets open (opening them on first use). */
  const withSockets = <A, E>(op: Effect.Effect<A, E>): Effect.Effect<A, E | RunnerError> =>
    Effect.suspend(() => opened && !isClosed() ? op : Effect.andThen(openIfClosed, op))

  yield* Effect.addFinalizer(() =>
    Effect.sync(() => {
      opened = false
      apply(RunQueue.Event.Close())
      for (const d of statusWaiters) Deferred.doneUnsafe(d, Effect.fail(err("Closed", "runner connection closed")))
      statusWaiters.clear()
    })
  )

  // ---- operations ---------------------------------------------------------------------------

  const send = (type: string, payload: string | Uint8Array = "") => withSockets(Effect.sync(() => sendUnsafe([[type, payload]])))

  const status = (timeout: Duration.Input) =>
    withSockets(
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
    withSockets(Effect.suspend(() => {
      const ticket = nextTicket++
      const turn = Deferred.makeUnsafe<void, RunnerError>()
      tickets.set(ticket, turn)
      apply(RunQueue.Event.Attach({ ticket, runId, frames, create: options.create }))
      return Deferred.await(turn).pipe(
        Effect.onInterrupt(() =>
          Effect.sync(() => {
            tickets.delete(ticket)
            apply(RunQueue.Event.Cancel({ ticket }))
          })
        )
      )
    }))

  /** Takes the run's records if the poll can answer now; otherwise a deferred the next change of the run completes. */
  const collect = (
    runId: string,
    windowClosed: boolean
  ): { readonly answer: Effect.Effect<PollResult, RunnerError> } | { readonly wake: Deferred.Deferred<void> } => {
    for (const c of apply(RunQueue.Event.Collect({ runId, windowClosed }))) {
      if (c._tag === "Collected") return { answer: Effect.succeed(c.result) }
      if (c._tag === "NotCollected") {
        return { answer: Effect.fail(err(c.reason, c.reason === "Closed" ? "runner connection closed" : `no run ${runId} on this kernel`)) }
      }
    }
    const wake = Deferred.makeUnsafe<void>()
    pollers.set(runId, wake)
    return { wake }
  }

  const poll = (runId: string, flushTimeout: Duration.Input) =>
    Effect.suspend(() => {
      if (!queue.runs.has(runId)) return Effect.fail(err("UnknownRun", `no run ${runId} on this kernel`))
      let lock = pollLocks.get(runId)
      if (lock === undefined) pollLocks.set(runId, lock = Semaphore.makeUnsafe(1))
      const window = Duration.toMillis(Duration.fromInputUnsafe(flushTimeout))
      return Semaphore.withPermit(
        lock,
        Effect.gen(function*() {
          // monotonic: a wall-clock step must neither stretch nor cut the flush window
          const deadline = (yield* monotonicMillis) + window
          while (true) {
            const now = yield* monotonicMillis
            const next = yield* Effect.sync(() => collect(runId, now >= deadline))
            if ("answer" in next) return yield* next.answer
            yield* Deferred.await(next.wake).pipe(Effect.timeoutOption(Duration.millis(deadline - now)))
          }
        })
      )
    })

  const completeLock = yield* Semaphore.make(1)
  const serviceLock = yield* Semaphore.make(1)

  const request = (lock: Semaphore.Semaphore, replyType: "completion" | "service-result", type: string, payload: string, timeout: Duration.Input) =>
    withSockets(
      Semaphore.withPermit(
        lock,
        Effect.gen(function*() {
          const waiter = Deferred.makeUnsafe<Uint8Array>()
          replyWaiters.set(replyType, waiter)
          sendUnsafe([[type, payload]])
          const reply = yield* Deferred.await(waiter).pipe(
            Effect.timeoutOption(timeout),
            Effect.ensuring(Effect.sync(() => {
              if (replyWaiters.get(replyType) === waiter) replyWaiters.delete(replyType)
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
    currentRun: Effect.sync(() => RunQueue.currentRun(queue)),
    pendingRuns: Effect.sync(() => RunQueue.pendingRuns(queue)),
    complete: (payload, timeout) => request(completeLock, "completion", "complete", payload, timeout),
    startService: (payload, timeout) =>
      Effect.acquireUseRelease(
        Effect.sync(() => servicePending++),
        () => request(serviceLock, "service-result", "start-service", payload, timeout),
        () => Effect.sync(() => servicePending--)
      ),
    bufferedBytes: Effect.sync(() => RunQueue.bufferedBytes(queue)),
    socketsOpen: Effect.sync(() => opened)
  }
  return conn
}, detached) // its finalizer and its sockets' fibers keep nothing of the caller (see the header)

/**
 * A connection before its first operation is its kernel id, its endpoint and the scope it will live
 * in, and nothing else (issue 17 goal 2: the machinery, ~7 KiB of heap, would be 7 MiB at 1,000 adopted
 * kernels nobody calls; test/kernel/RunnerFootprint.test.ts). Its first operation that needs the
 * machinery makes it in that scope (operations at once wait for the one making it); the queries
 * answer as an empty connection's do without making it. A class, not an object of closures: its
 * methods are shared by every connection.
 */
class LazyConnection implements RunnerConnection {
  readonly kernelId: string
  readonly endpoint: RunnerEndpoint
  readonly #scope: Scope.Scope
  readonly #context: Zmq.Context | undefined
  #machinery: RunnerConnection | undefined = undefined
  #making: Deferred.Deferred<RunnerConnection> | undefined = undefined

  constructor(kernelId: string, endpoint: RunnerEndpoint, scope: Scope.Scope, context: Zmq.Context | undefined) {
    this.kernelId = kernelId
    this.endpoint = endpoint
    this.#scope = scope
    this.#context = context
  }

  /**
   * The machinery, made once. Making it does not wait and is uninterruptible, so whoever waits on
   * `#making` is answered (with the maker's exit: a defect is passed on, and the next operation tries
   * anew); in a closed scope its finalizer runs at once, so a connection closed before its first use
   * refuses every operation as a used one does.
   */
  get #use(): Effect.Effect<RunnerConnection> {
    return Effect.suspend(() => {
      if (this.#machinery !== undefined) return Effect.succeed(this.#machinery)
      if (this.#making !== undefined) return Deferred.await(this.#making)
      const making = Deferred.makeUnsafe<RunnerConnection>()
      this.#making = making
      return makeMachinery(this.kernelId, this.endpoint, this.#context).pipe(
        Scope.provide(this.#scope),
        Effect.onExit((exit) =>
          Effect.sync(() => {
            if (Exit.isSuccess(exit)) this.#machinery = exit.value
            this.#making = undefined // a defect: the next operation tries anew
            Deferred.doneUnsafe(making, exit)
          })
        ),
        Effect.uninterruptible
      )
    })
  }

  status(timeout: Duration.Input) {
    return Effect.flatMap(this.#use, (m) => m.status(timeout))
  }
  send(type: string, payload?: string | Uint8Array) {
    return Effect.flatMap(this.#use, (m) => m.send(type, payload))
  }
  get interrupt() {
    return Effect.flatMap(this.#use, (m) => m.interrupt)
  }
  attachRun(runId: string, frames: ReadonlyArray<RunnerFrame>, options: { readonly create: boolean }) {
    return Effect.flatMap(this.#use, (m) => m.attachRun(runId, frames, options))
  }
  /** An unused connection has no run: UnknownRun, as an empty run queue (open or closed) answers. */
  poll(runId: string, flushTimeout: Duration.Input): Effect.Effect<PollResult, RunnerError> {
    return Effect.suspend(() =>
      this.#machinery !== undefined
        ? this.#machinery.poll(runId, flushTimeout)
        : Effect.fail(new RunnerError({ reason: "UnknownRun", kernelId: this.kernelId, message: `no run ${runId} on this kernel` }))
    )
  }
  get currentRun() {
    return Effect.suspend(() => this.#machinery?.currentRun ?? Effect.succeed(Option.none<string>()))
  }
  get pendingRuns() {
    return Effect.suspend(() => this.#machinery?.pendingRuns ?? Effect.succeed(0))
  }
  complete(payload: string, timeout: Duration.Input) {
    return Effect.flatMap(this.#use, (m) => m.complete(payload, timeout))
  }
  startService(payload: string, timeout: Duration.Input) {
    return Effect.flatMap(this.#use, (m) => m.startService(payload, timeout))
  }
  get bufferedBytes() {
    return Effect.suspend(() => this.#machinery?.bufferedBytes ?? Effect.succeed(0))
  }
  get socketsOpen() {
    return Effect.suspend(() => this.#machinery?.socketsOpen ?? Effect.succeed(false))
  }
}

/**
 * A connection living in the enclosing scope. Its machinery is made by its first operation that needs
 * it, its sockets and their fibers by the first that needs them; both live until the connection closes.
 */
export const makeConnection = (kernelId: string, endpoint: RunnerEndpoint, context?: Zmq.Context): Effect.Effect<RunnerConnection, never, Scope.Scope> =>
  Effect.map(Effect.scope, (scope) => new LazyConnection(kernelId, endpoint, scope, context))
