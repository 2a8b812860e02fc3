/** Command-line flags shared by the agent and the watcher (they read the same agent.toml). */
import { Flag } from "effect/cli"

export const configFlag = Flag.String("config").pipe(
  Flag.withAlias("f"),
  // the Python agent's spelling (`-f/--config-path/--config`): existing unit files keep working
  Flag.withAlias("config-path"),
  Flag.withDescription(
    "Path of agent.toml (default: $BACKEND_CONFIG_FILE, ./agent.toml, ~/.config/backend.ai/agent.toml, /etc/backend.ai/agent.toml)"
  ),
  Flag.optional
)

export const debugFlag = Flag.Boolean("debug").pipe(Flag.withDescription("Log at debug level"), Flag.withDefault(false))
