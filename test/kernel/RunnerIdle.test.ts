/**
 * A kernel's runner sockets exist only while it is in use (issue 17 goal 2): they open on the first
 * operation that needs them and close after the idle period with nothing pending. Real ZeroMQ: the
 * scripted runner's bound sockets report the agent's connections (accept / disconnect), the runner
 * simulator runs real code. Every wait is on a condition, with a bound.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Option, Scope } from "effect"
import { RunnerConnections } from "../../src/kernel/runner/RunnerConnections.ts"
import { type FakeRunner, makeFakeRunner, pollUntilFinished, spawnRunner, stdoutOf, waitFor } from "./RunnerSupport.ts"

const IDLE = "300 millis"

/** The scripted runner answering `status` as a runner does (the settling probe of a reopen asks). */
const fakeRunner = makeFakeRunner({ answerStatus: true })

const withConnections = <A, E>(self: Effect.Effect<A, E, RunnerConnections | Scope.Scope>, socketIdle: Duration.Input = IDLE) =>
  self.pipe(Effect.provide(RunnerConnections.layerWith({ socketIdle })), Effect.scoped)

const connected = (fake: FakeRunner) => waitFor("the agent connected to both ports", fake.peers, (p) => p.replIn === 1 && p.replOut === 1)
const disconnected = (fake: FakeRunner) => waitFor("the agent disconnected from both ports", fake.peers, (p) => p.replIn === 0 && p.replOut === 0)

/** The scripted runner answers the next `complete` it receives. */
const answerComplete = (fake: FakeRunner, answer: unknown) =>
  Effect.gen(function*() {
    const [type] = yield* fake.receive
    assert.strictEqual(type, "complete")
    yield* fake.emit("completion", JSON.stringify(answer))
  })

/**
 * A kernel's connection to a scripted runner, with a run "r" started (its code received), and a control
 * connection to another scripted runner.
 */
const runWithControl = (kernelId: string) =>
  Effect.gen(function*() {
    const [fake, control] = [yield* fakeRunner, yield* fakeRunner]
    const conns = yield* RunnerConnections
    const conn = yield* conns.open(kernelId, fake.endpoint)
    const other = yield* conns.open(`${kernelId}-control`, control.endpoint)
    yield* conn.attachRun("r", [["code", "x"]], { create: true })
    yield* fake.receive
    /**
     * The control connection, used now, closes when its idle period ends: so every connection used
     * before it (same period, earlier deadline) has been looked at by then — twice over.
     */
    const twoIdlePeriods = Effect.gen(function*() {
      for (let round = 0; round < 2; round++) {
        yield* other.send("status")
        yield* connected(control)
        yield* disconnected(control)
      }
    })
    return { fake, conn, twoIdlePeriods }
  })

describe("runner sockets: open on use, closed when idle", () => {
  it.live("no sockets until the first operation; closed after the idle period, as the runner sees it", () =>
    withConnections(Effect.gen(function*() {
      const fake = yield* fakeRunner
      const conn = yield* (yield* RunnerConnections).open("i1", fake.endpoint)
      assert.isFalse(yield* conn.socketsOpen)
      const [reply] = yield* Effect.all([conn.complete("{}", "10 seconds"), answerComplete(fake, ["one"])], { concurrency: "unbounded" })
      assert.deepStrictEqual(reply, Option.some(["one"]))
      yield* connected(fake)
      // nothing pending: the runner sees both connections go
      yield* disconnected(fake)
      assert.isFalse(yield* conn.socketsOpen)
      assert.isAtLeast((yield* fake.peers).disconnects, 2)
      // and the next operation opens them again
      const [again] = yield* Effect.all([conn.complete("{}", "10 seconds"), answerComplete(fake, ["two"])], { concurrency: "unbounded" })
      assert.deepStrictEqual(again, Option.some(["two"]))
    })), 60_000)

  it.live("the next run after an idle close reopens the sockets; all its output arrives, in order", () =>
    withConnections(Effect.gen(function*() {
      const fake = yield* fakeRunner
      const conn = yield* (yield* RunnerConnections).open("i2", fake.endpoint)
      yield* conn.send("status")
      yield* connected(fake)
      yield* disconnected(fake)
      yield* conn.attachRun("r", [["code", "x"]], { create: true })
      const [type, payload] = yield* fake.receive
      assert.deepStrictEqual([type, payload.toString()], ["code", "x"])
      const lines = Array.from({ length: 200 }, (_, i) => `line ${i}\n`)
      for (const l of lines) yield* fake.emit("stdout", l)
      yield* fake.emit("finished", "{\"exitCode\":0}")
      assert.strictEqual(stdoutOf(yield* pollUntilFinished(conn, "r")), lines.join(""))
      // the run collected, nothing pending: closed again
      yield* disconnected(fake)
    })), 60_000)

  it.live("the runner simulator: a run after an idle close runs, and its output arrives complete", () =>
    withConnections(Effect.gen(function*() {
      const runner = yield* spawnRunner
      const conn = yield* (yield* RunnerConnections).open("i3", runner.endpoint)
      const { startedAt } = yield* conn.status("10 seconds")
      yield* waitFor("idle close", conn.socketsOpen, (open) => !open)
      yield* conn.attachRun("r", [["code", "import time\nfor i in range(5):\n    print(i, flush=True)\n    time.sleep(0.05)"]], { create: true })
      assert.strictEqual(stdoutOf(yield* pollUntilFinished(conn, "r")), "0\n1\n2\n3\n4\n")
      yield* waitFor("idle close after the run", conn.socketsOpen, (open) => !open)
      assert.strictEqual((yield* conn.status("10 seconds")).startedAt, startedAt) // the same runner, reached again
    })), 60_000)

  it.live("no close while a run is current, even when it lasts several idle periods", () =>
    withConnections(Effect.gen(function*() {
      const { conn, fake, twoIdlePeriods } = yield* runWithControl("i4")
      yield* fake.emit("stdout", "first\n")
      yield* connected(fake)
      yield* twoIdlePeriods
      assert.strictEqual((yield* fake.peers).disconnects, 0)
      assert.isTrue(yield* conn.socketsOpen)
      yield* fake.emit("stdout", "second\n")
      yield* fake.emit("finished", "{\"exitCode\":0}")
      assert.strictEqual(stdoutOf(yield* pollUntilFinished(conn, "r")), "first\nsecond\n")
      yield* disconnected(fake) // and once it is over, the sockets go
    })), 60_000)

  it.live("finished output not yet polled keeps the sockets; the poll that takes it lets them go", () =>
    withConnections(Effect.gen(function*() {
      const { conn, fake, twoIdlePeriods } = yield* runWithControl("i5")
      yield* fake.emit("stdout", "out\n")
      yield* fake.emit("finished", "{\"exitCode\":0}")
      yield* waitFor("the run ended", conn.currentRun, Option.isNone)
      yield* twoIdlePeriods
      assert.strictEqual((yield* fake.peers).disconnects, 0)
      assert.strictEqual(stdoutOf(yield* pollUntilFinished(conn, "r")), "out\n")
      yield* disconnected(fake)
    })), 60_000)

  it.live("operations racing the idle close each wait for it and get their answer", () =>
    withConnections(Effect.gen(function*() {
      const runner = yield* spawnRunner
      const conn = yield* (yield* RunnerConnections).open("i6", runner.endpoint)
      let reopened = 0
      for (let i = 0; i < 40; i++) {
        // four at once, and every other round only once the sockets have closed
        yield* Effect.all(Array.from({ length: 4 }, () => conn.status("10 seconds")), { concurrency: "unbounded" })
        if (i % 2 === 0) {
          yield* waitFor("idle close", conn.socketsOpen, (open) => !open)
          reopened++
        }
      }
      assert.strictEqual(reopened, 20)
      const c = yield* conn.complete(JSON.stringify({ code: "pri" }), "10 seconds")
      assert.deepStrictEqual(c, Option.some(["print("]))
    }), "1 millis"), 120_000)

  it.live("not closed before the idle period, counted from the last use: connections with a shorter one open and close meanwhile", () =>
    Effect.gen(function*() {
      const [fake, control] = [yield* fakeRunner, yield* fakeRunner]
      const conn = yield* (yield* RunnerConnections).open("i9", fake.endpoint)
      // a clock made of sockets: another service's connection, idle after 2.4 s (0.6 of conn's 4 s), opens and closes
      const tick = Effect.gen(function*() {
        const other = yield* (yield* RunnerConnections).open("i9-control", control.endpoint)
        yield* other.send("status")
        yield* connected(control)
        yield* disconnected(control)
      }).pipe(Effect.provide(RunnerConnections.layerWith({ socketIdle: "2400 millis" })))
      yield* conn.send("status")
      yield* connected(fake)
      yield* tick
      yield* conn.send("status") // used again after 0.6 of the period: the period starts again
      yield* tick // 1.2 periods after the first use, 0.6 after the last
      assert.deepStrictEqual(yield* fake.peers, { replIn: 1, replOut: 1, disconnects: 0 })
      assert.isTrue(yield* conn.socketsOpen)
    }).pipe(Effect.provide(RunnerConnections.layerWith({ socketIdle: "4 seconds" })), Effect.scoped), 60_000)

  it.live("operations at once open one pair of sockets, and the idle close leaves none", () =>
    withConnections(Effect.gen(function*() {
      const fake = yield* fakeRunner
      const conn = yield* (yield* RunnerConnections).open("i10", fake.endpoint)
      const replies = yield* Effect.all(Array.from({ length: 4 }, () => conn.status("10 seconds")), { concurrency: "unbounded" })
      assert.deepStrictEqual(replies.map((r) => r.startedAt), [1, 1, 1, 1])
      yield* disconnected(fake)
      assert.strictEqual((yield* fake.peers).disconnects, 2) // one PUSH's and one PULL's connection
      assert.isFalse(yield* conn.socketsOpen)
    })), 60_000)

  it.live("sockets that cannot be made stay closed: every operation tries anew and fails the same way", () =>
    withConnections(Effect.gen(function*() {
      // a host libzmq refuses at connect (EINVAL): the PUSH is made and closed again, nothing stays open
      const conn = yield* (yield* RunnerConnections).open("i8", { host: "no such host", replInPort: 2000, replOutPort: 2001 })
      for (let i = 0; i < 3; i++) {
        const error = yield* Effect.flip(conn.send("status"))
        assert.strictEqual(error.reason, "Protocol")
        assert.include(error.message, "cannot connect to the runner's REPL-in port")
        assert.isFalse(yield* conn.socketsOpen)
      }
    })), 60_000)

  it.live("closing the service closes open sockets; a closed connection refuses and opens nothing", () =>
    Effect.gen(function*() {
      const fake = yield* fakeRunner
      const conn = yield* Effect.gen(function*() {
        const c = yield* (yield* RunnerConnections).open("i7", fake.endpoint)
        yield* c.send("status")
        yield* connected(fake)
        return c
      }).pipe(Effect.provide(RunnerConnections.layerWith({ socketIdle: "1 hour" })), Effect.scoped)
      yield* disconnected(fake)
      const error = yield* Effect.flip(conn.send("status"))
      assert.strictEqual(error.reason, "Closed")
      assert.strictEqual(error.message, "runner connection closed")
      assert.isFalse(yield* conn.socketsOpen)
    }).pipe(Effect.scoped), 60_000)
})
