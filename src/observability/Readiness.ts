/**
 * Readiness: named checks that services register (etcd reachable, event channel connected,
 * Kubernetes reachable, …) and that `/ready` on the internal port runs (src/http/InternalHttp.ts).
 *
 *   const readiness = yield* Readiness
 *   yield* readiness.register("etcd", etcd.get("nodes/manager/event_addr"))   // in a layer: removed with its scope
 *
 * A check passes when it succeeds with `true` or `undefined` (an `Effect<void>`); `false`, a failure,
 * a defect or a timeout fail it. Checks run concurrently, each bounded by `timeout`.
 */
import { Cause, Context, Duration, Effect, Exit, Layer, Option, Ref, Scope } from "effect"

export interface CheckResult {
  readonly ok: boolean
  /** Why it failed (absent when ok). */
  readonly error?: string
}

export interface ReadinessReport {
  readonly ready: boolean
  readonly checks: Readonly<Record<string, CheckResult>>
}

export type ReadinessCheck = Effect.Effect<boolean | void, unknown>

export interface ReadinessOptions {
  /** Bound of one check. Default 3 s. */
  readonly timeout?: Duration.Input
}

export class Readiness extends Context.Service<Readiness, {
  /**
   * Adds (or replaces) the check `name`; it is removed when the enclosing scope closes (register
   * from a layer's constructor, so the check lives as long as the service it checks).
   */
  register(name: string, check: ReadinessCheck): Effect.Effect<void, never, Scope.Scope>
  /** Adds (or replaces) the check `name` for the life of the Readiness service. */
  registerForever(name: string, check: ReadinessCheck): Effect.Effect<void>
  /** Runs every check. */
  readonly run: Effect.Effect<ReadinessReport>
  /** Names of the registered checks. */
  readonly names: Effect.Effect<ReadonlyArray<string>>
}>()("bai-agent/observability/Readiness") {
  static readonly make = Effect.fnUntraced(function*(options: ReadinessOptions = {}) {
    const timeout = options.timeout ?? "3 seconds"
    const checks = yield* Ref.make(new Map<string, { readonly id: object; readonly check: ReadinessCheck }>())

    const add = (name: string, check: ReadinessCheck) =>
      Effect.suspend(() => {
        const id = {}
        return Ref.update(checks, (m) => new Map(m).set(name, { id, check })).pipe(Effect.as(id))
      })
    const removeIf = (name: string, id: object) =>
      Ref.update(checks, (m) => {
        if (m.get(name)?.id !== id) return m
        const next = new Map(m)
        next.delete(name)
        return next
      })

    const runOne = (check: ReadinessCheck): Effect.Effect<CheckResult> =>
      check.pipe(
        Effect.timeoutOption(timeout),
        Effect.exit,
        Effect.map((exit): CheckResult => {
          if (Exit.isFailure(exit)) {
            const squashed = Cause.squash(exit.cause)
            const message = squashed instanceof Error ? squashed.message : String(squashed)
            return { ok: false, error: message === "" ? String(squashed) : message }
          }
          if (Option.isNone(exit.value)) return { ok: false, error: `no answer within ${Duration.format(Duration.fromInputUnsafe(timeout))}` }
          return exit.value.value === false ? { ok: false, error: "check returned false" } : { ok: true }
        })
      )

    const run = Effect.gen(function*() {
      const current = [...(yield* Ref.get(checks)).entries()]
      const results = yield* Effect.forEach(current, ([name, { check }]) => Effect.map(runOne(check), (r) => [name, r] as const), {
        concurrency: 8
      })
      const out: Record<string, CheckResult> = Object.fromEntries(results)
      return { ready: results.every(([, r]) => r.ok), checks: out } satisfies ReadinessReport
    })

    return Readiness.of({
      register: (name, check) =>
        Effect.acquireRelease(add(name, check), (id) => removeIf(name, id)).pipe(Effect.asVoid),
      registerForever: (name, check) => add(name, check).pipe(Effect.asVoid),
      run,
      names: Effect.map(Ref.get(checks), (m) => [...m.keys()])
    })
  })

  static readonly layer: Layer.Layer<Readiness> = Layer.effect(Readiness, Readiness.make())

  static readonly layerWith = (options: ReadinessOptions): Layer.Layer<Readiness> => Layer.effect(Readiness, Readiness.make(options))
}
