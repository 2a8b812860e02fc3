/**
 * The agent as one layer, in four groups (design §4): infrastructure clients, core kernel services,
 * the manager-facing application (RPC, heartbeat, stats), and observability.
 */
import { NodeServices } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { AgentConfig, type LoadedConfig } from "./config/AgentConfig.ts"
import * as PidFile from "./observability/PidFile.ts"
import { VERSION } from "./version.ts"

const StartupLog = (loaded: LoadedConfig) =>
  Layer.effectDiscard(
    Effect.gen(function*() {
      for (const w of loaded.warnings) yield* Effect.logWarning(w)
      yield* Effect.logInfo(`bai-k8s-agent ${VERSION} starting`).pipe(
        Effect.annotateLogs({ agentId: loaded.agentId, config: loaded.file })
      )
      yield* Effect.addFinalizer(() => Effect.logInfo("agent stopped"))
    })
  )

export const AgentLive = (loaded: LoadedConfig) => {
  const Config = AgentConfig.fromLoaded(loaded)
  return Layer.mergeAll(StartupLog(loaded), PidFile.layer(loaded.config.agent["pid-file"], process.pid)).pipe(
    Layer.provide(Config),
    Layer.provide(NodeServices.layer)
  )
}
