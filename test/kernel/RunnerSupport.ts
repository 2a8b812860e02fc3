/**
 * Test support: the testbed's runner simulator (test/testbed/runner.ts) spawned directly, without
 * Kubernetes, and a scripted fake runner (two bound ZeroMQ sockets) for records the simulator never
 * produces (oversized records, raw HTML media).
 */
import type { KernelInfo } from "../../src/kernel/KernelTable.ts"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Duration, Effect, Option, Schedule, Scope } from "effect"
import * as Zmq from "zeromq"
import type { RunnerConnection, RunnerEndpoint } from "../../src/kernel/runner/RunnerConnection.ts"
import type { PollResult } from "../../src/kernel/runner/RunnerRecords.ts"

const RUNNER = path.join(import.meta.dirname, "..", "testbed", "runner.ts")

export interface SpawnedRunner {
  readonly endpoint: RunnerEndpoint
  readonly workDir: string
  readonly logFile: string
}

/** Starts the runner simulator in a fresh work dir; killed (and the dir removed) with the scope. */
export const spawnRunner: Effect.Effect<SpawnedRunner, Error, Scope.Scope> = Effect.acquireRelease(
  Effect.tryPromise({
    try: () =>
      new Promise<{ runner: SpawnedRunner; kill: () => void }>((resolve, reject) => {
        const workDir = fs.mkdtempSync(path.join(os.tmpdir(), "bai-runner-"))
        const logFile = path.join(workDir, "..", `${path.basename(workDir)}.log`)
        const child = spawn(process.execPath, [RUNNER], {
          cwd: workDir,
          env: { ...process.env, BAI_RUNNER_LOG: logFile },
          stdio: ["ignore", "pipe", "inherit"]
        })
        let buf = ""
        const onData = (chunk: Buffer) => {
          buf += chunk.toString("utf8")
          const nl = buf.indexOf("\n")
          if (nl < 0) return
          child.stdout.off("data", onData)
          child.stdout.resume()
          const ports = JSON.parse(buf.slice(0, nl)) as { replIn: number; replOut: number }
          resolve({
            runner: { endpoint: { host: "127.0.0.1", replInPort: ports.replIn, replOutPort: ports.replOut }, workDir, logFile },
            kill: () => {
              child.kill("SIGTERM")
              fs.rmSync(workDir, { recursive: true, force: true })
              fs.rmSync(logFile, { force: true })
            }
          })
        }
        child.stdout.on("data", onData)
        child.on("error", reject)
        child.on("exit", (code) => reject(new Error(`runner exited early (${code})`)))
      }),
    catch: (e) => (e instanceof Error ? e : new Error(String(e)))
  }),
  (r) => Effect.sync(r.kill)
).pipe(Effect.map((r) => r.runner))

export interface FakeRunner {
  readonly endpoint: RunnerEndpoint
  /** Sends one record to the agent. */
  readonly emit: (type: string, payload: string | Uint8Array) => Effect.Effect<void, Error>
  /** Receives the next message the agent sent (skipping keep-alive `status` pings). */
  readonly receive: Effect.Effect<readonly [string, Buffer], Error>
  /**
   * The runner's view of the agent, from its sockets' events: peers connected now to each port, and
   * disconnects seen so far (both ports together).
   */
  readonly peers: Effect.Effect<{ readonly replIn: number; readonly replOut: number; readonly disconnects: number }>
}

/**
 * A scripted runner: PULL (repl-in) and PUSH (repl-out) bound on 127.0.0.1; the test answers `status`
 * itself (or never). Its sockets' events count the agent's connections (`peers`).
 */
export const fakeRunner: Effect.Effect<FakeRunner, Error, Scope.Scope> = Effect.gen(function*() {
  // the monitors start with the sockets (`events`), before any peer can connect
  const monitored = <S extends Zmq.Socket>(s: S): S => (void s.events, s)
  const input = yield* Effect.acquireRelease(Effect.sync(() => monitored(new Zmq.Pull({ linger: 0 }))), (s) => Effect.sync(() => s.close()))
  const output = yield* Effect.acquireRelease(Effect.sync(() => monitored(new Zmq.Push({ linger: 0 }))), (s) => Effect.sync(() => s.close()))
  yield* Effect.tryPromise({ try: () => input.bind("tcp://127.0.0.1:*"), catch: (e) => new Error(String(e)) })
  yield* Effect.tryPromise({ try: () => output.bind("tcp://127.0.0.1:*"), catch: (e) => new Error(String(e)) })
  const portOf = (s: Zmq.Socket) => Number(new URL(s.lastEndpoint ?? "").port)
  const seen = { replIn: 0, replOut: 0, disconnects: 0 }
  const watch = (s: Zmq.Socket, key: "replIn" | "replOut") =>
    Effect.tryPromise(() => s.events.receive()).pipe(
      Effect.tap((e) =>
        Effect.sync(() => {
          if (e.type === "accept") seen[key]++
          if (e.type === "disconnect") {
            seen[key]--
            seen.disconnects++
          }
        })
      ),
      Effect.forever,
      Effect.ignore, // the socket closed
      Effect.forkScoped
    )
  yield* watch(input, "replIn")
  yield* watch(output, "replOut")
  const receiveOne = Effect.tryPromise({ try: () => input.receive(), catch: (e) => new Error(String(e)) }).pipe(
    Effect.map((frames) => [frames[0]!.toString("latin1"), frames[1] ?? Buffer.alloc(0)] as const)
  )
  const emit = (type: string, payload: string | Uint8Array) =>
    Effect.tryPromise({ try: () => output.send([type, payload]), catch: (e) => new Error(String(e)) })
  const receive: Effect.Effect<readonly [string, Buffer], Error> = receiveOne.pipe(
    Effect.flatMap((m) => (m[0] === "status" ? receive : Effect.succeed(m)))
  )
  return {
    endpoint: { host: "127.0.0.1", replInPort: portOf(input), replOutPort: portOf(output) },
    emit,
    receive,
    peers: Effect.sync(() => ({ ...seen }))
  }
})

/** A registry entry for unit tests of kernel RPCs (no pod behind it). */
export const kernelInfo = (kernelId: string, overrides: Partial<KernelInfo> = {}): KernelInfo => ({
  kernelId,
  namespace: "ns",
  objectName: `kernel-${kernelId}`,
  podUid: undefined,
  status: "running",
  kernelHost: "127.0.0.1",
  replInPort: 0,
  replOutPort: 0,
  servicePorts: [],
  canonicalImage: "x",
  image: "x",
  resourceSpec: "",
  scratchDir: "/nonexistent",
  idleTimeout: 0,
  lastUsed: 0,
  ...overrides
})

/** `check` re-read until `done` holds, bounded: a condition to wait on instead of a sleep. */
export const waitFor = <A, E, R>(what: string, check: Effect.Effect<A, E, R>, done: (a: A) => boolean, bound: Duration.Input = "20 seconds") =>
  check.pipe(
    Effect.repeat({ until: done, schedule: Schedule.spaced("5 millis") }),
    Effect.timeoutOrElse({ duration: bound, orElse: () => Effect.die(new Error(`${what}: not reached within ${Duration.format(Duration.fromInputUnsafe(bound))}`)) })
  )

/** A run's stdout text over its polls. */
export const stdoutOf = (polls: ReadonlyArray<PollResult>): string =>
  polls.flatMap((p) => p.items).map((it) => (it._tag === "Stream" && it.stream === "stdout" ? it.text : "")).join("")

/** Polls `runId` until `finished` (at most 200 polls of up to 20 s). */
export const pollUntilFinished = (conn: RunnerConnection, runId: string) =>
  Effect.gen(function*() {
    const polls: Array<PollResult> = []
    for (let i = 0; i < 200; i++) {
      const p = yield* conn.poll(runId, "20 seconds")
      polls.push(p)
      if (Option.isSome(p.end) && p.end.value.status === "finished") return polls
    }
    return polls
  })
