/**
 * Composition root of the agent daemon: CLI → configuration → layers → NodeRuntime.runMain.
 * `node dist/main.js [-f PATH] [--debug] [--check-config] [--help] [--version]`
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import { Console, Effect, Layer, Option } from "effect"
import { Command, Flag } from "effect/cli"
import { type LoadedConfig, loadConfig, redacted } from "./config/AgentConfig.ts"
import { configFlag, debugFlag } from "./config/Flags.ts"
import { AgentLive } from "./AgentLive.ts"
import { teardown } from "./observability/Teardown.ts"
import { checkNodeVersion, VERSION } from "./version.ts"
import * as Logging from "./observability/Logging.ts"

const printConfigErrors = (loaded: { readonly message: string }) => Console.error(loaded.message)

const run = (loaded: LoadedConfig, debug: boolean) =>
  Layer.launch(AgentLive(loaded)).pipe(
    Effect.provide(Logging.layer(loaded.config.logging, { debug, isTty: process.stderr.isTTY === true }))
  )

const agent = Command.make(
  "bai-agent",
  {
    config: configFlag,
    debug: debugFlag,
    checkConfig: Flag.Boolean("check-config").pipe(
      Flag.withDescription("Load and validate the configuration, print it (secrets redacted) and exit"),
      Flag.withDefault(false)
    )
  },
  Effect.fn(function*({ checkConfig, config, debug }) {
    const loaded = yield* loadConfig(Option.getOrUndefined(config), process.env).pipe(
      Effect.tapError(printConfigErrors)
    )
    if (checkConfig) {
      for (const w of loaded.warnings) yield* Console.error(`warning: ${w}`)
      yield* Console.log(JSON.stringify(redacted(loaded), null, 2))
      return
    }
    return yield* run(loaded, debug)
  })
).pipe(Command.withDescription("Backend.AI agent for Kubernetes (manager 19.06 / K1 contract)"))

checkNodeVersion(process.versions.node)

Command.run(agent, { version: VERSION }).pipe(
  Effect.provide(NodeServices.layer),
  NodeRuntime.runMain({
    disableErrorReporting: true,
    teardown: teardown()
  })
)
