/**
 * The agent's registration in etcd (spec §5.3), NODE scope `nodes/agents/{id}/`:
 *
 *   `nodes/agents/{id}/`             = "starting"   when the layer is built
 *   `nodes/agents/{id}/ip`           = RPC host      ┐ one transaction, in `markRunning`
 *   `nodes/agents/{id}/watcher_port` = watcher port  │ (after the RPC socket is bound)
 *   `nodes/agents/{id}/`             = "running"     ┘
 *
 * The agent id comes from `AgentConfig.agentId` (resolved before any key is computed; K1 wrote
 * under `nodes/agents/None`). Writes never block the agent: one background writer fiber asserts the
 * desired state, retrying with a capped backoff while etcd is away, and re-asserts it every
 * `reassertInterval` (30 s) so an etcd outage or data loss is repaired. Nothing is deleted on
 * shutdown (as K1; the manager learns about departure from `instance_terminated`).
 */
import { Context, Deferred, Duration, Effect, Layer, Queue, Ref } from "effect"
import { AgentConfig } from "../config/AgentConfig.ts"
import { Etcd, type EtcdError } from "./Etcd.ts"
import { cappedBackoff, ManagerConfig } from "./ManagerConfig.ts"

export type RegistrationPhase = "starting" | "running"

export interface RegistrationShape {
  /**
   * Declares the RPC server bound: writes ip, watcher_port and "running". Waits at most
   * `markRunningWait` (5 s) for etcd to take it; the background writer keeps trying after that.
   */
  readonly markRunning: Effect.Effect<void>
  /**
   * Completes once `markRunning` has finished: etcd took "running" (or `markRunningWait` passed and
   * the writer keeps trying), so `instance_started` follows the etcd status as in K1 (spec §3.1).
   */
  readonly awaitRunning: Effect.Effect<void>
  /** The phase last written successfully to etcd (undefined before the first success). */
  readonly asserted: Effect.Effect<RegistrationPhase | undefined>
}

export interface RegistrationOptions {
  readonly rpcHost: string
  readonly watcherPort: number
  /** Default 30 s. */
  readonly reassertInterval?: Duration.Input
  /** Default 5 s. */
  readonly markRunningWait?: Duration.Input
}

export class Registration extends Context.Service<Registration, RegistrationShape>()("bai-agent/manager/Registration") {
  static readonly make = Effect.fnUntraced(function*(options: RegistrationOptions) {
    const etcd = yield* Etcd
    const desired = yield* Ref.make<RegistrationPhase>("starting")
    const asserted = yield* Ref.make<RegistrationPhase | undefined>(undefined)
    const wake = yield* Queue.sliding<void>(1)
    const running = yield* Deferred.make<void>()
    const runningWritten = yield* Deferred.make<void>()
    let failing = false

    const write = (phase: RegistrationPhase): Effect.Effect<void, EtcdError> =>
      phase === "starting"
        ? etcd.put("", "starting", "node")
        : etcd.putMany([["ip", options.rpcHost], ["watcher_port", String(options.watcherPort)], ["", "running"]], "node")

    // after the first write, a status that differs from what we wrote means etcd lost it: say so
    const checkLost = (phase: RegistrationPhase) =>
      Effect.gen(function*() {
        const previous = yield* Ref.get(asserted)
        if (previous === undefined) return
        const current = yield* etcd.get("", "node")
        if (current !== previous) {
          yield* Effect.logWarning(`etcd registration was lost (status ${JSON.stringify(current ?? null)}); re-asserting ${phase}`)
        }
      })
    const assertOnce = Ref.get(desired).pipe(
      Effect.tap(checkLost),
      Effect.flatMap((phase) => write(phase).pipe(Effect.andThen(Ref.set(asserted, phase)), Effect.as(phase))),
      Effect.tap((phase) => (phase === "running" ? Deferred.succeed(runningWritten, undefined) : Effect.void)),
      Effect.tap((phase) =>
        Effect.suspend(() => {
          if (!failing) return Effect.logDebug(`etcd registration asserted: ${phase}`)
          failing = false
          return Effect.logInfo(`etcd reachable again: registration re-asserted (${phase})`)
        })
      ),
      Effect.tapError((e) =>
        Effect.suspend(() => {
          if (failing) return Effect.logDebug(`etcd registration still failing: ${e.message}`)
          failing = true
          return Effect.logWarning(`etcd registration write failed (${e.reason}: ${e.message}); retrying in the background`)
        })
      )
    )

    const reassert = Duration.fromInputUnsafe(options.reassertInterval ?? "30 seconds")
    yield* assertOnce.pipe(
      Effect.retry(cappedBackoff("10 seconds")),
      // then sleep until woken (markRunning) or the re-assert period elapses
      Effect.andThen(Effect.raceFirst(Queue.take(wake), Effect.sleep(reassert))),
      Effect.forever,
      Effect.forkScoped
    )
    const keyOfStatus = etcd.keyOf("", "node")
    yield* Effect.logInfo(`etcd registration: ${keyOfStatus} (starting)`)

    const markRunning = Effect.gen(function*() {
      yield* Ref.set(desired, "running")
      yield* Queue.offer(wake, undefined)
      const ok = yield* Deferred.await(runningWritten).pipe(Effect.timeoutOption(options.markRunningWait ?? "5 seconds"))
      if (ok._tag === "None") yield* Effect.logWarning("etcd has not taken the running state yet; the agent serves anyway")
      else yield* Effect.logInfo(`etcd registration: running, ip ${options.rpcHost}`)
      yield* Deferred.succeed(running, undefined)
    })

    return Registration.of({
      markRunning,
      awaitRunning: Deferred.await(running),
      asserted: Ref.get(asserted)
    })
  })

  /** Needs `Etcd`, `ManagerConfig` (RPC host) and `AgentConfig` (watcher port). */
  static readonly layerWith = (
    options: Pick<RegistrationOptions, "reassertInterval" | "markRunningWait"> = {}
  ): Layer.Layer<Registration, never, Etcd | ManagerConfig | AgentConfig> =>
    Layer.effect(
      Registration,
      Effect.gen(function*() {
        const { config } = yield* AgentConfig
        const manager = yield* ManagerConfig
        return yield* Registration.make({ ...options, rpcHost: manager.rpcHost, watcherPort: config.watcher["service-addr"].port })
      })
    )

  static readonly layer = Registration.layerWith()

  /**
   * Calls `markRunning` once, when built; the caller orders it after the RPC server layer
   * (see {@link Registration.layerMarkRunningAfter} for an ordering the types enforce).
   */
  static readonly layerMarkRunning: Layer.Layer<never, never, Registration> = Layer.effectDiscard(
    Effect.flatMap(Registration, (r) => r.markRunning)
  )

  /**
   * Calls `markRunning` once, when built. It requires the RPC server's service (e.g. `AiozmqServer`),
   * so providing the server layer to it makes "running" happen only after the socket is bound:
   * `Registration.layerMarkRunningAfter(AiozmqServer).pipe(Layer.provide(RpcServerLayer))`.
   */
  static readonly layerMarkRunningAfter = <I, S>(server: Context.Key<I, S>): Layer.Layer<never, never, Registration | I> =>
    Layer.effectDiscard(
      Effect.gen(function*() {
        yield* server
        const registration = yield* Registration
        yield* registration.markRunning
      })
    )
}
