/**
 * The agent's kernels as the manager knows them, kept where they survive the agent: one etcd key per
 * kernel, `/sorna/{ns}/nodes/agents/{agent-id}/kernels/{kid}` (NODE scope; manager 19.06 reads no
 * `nodes/agents/*` key).
 *
 * - `creating` writes `{"state":"live"}` before a create makes anything (a create that cannot
 *   record its kernel does not start); a failed create that answered the manager `forget`s it.
 * - `terminated` sends `kernel_terminated` through the publisher's durable path (never dropped,
 *   retried until a connected manager socket takes it), after recording the reason in the key
 *   (`{"state":"terminated",...}`); the key is deleted once the event was handed off.
 * - At start-up (and at each relist) the Reconciler reads the records: a `live` kernel with no pod
 *   (its pod vanished while the agent was down) or only a half-created one (the agent died during
 *   the create, the manager still holds it as PREPARING) is reported, and a `terminated` record
 *   whose event may not have left is sent again. Delivery is at least once: a crash between the
 *   hand-off and the delete repeats the event at the next start.
 */
import { Array as Arr, Context, Effect, FiberMap, Layer, Option, Schedule, Schema } from "effect"
import { Etcd, type EtcdError } from "../manager/Etcd.ts"
import { AgentEvents, EventPublisher } from "../manager/EventPublisher.ts"

export type LiveKernelRecord =
  | { readonly state: "live" }
  | { readonly state: "terminated"; readonly reason: string; readonly exitCode: number | null }

const RecordJson = Schema.fromJsonString(Schema.Union([
  Schema.Struct({ state: Schema.Literals(["live"]) }),
  Schema.Struct({
    state: Schema.Literals(["terminated"]),
    reason: Schema.String,
    exitCode: Schema.NullOr(Schema.Number)
  })
]))
const decodeRecord = Schema.decodeUnknownOption(RecordJson)

/** Kernel ids as key components: what the manager sends (UUIDs); nothing that could leave the prefix. */
const KERNEL_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/

/** Records written per etcd transaction by `ensure` (etcd's default --max-txn-ops is 128). */
const ENSURE_BATCH = 100
const LIVE = JSON.stringify({ state: "live" } satisfies LiveKernelRecord)

/** The `kernel_terminated` reason of a kernel whose create never finished (the agent died meanwhile). */
export const FAILED_TO_START = "failed-to-start"
/** The reason of a kernel whose pod is gone without a trace (deleted while the agent was down). */
export const FORCE_TERMINATED = "force-terminated"

/** How many kernel ids this process remembers having settled (bounded; see `settledHere`). */
const SETTLED_MEMORY = 4096

export interface LiveKernelsShape {
  /** A create starts: the kernel is recorded before anything is made. */
  readonly creating: (kernelId: string) => Effect.Effect<void, EtcdError>
  /**
   * Kernels adopted from the cluster are recorded (kernels of an agent without records): in etcd
   * transactions of up to 100, not a put each (1,000 puts at once were a start-up peak of their own);
   * a kernel this process settled meanwhile is left out. Never fails (a failure is logged).
   */
  readonly ensure: (kernelIds: ReadonlyArray<string>) => Effect.Effect<void>
  /** A create failed and the manager got the error: no event, the record goes. */
  readonly forget: (kernelId: string) => Effect.Effect<void>
  /**
   * The kernel is gone: `kernel_terminated` goes out on the durable path; its record says why until
   * the event was handed to the manager's socket. Returns at once; never fails.
   */
  readonly terminated: (kernelId: string, reason: string, exitCode: number | null) => Effect.Effect<void>
  /** The records in etcd (invalid values read as `live`; invalid keys are skipped). */
  readonly recorded: Effect.Effect<ReadonlyMap<string, LiveKernelRecord>, EtcdError>
  /**
   * Whether this process closed the kernel's record (terminated or forgotten it), so that a record
   * read before it went is not judged lost by the Reconciler.
   */
  readonly settledHere: (kernelId: string) => Effect.Effect<boolean>
}

const keyOf = (kernelId: string) => `kernels/${kernelId}`

export class LiveKernels extends Context.Service<LiveKernels, LiveKernelsShape>()("bai-agent/kernel/LiveKernels") {
  static readonly make = Effect.gen(function*() {
    const etcd = yield* Etcd
    const events = yield* EventPublisher
    /** Per kernel: the fiber that waits for its event's hand-off, then deletes the record. */
    const closing = yield* FiberMap.make<string>()
    const settled = new Set<string>()
    const settle = (kernelId: string) =>
      Effect.sync(() => {
        settled.delete(kernelId)
        settled.add(kernelId)
        if (settled.size > SETTLED_MEMORY) settled.delete(settled.values().next().value!)
      })

    const put = (kernelId: string, record: LiveKernelRecord) => etcd.put(keyOf(kernelId), JSON.stringify(record), "node")
    const remove = (kernelId: string) =>
      etcd.delete(keyOf(kernelId), "node").pipe(
        Effect.retry({ times: 5, schedule: Schedule.exponential("200 millis") }),
        Effect.catch((e) =>
          Effect.logWarning(`cannot delete the kernel's record (${e.message}); the next start reports the kernel again`).pipe(
            Effect.annotateLogs({ kernelId })
          )
        )
      )

    const creating = (kernelId: string) =>
      Effect.gen(function*() {
        // an earlier termination of this id still closing its record must not delete the new one
        yield* FiberMap.remove(closing, kernelId)
        yield* Effect.sync(() => void settled.delete(kernelId))
        yield* put(kernelId, { state: "live" })
      })

    const ensure = (kernelIds: ReadonlyArray<string>) =>
      Effect.forEach(Arr.chunksOf(kernelIds.filter((kid) => KERNEL_ID.test(kid)), ENSURE_BATCH), (batch) =>
        Effect.suspend(() => {
          const live = batch.filter((kid) => !settled.has(kid))
          return live.length === 0 ? Effect.void : etcd.putMany(live.map((kid) => [keyOf(kid), LIVE] as const), "node")
        }).pipe(
          Effect.catch((e) => Effect.logWarning(`cannot record ${batch.length} adopted kernels: ${e.message}; recorded at the next start`))
        ), { discard: true })

    const forget = (kernelId: string) => settle(kernelId).pipe(Effect.andThen(remove(kernelId)))

    const terminated = (kernelId: string, reason: string, exitCode: number | null) =>
      Effect.gen(function*() {
        yield* settle(kernelId)
        const handedOff = yield* events.publishDurable(kernelId, AgentEvents.kernelTerminated(kernelId, reason, exitCode))
        yield* FiberMap.run(
          closing,
          kernelId,
          Effect.gen(function*() {
            yield* put(kernelId, { state: "terminated", reason, exitCode }).pipe(
              Effect.catch((e) => Effect.logWarning(`cannot record the kernel's termination: ${e.message}`))
            )
            yield* handedOff
            yield* remove(kernelId)
          }).pipe(Effect.annotateLogs({ kernelId })),
          { onlyIfMissing: true }
        )
      })

    const recorded = etcd.getPrefix("kernels", "node").pipe(
      Effect.flatMap((entries) =>
        Effect.gen(function*() {
          const out = new Map<string, LiveKernelRecord>()
          for (const [kernelId, value] of Object.entries(entries)) {
            if (!KERNEL_ID.test(kernelId)) {
              yield* Effect.logWarning(`ignoring a kernel record with an invalid id: ${JSON.stringify(kernelId.slice(0, 80))}`)
              continue
            }
            out.set(kernelId, Option.getOrElse(decodeRecord(value), (): LiveKernelRecord => ({ state: "live" })))
          }
          return out as ReadonlyMap<string, LiveKernelRecord>
        })
      )
    )

    return LiveKernels.of({
      creating,
      ensure,
      forget,
      terminated,
      recorded,
      settledHere: (kernelId) => Effect.sync(() => settled.has(kernelId))
    })
  })

  static readonly layer = Layer.effect(LiveKernels, LiveKernels.make)
}
