// `npm run dev`: the dev testbed up, then the agent in the foreground (`node dist/main.js -f
// config/halfstack.toml`); Ctrl-C (or the agent exiting) stops both.
import { type ChildProcess, spawn } from "node:child_process"
import * as path from "node:path"
import { repoRoot, stateDirOf } from "./paths.ts"
import { describe, down, isUp, status, up } from "./testbed.ts"

const stateDir = stateDirOf("dev")
let started = false // only a testbed this process brought up is torn down here
let stopping = false
let agent: ChildProcess | undefined

const stop = async (code: number): Promise<never> => {
  if (!stopping) {
    stopping = true
    if (agent !== undefined && agent.exitCode === null && agent.signalCode === null) {
      agent.kill("SIGTERM")
      await new Promise((r) => { const t = setTimeout(r, 5000); agent!.once("exit", () => { clearTimeout(t); r(undefined) }) })
    }
    if (started) {
      console.log("[dev] stopping the testbed")
      await down(stateDir)
    }
  }
  process.exit(code)
}

process.on("SIGINT", () => void stop(130))
process.on("SIGTERM", () => void stop(143))

try {
  if (isUp(stateDir)) {
    // a dev testbed someone brought up with `npm run testbed -- up`: use it, leave it running
    console.log(`[dev] using the dev testbed that is already up (${stateDir})\n${status(stateDir)}`)
  } else {
    const env = await up({ name: "dev", mode: "dev" })
    started = true
    console.log(describe(env))
  }
} catch (e) {
  console.error(e instanceof Error ? e.message : e)
  await stop(1)
}
if (!stopping) {
  console.log("[dev] starting the agent: node dist/main.js -f config/halfstack.toml")
  agent = spawn(process.execPath, [path.join(repoRoot, "dist/main.js"), "-f", path.join(repoRoot, "config/halfstack.toml")], {
    cwd: repoRoot, stdio: "inherit",
  })
  agent.on("exit", (code, signal) => {
    console.log(`[dev] agent exited (${signal ?? code})`)
    void stop(code ?? 1)
  })
}
