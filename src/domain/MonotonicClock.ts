/**
 * Elapsed time for the agent's own deadlines (idle reaping, flush windows): the Clock's monotonic
 * time, whose origin is arbitrary, so that a wall-clock step (NTP, VM resume, an operator's `date`)
 * neither ages nor rejuvenates anything. Wall time (`Clock.currentTimeMillis`) stays for timestamps
 * that leave the process.
 */
import { Clock, Effect } from "effect"

/** Milliseconds on the Clock's monotonic time (only differences mean anything). */
export const monotonicMillis: Effect.Effect<number> = Effect.map(Clock.monotonicTimeNanos, (n) => Number(n / 1_000_000n))
