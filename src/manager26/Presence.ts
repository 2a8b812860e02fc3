/**
 * Kernel presence for manager 26 (contract §4.4): `kernel:presence:<kid>` hashes
 * `{presence: "1", last_presence: <Redis TIME seconds>}` with EXPIRE 300 in Redis DB 2 (the `live`
 * role), for every running kernel, every 60 s and right after a kernel starts. Without them the
 * manager's stale-kernel sweep falls back to `check_running` for every kernel on every pass.
 * A failed write is logged and retried on the next tick; the loop never dies.
 */
import { Context, Duration, Effect, Layer, Schedule } from "effect"
import { KernelTable } from "../kernel/KernelTable.ts"
import type { RedisShape } from "../manager/Redis.ts"

const PRESENCE_TTL_SECONDS = 300

const presenceKey = (kernelId: string) => `kernel:presence:${kernelId}`

export class Presence extends Context.Service<Presence, {
  /** Writes the presence of these kernels now. */
  readonly touch: (kernelIds: ReadonlyArray<string>) => Effect.Effect<void>
}>()("bai-agent/manager26/Presence") {
  static readonly make = Effect.fnUntraced(function*(options: { readonly redis: RedisShape; readonly interval?: Duration.Input }) {
    const registry = yield* KernelTable
    const { redis } = options

    const touch = (kernelIds: ReadonlyArray<string>): Effect.Effect<void> =>
      kernelIds.length === 0 ? Effect.void : redis.command("TIME").pipe(
        Effect.flatMap((time) => {
          const secs = Array.isArray(time) && time.length > 0 ? String(time[0]) : String(Math.floor(Date.now() / 1000))
          return redis.pipeline(kernelIds.flatMap((kid) => [
            ["HSET", presenceKey(kid), "presence", "1", "last_presence", secs] as const,
            ["EXPIRE", presenceKey(kid), PRESENCE_TTL_SECONDS] as const
          ]))
        }),
        Effect.asVoid,
        Effect.catch((e) => Effect.logWarning(`kernel presence not written (${e.reason}: ${e.message})`))
      )

    const tick = registry.list.pipe(
      Effect.map((kernels) => kernels.filter((k) => k.status === "running").map((k) => k.kernelId)),
      Effect.flatMap(touch)
    )
    yield* tick.pipe(Effect.repeat(Schedule.spaced(options.interval ?? "60 seconds")), Effect.forkScoped)
    return Presence.of({ touch })
  })

  static readonly layer = (options: { readonly redis: RedisShape; readonly interval?: Duration.Input }) =>
    Layer.effect(Presence, Presence.make(options))
}
