/**
 * This agent's RPC server (ping handler only) as a separate process, for bench/rpc.ts: prints the
 * bound endpoint on stdout and serves until stdin closes. Not a benchmark by itself.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect, Layer, References } from "effect"
import { AgentRpcHandlers } from "../src/rpc/AgentRpcs.ts"
import { AiozmqServer } from "../src/rpc/aiozmq/AiozmqServer.ts"
import { HealthHandlers } from "../src/rpc/handlers/Health.ts"

const stdinClosed = Effect.callback<void>((resume) => {
  process.stdin.on("end", () => resume(Effect.void))
  process.stdin.on("close", () => resume(Effect.void))
  process.stdin.resume()
})

const program = Effect.gen(function*() {
  const server = yield* AiozmqServer
  yield* Console.log(server.endpoint)
  yield* stdinClosed
}).pipe(
  Effect.provide(
    AiozmqServer.layer({ bind: process.argv[2] ?? "tcp://127.0.0.1:*" }).pipe(
      Layer.provide(AgentRpcHandlers.layer(HealthHandlers))
    )
  ),
  Effect.provideService(References.MinimumLogLevel, "Warn")
)

NodeRuntime.runMain(program)
