/**
 * Runs the Python interop helpers of this folder (Debian python3-aiozmq, python3-zmq, python3-msgpack).
 * `BAI_PYTHON` overrides the interpreter; default /usr/bin/python3 (Debian's, where the packages live).
 */
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { Deferred, Effect, Queue, Schema, type Scope } from "effect"

export const pythonExecutable = process.env.BAI_PYTHON ?? (existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3")

export const scriptPath = (name: string): string => fileURLToPath(new URL(`./${name}`, import.meta.url))

export class PythonError extends Schema.TaggedError<PythonError>()("PythonError", {
  script: Schema.String,
  message: Schema.String
}) {}

/** A running helper: its stdout lines, and its exit code once it ends. */
export interface PythonProcess {
  readonly lines: Queue.Dequeue<string>
  readonly exitCode: Effect.Effect<number>
  readonly stderr: () => string
  readonly child: ChildProcess
}

/** Starts a helper script; it is killed when the scope closes. */
export const spawnPython = (script: string, args: ReadonlyArray<string>): Effect.Effect<PythonProcess, never, Scope.Scope> =>
  Effect.gen(function*() {
    const lines = yield* Queue.unbounded<string>()
    const exited = yield* Deferred.make<number>()
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => spawn(pythonExecutable, [scriptPath(script), ...args], { stdio: ["pipe", "pipe", "pipe"] })),
      (c) => Effect.sync(() => {
        if (c.exitCode === null) c.kill("SIGKILL")
      })
    )
    let stderr = ""
    let partial = ""
    child.stdout!.on("data", (chunk: Buffer) => {
      partial += chunk.toString("utf8")
      const parts = partial.split("\n")
      partial = parts.pop()!
      for (const line of parts) Queue.offerUnsafe(lines, line)
    })
    child.stderr!.on("data", (chunk: Buffer) => {
      stderr += chunk.toString("utf8")
    })
    child.on("exit", (code) => Deferred.doneUnsafe(exited, Effect.succeed(code ?? -1)))
    return { lines, exitCode: Deferred.await(exited), stderr: () => stderr, child }
  })

/** Runs a helper to completion; fails unless it exits 0. */
export const runPython = (script: string, args: ReadonlyArray<string>): Effect.Effect<ReadonlyArray<string>, PythonError> =>
  Effect.scoped(
    Effect.gen(function*() {
      const p = yield* spawnPython(script, args)
      const code = yield* p.exitCode
      const out = yield* Queue.clear(p.lines)
      if (code !== 0) return yield* new PythonError({ script, message: `exit ${code}: ${p.stderr()}` })
      return out
    })
  )
