import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Layer, Option, Scope } from "effect"
import { InvalidRequest, KernelNotFound, RunNotFound } from "../../src/domain/Errors.ts"
import { flushWindow, framesOf, KernelExecution, MAX_FLUSH, toResult } from "../../src/kernel/Execute.ts"
import { KernelRegistry } from "../../src/kernel/KernelRegistry.ts"
import { type PollResult, RunnerConnections } from "../../src/kernel/RunnerClient.ts"
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

const Deps = Layer.mergeAll(KernelRegistry.layer, RunnerConnections.layer)
const TestLayer = KernelExecution.layer.pipe(Layer.provideMerge(Deps))
const withExecution = <A, E>(self: Effect.Effect<A, E, KernelExecution | KernelRegistry | RunnerConnections | Scope.Scope>) =>
  self.pipe(Effect.provide(TestLayer), Effect.scoped)

describe("KernelExecution against the runner simulator", () => {
  it.live("query, input, continue, completions, services, unknown kernels and runs", () =>
    withExecution(Effect.gen(function*() {
      const runner = yield* spawnRunner
      const registry = yield* KernelRegistry
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

      const lost = yield* Effect.flip(exec.execute({ apiVersion: 3, kernelId: "k", runId: "in1", mode: "continue", code: "", opts: {}, flushTimeout: 1 }))
      assert.instanceOf(lost, RunNotFound)
      const bad = yield* Effect.flip(exec.execute({ apiVersion: 3, kernelId: "k", runId: null, mode: "continue", code: "", opts: {}, flushTimeout: 1 }))
      assert.instanceOf(bad, InvalidRequest)
      const unknown = yield* Effect.flip(exec.execute({ apiVersion: 3, kernelId: "nope", runId: null, mode: "query", code: "", opts: {}, flushTimeout: 1 }))
      assert.instanceOf(unknown, KernelNotFound)

      const c = yield* exec.complete("k", "pri", {})
      assert.deepStrictEqual(c, { status: "finished", completions: ["print("] })
      assert.deepStrictEqual(yield* exec.startService("k", "web", {}), { status: "started" })
      assert.deepStrictEqual(yield* exec.startService("k", "nope", {}), { status: "failed", error: "invalid service name" })
    })), 60_000)

  it.live("batch: a failing build ends with build-finished ≠ 0, then finished 127", () =>
    withExecution(Effect.gen(function*() {
      const runner = yield* spawnRunner
      const registry = yield* KernelRegistry
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
      const registry = yield* KernelRegistry
      const exec = yield* KernelExecution
      yield* registry.upsert(kernel("i"))
      yield* (yield* RunnerConnections).open("i", runner.endpoint)
      const first = yield* exec.execute({ apiVersion: 3, kernelId: "i", runId: "s", mode: "query", code: "import time\ntime.sleep(60)", opts: {}, flushTimeout: 0.5 })
      assert.strictEqual(first.status, "continued")
      yield* exec.interrupt("i")
      const r = yield* exec.execute({ apiVersion: 3, kernelId: "i", runId: "s", mode: "continue", code: "", opts: {}, flushTimeout: 10 })
      assert.strictEqual(r.status, "finished")
      assert.notStrictEqual(r.exitCode, 0)
    })), 60_000)
})
