// Helper process of bench/stats.ts: one HTTPS "kubelet" per simulated bench node, each serving
// `/stats/summary` for every pod bound to its node: the bench's kernel pods and, with bench/memory.ts
// `--foreign-pods`, the other tenants' pods, all with the same shape of stats (documents built by the
// testbed's own `summary()` of test/testbed/stats.ts, with synthetic usage that grows between requests).
// Sampled as a real kubelet's cAdvisor does (measured on the real node, bench/README.md): each pod's
// numbers and `time` are those of its last sample, taken every 10–20 s on its own phase, the node's
// every 10 s; `time` in whole seconds, as the kubelet writes it.
// Runs in its own process so the summary generation is not counted as the agent's CPU.
// argv: <config.json> = { certFile, keyFile, fsRoot, nodes: [{ name, pods: [{ name, namespace, uid, container? }] }] }
// (`container`: the pod's one container, "kernel" when absent)
// Prints {"ports": {node: port}} once listening; exits on SIGTERM or when stdin closes.
import * as fs from "node:fs"
import * as https from "node:https"
import type { AddressInfo } from "node:net"
import { type PodUsageInput, summary } from "../test/testbed/stats.ts"

interface Config {
  readonly certFile: string
  readonly keyFile: string
  readonly fsRoot: string
  readonly nodes: ReadonlyArray<{ readonly name: string; readonly pods: ReadonlyArray<{ name: string; namespace: string; uid: string; container?: string }> }>
}

const config = JSON.parse(fs.readFileSync(process.argv[2]!, "utf8")) as Config
const startTime = new Date().toISOString()
const t0 = process.hrtime.bigint()

const wallStart = Math.floor(Date.now() / 1000)

/** Seconds since the start of the last sample of a subject sampled every `period` s from `phase`. */
const lastTick = (seconds: number, period: number, phase: number): number =>
  seconds < phase ? 0 : phase + Math.floor((seconds - phase) / period) * period
const isoAt = (tick: number): string => new Date((wallStart + Math.floor(tick)) * 1000).toISOString()

const usage = (i: number, seconds: number): PodUsageInput["usage"] => ({
  cpuNs: Math.round((1 + (i % 7)) * 1e7 * seconds), rssBytes: (20 + (i % 13)) << 20, pids: 1
})

const serve = (node: Config["nodes"][number] & { readonly phase: number }): Promise<[string, number]> =>
  new Promise((resolve) => {
    const server = https.createServer({ cert: fs.readFileSync(config.certFile), key: fs.readFileSync(config.keyFile) }, (req, res) => {
      if (!req.url?.startsWith("/stats/summary")) {
        res.writeHead(404).end()
        return
      }
      const now = Number(process.hrtime.bigint() - t0) / 1e9
      const doc = summary(
        { nodeName: node.name, startTime, memoryCapacity: 64 * 2 ** 30, fsRoot: config.fsRoot, sampledAt: isoAt(lastTick(now, 10, node.phase)) },
        node.pods.map((p, i) => {
          const period = 10 + ((i * 7) % 11)
          const seconds = lastTick(now, period, (i * 3.7) % period)
          return {
            name: p.name,
            namespace: p.namespace,
            uid: p.uid,
            startTime,
            containers: [p.container ?? "kernel"],
            usage: usage(i, seconds),
            cpuNanoCores: (1 + (i % 7)) * 1e7,
            rxBytes: Math.round(1000 * seconds * (i % 5)),
            txBytes: Math.round(500 * seconds * (i % 3)),
            workDir: undefined,
            workVolume: "work",
            workBytes: 4096 * (i % 11),
            logBytes: 100,
            sampledAt: isoAt(seconds)
          }
        })
      )
      res.writeHead(200, { "content-type": "application/json" })
      res.end(JSON.stringify(doc))
    })
    server.keepAliveTimeout = 60_000
    server.listen(0, "127.0.0.1", () => resolve([node.name, (server.address() as AddressInfo).port]))
  })

const ports = Object.fromEntries(await Promise.all(config.nodes.map((n, i) => serve({ ...n, phase: (i * 1.3) % 10 }))))
process.stdout.write(`${JSON.stringify({ ports })}\n`)
process.stdin.on("end", () => process.exit(0))
process.stdin.resume()
process.on("SIGTERM", () => process.exit(0))
