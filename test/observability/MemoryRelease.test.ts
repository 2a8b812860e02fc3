/**
 * MemoryRelease (issue 17 goal 2): after a burst, V8 gives back the pages it pooled (the release, in
 * this process, as the agent runs it), and the release comes once, after the quiet period that follows
 * the last burst (the schedule, under TestClock).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Ref } from "effect"
import { TestClock } from "effect/testing"
import * as fs from "node:fs"
import * as v8 from "node:v8"
import * as vm from "node:vm"
import { lowMemoryNotification, MemoryRelease, MemoryReleaseFailed } from "../../src/observability/MemoryRelease.ts"

/** Resident anonymous memory of this process (MiB): V8's heap and its page pool are anonymous mappings. */
const anonMiB = (): number => Number(/^Anonymous:\s+(\d+) kB$/m.exec(fs.readFileSync("/proc/self/smaps_rollup", "utf8"))![1]) / 1024

/** Full GCs as a normal (not memory-reducing) major GC runs them (vitest's workers run without --expose-gc). */
const fullGc = (): void => {
  v8.setFlagsFromString("--expose-gc")
  const gc = vm.runInNewContext("gc") as () => void
  for (let i = 0; i < 2; i++) gc()
}

const BURST_OBJECTS = 600_000
/** MiB the release must give back of a burst that filled ~100 MiB of old-generation pages */
const RELEASED_MIN_MIB = 40

describe("MemoryRelease", () => {
  it.live(`lowMemoryNotification gives back the pages V8 pooled after a burst (≥ ${RELEASED_MIN_MIB} MiB of ~100)`, () =>
    Effect.gen(function*() {
      let burst: Array<{ readonly id: string; readonly n: ReadonlyArray<number> }> | undefined = Array.from(
        { length: BURST_OBJECTS },
        (_, i) => ({ id: `kernel-${i}`, n: [i, i + 1, i + 2] })
      )
      fullGc() // the burst survives: its objects move to old-generation pages
      assert.strictEqual(burst.length, BURST_OBJECTS)
      burst = undefined
      fullGc() // its pages are emptied: V8 keeps them committed, pooled
      const pooled = anonMiB()
      yield* lowMemoryNotification
      const after = anonMiB()
      assert.isAtLeast(pooled - after, RELEASED_MIN_MIB, `anonymous memory ${pooled.toFixed(1)} → ${after.toFixed(1)} MiB`)
    }), 60_000)

  it.effect("releases once, after the quiet period that follows the last burst; a later burst releases again", () =>
    Effect.gen(function*() {
      const releases = yield* Ref.make(0)
      const memory = yield* MemoryRelease.make({ quiet: "5 seconds", release: Ref.update(releases, (n) => n + 1) })
      yield* memory.afterBurst
      yield* TestClock.adjust("3 seconds")
      yield* memory.afterBurst // the burst goes on: the quiet period starts again
      yield* TestClock.adjust("4 seconds")
      assert.strictEqual(yield* Ref.get(releases), 0)
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* Ref.get(releases), 1)
      yield* TestClock.adjust("1 minute")
      assert.strictEqual(yield* Ref.get(releases), 1, "no burst, no release")
      yield* memory.afterBurst
      yield* memory.afterBurst
      yield* TestClock.adjust("5 seconds")
      assert.strictEqual(yield* Ref.get(releases), 2)
    }))

  it.effect("a failed release is not the end: the next burst releases again", () =>
    Effect.gen(function*() {
      const attempts = yield* Ref.make(0)
      const memory = yield* MemoryRelease.make({
        quiet: "5 seconds",
        release: Ref.update(attempts, (n) => n + 1).pipe(
          Effect.andThen(Effect.fail(new MemoryReleaseFailed({ message: "no inspector", cause: new Error("no inspector") })))
        )
      })
      yield* memory.afterBurst
      yield* TestClock.adjust("5 seconds")
      yield* memory.afterBurst
      yield* TestClock.adjust("5 seconds")
      assert.strictEqual(yield* Ref.get(attempts), 2)
    }))
})
