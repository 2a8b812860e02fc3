/**
 * This agent's RPC server (`ping`, and `list_files` answering the fixed 10-entry listing in
 * bench/list-files-reply.json, like bench/aiozmq_bench_server.py) as a separate process, for bench/rpc.ts: prints the
 * bound endpoint on stdout and serves until stdin closes. Not a benchmark by itself.
 *
 *   node bench/rpc-server.ts [endpoint] [--max-ops N]
 *
 * `--max-ops` sets Effect's `Scheduler.MaxOpsBeforeYield` (default 2048), for scheduler experiments.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { readFileSync } from "node:fs"
import { Console, Effect, Layer, References, Scheduler } from "effect"
import { AgentRpcHandlers, type ListFilesResult, type PartialAgentRpcHandlers } from "../src/rpc/AgentRpcs.ts"
import { AiozmqServer } from "../src/rpc/aiozmq/AiozmqServer.ts"
import { HealthHandlers } from "../src/rpc/handlers/Health.ts"

const maxOpsIndex = process.argv.indexOf("--max-ops")
const maxOps = maxOpsIndex >= 0 ? Number(process.argv[maxOpsIndex + 1]) : undefined
const bind = process.argv[2] !== undefined && !process.argv[2].startsWith("--") ? process.argv[2] : "tcp://127.0.0.1:*"

// The reply only: the bench measures the RPC layer (the Python baseline answers the same listing).
const listFilesReply = JSON.parse(readFileSync(new URL("./list-files-reply.json", import.meta.url), "utf8")) as ListFilesResult
const ListFilesBench: Effect.Effect<PartialAgentRpcHandlers> = Effect.succeed({
  list_files: (_kernelId: string, _path: string) => Effect.succeed(listFilesReply)
})

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
    AiozmqServer.layer({ bind }).pipe(
      Layer.provide(AgentRpcHandlers.layer(HealthHandlers, ListFilesBench))
    )
  ),
  Effect.provideService(References.MinimumLogLevel, "Warn"),
  maxOps === undefined ? (self) => self : Effect.provideService(Scheduler.MaxOpsBeforeYield, maxOps)
)

NodeRuntime.runMain(program)
