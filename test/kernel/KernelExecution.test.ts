import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Layer, Option, Scope } from "effect"
import { TestClock } from "effect/testing"
import * as Zmq from "zeromq"
import { InvalidRequest, KernelNotFound } from "../../src/domain/Errors.ts"
import { flushWindow, framesOf, KernelExecution, MAX_FLUSH, toResult } from "../../src/kernel/KernelExecution.ts"
import { KernelTable } from "../../src/kernel/KernelTable.ts"
import { RunnerConnections } from "../../src/kernel/runner/RunnerConnections.ts"
import type { PollResult } from "../../src/kernel/runner/RunnerRecords.ts"
import { type AgentEvent, EventPublisher } from "../../src/manager/EventPublisher.ts"
import { kernelInfo, spawnRunner } from "./RunnerSupport.ts"

const poll = (items: PollResult["items"], end?: { status: "finished" | "waiting-input"; exitCode: number | null }): PollResult => ({
  items,
  end: end === undefined
    ? Option.none()
    : Option.some({ _tag: "End", status: end.status, exitCode: end.exitCode, options: end.status === "waiting-input" ? { is_password: true } : null })
})

describe("execute results", () => {
  const items: PollResult["items"] = [
    { _tag: "Stream", stream: "stdout", text: "a" },
    { _tag: "Stream", stream: "stderr", text: "e" },
    { _tag: "Stream", stream: "stdout", text: "b" },
    { _tag: "Media", mime: "text/html", data: "<b>x</b>" },
    { _tag: "Other", type: "html", text: "<i>y</i>" },
    { _tag: "Other", type: "log", text: "l" }
  ]

  it("v2/v3: console items, media pairs, other types pass through", () => {
    const r = toResult(3, "r1", poll([...items.slice(0, 1), { _tag: "Stream", stream: "stdout", text: "c" }, ...items.slice(1)], { status: "finished", exitCode: 0 }))
    assert.deepStrictEqual(r, {
      runId: "r1",
      status: "finished",
      exitCode: 0,
      options: null,
      files: [],
      console: [["stdout", "ac"], ["stderr", "e"], ["stdout", "b"], ["media", ["text/html", "<b>x</b>"]], ["html", "<i>y</i>"], ["log", "l"]]
    })
  })

  it("v1: joined stdout/stderr, media and html lists", () => {
    const r = toResult(1, "r1", poll(items))
    assert.deepStrictEqual(r, {
      runId: "r1",
      status: "continued",
      exitCode: null,
      options: null,
      files: [],
      stdout: "ab",
      stderr: "e",
      media: [["text/html", "<b>x</b>"]],
      html: ["<i>y</i>"]
    })
  })

  it("waiting-input carries is_password", () => {
    const r = toResult(2, "r", poll([], { status: "waiting-input", exitCode: null }))
    assert.strictEqual(r.status, "waiting-input")
    assert.deepStrictEqual(r.options, { is_password: true })
  })

  it("modes and flush windows", () => {
    assert.deepStrictEqual(framesOf("batch", "", { build: "make", exec: "./a.out" }), Option.some({
      frames: [["clean", ""], ["build", "make"], ["exec", "./a.out"]],
      create: true
    }))
    assert.deepStrictEqual(framesOf("continue", "", {}), Option.some({ frames: [], create: false }))
    assert.isTrue(Option.isNone(framesOf("bogus", "", {})))
    assert.isTrue(Duration.equals(flushWindow(null), MAX_FLUSH))
    assert.isTrue(Duration.equals(flushWindow(0.2), Duration.millis(200)))
    assert.isTrue(Duration.equals(flushWindow(1000), MAX_FLUSH))
  })
})

const kernel = (kernelId: string) =>
  kernelInfo(kernelId, { servicePorts: [{ name: "web", protocol: "http", container_port: 8080, host_port: 30080 }] })

const testLayer = (sink: Array<AgentEvent>) =>
  KernelExecution.layer.pipe(Layer.provideMerge(Layer.mergeAll(KernelTable.layer, RunnerConnections.layer, EventPublisher.layerTest(sink))))
const withExecution = <A, E>(
  self: Effect.Effect<A, E, KernelExecution | KernelTable | RunnerConnections | Scope.Scope>,
  sink: Array<AgentEvent> = []
) => self.pipe(Effect.provide(testLayer(sink)), Effect.scoped)

describe("KernelExecution against the runner simulator", () => {
  it.live("query, input, continue, completions, services, unknown kernels and runs", () => {
    const sink: Array<AgentEvent> = []
    return withExecution(Effect.gen(function*() {
      const runner = yield* spawnRunner
      const registry = yield* KernelTable
      const exec = yield* KernelExecution
      yield* registry.upsert(kernel("k"))
      yield* (yield* RunnerConnections).open("k", runner.endpoint)

      const r = yield* exec.execute({ apiVersion: 3, kernelId: "k", runId: null, mode: "query", code: "print('hi')", opts: {}, flushTimeout: 10 })
      assert.match(r.runId, /^[0-9a-f]{32}$/)
      assert.deepStrictEqual([r.status, r.exitCode, r.console], ["finished", 0, [["stdout", "hi\n"]]])

      const w = yield* exec.execute({ apiVersion: 3, kernelId: "k", runId: "in1", mode: "query", code: "import getpass\nprint(getpass.getpass())", opts: {}, flushTimeout: 10 })
      assert.deepStrictEqual([w.status, w.options], ["waiting-input", { is_password: true }])
      const f = yield* exec.execute({ apiVersion: 3, kernelId: "k", runId: "in1", mode: "input", code: "s3cret", opts: {}, flushTimeout: 10 })
      assert.deepStrictEqual([f.status, f.exitCode, f.console], ["finished", 0, [["stdout", "s3cret\n"]]])

      // continue/input of a run the agent does not know: an empty `continued`, as the 19.06 Docker
      // agent answers (its attach_output_queue makes a fresh queue); nothing reaches the runner
      const lost = yield* exec.execute({ apiVersion: 3, kernelId: "k", runId: "in1", mode: "continue", code: "", opts: {}, flushTimeout: 0.1 })
      assert.deepStrictEqual(lost, { runId: "in1", status: "continued", exitCode: null, options: null, files: [], console: [] })
      const lostInput = yield* exec.execute({ apiVersion: 1, kernelId: "k", runId: "gone", mode: "input", code: "x", opts: {}, flushTimeout: 0.1 })
      assert.deepStrictEqual([lostInput.status, lostInput.stdout, lostInput.stderr], ["continued", "", ""])
      const bad = yield* Effect.flip(exec.execute({ apiVersion: 3, kernelId: "k", runId: null, mode: "continue", code: "", opts: {}, flushTimeout: 1 }))
      assert.instanceOf(bad, InvalidRequest)
      // an unknown kernel: kernel_terminated(kid, "self-terminated", None) first (so the manager
      // releases the session), then the error, as the 19.06 Docker agent's _execute
      const unknown = yield* Effect.flip(exec.execute({ apiVersion: 3, kernelId: "nope", runId: null, mode: "query", code: "", opts: {}, flushTimeout: 1 }))
      assert.instanceOf(unknown, KernelNotFound)
      assert.deepStrictEqual(sink, [{ name: "kernel_terminated", args: ["nope", "self-terminated", null] }])

      const c = yield* exec.complete("k", "pri", {})
      assert.deepStrictEqual(c, { status: "finished", completions: ["print("] })
      assert.deepStrictEqual(yield* exec.startService("k", "web", {}), { status: "started" })
      assert.deepStrictEqual(yield* exec.startService("k", "nope", {}), { status: "failed", error: "invalid service name" })
    }), sink)
  }, 60_000)

  it.live("batch: a failing build ends with build-finished ≠ 0, then finished 127", () =>
    withExecution(Effect.gen(function*() {
      const runner = yield* spawnRunner
      const registry = yield* KernelTable
      const exec = yield* KernelExecution
      yield* registry.upsert(kernel("b"))
      yield* (yield* RunnerConnections).open("b", runner.endpoint)
      const opts = { clean: "", build: "echo building; exit 3", exec: "echo never" }
      const seen: Array<readonly [string, number | null]> = []
      let r = yield* exec.execute({ apiVersion: 3, kernelId: "b", runId: "batch1", mode: "batch", code: "", opts, flushTimeout: 10 })
      seen.push([r.status, r.exitCode])
      while (r.status !== "finished") {
        r = yield* exec.execute({ apiVersion: 3, kernelId: "b", runId: "batch1", mode: "continue", code: "", opts: {}, flushTimeout: 10 })
        seen.push([r.status, r.exitCode])
      }
      assert.deepStrictEqual(seen, [["clean-finished", 0], ["build-finished", 3], ["finished", 127]])
    })), 60_000)

  it.live("an interrupt ends time.sleep(60) quickly", () =>
    withExecution(Effect.gen(function*() {
      const runner = yield* spawnRunner
      const registry = yield* KernelTable
      const exec = yield* KernelExecution
      yield* registry.upsert(kernel("i"))
      yield* (yield* RunnerConnections).open("i", runner.endpoint)
      // interrupt only once the code runs (an interrupt before the runner started it is lost, as in the
      // real runner): the run prints a marker first, and the test polls until it has seen it
      let polled = yield* exec.execute({ apiVersion: 3, kernelId: "i", runId: "s", mode: "query", code: "import time\nprint('sleeping', flush=True)\ntime.sleep(60)", opts: {}, flushTimeout: 0.5 })
      let out = JSON.stringify(polled.console)
      while (polled.status === "continued" && !out.includes("sleeping")) {
        polled = yield* exec.execute({ apiVersion: 3, kernelId: "i", runId: "s", mode: "continue", code: "", opts: {}, flushTimeout: 0.5 })
        out += JSON.stringify(polled.console)
      }
      assert.strictEqual(polled.status, "continued")
      yield* exec.interrupt("i")
      const r = yield* exec.execute({ apiVersion: 3, kernelId: "i", runId: "s", mode: "continue", code: "", opts: {}, flushTimeout: 10 })
      assert.strictEqual(r.status, "finished")
      assert.notStrictEqual(r.exitCode, 0)
    })), 60_000)

  it.effect("start_service waits 30 s for a runner that blocks until the port opens; no keep-alive pings queue up meanwhile", () => {
    const sink: Array<AgentEvent> = []
    return withExecution(Effect.gen(function*() {
      // a runner played by the test (PULL on repl-in, PUSH on repl-out), answering when told to
      const pull = yield* Effect.acquireRelease(Effect.sync(() => new Zmq.Pull({ linger: 0 })), (x) => Effect.sync(() => x.close()))
      const push = yield* Effect.acquireRelease(Effect.sync(() => new Zmq.Push({ linger: 0 })), (x) => Effect.sync(() => x.close()))
      yield* Effect.promise(() => pull.bind("tcp://127.0.0.1:*"))
      yield* Effect.promise(() => push.bind("tcp://127.0.0.1:*"))
      const portOf = (e: string | null) => Number(/:(\d+)$/.exec(e ?? "")![1])
      const received: Array<string> = []
      const nextFrame = Effect.promise(() => pull.receive()).pipe(Effect.map((f) => f[0]!.toString()), Effect.tap((t) => Effect.sync(() => void received.push(t))))
      const until = (type: string) => Effect.gen(function*() {
        for (;;) if ((yield* nextFrame) === type) return
      })

      const registry = yield* KernelTable
      const exec = yield* KernelExecution
      yield* registry.upsert(kernel("svc"))
      yield* (yield* RunnerConnections).open("svc", { host: "127.0.0.1", replInPort: portOf(pull.lastEndpoint), replOutPort: portOf(push.lastEndpoint) })
      const started = yield* exec.startService("svc", "web", {}).pipe(Effect.forkChild)
      yield* until("start-service")
      received.length = 0
      // the service takes 25 s to open its port (the 19.06 runner blocks its loop until then)
      yield* TestClock.adjust("25 seconds")
      assert.isUndefined(started.pollUnsafe(), "still waiting after 25 s")
      yield* Effect.promise(() => push.send(["service-result", JSON.stringify({ status: "started" })]))
      assert.deepStrictEqual(yield* Fiber.join(started), { status: "started" })
      // everything the agent sent while the runner was blocked, up to a marker
      const conn = yield* (yield* RunnerConnections).get("svc")
      yield* conn.send("marker", "")
      yield* until("marker")
      assert.deepStrictEqual(received, ["marker"], "no status pings while start-service was pending")
      // and the keep-alive resumes afterwards
      yield* TestClock.adjust("10 seconds")
      yield* until("status")

      // past 30 s: failed with a timeout, as the Docker agent
      const late = yield* exec.startService("svc", "web", {}).pipe(Effect.forkChild)
      yield* until("start-service")
      yield* TestClock.adjust("31 seconds")
      assert.deepStrictEqual(yield* Fiber.join(late), { status: "failed", error: "timeout" })
    }), sink)
  }, 60_000)
})
