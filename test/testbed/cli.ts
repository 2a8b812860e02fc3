// npm run testbed -- up [--real-runner] [--real-node]|down|status   (the dev testbed, state in .testbed/dev;
// TESTBED_NAME overrides). --real-runner: python kernels run the real 19.06 runner (needs ../shared, see
// README). --real-node: containerd + a real kubelet/kube-proxy node (root, cgroup v1), see realnode/node.ts
import { stateDirOf } from "./paths.ts"
import { realRunnerOptions } from "./realRunner.ts"
import { describe, down, status, up } from "./testbed.ts"

const name = process.env.TESTBED_NAME ?? "dev"
const stateDir = stateDirOf(name)
const cmd = process.argv[2] ?? "status"
const flags = process.argv.slice(3)

const main = async (): Promise<void> => {
  switch (cmd) {
    case "up": {
      let interrupted = false
      const onSignal = () => { interrupted = true; console.error("[testbed] interrupted, stopping"); void down(stateDir).then(() => process.exit(130)) }
      process.once("SIGINT", onSignal)
      process.once("SIGTERM", onSignal)
      const unknown = flags.filter((f) => f !== "--real-node" && f !== "--real-runner")
      if (unknown.length > 0) throw new Error(`unknown option(s) ${unknown.join(" ")}; usage: npm run testbed -- up [--real-runner] [--real-node]`)
      const realRunner = flags.includes("--real-runner") ? realRunnerOptions() : undefined
      const env = await up({ name, mode: name === "dev" ? "dev" : "test", realRunner, realNode: flags.includes("--real-node") })
      if (!interrupted) console.log(describe(env))
      return
    }
    case "down":
      console.log((await down(stateDir)) ? `testbed ${name} stopped` : `no testbed in ${stateDir}`)
      return
    case "status":
      console.log(status(stateDir))
      return
    default:
      console.error("usage: npm run testbed -- up [--real-runner] [--real-node]|down|status")
      process.exitCode = 2
  }
}

main().catch((e: unknown) => { console.error(e instanceof Error ? e.message : e); process.exit(1) })
