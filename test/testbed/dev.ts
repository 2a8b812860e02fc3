// `npm run dev [-- --real-node]`: the dev testbed up, then the agent in the foreground (`node --max-semi-space-size=4 --heap-growing-percent=35
// dist/main.js -f config/halfstack.toml`); Ctrl-C (or the agent exiting) stops both.
//
// Ctrl-C in a terminal sends SIGINT to the whole foreground process group: npm, this process AND
// the agent. Every path into `stop` therefore shares ONE tear-down (a second caller, e.g. the agent's
// exit event right after the SIGINT, must not exit before the testbed is down), and a Ctrl-C during
// bring-up tears down what `up` started once it returns or fails.
import { type ChildProcess, spawn } from "node:child_process"
import * as path from "node:path"
import { repoRoot, stateDirOf } from "./paths.ts"
import { describe, down, isUp, status, up } from "./testbed.ts"

const stateDir = stateDirOf(process.env.TESTBED_NAME ?? "dev")
const realNode = process.argv.includes("--real-node")
let started = false // only a testbed this process brought up is torn down here
let bringingUp = false
let stopping: Promise<never> | undefined
let agent: ChildProcess | undefined

const stop = (code: number): Promise<never> =>
  stopping ??= (async () => {
    if (agent !== undefined && agent.exitCode === null && agent.signalCode === null) {
      const a = agent
      const exited = new Promise((r) => a.once("exit", r))
      a.kill("SIGTERM")
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000).unref())])
    }
    if (started) {
      console.log("[dev] stopping the testbed")
      await down(stateDir)
      console.log("[dev] testbed stopped")
    }
    process.exit(code)
  })()

const onSignal = (code: number) => () => {
  if (bringingUp) { console.log("[dev] interrupted during bring-up: the testbed is stopped as soon as `up` returns"); pendingCode = code; return }
  void stop(code)
}
let pendingCode: number | undefined
process.on("SIGINT", onSignal(130))
process.on("SIGTERM", onSignal(143))

try {
  if (isUp(stateDir)) {
    // a dev testbed someone brought up with `npm run testbed -- up`: use it, leave it running
    console.log(`[dev] using the dev testbed that is already up (${stateDir})\n${status(stateDir)}`)
  } else {
    bringingUp = true
    const env = await up({ name: path.basename(stateDir), mode: "dev", realNode }).finally(() => { bringingUp = false })
    started = true
    console.log(describe(env))
  }
} catch (e) {
  console.error(e instanceof Error ? e.message : e)
  await stop(1)
}
if (pendingCode !== undefined) await stop(pendingCode)
if (stopping === undefined) {
  console.log("[dev] starting the agent: node --max-semi-space-size=4 --heap-growing-percent=35 dist/main.js -f config/halfstack.toml")
  // the node flag and glibc's mmap threshold of the shipped unit (deploy/systemd/backendai-agent.service)
  agent = spawn(process.execPath, ["--max-semi-space-size=4", "--heap-growing-percent=35", path.join(repoRoot, "dist/main.js"), "-f", process.env.BAI_DEV_CONFIG ?? path.join(repoRoot, "config/halfstack.toml")], {
    cwd: repoRoot, stdio: "inherit", env: { MALLOC_MMAP_THRESHOLD_: "32768", ...process.env },
  })
  agent.on("exit", (code, signal) => {
    console.log(`[dev] agent exited (${signal ?? code})`)
    void stop(code ?? 1)
  })
}
