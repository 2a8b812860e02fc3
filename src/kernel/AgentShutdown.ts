/**
 * `shutdown_agent`: the manager asks the agent to stop. `request` returns at once (so the RPC reply
 * goes out) and the stop happens shortly after, the same way SIGTERM stops the agent: the main fiber
 * is interrupted and every scope closes (kernels are detached, never deleted, by that path).
 *
 * `layer` signals the process itself with SIGTERM, which `NodeRuntime.runMain` turns into an
 * interruption of the main fiber; it needs no wiring in main.ts. `requested` lets a composition root
 * race the agent against the request instead, if it prefers.
 */
import { Context, Deferred, Duration, Effect, Layer } from "effect"

export class AgentShutdown extends Context.Service<AgentShutdown, {
  /** Ask the agent to stop (idempotent, returns immediately). */
  readonly request: Effect.Effect<void>
  /** Completes when a stop was requested. */
  readonly requested: Effect.Effect<void>
}>()("bai-agent/kernel/AgentShutdown") {
  static readonly make = (options: { readonly delay: Duration.Input; readonly stop: Effect.Effect<void> }) =>
    Effect.gen(function*() {
      const deferred = yield* Deferred.make<void>()
      yield* Deferred.await(deferred).pipe(
        Effect.andThen(Effect.sleep(options.delay)),
        Effect.andThen(Effect.logInfo("shutdown requested by the manager")),
        Effect.andThen(options.stop),
        Effect.forkScoped
      )
      return AgentShutdown.of({
        request: Deferred.succeed(deferred, undefined).pipe(Effect.asVoid),
        requested: Deferred.await(deferred)
      })
    })

  /** Stops the process like SIGTERM does, 200 ms after the request (the RPC reply leaves first). */
  static readonly layer = Layer.effect(
    AgentShutdown,
    AgentShutdown.make({ delay: "200 millis", stop: Effect.sync(() => process.kill(process.pid, "SIGTERM")) })
  )

  /** Records requests without stopping anything (tests). */
  static readonly layerTest = Layer.effect(AgentShutdown, AgentShutdown.make({ delay: 0, stop: Effect.void }))
}
