import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit, Fiber, Option, Schedule, Scope } from "effect"
import { type RunnerConnection, RunnerError } from "../../src/kernel/runner/RunnerConnection.ts"
import { RunnerConnections } from "../../src/kernel/runner/RunnerConnections.ts"
import {
  KERNEL_MAX_BUFFERED_BYTES,
  MESSAGE_MAX_BYTES,
  type PollResult,
  RECORD_MAX_BYTES,
  RUN_MAX_ITEMS,
  truncateUtf8
} from "../../src/kernel/runner/RunnerRecords.ts"
import { encode } from "../../src/codec/Msgpack.ts"
import { fakeRunner, spawnRunner } from "./RunnerSupport.ts"

const textOf = (polls: ReadonlyArray<PollResult>, stream: "stdout" | "stderr" = "stdout"): string =>
  polls.flatMap((p) => p.items).map((it) => (it._tag === "Stream" && it.stream === stream ? it.text : "")).join("")

/** Polls `runId` until `finished`, returning every poll. */
const pollToEnd = (conn: RunnerConnection, runId: string, flush: Duration.Input = "20 seconds") =>
  Effect.gen(function*() {
    const polls: Array<PollResult> = []
    for (let i = 0; i < 200; i++) {
      const p = yield* conn.poll(runId, flush)
      polls.push(p)
      if (Option.isSome(p.end) && p.end.value.status === "finished") return polls
    }
    return polls
  })

const py = (code: string) => [["code", code]] as const

const withConnections = <A, E>(self: Effect.Effect<A, E, RunnerConnections | Scope.Scope>) =>
  self.pipe(Effect.provide(RunnerConnections.layer), Effect.scoped)

/** `check` re-read until `done` holds, bounded: a condition to wait on instead of a sleep. */
const waitFor = <A, E, R>(check: Effect.Effect<A, E, R>, done: (a: A) => boolean) =>
  check.pipe(
    Effect.repeat({ until: done, schedule: Schedule.spaced("10 millis") }),
    Effect.timeoutOrElse({
      duration: "20 seconds",
      orElse: () => Effect.die(new Error("condition not reached within 20 s"))
    })
  )

describe("RunnerConnections against the runner simulator", () => {
  it.live("status ping answers started_at; open is idempotent; close makes get fail Closed", () =>
    withConnections(Effect.gen(function*() {
      const runner = yield* spawnRunner
      const conns = yield* RunnerConnections
      const conn = yield* conns.open("k1", runner.endpoint)
      const again = yield* conns.open("k1", runner.endpoint)
      assert.strictEqual(conn, again)
      const { startedAt } = yield* conn.status("10 seconds")
      assert.isTrue(typeof startedAt === "number" && startedAt > 0)
      yield* conns.close("k1")
      const exit = yield* Effect.exit(conns.get("k1"))
      assert.isTrue(Exit.isFailure(exit))
      const sendExit = yield* Effect.exit(conn.send("status"))
      assert.isTrue(Exit.isFailure(sendExit))
    })), 60_000)

  it.live("status times out against a silent endpoint", () =>
    withConnections(Effect.gen(function*() {
      const fake = yield* fakeRunner
      const conn = yield* (yield* RunnerConnections).open("k2", fake.endpoint)
      const error = yield* Effect.flip(conn.status("300 millis"))
      assert.instanceOf(error, RunnerError)
      assert.strictEqual(error.reason, "Timeout")
    })), 30_000)

  it.live("UTF-8 sequences split across records survive", () =>
    withConnections(Effect.gen(function*() {
      const runner = yield* spawnRunner
      const conn = yield* (yield* RunnerConnections).open("k3", runner.endpoint)
      const code = [
        "import sys, time",
        "for part in (b'\\xe2', b'\\x82\\xac', b'\\xf0\\x9f', b'\\x98\\x80\\n'):",
        "    sys.stdout.buffer.write(part); sys.stdout.buffer.flush(); time.sleep(0.15)"
      ].join("\n")
      yield* conn.attachRun("r1", py(code), { create: true })
      const polls = yield* pollToEnd(conn, "r1")
      assert.strictEqual(textOf(polls), "€😀\n")
      // the sleeps make the runner send each part as its own record: the decoders did the joining
    })), 60_000)

  it.live("runs are FIFO: a second run waits until the first finishes", () =>
    withConnections(Effect.gen(function*() {
      const runner = yield* spawnRunner
      const conn = yield* (yield* RunnerConnections).open("k4", runner.endpoint)
      yield* conn.attachRun("a", py("import time\ntime.sleep(1)\nprint('A')"), { create: true })
      const second = yield* Effect.forkChild(conn.attachRun("b", py("print('B')"), { create: true }))
      assert.strictEqual(yield* waitFor(conn.pendingRuns, (n) => n === 1), 1)
      assert.deepStrictEqual(yield* conn.currentRun, Option.some("a"))
      const a = yield* pollToEnd(conn, "a")
      assert.strictEqual(textOf(a), "A\n")
      yield* Fiber.join(second)
      const b = yield* pollToEnd(conn, "b")
      assert.strictEqual(textOf(b), "B\n")
      const end = b[b.length - 1]!.end
      assert.isTrue(Option.isSome(end) && end.value.exitCode === 0)
      assert.deepStrictEqual(yield* conn.currentRun, Option.none())
    })), 60_000)

  it.live("a cancelled waiting run gives up its place without sending its code", () =>
    withConnections(Effect.gen(function*() {
      const runner = yield* spawnRunner
      const conn = yield* (yield* RunnerConnections).open("k5", runner.endpoint)
      yield* conn.attachRun("a", py("import time\ntime.sleep(0.5)\nprint('A')"), { create: true })
      const waiting = yield* Effect.forkChild(conn.attachRun("never", py("print('NEVER')"), { create: true }))
      yield* waitFor(conn.pendingRuns, (n) => n === 1) // it is queued behind "a"
      yield* Fiber.interrupt(waiting)
      assert.strictEqual(yield* conn.pendingRuns, 0)
      yield* pollToEnd(conn, "a")
      assert.deepStrictEqual(yield* conn.currentRun, Option.none())
      yield* conn.attachRun("c", py("print('C')"), { create: true })
      const c = yield* pollToEnd(conn, "c")
      assert.strictEqual(textOf(c), "C\n")
    })), 60_000)

  it.live("continuation: short flush windows give continued polls; output complete and in order", () =>
    withConnections(Effect.gen(function*() {
      const runner = yield* spawnRunner
      const conn = yield* (yield* RunnerConnections).open("k6", runner.endpoint)
      yield* conn.attachRun("r", py("import time\nfor i in range(10):\n    print(i)\n    time.sleep(0.1)"), { create: true })
      const polls = yield* pollToEnd(conn, "r", "250 millis")
      assert.isTrue(polls.length >= 2, `expected continued polls, got ${polls.length}`)
      assert.isTrue(polls.slice(0, -1).every((p) => Option.isNone(p.end)))
      assert.strictEqual(textOf(polls), Array.from({ length: 10 }, (_, i) => `${i}\n`).join(""))
    })), 60_000)

  it.live("a cancelled poll loses no output; the run stays current", () =>
    withConnections(Effect.gen(function*() {
      const runner = yield* spawnRunner
      const conn = yield* (yield* RunnerConnections).open("k7", runner.endpoint)
      yield* conn.attachRun("r", py("import time\nprint('one', flush=True)\ntime.sleep(0.6)\nprint('two')"), { create: true })
      const poller = yield* Effect.forkChild(conn.poll("r", "30 seconds"))
      yield* waitFor(conn.bufferedBytes, (n) => n > 0) // 'one' has arrived while the poll is pending
      assert.isUndefined(poller.pollUnsafe())
      yield* Fiber.interrupt(poller)
      assert.deepStrictEqual(yield* conn.currentRun, Option.some("r"))
      const rest = yield* pollToEnd(conn, "r")
      assert.strictEqual(textOf(rest), "one\ntwo\n")
      // a continue of a forgotten run is refused
      const error = yield* Effect.flip(conn.attachRun("r", [], { create: false }))
      assert.strictEqual(error.reason, "UnknownRun")
    })), 60_000)

  it.live("input: waiting-input ends the poll with is_password; input resumes the run", () =>
    withConnections(Effect.gen(function*() {
      const runner = yield* spawnRunner
      const conn = yield* (yield* RunnerConnections).open("k8", runner.endpoint)
      yield* conn.attachRun("r", py("x = input('name? ')\nprint('hello', x)"), { create: true })
      const first = yield* conn.poll("r", "20 seconds")
      assert.isTrue(Option.isSome(first.end) && first.end.value.status === "waiting-input")
      assert.deepStrictEqual(Option.getOrThrow(first.end).options, { is_password: false })
      yield* conn.attachRun("r", [["input", "bob"]], { create: false })
      const rest = yield* pollToEnd(conn, "r")
      assert.strictEqual(textOf([first, ...rest]), "name? hello bob\n")
    })), 60_000)

  it.live("completions and service starts are answered", () =>
    withConnections(Effect.gen(function*() {
      const runner = yield* spawnRunner
      const conn = yield* (yield* RunnerConnections).open("k9", runner.endpoint)
      const c = yield* conn.complete(JSON.stringify({ code: "pri" }), "10 seconds")
      assert.deepStrictEqual(c, Option.some(["print("]))
      const s = yield* conn.startService(JSON.stringify({ name: "web", port: 8080, protocol: "http", options: {} }), "10 seconds")
      assert.deepStrictEqual(s, Option.some({ status: "started" }))
      const again = yield* conn.startService(JSON.stringify({ name: "web", port: 8080, protocol: "http", options: {} }), "10 seconds")
      assert.deepStrictEqual(again, Option.some({ status: "running" }))
    })), 60_000)
})

describe("RunnerConnections against a scripted runner", () => {
  it.live("caps records at 10 MiB, decodes raw HTML media, routes other types", () =>
    withConnections(Effect.gen(function*() {
      const fake = yield* fakeRunner
      const conn = yield* (yield* RunnerConnections).open("f1", fake.endpoint)
      yield* conn.attachRun("r", [["code", "x"]], { create: true })
      const [type, payload] = yield* fake.receive
      assert.deepStrictEqual([type, payload.toString()], ["code", "x"])
      // "é" (2 bytes) repeated so that the cap falls inside a sequence
      const big = Buffer.from("é".repeat(RECORD_MAX_BYTES / 2 + 10))
      yield* fake.emit("stdout", Buffer.concat([Buffer.from("a"), big]))
      yield* fake.emit("media", "<b>raw html</b>")
      yield* fake.emit("media", JSON.stringify({ type: "image/svg+xml", data: "<svg/>" }))
      yield* fake.emit("html", "<i>x</i>")
      yield* fake.emit("finished", JSON.stringify({ exitCode: 3 }))
      const polls = yield* pollToEnd(conn, "r")
      const items = polls.flatMap((p) => p.items)
      const out = items[0]!
      assert.isTrue(out._tag === "Stream")
      if (out._tag === "Stream") {
        // exactly the longest prefix of whole characters within the cap: "a" + (cap/2 - 1) × "é" is
        // cap - 1 bytes (the next "é" would straddle the cap), nothing cut short, nothing replaced
        const expected = "a" + "é".repeat(RECORD_MAX_BYTES / 2 - 1)
        assert.strictEqual(Buffer.byteLength(out.text), RECORD_MAX_BYTES - 1)
        assert.isTrue(out.text === expected, `stdout is not the capped prefix (${out.text.length} chars)`)
        assert.isFalse(out.text.includes("\uFFFD"))
      }
      assert.deepStrictEqual(items.slice(1), [
        { _tag: "Media", mime: "text/html", data: "<b>raw html</b>" },
        { _tag: "Media", mime: "image/svg+xml", data: "<svg/>" },
        { _tag: "Other", type: "html", text: "<i>x</i>" }
      ])
      const end = polls[polls.length - 1]!.end
      assert.isTrue(Option.isSome(end) && end.value.exitCode === 3)
    })), 60_000)

  it.live("a runner flooding poll-ending records cannot grow a run's buffer past its cap", () =>
    withConnections(Effect.gen(function*() {
      const fake = yield* fakeRunner
      const conn = yield* (yield* RunnerConnections).open("f3", fake.endpoint)
      yield* conn.attachRun("r", [], { create: true })
      const flood = RUN_MAX_ITEMS + 500
      for (let i = 0; i < flood; i++) yield* fake.emit("waiting-input", "{}")
      yield* fake.emit("finished", "{\"exitCode\":0}")
      // the reader has taken every record before the first poll: the run ended with the last one
      yield* waitFor(conn.currentRun, Option.isNone)
      let ends = 0
      for (let i = 0; i < flood + 10; i++) {
        const p = yield* conn.poll("r", "1 second")
        if (Option.isSome(p.end) && p.end.value.status === "waiting-input") ends++
        if (Option.isSome(p.end) && p.end.value.status === "finished") break
      }
      // every record arrived before the first poll: the cap, and only the cap, limited what was kept
      assert.strictEqual(ends, RUN_MAX_ITEMS)
      assert.strictEqual(yield* conn.bufferedBytes, 0)
    })), 60_000)

  it.live("a message over MESSAGE_MAX_BYTES never reaches the agent; the connection recovers", () =>
    withConnections(Effect.gen(function*() {
      const fake = yield* fakeRunner
      const conn = yield* (yield* RunnerConnections).open("f4", fake.endpoint)
      yield* conn.attachRun("r", [], { create: true })
      yield* fake.emit("stdout", Buffer.alloc(MESSAGE_MAX_BYTES + 1024 * 1024, 0x41))
      // ZeroMQ drops the connection (and what was queued on it); the agent reconnects: send until heard
      let text = ""
      for (let i = 0; i < 120 && !text.includes("after"); i++) {
        yield* fake.emit("stdout", "after\n")
        text += textOf([yield* conn.poll("r", "500 millis")])
      }
      assert.include(text, "after")
      assert.notInclude(text, "AAAA")
      yield* fake.emit("finished", "{\"exitCode\":0}")
      yield* pollToEnd(conn, "r")
    })), 120_000)

  it.live("all runs of a kernel share one output budget: uncollected runs count, collected output frees it", () =>
    withConnections(Effect.gen(function*() {
      const fake = yield* fakeRunner
      const conn = yield* (yield* RunnerConnections).open("f5", fake.endpoint)
      const MiB = 1024 * 1024
      const share = Math.ceil((KERNEL_MAX_BUFFERED_BYTES * 0.6) / MiB) // 60 % of the budget, per run
      const flood = (runId: string) =>
        Effect.gen(function*() {
          yield* conn.attachRun(runId, [], { create: true })
          for (let i = 0; i < share; i++) yield* fake.emit("stdout", Buffer.alloc(MiB, 0x61 + (i % 26)))
          yield* fake.emit("finished", "{\"exitCode\":0}")
        })
      const outputOf = (runId: string) => Effect.map(pollToEnd(conn, runId), (polls) => textOf(polls).length)
      // run a finishes uncollected; run b then fills what is left of the budget and drops the rest
      yield* flood("a")
      yield* flood("b")
      const b = yield* pollToEnd(conn, "b")
      const bText = textOf(b)
      assert.isBelow(bText.length, share * MiB)
      assert.match(textOf(b, "stderr"), /output records dropped/)
      assert.isAtMost(yield* conn.bufferedBytes, KERNEL_MAX_BUFFERED_BYTES)
      // a's output is whole; collecting it frees the budget for the next run
      assert.strictEqual(yield* outputOf("a"), share * MiB)
      assert.strictEqual(yield* conn.bufferedBytes, 0)
      yield* flood("c")
      assert.strictEqual(yield* outputOf("c"), share * MiB)
    })), 180_000)

  it.live("replies nobody asked for are dropped; a request still gets its own", () =>
    withConnections(Effect.gen(function*() {
      const fake = yield* fakeRunner
      const conn = yield* (yield* RunnerConnections).open("f6", fake.endpoint)
      yield* conn.send("status") // the sockets open on first use: open them before the runner speaks unasked
      for (let i = 0; i < 200; i++) yield* fake.emit(i % 2 === 0 ? "completion" : "service-result", JSON.stringify([`stale ${i}`]))
      // a run's marker behind them: once it is polled, the reader has routed every stale reply
      yield* conn.attachRun("r", [], { create: true })
      yield* fake.emit("stdout", "marker\n")
      yield* fake.emit("finished", "{\"exitCode\":0}")
      assert.strictEqual(textOf(yield* pollToEnd(conn, "r")), "marker\n")
      const answer = Effect.gen(function*() {
        const [type] = yield* fake.receive
        yield* fake.emit(type === "complete" ? "completion" : "service-result", JSON.stringify(["fresh"]))
      })
      const [c] = yield* Effect.all([conn.complete("{}", "10 seconds"), answer], { concurrency: "unbounded" })
      assert.deepStrictEqual(c, Option.some(["fresh"]))
      const [s] = yield* Effect.all([conn.startService("{}", "10 seconds"), answer], { concurrency: "unbounded" })
      assert.deepStrictEqual(s, Option.some(["fresh"]))
      assert.strictEqual(yield* conn.bufferedBytes, 0)
    })), 60_000)

  it.live("records with no current run are dropped", () =>
    withConnections(Effect.gen(function*() {
      const fake = yield* fakeRunner
      const conn = yield* (yield* RunnerConnections).open("f2", fake.endpoint)
      yield* conn.send("status") // the sockets open on first use: open them before the runner speaks unasked
      yield* fake.emit("stdout", "stray\n")
      yield* fake.emit("finished", "{\"exitCode\":0}")
      // a status reply on the same socket orders after the stray records: once it is answered, the
      // reader has passed them (replies are sent until one is heard, the request registers first)
      const answer = fake.emit("status", encode({ started_at: 1 })).pipe(Effect.repeat(Schedule.spaced("50 millis")), Effect.andThen(Effect.never))
      yield* Effect.race(conn.status("20 seconds"), answer)
      yield* conn.attachRun("r", [], { create: true })
      yield* fake.emit("stdout", "mine\n")
      yield* fake.emit("finished", "{\"exitCode\":0}")
      const polls = yield* pollToEnd(conn, "r")
      assert.strictEqual(textOf(polls), "mine\n")
    })), 30_000)

  it("truncateUtf8 never splits a sequence", () => {
    const b = Buffer.from("aé€😀")
    for (let n = 0; n <= b.length; n++) {
      const t = Buffer.from(truncateUtf8(b, n))
      assert.isTrue(t.length <= n)
      assert.isFalse(t.toString("utf8").includes("\uFFFD"))
    }
  })
})
