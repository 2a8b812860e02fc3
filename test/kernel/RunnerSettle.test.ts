/**
 * The settling probe of reopened runner sockets (src/kernel/runner/RunnerConnection.ts, header) is
 * bounded: it never holds a kernel's frames back for good. A runner whose loop answers `status` later
 * than one probe try waits (a loaded machine) settles all the same, and one that answers nothing gets
 * its frames once the probe's bound is over. Real ZeroMQ, a scripted runner; every wait is on a
 * condition, with a bound.
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Scope } from "effect"
import { type ConnectionOptions } from "../../src/kernel/runner/RunnerConnection.ts"
import { RunnerConnections } from "../../src/kernel/runner/RunnerConnections.ts"
import { type FakeRunner, makeFakeRunner, waitFor } from "./RunnerSupport.ts"

const withConnections = <A, E>(self: Effect.Effect<A, E, RunnerConnections | Scope.Scope>, options: ConnectionOptions) =>
  self.pipe(Effect.provide(RunnerConnections.layerWith(options)), Effect.scoped)

/** The next message the runner gets (keep-alive and probe `status` skipped), within `bound`. */
const receiveWithin = (fake: FakeRunner, bound: Duration.Input) =>
  fake.receive.pipe(
    Effect.timeoutOrElse({
      duration: bound,
      orElse: () => Effect.die(new Error(`the runner got nothing within ${Duration.format(Duration.fromInputUnsafe(bound))}: the frames are held back`))
    })
  )

/**
 * Uses a kernel's connection once, waits for its idle close, then starts a run (which reopens the
 * sockets, and keeps them open while it is current): what the runner gets.
 */
const reopened = (fake: FakeRunner, kernelId: string, bound: Duration.Input) =>
  Effect.gen(function*() {
    const conn = yield* (yield* RunnerConnections).open(kernelId, fake.endpoint)
    yield* conn.send("interrupt", "first") // the first opening is not probed
    assert.deepStrictEqual((yield* receiveWithin(fake, "20 seconds")).map(String), ["interrupt", "first"])
    yield* waitFor("idle close", conn.socketsOpen, (open) => !open)
    yield* conn.attachRun("r", [["code", "print(1)"]], { create: true }) // reopens: the probe goes first
    return (yield* receiveWithin(fake, bound)).map(String)
  })

describe("the settling probe of reopened runner sockets is bounded", () => {
  it.live("a runner answering each status 1.5 s after taking it (one at a time): the frames go out", () =>
    withConnections(
      Effect.gen(function*() {
        const fake = yield* makeFakeRunner({ answerStatus: true, statusDelay: "1500 millis" })
        // the default bound is 30 s: settling must not need it (it did not end at all before)
        assert.deepStrictEqual(yield* reopened(fake, "slow", "25 seconds"), ["code", "print(1)"])
      }),
      { socketIdle: "100 millis" }
    ), 60_000)

  it.live("a runner answering no status at all: the frames go out once the probe's bound is over", () =>
    withConnections(
      Effect.gen(function*() {
        const fake = yield* makeFakeRunner()
        assert.deepStrictEqual(yield* reopened(fake, "mute", "20 seconds"), ["code", "print(1)"])
      }),
      { socketIdle: "100 millis", settleBound: "3 seconds" }
    ), 60_000)
})
