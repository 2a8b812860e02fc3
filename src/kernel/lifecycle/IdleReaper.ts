/**
 * Concern: the idle reaper — a running kernel unused for longer than its idle timeout is destroyed
 * with reason `idle-timeout`. Idle time is measured on the monotonic clock (a wall-clock jump
 * destroys nothing). `idlePass` is one pass; `idleReaperLoop` repeats a pass on a `Schedule`
 * (wired as its own layer: `KernelLifecycle.idleReaper`).
 */
import { Effect, Schedule } from "effect"
import { monotonicMillis } from "../../domain/MonotonicClock.ts"
import type { KernelTableShape } from "../KernelTable.ts"

export const IDLE_TIMEOUT = "idle-timeout"

/** Every 10 s, the first pass 10 s after start. */
const idlePasses = Schedule.spaced("10 seconds")

export const idlePass = (
  registry: Pick<KernelTableShape, "list">,
  destroy: (kernelId: string, reason: string) => Effect.Effect<unknown, { readonly message: string }>
): Effect.Effect<void> =>
  Effect.gen(function*() {
    const now = yield* monotonicMillis
    const idle = (yield* registry.list).filter((k) =>
      k.status === "running" && k.idleTimeout > 0 && now - k.lastUsed > k.idleTimeout * 1000
    )
    yield* Effect.forEach(
      idle,
      (k) =>
        Effect.logInfo(`kernel idle for more than ${k.idleTimeout}s`).pipe(
          Effect.andThen(destroy(k.kernelId, IDLE_TIMEOUT)),
          Effect.catch((e) => Effect.logWarning(`idle destroy failed: ${e.message}`)),
          Effect.annotateLogs({ kernelId: k.kernelId })
        ),
      { concurrency: 4, discard: true }
    )
  })

/** Runs `pass` every 10 s in the background of the enclosing scope. */
export const idleReaperLoop = (pass: Effect.Effect<void>) =>
  pass.pipe(Effect.repeat(idlePasses), Effect.delay("10 seconds"), Effect.forkScoped, Effect.asVoid)
