/**
 * Logging through Effect's Logger: human-readable on a terminal, one JSON object per line otherwise
 * (what journald and log shippers want). Level from `logging.level`, lowered by `--debug`.
 */
import { Layer, Logger, References } from "effect"
import type { LogLevel } from "effect/LogLevel"
import type { AgentConfigData } from "../config/AgentConfigSchema.ts"

const levels: Record<AgentConfigData["logging"]["level"], LogLevel> = {
  NOTSET: "All",
  DEBUG: "Debug",
  INFO: "Info",
  WARNING: "Warn",
  WARN: "Warn",
  ERROR: "Error",
  CRITICAL: "Fatal"
}

const minimumLevel = (logging: AgentConfigData["logging"], debug: boolean): LogLevel =>
  debug ? "Debug" : levels[logging.level]

const usePretty = (logging: AgentConfigData["logging"], isTty: boolean): boolean =>
  logging.format === "pretty" || (logging.format === "auto" && isTty)

/** Log layer for an entry point; `isTty` is `process.stderr.isTTY` read by the caller. */
export const layer = (logging: AgentConfigData["logging"], options: { readonly debug: boolean; readonly isTty: boolean }) =>
  Layer.mergeAll(
    Logger.layer([usePretty(logging, options.isTty) ? Logger.consolePretty() : Logger.consoleJson]),
    Layer.succeed(References.MinimumLogLevel, minimumLevel(logging, options.debug))
  )
