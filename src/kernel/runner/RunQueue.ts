/**
 * The run queue of one kernel (spec §8.4), as a pure state machine: `transition(state, event)` returns
 * the next state and the commands the connection performs (send frames, let a waiting attach proceed,
 * wake a run's poller, hand a poll its output). Nothing here runs effects or keeps hidden state, so each
 * rule is a unit test (test/kernel/RunQueue.test.ts).
 *
 * - Runs are FIFO per kernel: attaching a new run while another is current queues it (a ticket the
 *   caller waits on); when the current run's `finished` / `exec-timeout` arrives the next one becomes
 *   current and its frames are sent in the same step, so a cancelled waiter never leaves a run current
 *   without its code. Attaching a known run (the current one, or a finished run whose output was not
 *   collected yet) sends its frames at once.
 * - Output goes to the current run (none current: dropped, as K1 does). One byte budget per kernel
 *   ({@link KERNEL_MAX_BUFFERED_BYTES}, all runs, uncollected finished runs included), one per run
 *   ({@link RUN_MAX_BYTES}) and at most {@link RUN_MAX_ITEMS} records per run (consecutive text of one
 *   stream coalesces): what does not fit is counted and reported in the run's next poll.
 * - A poll (`Collect`) takes everything up to the first poll-ending record, or everything when its
 *   flush window has closed; a collected `finished` forgets the run. At most
 *   {@link MAX_UNCOLLECTED_RUNS} finished runs wait for collection; older ones are forgotten.
 */
import { Data, Option } from "effect"
import {
  endsRun,
  type EndItem,
  itemSize,
  KERNEL_MAX_BUFFERED_BYTES,
  MAX_UNCOLLECTED_RUNS,
  type OutputItem,
  type OutputRecord,
  type PollResult,
  RUN_MAX_BYTES,
  RUN_MAX_ITEMS,
  type RunnerFrame
} from "./RunnerRecords.ts"

/** One run's buffer. */
export interface Run {
  readonly runId: string
  readonly items: ReadonlyArray<OutputItem>
  /** Weight of `items` against the budgets. */
  readonly bytes: number
  /** Records dropped since the last poll. */
  readonly dropped: number
}

/** An attach waiting for the current run to finish. */
export interface Waiting {
  readonly ticket: number
  readonly runId: string
  readonly frames: ReadonlyArray<RunnerFrame>
}

interface Buffers {
  readonly runs: ReadonlyMap<string, Run>
  /** Finished runs whose output was not collected, oldest first. */
  readonly uncollected: ReadonlyArray<string>
  /** Bytes buffered in all runs (one budget per kernel). */
  readonly buffered: number
}

export type RunQueue = Data.TaggedEnum<{
  /** No run is current (so none waits). */
  Idle: Buffers
  /** `current` receives the output; `waiting` attaches follow in order. */
  Running: Buffers & { readonly current: string; readonly waiting: ReadonlyArray<Waiting> }
  /** The connection closed: buffered output can still be collected, nothing else happens. */
  Closed: Buffers
}>
export const RunQueue = Data.taggedEnum<RunQueue>()

export const empty: RunQueue = RunQueue.Idle({ runs: new Map(), uncollected: [], buffered: 0 })

export type Event = Data.TaggedEnum<{
  /** Attach `runId` with `frames`; with `create: false` an unknown run is refused. */
  Attach: { readonly ticket: number; readonly runId: string; readonly frames: ReadonlyArray<RunnerFrame>; readonly create: boolean }
  /** The caller holding `ticket` stopped waiting. */
  Cancel: { readonly ticket: number }
  /** Output records from the runner. */
  Output: { readonly items: ReadonlyArray<OutputRecord> }
  /** A poll-ending record from the runner. */
  End: { readonly end: EndItem }
  /** A poll of `runId`: take up to the first poll-ending record, or everything once `windowClosed`. */
  Collect: { readonly runId: string; readonly windowClosed: boolean }
  Close: {}
}>
export const Event = Data.taggedEnum<Event>()

export type Command = Data.TaggedEnum<{
  Send: { readonly frames: ReadonlyArray<RunnerFrame> }
  /** The attach holding `ticket` proceeds (its frames are sent in the same step). */
  Admit: { readonly ticket: number }
  Refuse: { readonly ticket: number; readonly runId: string; readonly reason: "Closed" | "UnknownRun" }
  /** `runId` has new records (or ended, or the queue closed): its poller looks again. */
  Wake: { readonly runId: string }
  /** The poll's answer. */
  Collected: { readonly result: PollResult }
  /** The poll fails. */
  NotCollected: { readonly reason: "Closed" | "UnknownRun" }
  /** `runId` left the queue (collected or evicted). */
  Forget: { readonly runId: string }
  /** A poll-ending record with no current run was dropped. */
  Dropped: { readonly end: EndItem }
}>
export const Command = Data.taggedEnum<Command>()

export type Step = readonly [RunQueue, ReadonlyArray<Command>]

// ---- queries -------------------------------------------------------------------------------

export const currentRun = (q: RunQueue): Option.Option<string> => q._tag === "Running" ? Option.some(q.current) : Option.none()
export const pendingRuns = (q: RunQueue): number => q._tag === "Running" ? q.waiting.length : 0
export const bufferedBytes = (q: RunQueue): number => q.buffered

// ---- helpers -------------------------------------------------------------------------------

const buffers = (q: RunQueue): Buffers => ({ runs: q.runs, uncollected: q.uncollected, buffered: q.buffered })

const withRun = (runs: ReadonlyMap<string, Run>, run: Run): ReadonlyMap<string, Run> => new Map(runs).set(run.runId, run)

const withoutRun = (runs: ReadonlyMap<string, Run>, runId: string): ReadonlyMap<string, Run> => {
  const next = new Map(runs)
  next.delete(runId)
  return next
}

const newRun = (runId: string): Run => ({ runId, items: [], bytes: 0, dropped: 0 })

/** Same state kind, new buffers. */
const rebuffer = (q: RunQueue, b: Buffers): RunQueue =>
  q._tag === "Running" ? RunQueue.Running({ ...b, current: q.current, waiting: q.waiting }) : q._tag === "Idle" ? RunQueue.Idle(b) : RunQueue.Closed(b)

const canCoalesce = (last: OutputItem | undefined, item: OutputRecord): last is Extract<OutputItem, { _tag: "Stream" }> =>
  item._tag === "Stream" && last?._tag === "Stream" && last.stream === item.stream

/**
 * Adds output records to the current run within the budgets; what does not fit is counted as dropped.
 * (One copy of the run's items per event, not per record.)
 */
const appendOutput = (q: Extract<RunQueue, { _tag: "Running" }>, records: ReadonlyArray<OutputRecord>): RunQueue => {
  const run = q.runs.get(q.current)!
  const items = [...run.items]
  let { bytes, dropped } = run
  let buffered = q.buffered
  for (const item of records) {
    const size = itemSize(item)
    const last = items[items.length - 1]
    const coalesce = canCoalesce(last, item)
    if (bytes + size > RUN_MAX_BYTES || buffered + size > KERNEL_MAX_BUFFERED_BYTES || (items.length >= RUN_MAX_ITEMS && !coalesce)) {
      dropped++
      continue
    }
    items[coalesce ? items.length - 1 : items.length] = coalesce ? { ...last, text: last.text + (item as typeof last).text } : item
    bytes += size
    buffered += size
  }
  return RunQueue.Running({ ...q, buffered, runs: withRun(q.runs, { ...run, items, bytes, dropped }) })
}

/** Starts the waiting attaches while no run is current: a known run only gets its frames. */
const promote = (b: Buffers, waiting: ReadonlyArray<Waiting>, commands: Array<Command>): RunQueue => {
  let runs = b.runs
  for (let i = 0; i < waiting.length; i++) {
    const w = waiting[i]!
    commands.push(Command.Send({ frames: w.frames }), Command.Admit({ ticket: w.ticket }))
    if (!runs.has(w.runId)) {
      runs = withRun(runs, newRun(w.runId))
      return RunQueue.Running({ ...b, runs, current: w.runId, waiting: waiting.slice(i + 1) })
    }
  }
  return RunQueue.Idle({ ...b, runs })
}

/** Removes `runId` and gives its bytes back to the kernel's budget. */
const forget = (b: Buffers, runId: string, commands: Array<Command>): Buffers => {
  const run = b.runs.get(runId)
  commands.push(Command.Forget({ runId }))
  return {
    runs: withoutRun(b.runs, runId),
    uncollected: b.uncollected.filter((id) => id !== runId),
    buffered: b.buffered - (run?.bytes ?? 0)
  }
}

/** The current run ended: it waits for collection (the oldest beyond the limit are forgotten), the next run starts. */
const endCurrent = (q: Extract<RunQueue, { _tag: "Running" }>, commands: Array<Command>): RunQueue => {
  let b: Buffers = { ...buffers(q), uncollected: [...q.uncollected, q.current] }
  for (const old of b.uncollected.slice(0, Math.max(0, b.uncollected.length - MAX_UNCOLLECTED_RUNS))) b = forget(b, old, commands)
  const next = promote(b, q.waiting, commands)
  commands.push(Command.Wake({ runId: q.current }))
  return next
}

/** Takes the first `count` items of `run` (a dropped-records notice first). */
const take = (q: RunQueue, run: Run, count: number, commands: Array<Command>): RunQueue => {
  const taken = run.items.slice(0, count)
  const items = run.items.slice(count)
  const freed = items.length === 0 ? run.bytes : taken.reduce((n, it) => n + itemSize(it), 0)
  const out: Array<OutputRecord> = []
  if (run.dropped > 0) {
    out.push({ _tag: "Stream", stream: "stderr", text: `[bai-agent: ${run.dropped} output records dropped (run buffer full)]\n` })
  }
  let end: Option.Option<EndItem> = Option.none()
  for (const it of taken) {
    if (it._tag === "End") end = Option.some(it)
    else out.push(it)
  }
  commands.push(Command.Collected({ result: { items: out, end } }))
  let b: Buffers = {
    ...buffers(q),
    runs: withRun(q.runs, { ...run, items, bytes: run.bytes - freed, dropped: 0 }),
    buffered: q.buffered - freed
  }
  if (Option.isSome(end) && endsRun(end.value.status)) b = forget(b, run.runId, commands)
  return rebuffer(q, b)
}

// ---- the transition ------------------------------------------------------------------------

export const transition = (q: RunQueue, event: Event): Step => {
  const commands: Array<Command> = []
  const next = step(q, event, commands)
  return [next, commands]
}

const step = (q: RunQueue, event: Event, commands: Array<Command>): RunQueue => {
  switch (event._tag) {
    case "Attach": {
      const { ticket, runId, frames } = event
      if (q._tag === "Closed") {
        commands.push(Command.Refuse({ ticket, runId, reason: "Closed" }))
        return q
      }
      if (q.runs.has(runId)) {
        commands.push(Command.Send({ frames }), Command.Admit({ ticket }))
        return q
      }
      if (!event.create) {
        commands.push(Command.Refuse({ ticket, runId, reason: "UnknownRun" }))
        return q
      }
      if (q._tag === "Idle") {
        commands.push(Command.Send({ frames }), Command.Admit({ ticket }))
        return RunQueue.Running({ ...buffers(q), runs: withRun(q.runs, newRun(runId)), current: runId, waiting: [] })
      }
      return RunQueue.Running({ ...q, waiting: [...q.waiting, { ticket, runId, frames }] })
    }
    case "Cancel": {
      if (q._tag !== "Running" || !q.waiting.some((w) => w.ticket === event.ticket)) return q
      return RunQueue.Running({ ...q, waiting: q.waiting.filter((w) => w.ticket !== event.ticket) })
    }
    case "Output": {
      if (q._tag !== "Running" || event.items.length === 0) return q
      commands.push(Command.Wake({ runId: q.current }))
      return appendOutput(q, event.items)
    }
    case "End": {
      const { end } = event
      if (q._tag !== "Running") {
        commands.push(Command.Dropped({ end }))
        return q
      }
      const run = q.runs.get(q.current)!
      // a run-ending record comes once per run; the others count against the cap like output
      const fits = endsRun(end.status) || run.items.length < RUN_MAX_ITEMS
      const kept: Run = fits ? { ...run, items: [...run.items, end] } : { ...run, dropped: run.dropped + 1 }
      const running = RunQueue.Running({ ...q, runs: withRun(q.runs, kept) })
      if (endsRun(end.status)) return endCurrent(running, commands)
      commands.push(Command.Wake({ runId: q.current }))
      return running
    }
    case "Collect": {
      const run = q.runs.get(event.runId)
      if (run === undefined) {
        commands.push(Command.NotCollected({ reason: "UnknownRun" }))
        return q
      }
      const i = run.items.findIndex((it) => it._tag === "End")
      if (i >= 0) return take(q, run, i + 1, commands)
      if (event.windowClosed) return take(q, run, run.items.length, commands)
      if (q._tag === "Closed") commands.push(Command.NotCollected({ reason: "Closed" }))
      return q
    }
    case "Close": {
      if (q._tag === "Closed") return q
      if (q._tag === "Running") for (const w of q.waiting) commands.push(Command.Refuse({ ticket: w.ticket, runId: w.runId, reason: "Closed" }))
      for (const runId of q.runs.keys()) commands.push(Command.Wake({ runId }))
      return RunQueue.Closed(buffers(q))
    }
  }
}
