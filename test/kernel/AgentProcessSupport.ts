/**
 * Test support for the real agent process (`node dist/main.js -f agent.toml`, needs `npm run build`):
 * a config for a site with its own RPC and internal-HTTP ports, spawn (SIGTERM on release, SIGKILL if
 * it does not stop), kill -9, "RPC answers" with the process' exit noticed, and the agent's log
 * printed when the test fails (the log file is kept either way).
 */
import { Effect, Exit } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import type { AiozmqClientShape } from "../../src/rpc/aiozmq/AiozmqClient.ts"
import { freePort } from "../testbed/ports.ts"
import type { Site } from "./KernelLifecycleSupport.ts"

const root = path.join(import.meta.dirname, "..", "..")
export const mainJs = path.join(root, "dist", "main.js")


export interface AgentFiles {
  readonly toml: string
  readonly log: string
  readonly rpcPort: number
  /** `[metrics] service-addr` port: /metrics, /health, /ready on 127.0.0.1. */
  readonly metricsPort: number
}

/**
 * Writes the site's agent.toml next to its scratch root with a free RPC port and a free internal
 * HTTP port (the default 127.0.0.1:6019 may be taken by another agent on the machine). The log file
 * `<scratch>.agent.log` stays after the test.
 */
export const agentFiles = (site: Site) =>
  Effect.gen(function*() {
    const rpcPort = yield* Effect.promise(() => freePort())
    const metricsPort = yield* Effect.promise(() => freePort())
    const base = path.join(path.dirname(site.scratchRoot), path.basename(site.scratchRoot))
    const toml = `${base}.toml`
    const log = `${base}.agent.log`
    fs.writeFileSync(
      toml,
      site.toml.replace(/rpc-listen-addr = "[^"]*"/, `rpc-listen-addr = "127.0.0.1:${rpcPort}"`) +
        `\n[metrics]\nservice-addr = "127.0.0.1:${metricsPort}"\n`
    )
    yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(toml, { force: true })))
    return { toml, log, rpcPort, metricsPort } satisfies AgentFiles
  })

const exited = (child: ChildProcess) => child.exitCode !== null || child.signalCode !== null

const waitExit = (child: ChildProcess) =>
  Effect.callback<void>((resume) => {
    if (exited(child)) return resume(Effect.void)
    child.once("exit", () => resume(Effect.void))
  })

/** Spawns the agent (stdout and stderr appended to `files.log`); released with SIGTERM (SIGKILL after 60 s). */
export const startAgentProcess = (files: AgentFiles) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const out = fs.openSync(files.log, "a")
      fs.writeSync(out, `--- test: starting the agent process\n`)
      const child = spawn(process.execPath, [mainJs, "-f", files.toml], { stdio: ["ignore", out, out] })
      fs.closeSync(out)
      return child
    }),
    (child) =>
      Effect.suspend(() => {
        if (exited(child)) return Effect.void
        child.kill("SIGTERM")
        return waitExit(child).pipe(
          Effect.timeoutOrElse({ duration: "60 seconds", orElse: () => kill9(child) })
        )
      })
  )

export const kill9 = (child: ChildProcess) =>
  Effect.suspend(() => {
    if (exited(child)) return Effect.void
    child.kill("SIGKILL")
    return waitExit(child)
  })

/**
 * Until the agent answers `ping` (short per-call timeout: a DEALER queues requests while nothing
 * listens); fails at once if the process exits, and after `seconds`.
 */
export const waitRpcUp = (client: AiozmqClientShape, child: ChildProcess, seconds = 120) =>
  Effect.gen(function*() {
    for (let i = 0; i < seconds; i++) {
      if (exited(child)) {
        return yield* Effect.fail(new Error(`the agent process exited (code ${child.exitCode}, signal ${child.signalCode}) before answering ping`))
      }
      const pong = yield* client.call("ping", ["up"], { timeout: "1 second" }).pipe(Effect.option)
      if (pong._tag === "Some") return
    }
    return yield* Effect.fail(new Error(`the agent did not answer ping within ${seconds} s`))
  })

/** The value of one series of the agent's `/metrics` (matching every given label), if present. */
export const scrapeMetric = (files: AgentFiles, name: string, labels: Record<string, string> = {}) =>
  Effect.tryPromise(() => fetch(`http://127.0.0.1:${files.metricsPort}/metrics`).then((r) => r.text())).pipe(
    Effect.map((text) => {
      for (const line of text.split("\n")) {
        const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
        if (m === null || m[1] !== name) continue
        const attrs = Object.fromEntries([...(m[2] ?? "").matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]))
        if (Object.entries(labels).every(([k, v]) => attrs[k] === v)) return Number(m[3])
      }
      return undefined
    })
  )

/** Prints the agent's log (its last 400 lines) when `self` fails or is interrupted. */
export const printLogOnFailure = (log: string) => <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.onExit(self, (exit) =>
    Exit.isSuccess(exit)
      ? Effect.void
      : Effect.sync(() => {
        const text = fs.existsSync(log) ? fs.readFileSync(log, "utf8") : "(no log file)"
        const lines = text.split("\n")
        console.error(`--- agent log ${log} (last ${Math.min(400, lines.length)} of ${lines.length} lines):\n${lines.slice(-400).join("\n")}`)
      }))
