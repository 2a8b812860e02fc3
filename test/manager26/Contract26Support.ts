/**
 * The 26.x contract served as the agent serves it (Contract26, the Python TypeError texts, the one
 * agent_id= check) with handlers that answer the arguments they were given: what the argument side
 * of the contract decoded, for the unit and interop tests.
 */
import { Effect } from "effect"
import { argumentMessage, Contract26 } from "../../src/manager26/Contract26.ts"
import { withAgentId } from "../../src/manager26/Handlers.ts"
import { CallosumHandlers } from "../../src/rpc/callosum/CallosumServer.ts"

const echo = (...args: ReadonlyArray<unknown>) => Effect.succeed(args)

/** Every method of {@link Contract26}, for the agent `agentId`, each answering its decoded arguments. */
export const echoContract26 = (agentId: string) =>
  withAgentId(
    agentId,
    CallosumHandlers.fromContract(
      Contract26,
      Object.fromEntries(Object.keys(Contract26).map((name) => [name, echo])),
      { ignoreKeyword: "agent_id", describeRefusal: argumentMessage }
    )
  )
