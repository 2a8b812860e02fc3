// etcd (for the agent, and the Kubernetes one) and Redis daemons, plus the etcd keys a manager and an
// admin would provide (spec §5.4).
import * as fs from "node:fs"
import * as path from "node:path"
import { Etcd3 } from "etcd3"
import { canConnect, waitUntil } from "./ports.ts"
import { assertAlive, type Daemon, spawnDaemon } from "./processes.ts"
import type { RegistryInfo } from "./registry.ts"

export const startEtcd = (name: string, dataDir: string, clientPort: number, peerPort: number, logDir: string): Daemon => {
  fs.rmSync(dataDir, { recursive: true, force: true })
  fs.mkdirSync(path.dirname(dataDir), { recursive: true })
  const client = `http://127.0.0.1:${clientPort}`
  const peer = `http://127.0.0.1:${peerPort}`
  return spawnDaemon(name, "etcd", [
    "--name", name, "--data-dir", dataDir,
    "--listen-client-urls", client, "--advertise-client-urls", client,
    "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
    "--initial-cluster", `${name}=${peer}`, "--logger=zap", "--log-level=warn",
  ], logDir)
}

export const waitEtcd = (d: Daemon, port: number): Promise<void> =>
  waitUntil(d.name, async () => {
    assertAlive(d)
    const res = await fetch(`http://127.0.0.1:${port}/health`)
    return res.ok && ((await res.json()) as { health?: string }).health === "true"
  })

export const startRedis = (dataDir: string, port: number, logDir: string): Daemon => {
  fs.mkdirSync(dataDir, { recursive: true })
  return spawnDaemon("redis", "redis-server", [
    "--port", String(port), "--bind", "127.0.0.1", "--dir", dataDir,
    "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "no",
  ], logDir)
}

export const waitRedis = (d: Daemon, port: number): Promise<void> =>
  waitUntil("redis", async () => { assertAlive(d); return canConnect(port) })

export interface ManagerKeys {
  readonly redis: string
  readonly eventAddr: string
  readonly registry: RegistryInfo
  readonly vfolderMount: string
  readonly watcherToken: string
}

/** Key → value pairs (relative to `/sorna/<ns>/`) that a manager and an admin provide. */
export const managerKeys = (k: ManagerKeys): Record<string, string> => {
  const reg = `config/docker/registry/${encodeURIComponent(k.registry.host)}`
  return {
    "config/redis/addr": k.redis,
    "nodes/manager": "testbed-manager",
    "nodes/manager/event_addr": k.eventAddr,
    "nodes/manager/testbed-manager": "up",
    [reg]: k.registry.url,
    [`${reg}/type`]: "docker",
    [`${reg}/username`]: k.registry.username,
    [`${reg}/password`]: k.registry.password,
    "volumes/_mount": k.vfolderMount,
    "volumes/_fsprefix": "",
    "volumes/_default_host": "local",
    "config/watcher/token": k.watcherToken,
  }
}

/** Writes the manager/admin keys under `/sorna/<namespace>/` of the etcd at `addr`. */
export const seedEtcd = async (addr: string, namespace: string, k: ManagerKeys): Promise<void> => {
  const client = new Etcd3({ hosts: `http://${addr}` })
  try {
    for (const [key, value] of Object.entries(managerKeys(k))) await client.put(`/sorna/${namespace}/${key}`).value(value)
  } finally {
    client.close()
  }
}
