/**
 * agentctl entry point: `node dist/agentctl.js [--agent tcp://HOST:PORT | -f agent.toml] [--timeout S] [--json] COMMAND …`
 * (commands in src/agentctl/Agentctl.ts; `node dist/agentctl.js --help` lists them).
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Cause, Effect, Exit } from "effect"
import { CliError } from "effect/cli"
import { AgentctlOutput, run } from "./agentctl/Agentctl.ts"
import { checkNodeVersion } from "./version.ts"

checkNodeVersion(process.versions.node)

run(process.argv.slice(2)).pipe(
  Effect.provide(AgentctlOutput.layer),
  Effect.provide(NodeServices.layer),
  NodeRuntime.runMain({
    disableErrorReporting: true,
    teardown: (exit, onExit) => {
      if (Exit.isSuccess(exit) || Cause.hasInterruptsOnly(exit.cause)) return onExit(0)
      const squashed = Cause.squash(exit.cause)
      const tag = typeof squashed === "object" && squashed !== null && "_tag" in squashed ? squashed._tag : undefined
      if (tag === "ShowHelp") return onExit(0)
      // AgentctlError, ConfigError and CLI errors were printed already
      if (tag !== "AgentctlError" && tag !== "ConfigError" && !CliError.isCliError(squashed)) console.error(Cause.pretty(exit.cause))
      return onExit(1)
    }
  })
)
