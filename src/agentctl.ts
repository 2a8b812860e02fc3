/**
 * agentctl entry point: `node dist/agentctl.js [--agent tcp://HOST:PORT | -f agent.toml] [--timeout S] [--json] COMMAND …`
 * (commands in src/agentctl/Agentctl.ts; `node dist/agentctl.js --help` lists them).
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import { Effect } from "effect"
import { AgentctlOutput, run } from "./agentctl/Agentctl.ts"
import { teardown } from "./observability/Teardown.ts"
import { checkNodeVersion } from "./version.ts"

checkNodeVersion(process.versions.node)

run(process.argv.slice(2)).pipe(
  Effect.provide(AgentctlOutput.layer),
  Effect.provide(NodeServices.layer),
  NodeRuntime.runMain({
    disableErrorReporting: true,
    teardown: teardown(["AgentctlError"])
  })
)
