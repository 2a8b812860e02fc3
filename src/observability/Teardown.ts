/**
 * Exit codes of the entry points (agent, watcher, agentctl): interruption by SIGTERM/SIGINT closes
 * every scope and is a clean exit (0); `--help` is reported by the CLI as a "failure" (0), an unknown
 * flag likewise but with its parse errors (1); errors
 * already shown to the user (config errors, CLI errors, the entry point's own `printed` tags) exit 1
 * without a stack; anything else is printed in full and exits 1.
 *
 * {@link armShutdownWatchdog} is the last resort behind all of that: an exit that cannot complete
 * (a libuv pool thread stuck in a system call) is ended by SIGKILL.
 */
import { Cause, Exit } from "effect"
import { CliError } from "effect/cli"
import type { Teardown } from "effect/Runtime"
import { spawn } from "node:child_process"

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

/**
 * Arms a last-resort watchdog: a small process (`sh`, `timeout`, `cat`) that SIGKILLs this one if it
 * has not exited `seconds` after the call. Exit cannot always be finished from inside: Node's exit
 * joins libuv's pool threads and worker threads, and one stuck in a system call (a filesystem call
 * that never returns) hangs the process forever after the last finalizer. The watchdog holds the
 * read end of a pipe whose write end only this process has: when this process exits, by any means,
 * it sees end-of-file and goes away without killing anything (no pid-reuse race). Idempotent per
 * process is not needed: each call arms its own.
 */
export const armShutdownWatchdog = (seconds: number, pid: number = process.pid): void => {
  const grace = Math.max(1, Math.ceil(seconds))
  const script = `timeout ${grace} cat >/dev/null; if [ $? -eq 124 ]; then ` +
    `echo "bai-agent: still running ${grace} s after the stop request, killing it" >&2; kill -KILL ${pid}; fi`
  const child = spawn("/bin/sh", ["-c", script], { stdio: ["pipe", "ignore", "inherit"], detached: true })
  child.on("error", () => {}) // no sh: nothing to arm, the normal exit path still runs
  child.unref()
  ;(child.stdin as unknown as { unref?: () => void } | null)?.unref?.()
}
