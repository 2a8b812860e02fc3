/** Health-check handlers: `ping` echoes its argument (spec §2.1). */
import { Effect } from "effect"
import type { PartialAgentRpcHandlers } from "../AgentRpcs.ts"

export const HealthHandlers: Effect.Effect<PartialAgentRpcHandlers> = Effect.succeed({
  ping: Effect.fn("AgentRpcs.ping")(function*(msg: string) {
    return msg
  })
})
