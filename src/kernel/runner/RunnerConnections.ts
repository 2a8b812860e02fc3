/**
 * The per-kernel registry of runner connections (spec §8.1): one {@link RunnerConnection} per kernel,
 * each in its own scope forked from the service's, so closing a kernel's connection (or the service)
 * closes its sockets and fibers. A connection's sockets open on its first operation that needs them
 * (an adopted kernel nobody calls holds none) and stay open until the connection closes
 * (./RunnerConnection.ts).
 *
 *   const conns = yield* RunnerConnections
 *   const conn = yield* conns.open(kid, { host, replInPort, replOutPort })
 *   const { startedAt } = yield* conn.status("5 seconds")
 */
import { Context, Effect, Exit, Layer, Scope, SynchronizedRef } from "effect"
import * as Zmq from "zeromq"
import { makeConnection, type RunnerConnection, type RunnerEndpoint, RunnerError } from "./RunnerConnection.ts"

/**
 * Sockets the runner connections may hold together. Each used connection is four sockets (PUSH, PULL
 * and the PULL's event monitor pair); libzmq's default of 1,023 per context would stop the agent at
 * about 255 used kernels, so the connections get a context of their own: 65,536 sockets, 16,384
 * kernels. A used connection also holds about six file descriptors (two TCP connections, four
 * mailboxes): the systemd unit's LimitNOFILE=65536 (node raises its soft limit to the hard one at
 * start) is the tighter bound, about 10,000 used kernels.
 */
export const RUNNER_MAX_SOCKETS = 65_536

interface Entry {
  readonly connection: RunnerConnection
  readonly scope: Scope.Closeable
}

const sameEndpoint = (a: RunnerEndpoint, b: RunnerEndpoint): boolean =>
  a.host === b.host && a.replInPort === b.replInPort && a.replOutPort === b.replOutPort

export class RunnerConnections extends Context.Service<RunnerConnections, {
  /** idempotent: a connection to PUSH→host:replIn and PULL←host:replOut (linger 50 ms) owned by the service's scope; the sockets, the reader/writer fibers and the 10 s `status` keep-alive start with its first operation and stay until it is closed. A different endpoint for an open kernel replaces its connection. */
  readonly open: (kernelId: string, endpoint: RunnerEndpoint) => Effect.Effect<RunnerConnection, RunnerError>
  /** "Closed" if not open */
  readonly get: (kernelId: string) => Effect.Effect<RunnerConnection, RunnerError>
  readonly close: (kernelId: string) => Effect.Effect<void>
  /** Kernel ids with an open connection. */
  readonly list: Effect.Effect<ReadonlyArray<string>>
}>()("bai-agent/kernel/RunnerConnections") {
  static readonly make = Effect.gen(function*() {
    const serviceScope = yield* Effect.scope
    // libzmq reads max_sockets when the context creates its first socket; clipped to ZMQ_SOCKET_LIMIT
    const context = yield* Effect.sync(() => {
      const c = new Zmq.Context()
      c.maxSockets = Math.min(RUNNER_MAX_SOCKETS, c.maxSocketsLimit)
      return c
    })
    const state = yield* SynchronizedRef.make<ReadonlyMap<string, Entry>>(new Map())

    const closeEntry = (entry: Entry) => Scope.close(entry.scope, Exit.void)

    // untraced: a connection's fibers outlive the call and would keep an `Effect.fn`'s call-site
    // `Error`, whose structured stack holds the caller's closure (an adoption's V1Pod and V1Service,
    // 14 KiB per kernel at 1,000 kernels: bench/README.md, "1,000 kernels, all runner connections")
    const open = Effect.fnUntraced(function*(kernelId: string, endpoint: RunnerEndpoint) {
      return yield* SynchronizedRef.modifyEffect(
        state,
        Effect.fnUntraced(function*(m) {
          const existing = m.get(kernelId)
          if (existing !== undefined && sameEndpoint(existing.connection.endpoint, endpoint)) {
            return [existing.connection, m] as const
          }
          if (existing !== undefined) yield* closeEntry(existing)
          const scope = yield* Scope.fork(serviceScope)
          const connection = yield* makeConnection(kernelId, endpoint, context).pipe(
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
