/**
 * The run queue's rules (spec §8.4, issue 13), one transition at a time: the expected states and
 * commands are worked out by hand from the rules in src/kernel/runner/RunQueue.ts's header (FIFO runs,
 * frames sent in the step that makes a run current, output only to the current run, the per-run and
 * per-kernel budgets, polls ending at the first poll-ending record, finished runs forgotten once
 * collected, at most MAX_UNCOLLECTED_RUNS kept).
 */
import { assert, describe, it } from "@effect/vitest"
import { Option } from "effect"
import {
  bufferedBytes,
  Command,
  currentRun,
  empty,
  Event,
  pendingRuns,
  type RunQueue,
  transition
} from "../../src/kernel/runner/RunQueue.ts"
import {
  type EndItem,
  KERNEL_MAX_BUFFERED_BYTES,
  MAX_UNCOLLECTED_RUNS,
  type OutputRecord,
  RUN_MAX_BYTES,
  RUN_MAX_ITEMS,
  type RunnerFrame
} from "../../src/kernel/runner/RunnerRecords.ts"

const MiB = 1024 * 1024
const code = (text: string): ReadonlyArray<RunnerFrame> => [["code", text]]
const out = (text: string): OutputRecord => ({ _tag: "Stream", stream: "stdout", text })
const err = (text: string): OutputRecord => ({ _tag: "Stream", stream: "stderr", text })
const media = (data: string): OutputRecord => ({ _tag: "Media", mime: "image/png", data })
const finished = (exitCode: number): EndItem => ({ _tag: "End", status: "finished", exitCode, options: null })
const waitingInput: EndItem = { _tag: "End", status: "waiting-input", exitCode: null, options: { is_password: false } }
const timeout: EndItem = { _tag: "End", status: "exec-timeout", exitCode: null, options: null }
const dropNotice = (n: number): OutputRecord => err(`[bai-agent: ${n} output records dropped (run buffer full)]\n`)

/** Applies `events` in order; the commands of the last one. */
const apply = (q: RunQueue, ...events: ReadonlyArray<Event>): readonly [RunQueue, ReadonlyArray<Command>] => {
  let state = q
  let commands: ReadonlyArray<Command> = []
  for (const e of events) [state, commands] = transition(state, e)
  return [state, commands]
}
const attach = (ticket: number, runId: string, frames = code(runId), create = true) => Event.Attach({ ticket, runId, frames, create })
const output = (...items: ReadonlyArray<OutputRecord>) => Event.Output({ items })
const end = (e: EndItem) => Event.End({ end: e })
const collect = (runId: string, windowClosed = false) => Event.Collect({ runId, windowClosed })
const collected = (items: ReadonlyArray<OutputRecord>, e: Option.Option<EndItem> = Option.none()) => Command.Collected({ result: { items, end: e } })

/** A queue whose current run is `runId`. */
const running = (runId = "r1") => apply(empty, attach(0, runId))[0]

describe("RunQueue: attaching runs", () => {
  it("the first run becomes current and its frames go out in the same step", () => {
    const [q, cmds] = apply(empty, attach(1, "r1"))
    assert.deepStrictEqual(cmds, [Command.Send({ frames: code("r1") }), Command.Admit({ ticket: 1 })])
    assert.strictEqual(q._tag, "Running")
    assert.deepStrictEqual(currentRun(q), Option.some("r1"))
    assert.strictEqual(pendingRuns(q), 0)
    assert.strictEqual(bufferedBytes(q), 0)
    assert.deepStrictEqual(currentRun(empty), Option.none())
    assert.strictEqual(pendingRuns(empty), 0)
  })

  it("a second run waits, nothing is sent for it; the current run takes more frames at once", () => {
    const [q, cmds] = apply(running(), attach(2, "r2"))
    assert.deepStrictEqual(cmds, [])
    assert.strictEqual(pendingRuns(q), 1)
    assert.deepStrictEqual(currentRun(q), Option.some("r1"))
    const [q2, more] = apply(q, attach(3, "r1", [["input", "x"]], false))
    assert.deepStrictEqual(more, [Command.Send({ frames: [["input", "x"]] }), Command.Admit({ ticket: 3 })])
    assert.strictEqual(pendingRuns(q2), 1)
    assert.deepStrictEqual(currentRun(q2), Option.some("r1"))
  })

  it("an unknown run without create is refused, whatever the queue's state", () => {
    for (const q of [empty, running()]) {
      const [next, cmds] = apply(q, attach(5, "nope", code("x"), false))
      assert.deepStrictEqual(cmds, [Command.Refuse({ ticket: 5, runId: "nope", reason: "UnknownRun" })])
      assert.deepStrictEqual(currentRun(next), currentRun(q))
      assert.strictEqual(pendingRuns(next), 0)
    }
  })

  it("a cancelled waiter leaves the queue; its frames are never sent", () => {
    const [q] = apply(running(), attach(2, "r2"), attach(3, "r3"))
    const [q2, cmds] = apply(q, Event.Cancel({ ticket: 2 }))
    assert.deepStrictEqual(cmds, [])
    assert.strictEqual(pendingRuns(q2), 1)
    const [q3, next] = apply(q2, end(finished(0)))
    assert.deepStrictEqual(next, [Command.Send({ frames: code("r3") }), Command.Admit({ ticket: 3 }), Command.Wake({ runId: "r1" })])
    assert.deepStrictEqual(currentRun(q3), Option.some("r3"))
    // cancelling a ticket that is not waiting changes nothing
    const [q4, none] = apply(q3, Event.Cancel({ ticket: 3 }))
    assert.deepStrictEqual([q4, none], [q3, []])
    const [q5] = apply(empty, Event.Cancel({ ticket: 1 }))
    assert.strictEqual(q5, empty)
  })
})

describe("RunQueue: output", () => {
  it("goes to the current run; consecutive text of one stream coalesces; every change wakes the poller", () => {
    const [q, cmds] = apply(running(), output(out("a"), out("b"), err("e"), out("c"), media("M"), { _tag: "Other", type: "html", text: "<i>" }))
    assert.deepStrictEqual(cmds, [Command.Wake({ runId: "r1" })])
    assert.strictEqual(bufferedBytes(q), 1 + 1 + 1 + 1 + 1 + 3)
    const [, polled] = apply(q, collect("r1", true))
    assert.deepStrictEqual(polled, [collected([out("ab"), err("e"), out("c"), media("M"), { _tag: "Other", type: "html", text: "<i>" }])])
  })

  it("text of the other stream or after media does not coalesce; no items is no change", () => {
    const [q] = apply(running(), output(out("a")), output(err("b")), output(err("c")), output(media("m")), output(err("d")))
    const [same, none] = apply(q, output())
    assert.deepStrictEqual([same, none], [q, []])
    const [, polled] = apply(q, collect("r1", true))
    assert.deepStrictEqual(polled, [collected([out("a"), err("bc"), media("m"), err("d")])])
  })

  it("with no current run output is dropped and a poll-ending record is reported dropped", () => {
    const [q, cmds] = apply(empty, output(out("stray")))
    assert.deepStrictEqual([q, cmds], [empty, []])
    const [q2, ended] = apply(empty, end(finished(0)))
    assert.deepStrictEqual([q2, ended], [empty, [Command.Dropped({ end: finished(0) })]])
  })
})

describe("RunQueue: polls", () => {
  it("an unknown run cannot be polled; a poll with nothing to end waits while its window is open", () => {
    assert.deepStrictEqual(apply(empty, collect("nope"))[1], [Command.NotCollected({ reason: "UnknownRun" })])
    const [q] = apply(running(), output(out("partial")))
    const [same, none] = apply(q, collect("r1"))
    assert.deepStrictEqual([same, none], [q, []])
    const [q2, polled] = apply(q, collect("r1", true))
    assert.deepStrictEqual(polled, [collected([out("partial")])])
    assert.strictEqual(bufferedBytes(q2), 0)
    assert.deepStrictEqual(currentRun(q2), Option.some("r1"))
    // an empty window closes with an empty answer
    assert.deepStrictEqual(apply(q2, collect("r1", true))[1], [collected([])])
  })

  it("waiting-input ends the poll but not the run; what came after it stays for the next poll", () => {
    const [q, cmds] = apply(running(), output(out("Password: ")), end(waitingInput))
    assert.deepStrictEqual(cmds, [Command.Wake({ runId: "r1" })])
    const [q2] = apply(q, output(out("later"), media("xy")))
    assert.strictEqual(bufferedBytes(q2), 10 + 5 + 2)
    const [q3, polled] = apply(q2, collect("r1", true))
    assert.deepStrictEqual(polled, [collected([out("Password: ")], Option.some(waitingInput))])
    assert.strictEqual(bufferedBytes(q3), 7)
    assert.deepStrictEqual(currentRun(q3), Option.some("r1"))
    const [q4, rest] = apply(q3, collect("r1", true))
    assert.deepStrictEqual(rest, [collected([out("later"), media("xy")])])
    assert.strictEqual(bufferedBytes(q4), 0)
  })

  it("finished ends the run: the next waiter starts in the same step, the finished run is forgotten once collected", () => {
    const [q, cmds] = apply(running(), attach(2, "r2"), output(out("one")), end(finished(3)))
    assert.deepStrictEqual(cmds, [Command.Send({ frames: code("r2") }), Command.Admit({ ticket: 2 }), Command.Wake({ runId: "r1" })])
    assert.deepStrictEqual(currentRun(q), Option.some("r2"))
    assert.strictEqual(pendingRuns(q), 0)
    assert.strictEqual(bufferedBytes(q), 3)
    // output now goes to r2, r1 keeps its own
    const [q2] = apply(q, output(out("two")))
    const [q3, polled] = apply(q2, collect("r1"))
    assert.deepStrictEqual(polled, [collected([out("one")], Option.some(finished(3))), Command.Forget({ runId: "r1" })])
    assert.strictEqual(bufferedBytes(q3), 3)
    assert.deepStrictEqual(apply(q3, collect("r1", true))[1], [Command.NotCollected({ reason: "UnknownRun" })])
    assert.deepStrictEqual(apply(q3, attach(9, "r1", code("again"), false))[1], [Command.Refuse({ ticket: 9, runId: "r1", reason: "UnknownRun" })])
    assert.deepStrictEqual(apply(q3, collect("r2", true))[1], [collected([out("two")])])
  })

  it("exec-timeout ends the run like finished; with nobody waiting the queue is idle", () => {
    const [q, cmds] = apply(running(), end(timeout))
    assert.deepStrictEqual(cmds, [Command.Wake({ runId: "r1" })])
    assert.strictEqual(q._tag, "Idle")
    const [q2, polled] = apply(q, collect("r1"))
    assert.deepStrictEqual(polled, [collected([], Option.some(timeout)), Command.Forget({ runId: "r1" })])
    assert.strictEqual(q2.runs.size, 0)
    // a new run starts at once
    assert.deepStrictEqual(apply(q2, attach(4, "r4"))[1], [Command.Send({ frames: code("r4") }), Command.Admit({ ticket: 4 })])
  })

  it("a finished run whose output was not collected is still known: attaching it only sends, the next waiter starts", () => {
    const [q] = apply(running(), end(finished(0)), attach(2, "r2"), attach(3, "r1", [["input", "late"]]), attach(4, "r4"))
    assert.deepStrictEqual(currentRun(q), Option.some("r2"))
    assert.strictEqual(pendingRuns(q), 1) // r4; the attach of r1 went straight out
    const [q1, cmds] = apply(empty, attach(1, "a"), attach(2, "b"), attach(3, "a", code("more")))
    assert.deepStrictEqual(cmds, [Command.Send({ frames: code("more") }), Command.Admit({ ticket: 3 })])
    const [q2] = apply(q1, attach(4, "c"))
    assert.strictEqual(pendingRuns(q2), 2)
    // two waiters for the same new run: the first starts it, the second only sends when it is promoted
    const [q3] = apply(running("a"), attach(2, "b"), attach(3, "b", code("b-again")), attach(4, "c"))
    const [q4, next] = apply(q3, end(finished(0)))
    assert.deepStrictEqual(next, [Command.Send({ frames: code("b") }), Command.Admit({ ticket: 2 }), Command.Wake({ runId: "a" })])
    assert.strictEqual(pendingRuns(q4), 2)
    const [q5, after] = apply(q4, end(finished(0)))
    assert.deepStrictEqual(after, [
      Command.Send({ frames: code("b-again") }),
      Command.Admit({ ticket: 3 }),
      Command.Send({ frames: code("c") }),
      Command.Admit({ ticket: 4 }),
      Command.Wake({ runId: "b" })
    ])
    assert.deepStrictEqual(currentRun(q5), Option.some("c"))
    assert.strictEqual(pendingRuns(q5), 0)
  })

  it("a promoted waiter whose run is known and nothing behind it leaves the queue idle", () => {
    const [q] = apply(running("a"), end(finished(0)), attach(1, "b"), attach(2, "a", code("x")))
    // "a" is known (uncollected): its attach went out at once, only "b" is current
    assert.deepStrictEqual(currentRun(q), Option.some("b"))
    const [q2] = apply(running("a"), attach(1, "b"), attach(2, "b", code("b2")))
    const [q3] = apply(q2, end(finished(0)))
    assert.deepStrictEqual(currentRun(q3), Option.some("b"))
    const [q4, cmds] = apply(q3, end(finished(0)))
    assert.deepStrictEqual(cmds, [Command.Send({ frames: code("b2") }), Command.Admit({ ticket: 2 }), Command.Wake({ runId: "b" })])
    assert.strictEqual(q4._tag, "Idle")
    assert.strictEqual(pendingRuns(q4), 0)
  })
})

describe("RunQueue: budgets (issue 13)", () => {
  it("a run's output stops at RUN_MAX_BYTES (the limit itself fits); drops are reported once, first", () => {
    const big = "x".repeat(16 * MiB)
    const [q] = apply(running(), output(out(big), err(big), out(big), err("y".repeat(16 * MiB - 1))))
    assert.strictEqual(bufferedBytes(q), RUN_MAX_BYTES - 1)
    const [q2] = apply(q, output(media("z"), media("too much")))
    assert.strictEqual(bufferedBytes(q2), RUN_MAX_BYTES)
    const [q3, polled] = apply(q2, end(finished(0)), collect("r1"))
    const result = polled[0]
    assert.isTrue(result?._tag === "Collected")
    if (result?._tag === "Collected") {
      assert.deepStrictEqual(result.result.items.map((it) => it._tag === "Stream" ? `${it.stream}:${it.text.length}` : it._tag), [
        "stderr:56",
        "stdout:16777216",
        "stderr:16777216",
        "stdout:16777216",
        "stderr:16777215",
        "Media"
      ])
      assert.deepStrictEqual(result.result.items[0], dropNotice(1))
    }
    assert.strictEqual(bufferedBytes(q3), 0)
  })

  it("all runs of a kernel share KERNEL_MAX_BUFFERED_BYTES; collecting gives it back", () => {
    const share = "a".repeat(40 * MiB)
    const [q] = apply(running("a"), output(out(share)), end(finished(0)), attach(1, "b"), output(out(share)), output(out("b".repeat(KERNEL_MAX_BUFFERED_BYTES - 40 * MiB))))
    assert.strictEqual(bufferedBytes(q), KERNEL_MAX_BUFFERED_BYTES)
    const [q2, polledB] = apply(q, output(out("!")), collect("b", true))
    assert.deepStrictEqual(polledB, [collected([dropNotice(2), out("b".repeat(KERNEL_MAX_BUFFERED_BYTES - 40 * MiB))])])
    assert.strictEqual(bufferedBytes(q2), 40 * MiB)
    // the drop counter starts again after a report
    assert.deepStrictEqual(apply(q2, collect("b", true))[1], [collected([])])
    const [q3] = apply(q2, collect("a"))
    assert.strictEqual(bufferedBytes(q3), 0)
    const [q4] = apply(q3, output(out(share)))
    assert.strictEqual(bufferedBytes(q4), 40 * MiB)
  })

  it("a run keeps at most RUN_MAX_ITEMS records; text coalescing into the last one still fits; finished always fits", () => {
    const items = Array.from({ length: RUN_MAX_ITEMS }, (_, i) => (i % 2 === 0 ? out("o") : media("m")))
    const [q] = apply(running(), output(...items))
    assert.strictEqual(bufferedBytes(q), RUN_MAX_ITEMS)
    // the last item is media: nothing new fits, not even a poll-ending record that does not end the run
    const [q2] = apply(q, output(out("dropped"), media("dropped")), end(waitingInput))
    assert.strictEqual(bufferedBytes(q2), RUN_MAX_ITEMS)
    const [q3] = apply(running(), output(...items.map((it) => it._tag === "Media" ? out("o") : media("m"))))
    // the last item is stdout text: more stdout joins it, stderr does not fit
    const [q4] = apply(q3, output(out("+joined"), err("no")))
    assert.strictEqual(bufferedBytes(q4), RUN_MAX_ITEMS + 7)
    const [q5, polled] = apply(q2, end(finished(1)), collect("r1"))
    const result = polled[0]
    assert.isTrue(result?._tag === "Collected")
    if (result?._tag === "Collected") {
      assert.strictEqual(result.result.items.length, RUN_MAX_ITEMS + 1)
      assert.deepStrictEqual(result.result.items[0], dropNotice(3))
      assert.deepStrictEqual(result.result.end, Option.some(finished(1)))
    }
    assert.strictEqual(q5.runs.size, 0)
    const [, polled4] = apply(q4, collect("r1", true))
    const r4 = polled4[0]
    if (r4?._tag === "Collected") {
      assert.deepStrictEqual(r4.result.items[0], dropNotice(1))
      assert.deepStrictEqual(r4.result.items[r4.result.items.length - 1], out("o+joined"))
    } else assert.fail("not collected")
  })

  it("one under the item cap, a poll-ending record fits and ends the poll", () => {
    const items = Array.from({ length: RUN_MAX_ITEMS - 1 }, (_, i) => (i % 2 === 0 ? out("o") : media("m")))
    const [q, cmds] = apply(running(), output(...items), end(waitingInput))
    assert.deepStrictEqual(cmds, [Command.Wake({ runId: "r1" })])
    const [, polled] = apply(q, collect("r1"))
    const r = polled[0]
    assert.isTrue(r?._tag === "Collected" && Option.isSome(r.result.end) && r.result.items.length === RUN_MAX_ITEMS - 1)
  })

  it(`at most ${MAX_UNCOLLECTED_RUNS} finished runs wait for collection: the oldest is forgotten and its bytes freed`, () => {
    let q = empty
    for (let i = 0; i < MAX_UNCOLLECTED_RUNS; i++) [q] = apply(q, attach(i, `r${i}`), output(out("xy")), end(finished(0)))
    assert.strictEqual(q.runs.size, MAX_UNCOLLECTED_RUNS)
    assert.strictEqual(bufferedBytes(q), 2 * MAX_UNCOLLECTED_RUNS)
    const [q2, cmds] = apply(q, attach(99, "last"), output(out("xyz")), end(finished(0)))
    assert.deepStrictEqual(cmds, [Command.Forget({ runId: "r0" }), Command.Wake({ runId: "last" })])
    assert.strictEqual(q2.runs.size, MAX_UNCOLLECTED_RUNS)
    assert.isFalse(q2.runs.has("r0"))
    assert.deepStrictEqual(q2.uncollected, [...Array.from({ length: MAX_UNCOLLECTED_RUNS - 1 }, (_, i) => `r${i + 1}`), "last"])
    assert.strictEqual(bufferedBytes(q2), 2 * (MAX_UNCOLLECTED_RUNS - 1) + 3)
    // collecting one takes it off the list
    const [q3] = apply(q2, collect("r5"))
    assert.notInclude(q3.uncollected, "r5")
    assert.strictEqual(q3.uncollected.length, MAX_UNCOLLECTED_RUNS - 1)
  })
})

describe("RunQueue: closing", () => {
  it("refuses the waiting attaches, wakes every run's poller, and keeps buffered output collectable", () => {
    const [q] = apply(running("a"), output(out("A")), end(finished(0)), attach(1, "b"), output(out("B")), attach(2, "c"), attach(3, "d"))
    const [closed, cmds] = apply(q, Event.Close())
    assert.deepStrictEqual(cmds, [
      Command.Refuse({ ticket: 2, runId: "c", reason: "Closed" }),
      Command.Refuse({ ticket: 3, runId: "d", reason: "Closed" }),
      Command.Wake({ runId: "a" }),
      Command.Wake({ runId: "b" })
    ])
    assert.strictEqual(closed._tag, "Closed")
    assert.deepStrictEqual(currentRun(closed), Option.none())
    assert.strictEqual(pendingRuns(closed), 0)
    assert.strictEqual(bufferedBytes(closed), 2)
    assert.deepStrictEqual(apply(closed, Event.Close()), [closed, []])
    assert.deepStrictEqual(apply(closed, attach(4, "a", code("x")))[1], [Command.Refuse({ ticket: 4, runId: "a", reason: "Closed" })])
    assert.deepStrictEqual(apply(closed, attach(5, "e"))[1], [Command.Refuse({ ticket: 5, runId: "e", reason: "Closed" })])
    // no more output reaches a closed queue
    assert.deepStrictEqual(apply(closed, output(out("late")))[0], closed)
    assert.deepStrictEqual(apply(closed, end(finished(0)))[1], [Command.Dropped({ end: finished(0) })])
    // a finished run's output is still there; an open run's poll fails unless its window closed
    assert.deepStrictEqual(apply(closed, collect("a"))[1], [collected([out("A")], Option.some(finished(0))), Command.Forget({ runId: "a" })])
    assert.deepStrictEqual(apply(closed, collect("b"))[1], [Command.NotCollected({ reason: "Closed" })])
    assert.deepStrictEqual(apply(closed, collect("b", true))[1], [collected([out("B")])])
    assert.deepStrictEqual(apply(empty, Event.Close())[1], [])
  })
})
