/**
 * `shutdown_agent`: the manager asks the agent to stop. `request` returns at once (so the RPC reply
 * goes out) and the stop happens shortly after, the same way SIGTERM stops the agent: the main fiber
 * is interrupted and every scope closes (kernels are detached, never deleted, by that path).
 *
 * `layer` signals the process itself with SIGTERM, which `NodeRuntime.runMain` turns into an
 * interruption of the main fiber; it needs no wiring in main.ts. `requested` lets a composition root
 * race the agent against the request instead, if it prefers. `layer` also arms the shutdown
 * watchdog on the first SIGTERM/SIGINT (whatever a kernel did, the process is gone
 * `agent.shutdown-grace` + {@link TEARDOWN_MARGIN_SECONDS} seconds later).
 */
import { Context, Deferred, Duration, Effect, Layer } from "effect"
import { AgentConfig } from "../config/AgentConfig.ts"
import { armShutdownWatchdog } from "../observability/Teardown.ts"

/** What the teardown gets beyond `agent.shutdown-grace` (the RPC server's drain) before the watchdog kills. */
const TEARDOWN_MARGIN_SECONDS = 5

/** Arms {@link armShutdownWatchdog} once, on the first SIGTERM or SIGINT, while the scope is open. */
const watchdogOnSignals = (seconds: number) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      let armed = false
      const arm = () => {
        if (armed) return
        armed = true
        armShutdownWatchdog(seconds)
      }
      process.on("SIGTERM", arm)
      process.on("SIGINT", arm)
      return arm
    }),
    (arm) =>
      Effect.sync(() => {
        process.off("SIGTERM", arm)
        process.off("SIGINT", arm)
      })
  )

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

  /**
   * Stops the process like SIGTERM does, 200 ms after the request (the RPC reply leaves first). Also
   * arms the shutdown watchdog on SIGTERM / SIGINT: if the process has not exited
   * `agent.shutdown-grace` + {@link TEARDOWN_MARGIN_SECONDS} seconds later (a finalizer or a libuv
   * pool thread stuck on something a kernel did), it is killed (see {@link armShutdownWatchdog}).
   */
  static readonly layer = Layer.effect(
    AgentShutdown,
    Effect.gen(function*() {
      const grace = (yield* AgentConfig).config.agent["shutdown-grace"]
      yield* watchdogOnSignals(grace + TEARDOWN_MARGIN_SECONDS)
      return yield* AgentShutdown.make({ delay: "200 millis", stop: Effect.sync(() => process.kill(process.pid, "SIGTERM")) })
    })
  )

  /** Records requests without stopping anything (tests). */
  static readonly layerTest = Layer.effect(AgentShutdown, AgentShutdown.make({ delay: 0, stop: Effect.void }))
}
