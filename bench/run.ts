/**
 * Benchmark dispatcher: `node bench/run.ts <name>` runs `bench/<name>.ts` (e.g. `rpc`).
 * Add a benchmark by adding `bench/<name>.ts` (an entry point ending in NodeRuntime.runMain) and its
 * name with a one-line description below.
 */
import { existsSync } from "node:fs"
import { fileURLToPath } from "node:url"

const benches: Record<string, string> = {
  rpc: "aiozmq ping round trips: this agent's RPC server vs a Python aiozmq server",
  execute: "trivial execute round trips through the agent vs straight to the runner simulator (added latency)",
  stats: "one statistics cycle with 1,000 kernel pods (cycle time, CPU share of a core at 2 s, RSS)",
  lifecycle: "create → Running → destroy of 50 kernels, 10 at a time: per-phase times and the agent's own overhead",
  heartbeat: "heartbeat assembly time, agent CPU and RSS: 2 nodes vs 200 nodes / 5,000 pods (needs a testbed)",
  memory: "the real agent process (dist/main.js): RSS (anon/file split), V8 heap and loop CPU per cycle at 0…1,000 adopted kernels (needs a testbed)",
  "summary-fetch": "the agent CPU of one kubelet Summary read through the API server node proxy (0 and 25 pods), vs --baseline <KubeletSummary.ts> (needs a testbed)",
  "first-stats": "the real agent process: create reply → the new kernel's first stats in Redis, vs --compare-main <other build> (needs a testbed)",
  "import-cost": "RSS and heap each big dependency costs at import (a fresh process per module)"
}

const name = process.argv[2]
const file = name === undefined ? undefined : fileURLToPath(new URL(`./${name}.ts`, import.meta.url))
if (name === undefined || file === undefined || name === "run" || !existsSync(file)) {
  console.error(`usage: node bench/run.ts <name>\n${Object.entries(benches).map(([n, d]) => `  ${n.padEnd(10)} ${d}`).join("\n")}`)
  process.exitCode = 2
} else {
  process.argv.splice(2, 1) // the benchmark sees its own arguments from argv[2]
  await import(file)
}
