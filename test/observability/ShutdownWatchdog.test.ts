// The shutdown watchdog (src/observability/Teardown.ts): Node's exit joins libuv's pool threads, so
// a process with a pool thread stuck in open(2) on a FIFO hangs forever after process.exit(); the
// watchdog kills it. A real child process, a real FIFO.
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"

const teardownUrl = pathToFileURL(path.join(import.meta.dirname, "..", "..", "src", "observability", "Teardown.ts")).href

/** Runs `script` (ESM) in a child node; the exit code and signal, failing after `seconds`. */
const runChild = (script: string, seconds: number) =>
  Effect.callback<{ readonly code: number | null; readonly signal: NodeJS.Signals | null; readonly stderr: string }>((resume) => {
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "ignore", "pipe"] })
    let stderr = ""
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()))
    child.on("exit", (code, signal) => resume(Effect.succeed({ code, signal, stderr })))
    return Effect.sync(() => child.kill("SIGKILL"))
  }).pipe(
    Effect.timeoutOrElse({ duration: `${seconds} seconds`, orElse: () => Effect.fail(new Error(`the child did not exit within ${seconds} s`)) })
  )

describe("shutdown watchdog", () => {
  it.live("kills a process whose exit hangs on a pool thread stuck on a FIFO", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "bai-watchdog-"))),
        (d) =>
          Effect.sync(() => {
            const fifo = path.join(d, "fifo")
            // release a writer still blocked on it (if the child survived), then clean up
            if (fs.existsSync(fifo)) fs.closeSync(fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK))
            fs.rmSync(d, { recursive: true, force: true })
          })
      )
      const fifo = path.join(dir, "fifo")
      assert.strictEqual(spawnSync("mkfifo", [fifo]).status, 0)
      const script = `
        import * as fs from "node:fs"
        import { armShutdownWatchdog } from ${JSON.stringify(teardownUrl)}
        fs.promises.open(${JSON.stringify(fifo)}, "w").catch(() => {})
        armShutdownWatchdog(1)
        setImmediate(() => process.exit(0))
      `
      const r = yield* runChild(script, 60)
      assert.strictEqual(r.signal, "SIGKILL")
      assert.match(r.stderr, /killing it/)
    }).pipe(Effect.scoped), 90_000)

  it.live("a process that exits by itself is left alone (exit code kept)", () =>
    Effect.gen(function*() {
      const script = `
        import { armShutdownWatchdog } from ${JSON.stringify(teardownUrl)}
        armShutdownWatchdog(1)
        process.exitCode = 3
      `
      const r = yield* runChild(script, 60)
      assert.strictEqual(r.code, 3)
      assert.isNull(r.signal)
    }), 90_000)
})
