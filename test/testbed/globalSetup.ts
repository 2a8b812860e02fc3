// vitest globalSetup: one testbed per test run (own state dir, free ports for everything, node IPs
// 127.0.<k>.2/.3), handed to tests with provide/inject("testbed"). BAI_TESTBED_REUSE=<env.json>
// reuses a running testbed instead; BAI_TESTBED_KEEP=1 keeps the state dir (logs) after the run.
// globalSetup.interop.ts uses `setupTestbed` with the real 19.06 runner enabled.
// The `realnode` project uses globalSetup.realnode.ts: the same with `realNode: true`.
import * as fs from "node:fs"
import type { TestProject } from "vitest/node"
import { readEnvFile, type TestbedEnv } from "./env.ts"
import { stateDirOf, stateRoot } from "./paths.ts"
import { isAlive, isRunning } from "./processes.ts"
import { down, downChecked, up, type UpOptions } from "./testbed.ts"

/** Stops testbeds left behind by test runs whose vitest process died without tearing down. */
const reapStale = async (): Promise<void> => {
  if (!fs.existsSync(stateRoot)) return
  for (const d of fs.readdirSync(stateRoot)) {
    const m = /^vitest-(\d+)$/.exec(d)
    if (m !== null && !isAlive(Number(m[1]))) await down(stateDirOf(d), true)
  }
}

export const setupTestbed = async (
  project: TestProject,
  opts: Pick<UpOptions, "realRunner" | "realNode"> = {},
  checkReused: (env: TestbedEnv) => void = () => undefined
): Promise<(() => Promise<void>) | undefined> => {
  const reuse = process.env.BAI_TESTBED_REUSE
  if (reuse !== undefined && reuse !== "") {
    const env = readEnvFile(reuse)
    checkReused(env)
    project.provide("testbed", env)
    return undefined
  }
  await reapStale()
  const env: TestbedEnv = await up({ name: `vitest-${process.pid}`, mode: "test", log: (l) => console.log(l), ...opts })
  project.provide("testbed", env)
  // last resort if vitest exits without running the teardown (e.g. Ctrl-C): SIGTERM every process
  // group (synchronous; the kubelet and runners kill their children on SIGTERM). A real node left
  // this way is cleaned up (host restored) by the next run's reapStale / the real-node lock.
  const killAll = () => { for (const p of env.pids.filter(isRunning)) { try { process.kill(-p.pid, "SIGTERM") } catch { /* gone */ } } }
  process.once("exit", killAll)
  return async () => {
    process.removeListener("exit", killAll)
    const { hostDiff } = await downChecked(env.stateDir, process.env.BAI_TESTBED_KEEP !== "1")
    // the real node's acceptance check: the host (sysctls, nftables ruleset, links, lo addresses, mounts,
    // cgroups, hard-coded paths) is as the snapshot before bring-up found it; fails the run otherwise
    if (opts.realNode === true) {
      if (hostDiff.length > 0) throw new Error(`real node: the host was not restored by down:\n${hostDiff.join("\n")}`)
      console.log("[testbed] real node down: host state equal to the snapshot taken before bring-up (sysctls, nftables, links, lo addresses, mounts, cgroups, paths)")
    }
  }
}

export default function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  return setupTestbed(project)
}
