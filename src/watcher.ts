/**
 * The agent watcher (spec §10): a second process, reading the same agent.toml (`[watcher]`).
 * `node dist/watcher.js [-f PATH] [--debug] [--sudo]`
 *
 * It serves the watcher HTTP API (src/http/Watcher.ts) and reads its token from etcd
 * `config/watcher/token` itself (it does not depend on the agent process running).
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import { Console, Effect, FileSystem, Layer, Option, Schema } from "effect"
import { Command, Flag } from "effect/cli"
import { AgentConfig, type LoadedConfig, loadConfig } from "./config/AgentConfig.ts"
import { configFlag, debugFlag } from "./config/Flags.ts"
import * as Watcher from "./http/Watcher.ts"
import * as Logging from "./observability/Logging.ts"
import { Etcd } from "./manager/Etcd.ts"
import { teardown } from "./observability/Teardown.ts"
import { checkNodeVersion, VERSION } from "./version.ts"

export class WatcherConfigError extends Schema.TaggedError<WatcherConfigError>()("WatcherConfigError", {
  message: Schema.String
}) {}

/** The watcher for a loaded configuration (needs the Node platform services). */
const WatcherLive = (loaded: LoadedConfig, options: { readonly sudo: boolean }) =>
  Layer.unwrap(
    Effect.gen(function*() {
      const w = loaded.config.watcher
      const etcd = yield* Etcd
      const fs = yield* FileSystem.FileSystem
      let tls: Watcher.WatcherServerOptions["tls"] = undefined
      if (w["ssl-enabled"]) {
        const certPath = w["ssl-cert"]
        const keyPath = w["ssl-privkey"]
        if (certPath === undefined || keyPath === undefined) {
          return yield* new WatcherConfigError({ message: `${loaded.file}: [watcher] ssl-enabled needs ssl-cert and ssl-privkey` })
        }
        const read = (p: string) =>
          fs.readFile(p).pipe(
            Effect.mapError((e) => new WatcherConfigError({ message: `${loaded.file}: [watcher] cannot read ${p}: ${e.message}` }))
          )
        tls = { cert: Buffer.from(yield* read(certPath)), key: Buffer.from(yield* read(keyPath)) }
      }
      const addr = w["service-addr"]
      return Watcher.layerServer({
        host: addr.host === "" ? "0.0.0.0" : addr.host,
        port: addr.port,
        tls,
        targetService: w["target-service"],
        softResetAvailable: w["soft-reset-available"],
        systemctl: options.sudo ? ["sudo", "-n", "systemctl"] : ["systemctl"],
        token: etcd.get("config/watcher/token")
      })
    })
  ).pipe(
    Layer.provide(Etcd.layer),
    Layer.provide(AgentConfig.fromLoaded(loaded)),
    Layer.provide(NodeServices.layer)
  )

const watcher = Command.make(
  "bai-watcher",
  {
    config: configFlag,
    debug: debugFlag,
    sudo: Flag.Boolean("sudo").pipe(
      Flag.withDescription("Run `sudo -n systemctl` instead of `systemctl` (when a sudoers rule, not polkit, grants it)"),
      Flag.withDefault(false)
    )
  },
  Effect.fn(function*({ config, debug, sudo }) {
    const loaded = yield* loadConfig(Option.getOrUndefined(config), process.env).pipe(
      Effect.tapError((e) => Console.error(e.message))
    )
    return yield* Layer.launch(WatcherLive(loaded, { sudo })).pipe(
      Effect.tapError((e) => Console.error(e.message)),
      Effect.provide(Logging.layer(loaded.config.logging, { debug, isTty: process.stderr.isTTY === true }))
    )
  })
).pipe(Command.withDescription("Backend.AI agent watcher: HTTP API to query and control the agent's systemd service"))

checkNodeVersion(process.versions.node)

Command.run(watcher, { version: VERSION }).pipe(
  Effect.provide(NodeServices.layer),
  NodeRuntime.runMain({
    disableErrorReporting: true,
    teardown: teardown(["WatcherConfigError"])
  })
)
