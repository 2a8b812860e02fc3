// Timeouts measured on the wall clock break when it jumps: a poll's flush window is a deadline, and
// a wall clock stepped back an hour (NTP, VM resume) must not hold the poll (and the run's lock) for
// an hour. The runner is the simulator of RunnerSupport; the Clock's wall time steps back after the
// poll's first reading, its monotonic time and its sleeps are the real ones.
import { assert, describe, it } from "@effect/vitest"
import { Clock, type Duration, Effect, Option } from "effect"
import { RunnerConnections } from "../../src/kernel/runner/RunnerConnections.ts"
import { spawnRunner } from "./RunnerSupport.ts"

const steppedBack = (real: Clock.Clock, stepMillis: number): Clock.Clock => {
  let reads = 0
  const wall = () => Date.now() - (reads++ === 0 ? 0 : stepMillis)
  return {
    currentTimeMillisUnsafe: wall,
    currentTimeMillis: Effect.sync(wall),
    currentTimeNanosUnsafe: () => BigInt(wall()) * 1_000_000n,
    currentTimeNanos: Effect.sync(() => BigInt(wall()) * 1_000_000n),
    monotonicTimeNanosUnsafe: () => real.monotonicTimeNanosUnsafe(),
    monotonicTimeNanos: real.monotonicTimeNanos,
    sleep: (d: Duration.Duration) => real.sleep(d)
  }
}

describe("runner poll deadline", () => {
  it.live("a wall clock stepped back an hour does not stretch a 1 s flush window", () =>
    Effect.gen(function*() {
      const runner = yield* spawnRunner
      const conn = yield* (yield* RunnerConnections).open("k-clock", runner.endpoint)
      yield* conn.attachRun("r", [["code", "import time\ntime.sleep(60)"]], { create: true })
      const real = yield* Clock.clockWith(Effect.succeed)
      const poll = yield* conn.poll("r", "1 second").pipe(
        Effect.provideService(Clock.Clock, steppedBack(real, 3_600_000)),
        Effect.timeoutOption("30 seconds")
      )
      assert.isTrue(Option.isSome(poll), "the poll did not return within 30 s")
      if (Option.isSome(poll)) assert.isTrue(Option.isNone(poll.value.end))
    }).pipe(Effect.provide(RunnerConnections.layer), Effect.scoped), 60_000)
})
