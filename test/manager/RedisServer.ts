/**
 * A private redis-server for tests that stop and restart Redis (never the testbed's shared one):
 * a free port, its own data dir, stopped when the scope closes.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Ref, type Scope } from "effect"
import { startRedis, waitRedis } from "../testbed/datastores.ts"
import { freePort } from "../testbed/ports.ts"
import { type Daemon, stopDaemons } from "../testbed/processes.ts"

export interface RedisServer {
  readonly addr: string
  readonly port: number
  /** SIGKILLs the server (nothing saved). */
  readonly kill: Effect.Effect<void>
  /** Starts it again on the same port and waits until it accepts connections. */
  readonly start: Effect.Effect<void>
}

export const redisServer: Effect.Effect<RedisServer, never, Scope.Scope> = Effect.gen(function*() {
  const port = yield* Effect.promise(() => freePort())
  const dir = yield* Effect.acquireRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "bai-redis-"))),
    (d) => Effect.sync(() => fs.rmSync(d, { recursive: true, force: true }))
  )
  const daemon = yield* Ref.make<Daemon | undefined>(undefined)
  const start = Effect.gen(function*() {
    const d = startRedis(path.join(dir, "data"), port, dir)
    yield* Ref.set(daemon, d)
    yield* Effect.promise(() => waitRedis(d, port))
  })
  const kill = Ref.getAndSet(daemon, undefined).pipe(
    Effect.flatMap((d) => (d === undefined ? Effect.void : Effect.promise(() => stopDaemons([d], 0))))
  )
  yield* Effect.addFinalizer(() => kill)
  yield* start
  return { addr: `127.0.0.1:${port}`, port, kill, start }
})
