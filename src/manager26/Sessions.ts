/**
 * Kernel id → session id, for manager 26's kernel events (they carry both ids; the shared core knows
 * only kernel ids). `create_kernels` records the pair before the kernel is created; a kernel the
 * agent adopted after a restart has no record and its events carry the kernel id in the session
 * field (docs/manager-26.md). `destroy_kernel(…, suppress_events=True)` marks the kernel so that its
 * `kernel_terminated` is not sent.
 */
import { Context, Effect, Layer, Ref } from "effect"

interface Entry {
  readonly sessionId: string
  readonly suppress: boolean
}

export class Sessions extends Context.Service<Sessions, {
  readonly record: (kernelId: string, sessionId: string) => Effect.Effect<void>
  /** The session of a kernel; the kernel id itself when unknown. */
  readonly sessionOf: (kernelId: string) => Effect.Effect<string>
  /** The kernel's next `kernel_terminated` is not sent. */
  readonly suppressEvents: (kernelId: string) => Effect.Effect<void>
  readonly suppressed: (kernelId: string) => Effect.Effect<boolean>
  readonly forget: (kernelId: string) => Effect.Effect<void>
}>()("bai-agent/manager26/Sessions") {
  static readonly make = Effect.gen(function*() {
    const map = yield* Ref.make<ReadonlyMap<string, Entry>>(new Map())
    return Sessions.of({
      record: (kernelId, sessionId) => Ref.update(map, (m) => new Map(m).set(kernelId, { sessionId, suppress: false })),
      sessionOf: (kernelId) => Effect.map(Ref.get(map), (m) => m.get(kernelId)?.sessionId ?? kernelId),
      suppressEvents: (kernelId) =>
        Ref.update(map, (m) => new Map(m).set(kernelId, { sessionId: m.get(kernelId)?.sessionId ?? kernelId, suppress: true })),
      suppressed: (kernelId) => Effect.map(Ref.get(map), (m) => m.get(kernelId)?.suppress === true),
      forget: (kernelId) =>
        Ref.update(map, (m) => {
          const next = new Map(m)
          next.delete(kernelId)
          return next
        })
    })
  })

  static readonly layer = Layer.effect(Sessions, Sessions.make)
}
