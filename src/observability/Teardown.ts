/**
 * Exit codes of the entry points (agent, watcher, agentctl): interruption by SIGTERM/SIGINT closes
 * every scope and is a clean exit (0); `--help` is reported by the CLI as a "failure" (0), an unknown
 * flag likewise but with its parse errors (1); errors
 * already shown to the user (config errors, CLI errors, the entry point's own `printed` tags) exit 1
 * without a stack; anything else is printed in full and exits 1.
 */
import { Cause, Exit } from "effect"
import { CliError } from "effect/cli"
import type { Teardown } from "effect/Runtime"

export const teardown = (printed: ReadonlyArray<string> = []): Teardown => (exit, onExit) => {
  if (Exit.isSuccess(exit) || Cause.hasInterruptsOnly(exit.cause)) return onExit(0)
  const squashed = Cause.squash(exit.cause)
  const tag = typeof squashed === "object" && squashed !== null && "_tag" in squashed ? squashed._tag : undefined
  // `--help` arrives as ShowHelp without errors (exit 0); a parse error (unknown flag, bad value) as
  // ShowHelp with errors, already printed with the help (exit 1).
  if (tag === "ShowHelp") {
    const errors = (squashed as { readonly errors?: ReadonlyArray<unknown> }).errors
    return onExit(errors !== undefined && errors.length > 0 ? 1 : 0)
  }
  if (tag !== "ConfigError" && !(typeof tag === "string" && printed.includes(tag)) && !CliError.isCliError(squashed)) {
    console.error(Cause.pretty(exit.cause))
  }
  return onExit(1)
}
