/**
 * A runner connection whose TCP connect lands on a peer that accepts and never speaks ZMTP.
 *
 * On the real node (test/testbed/realnode) kube-proxy holds every NodePort with a listening socket of
 * its own; while it switches a kernel's Service from "no endpoints" (REJECT) to the pod's DNAT rules,
 * a connect from the agent can complete against that socket, which never answers. libzmq then waits
 * its default handshake interval (30 s) before it gives up and redials: create_kernel took 32 s
 * instead of 5–8 s in 4 of 15 creates (test/testbed/README.md, real-node mode). The front below plays that socket for
 * the first connection to each runner port and forwards every later one to the runner simulator.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schedule, Scope } from "effect"
import * as net from "node:net"
import { RunnerConnections } from "../../src/kernel/runner/RunnerConnections.ts"
import { spawnRunner } from "./RunnerSupport.ts"

interface Front {
  readonly port: number
  /** Connections accepted so far (the first is held silent). */
  readonly accepted: () => number
  /** Whether the held connection was closed by the client. */
  readonly heldClosed: () => boolean
}

/** A TCP front for `target`: its first connection is accepted, read and never answered; later ones are piped to `target`. */
const silentFirst = (target: number): Effect.Effect<Front, Error, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<{ readonly front: Front; readonly close: () => void }, Error>((resume) => {
      const open = new Set<net.Socket>()
      const track = (s: net.Socket) => {
        open.add(s)
        s.on("close", () => open.delete(s))
        s.on("error", () => s.destroy())
      }
      let accepted = 0
      let heldClosed = false
      const server = net.createServer((client) => {
        track(client)
        if (accepted++ === 0) {
          client.on("data", () => {}) // the client's greeting is read and never answered
          client.on("close", () => (heldClosed = true))
          return
        }
        const upstream = net.connect(target, "127.0.0.1")
        track(upstream)
        client.on("close", () => upstream.destroy())
        upstream.on("close", () => client.destroy())
        client.pipe(upstream).pipe(client)
      })
      server.on("error", (e) => resume(Effect.fail(e)))
      server.listen(0, "127.0.0.1", () =>
        resume(Effect.succeed({
          front: { port: (server.address() as net.AddressInfo).port, accepted: () => accepted, heldClosed: () => heldClosed },
          close: () => {
            for (const s of open) s.destroy()
            server.close()
          }
        })))
    }),
    (f) => Effect.sync(f.close)
  ).pipe(Effect.map((f) => f.front))

/** Longest wait for the runner's answer: well under libzmq's default 30 s handshake interval. */
const BOUND = "15 seconds"

describe("RunnerConnections: a first connection held by a silent peer", () => {
  it.live("is given up and redialled, and the runner's status answers well before libzmq's 30 s handshake timeout", () =>
    Effect.gen(function*() {
      const runner = yield* spawnRunner
      const replIn = yield* silentFirst(runner.endpoint.replInPort)
      const replOut = yield* silentFirst(runner.endpoint.replOutPort)
      const conns = yield* RunnerConnections
      const conn = yield* conns.open("k-held", { host: "127.0.0.1", replInPort: replIn.port, replOutPort: replOut.port })
      // CreateFlow's probe: ask again until answered
      const { startedAt } = yield* conn.status("1 second").pipe(
        Effect.retry(Schedule.spaced("300 millis")),
        Effect.timeoutOrElse({
          duration: BOUND,
          orElse: () => Effect.fail(new Error(`no status answer within ${BOUND} while the first connections were held`))
        })
      )
      assert.isTrue(startedAt > 0)
      // the front sees the held connections' close on its own event-loop turn: wait for it, bounded
      yield* Effect.sync(() => replIn.heldClosed() && replOut.heldClosed()).pipe(
        Effect.repeat({ until: (closed) => closed, schedule: Schedule.spaced("10 millis") }),
        Effect.timeoutOption("5 seconds")
      )
      // the answer came over redialled connections: each port's first connection was held and given up
      for (const [name, front] of [["REPL-in", replIn], ["REPL-out", replOut]] as const) {
        assert.isAtLeast(front.accepted(), 2, `${name}: no second connection`)
        assert.isTrue(front.heldClosed(), `${name}: the held connection was not given up`)
      }
    }).pipe(Effect.provide(RunnerConnections.layer), Effect.scoped), 60_000)
})
