/** Health-check handlers: `ping` echoes its argument (spec §2.1). */
import { Effect } from "effect"
import type { PartialAgentRpcHandlers } from "../AgentRpcs.ts"

export const HealthHandlers: Effect.Effect<PartialAgentRpcHandlers> = Effect.succeed({
  // No `Effect.fn` span here: ping is the manager's liveness probe and the hottest RPC, and the
  // span with its call-site capture cost ~20 µs of server CPU per call (bench/README.md).
  ping: (msg: string) => Effect.succeed(msg)
})
