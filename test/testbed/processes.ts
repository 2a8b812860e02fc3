// Daemon processes: each one runs in its own process group with its output in a log file, and is
// stopped by killing that group (so children such as runner processes go with it).
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { sleep } from "./ports.ts"

export interface Daemon {
  readonly name: string
  readonly pid: number
  readonly log: string
  /** process start time (/proc/<pid>/stat field 22): guards against killing a reused pid */
  readonly startTicks: number
}

export const startTicksOf = (pid: number): number => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19])
  } catch { return -1 }
}

export interface SpawnOptions {
  readonly env?: NodeJS.ProcessEnv
  readonly cwd?: string
}

/** Starts `cmd args` detached (new process group), stdout+stderr appended to `<logDir>/<name>.log`. */
export const spawnDaemon = (name: string, cmd: string, args: ReadonlyArray<string>, logDir: string, opts: SpawnOptions = {}): Daemon => {
  fs.mkdirSync(logDir, { recursive: true })
  const log = path.join(logDir, `${name}.log`)
  const fd = fs.openSync(log, "a")
  const child = spawn(cmd, args, {
    detached: true,
    stdio: ["ignore", fd, fd],
    env: opts.env ?? process.env,
    ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}),
  })
  fs.closeSync(fd)
  if (child.pid === undefined) throw new Error(`testbed: could not start ${name} (${cmd})`)
  child.unref()
  return { name, pid: child.pid, log, startTicks: startTicksOf(child.pid) }
}

export const isAlive = (pid: number): boolean => {
  try { process.kill(pid, 0); return true } catch (e) { return (e as NodeJS.ErrnoException).code === "EPERM" }
}

const killGroup = (pid: number, signal: NodeJS.Signals): void => {
  try { process.kill(-pid, signal) } catch { try { process.kill(pid, signal) } catch { /* gone */ } }
}

/** True while the recorded process (same pid, same start time) is still running. */
export const isRunning = (d: { pid: number; startTicks?: number }): boolean =>
  isAlive(d.pid) && (d.startTicks === undefined || startTicksOf(d.pid) === d.startTicks)

/** SIGTERM to each daemon's process group, SIGKILL after `graceMs`; resolves when all are gone. */
export const stopDaemons = async (all: ReadonlyArray<{ name: string; pid: number; startTicks?: number }>, graceMs = 5_000): Promise<void> => {
  const daemons = all.filter(isRunning) // never signal a pid that now belongs to someone else
  for (const d of daemons) killGroup(d.pid, "SIGTERM")
  const deadline = Date.now() + graceMs
  while (daemons.some((d) => isAlive(d.pid)) && Date.now() < deadline) await sleep(50)
  for (const d of daemons) if (isAlive(d.pid)) killGroup(d.pid, "SIGKILL")
  // the group may still hold children of a daemon that already exited
  for (const d of daemons) killGroup(d.pid, "SIGKILL")
}

/** Throws with the log tail when a daemon died during start-up. */
export const assertAlive = (d: Daemon): void => {
  if (isAlive(d.pid)) return
  throw new Error(`testbed: ${d.name} exited during start-up; last log lines (${d.log}):\n${tail(d.log, 20)}`)
}

export const tail = (file: string, lines: number): string => {
  try { return fs.readFileSync(file, "utf8").split("\n").slice(-lines - 1).join("\n") } catch { return "(no log)" }
}
