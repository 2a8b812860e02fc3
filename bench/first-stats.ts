/**
 * `node bench/run.ts first-stats [--env .testbed/dev/env.json] [--kernels 12] [--main dist/main.js]
 *                                [--compare-main <other build>/main.js]`
 *
 * How long a new kernel waits for its first stats: the REAL agent process (`node <main.js> -f
 * <config>`, shipped flags, `stats.summary-interval` at its default 10 s, a 2 s cycle) on a running
 * testbed (`node test/testbed/cli.ts up`); kernels created one at a time through the agent's aiozmq RPC
 * (`create_kernel`, then `destroy_kernel`) beside one kernel that stays (with none, the agent reads every
 * node every cycle), and for each the time from the create's reply until its
 * `<kernel_id>` key is in Redis DB 0 (polled every 50 ms) — what the manager shows as the kernel's first
 * stats. `--compare-main` measures another build the same way, right after, on its own site.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Console, Effect } from "effect"
import { Redis as IORedis } from "ioredis"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { AgentRpcs } from "../src/rpc/AgentRpcs.ts"
import { AiozmqClient } from "../src/rpc/aiozmq/AiozmqClient.ts"
import { agentFiles, scrapeMetric, waitRpcUp } from "../test/kernel/AgentProcessSupport.ts"
import { makeSite, pythonConfig } from "../test/kernel/KernelLifecycleSupport.ts"
import { seedEtcd } from "../test/testbed/datastores.ts"
import { readEnvFile } from "../test/testbed/env.ts"

const argValue = (flag: string): string | undefined => {
  const i = process.argv.indexOf(flag)
  return i >= 0 ? process.argv[i + 1] : undefined
}
const KERNELS = Number(argValue("--kernels") ?? 12)
const root = path.resolve(fileURLToPath(new URL("..", import.meta.url)))
const MAIN = path.resolve(argValue("--main") ?? path.join(root, "dist/main.js"))
const COMPARE = argValue("--compare-main")
const envFile = argValue("--env") ?? path.join(root, ".testbed/dev/env.json")

const stats = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  const pick = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN
  return `p50 ${pick(0.5).toFixed(0).padStart(6)} ms  p90 ${pick(0.9).toFixed(0).padStart(6)} ms  max ${pick(1).toFixed(0).padStart(6)} ms  (n=${s.length})`
}

/** One build: its own site and agent process; the kernels' first-stats delays (ms). */
const measure = (main: string) =>
  Effect.gen(function*() {
    const env = readEnvFile(envFile)
    const site = yield* makeSite(env, { createTimeout: 120 })
    yield* Effect.promise(() =>
      seedEtcd(env.etcd, site.etcdNs, {
        redis: env.redis, eventAddr: site.eventAddr, registry: env.registry, vfolderMount: env.vfolderMount, watcherToken: env.watcherToken
      })
    )
    const files = yield* agentFiles(site)
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const out = fs.openSync(files.log, "a")
        const c = spawn(process.execPath, ["--max-semi-space-size=4", "--heap-growing-percent=35", main, "-f", files.toml], {
          stdio: ["ignore", out, out],
          env: { ...process.env, MALLOC_MMAP_THRESHOLD_: "32768" }
        })
        fs.closeSync(out)
        return c
      }),
      (c) => Effect.sync(() => void c.kill("SIGTERM"))
    )
    const client = yield* AiozmqClient.make({ connect: `tcp://127.0.0.1:${files.rpcPort}`, timeout: "120 seconds" })
    yield* waitRpcUp(client, child)
    const redis = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const [host, port] = env.redis.split(":")
        return new IORedis({ host, port: Number(port), db: 0 })
      }),
      (r) => Effect.promise(() => r.quit().catch(() => undefined))
    )
    // a kernel that stays: the nodes' summaries are kept and read at their turns, as on an agent with
    // kernels (with none, an agent reads every node every cycle)
    const resident = crypto.randomUUID()
    yield* client.invoke(AgentRpcs.create_kernel, resident, pythonConfig(env))
    yield* Effect.sleep("12 seconds")
    const delays: Array<number> = []
    for (let i = 0; i < KERNELS; i++) {
      const kid = crypto.randomUUID()
      yield* client.invoke(AgentRpcs.create_kernel, kid, pythonConfig(env))
      const t0 = performance.now()
      for (;;) {
        if ((yield* Effect.promise(() => redis.exists(kid))) === 1) break
        if (performance.now() - t0 > 30_000) return yield* Effect.fail(new Error(`no stats of ${kid} within 30 s (agent log ${files.log})`))
        yield* Effect.sleep("50 millis")
      }
      delays.push(performance.now() - t0)
      yield* client.invoke(AgentRpcs.destroy_kernel, kid)
      // the next create at another point of the read schedule
      yield* Effect.sleep(`${700 + Math.floor(Math.random() * 1300)} millis`)
    }
    yield* client.invoke(AgentRpcs.destroy_kernel, resident)
    const reads = yield* scrapeMetric(files, "bai_stats_summary_reads_total")
    const cycles = yield* scrapeMetric(files, "bai_stats_cycles_total")
    return { delays, readsPerCycle: reads !== undefined && cycles !== undefined && cycles > 0 ? reads / cycles : NaN }
  }).pipe(Effect.scoped)

const main = Effect.gen(function*() {
  const builds = [MAIN, ...(COMPARE === undefined ? [] : [path.resolve(COMPARE)])]
  yield* Console.log(`first stats of a new kernel: ${KERNELS} kernels one at a time per build, stats every 2 s, summary-interval 10 s`)
  for (const build of builds) {
    const { delays, readsPerCycle } = yield* measure(build)
    yield* Console.log(
      `  ${path.relative(root, build).padEnd(40)} create reply → first stats in Redis  ${stats(delays)}; node summaries read per cycle ${readsPerCycle.toFixed(2)}`
    )
  }
})

NodeRuntime.runMain(main)
