/**
 * A kernel's runner sockets open on its first call and stay open until its connection is closed
 * (issue 17 goal 2: an adopted kernel nobody calls holds no sockets; never closed for idleness, so no
 * reopen can meet a stale pipe at the runner — src/kernel/runner/RunnerConnection.ts, header). Real
 * ZeroMQ: the scripted runner's bound sockets report the agent's connections (accept / disconnect),
 * the runner simulator runs real code. Every wait is on a condition, with a bound.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { TestClock } from "effect/testing"
import { RunnerConnections } from "../../src/kernel/runner/RunnerConnections.ts"
import { type FakeRunner, fakeRunner, pollUntilFinished, spawnRunner, stdoutOf, waitFor } from "./RunnerSupport.ts"

const connectedOnce = (fake: FakeRunner) =>
  waitFor("the agent connected to both ports", fake.peers, (p) => p.replIn === 1 && p.replOut === 1)

/** The scripted runner answers the next `complete` it receives. */
const answerComplete = (fake: FakeRunner, answer: unknown) =>
  Effect.gen(function*() {
    const [type] = yield* fake.receive
    assert.strictEqual(type, "complete")
    yield* fake.emit("completion", JSON.stringify(answer))
  })

const interruptReceived = (fake: FakeRunner, payload: string) =>
  Effect.gen(function*() {
    const [type, data] = yield* fake.receive
    assert.deepStrictEqual([type, data.toString()], ["interrupt", payload])
  })

describe("runner sockets: opened on first use, kept until the connection closes", () => {
  it.live("a connection nobody uses holds no sockets; the first call opens them and is answered", () =>
    Effect.gen(function*() {
      const fake = yield* fakeRunner
      const conns = yield* RunnerConnections
      // opened first: eager sockets would connect before the used connection's
      const unused = yield* conns.open("never", fake.endpoint)
      const used = yield* conns.open("used", fake.endpoint)
      assert.isFalse(yield* unused.socketsOpen)
      assert.isFalse(yield* used.socketsOpen)
      // the runner's PUSH round-robins over its peers: only the used connection may be one
      const [reply] = yield* Effect.all([used.complete("{}", "10 seconds"), answerComplete(fake, ["one"])], { concurrency: "unbounded" })
      assert.deepStrictEqual(reply, Option.some(["one"]))
      assert.isTrue(yield* used.socketsOpen)
      yield* connectedOnce(fake)
      const [again] = yield* Effect.all([used.complete("{}", "10 seconds"), answerComplete(fake, ["two"])], { concurrency: "unbounded" })
      assert.deepStrictEqual(again, Option.some(["two"]))
      assert.deepStrictEqual(yield* fake.peers, { replIn: 1, replOut: 1, disconnects: 0 })
      assert.isFalse(yield* unused.socketsOpen)
    }).pipe(Effect.provide(RunnerConnections.layer), Effect.scoped), 60_000)

  it.live("the runner simulator: the first run opens the sockets and its output arrives complete", () =>
    Effect.gen(function*() {
      const runner = yield* spawnRunner
      const conn = yield* (yield* RunnerConnections).open("sim", runner.endpoint)
      assert.isFalse(yield* conn.socketsOpen)
      yield* conn.attachRun("r", [["code", "for i in range(300):\n    print('line', i, flush=True)"]], { create: true })
      assert.strictEqual(stdoutOf(yield* pollUntilFinished(conn, "r")), Array.from({ length: 300 }, (_, i) => `line ${i}\n`).join(""))
      assert.isTrue(yield* conn.socketsOpen)
      const c = yield* conn.complete(JSON.stringify({ code: "pri" }), "10 seconds")
      assert.deepStrictEqual(c, Option.some(["print("]))
    }).pipe(Effect.provide(RunnerConnections.layer), Effect.scoped), 60_000)

  // the clock is a TestClock: an hour passes for the connection's timers (the keep-alive, and what an
  // idle close would wait on) while the sockets stay real
  it.effect("sockets stay open after use however long the connection is idle, and keep working", () =>
    Effect.gen(function*() {
      const fake = yield* fakeRunner
      const conn = yield* (yield* RunnerConnections).open("kept", fake.endpoint)
      yield* conn.send("interrupt", "1")
      yield* interruptReceived(fake, "1")
      yield* TestClock.withLive(connectedOnce(fake))
      yield* TestClock.adjust("1 hour")
      assert.isTrue(yield* conn.socketsOpen)
      yield* conn.send("interrupt", "2")
      yield* interruptReceived(fake, "2")
      assert.deepStrictEqual(yield* fake.peers, { replIn: 1, replOut: 1, disconnects: 0 })
      assert.isTrue(yield* conn.socketsOpen)
    }).pipe(Effect.provide(RunnerConnections.layer), Effect.scoped), 60_000)

  it.live("operations at once open one pair of sockets", () =>
    Effect.gen(function*() {
      const fake = yield* fakeRunner
      const conn = yield* (yield* RunnerConnections).open("many", fake.endpoint)
      yield* Effect.all(Array.from({ length: 8 }, (_, i) => conn.send("interrupt", `${i}`)), { concurrency: "unbounded" })
      const got = new Set<string>()
      for (let i = 0; i < 8; i++) got.add((yield* fake.receive)[1].toString())
      assert.strictEqual(got.size, 8)
      yield* connectedOnce(fake)
      // one more round trip: a second pair's connections would have been accepted by now
      yield* conn.send("interrupt", "last")
      yield* interruptReceived(fake, "last")
      assert.deepStrictEqual(yield* fake.peers, { replIn: 1, replOut: 1, disconnects: 0 })
    }).pipe(Effect.provide(RunnerConnections.layer), Effect.scoped), 60_000)

  it.live("closing the connection closes its sockets; a closed connection refuses and opens nothing", () =>
    Effect.gen(function*() {
      const fake = yield* fakeRunner
      const conns = yield* RunnerConnections
      const used = yield* conns.open("closed-used", fake.endpoint)
      const unused = yield* conns.open("closed-unused", fake.endpoint)
      yield* used.send("interrupt", "x")
      yield* interruptReceived(fake, "x")
      yield* connectedOnce(fake)
      yield* conns.close("closed-used")
      yield* conns.close("closed-unused")
      yield* waitFor("the agent disconnected from both ports", fake.peers, (p) => p.replIn === 0 && p.replOut === 0)
      for (const conn of [used, unused]) {
        const error = yield* Effect.flip(conn.send("status"))
        assert.strictEqual(error.reason, "Closed")
        assert.strictEqual(error.message, "runner connection closed")
        assert.isFalse(yield* conn.socketsOpen)
      }
      assert.strictEqual((yield* fake.peers).disconnects, 2) // the used connection's PUSH and PULL, nothing else
    }).pipe(Effect.provide(RunnerConnections.layer), Effect.scoped), 60_000)

  it.live("sockets that cannot be made stay closed: every operation tries anew and fails the same way", () =>
    Effect.gen(function*() {
      // a host libzmq refuses at connect (EINVAL): the PUSH is made and closed again, nothing stays open
      const conn = yield* (yield* RunnerConnections).open("bad", { host: "no such host", replInPort: 2000, replOutPort: 2001 })
      for (let i = 0; i < 3; i++) {
        const error = yield* Effect.flip(conn.send("status"))
        assert.strictEqual(error.reason, "Protocol")
        assert.include(error.message, "cannot connect to the runner's REPL-in port")
        assert.isFalse(yield* conn.socketsOpen)
      }
    }).pipe(Effect.provide(RunnerConnections.layer), Effect.scoped), 60_000)
})
