/**
 * The run queue after its connection closed: collecting the output buffered before the close leaves
 * it closed (spec §8.4: nothing but collection happens on a closed kernel connection).
 */
import { assert, describe, it } from "@effect/vitest"
import { Option } from "effect"
import { Command, empty, Event, type RunQueue, transition } from "../../src/kernel/runner/RunQueue.ts"
import type { EndItem } from "../../src/kernel/runner/RunnerRecords.ts"

const apply = (q: RunQueue, ...events: ReadonlyArray<Event>): readonly [RunQueue, ReadonlyArray<Command>] => {
  let state = q
  let commands: ReadonlyArray<Command> = []
  for (const e of events) [state, commands] = transition(state, e)
  return [state, commands]
}

const finished: EndItem = { _tag: "End", status: "finished", exitCode: 0, options: null }

describe("RunQueue: a closed queue stays closed", () => {
  it("collecting a run's buffered output after the close leaves the queue closed: a new attach is refused", () => {
    const [closed] = apply(
      empty,
      Event.Attach({ ticket: 1, runId: "r1", frames: [["code", "print(1)"]], create: true }),
      Event.Output({ items: [{ _tag: "Stream", stream: "stdout", text: "1\n" }] }),
      Event.End({ end: finished }),
      Event.Close()
    )
    assert.strictEqual(closed._tag, "Closed")
    const [afterPoll, polled] = apply(closed, Event.Collect({ runId: "r1", windowClosed: false }))
    assert.deepStrictEqual(polled, [
      Command.Collected({ result: { items: [{ _tag: "Stream", stream: "stdout", text: "1\n" }], end: Option.some(finished) } }),
      Command.Forget({ runId: "r1" })
    ])
    assert.strictEqual(afterPoll._tag, "Closed")
    const [, refused] = apply(afterPoll, Event.Attach({ ticket: 2, runId: "r2", frames: [["code", "x"]], create: true }))
    assert.deepStrictEqual(refused, [Command.Refuse({ ticket: 2, runId: "r2", reason: "Closed" })])
  })
})
