/**
 * A second kube-apiserver on the testbed's Kubernetes etcd with its watch cache off, so watches are
 * served by etcd itself, and `compactEtcd` to compact that etcd's history: a watch from a version the
 * compaction removed is then answered by the real server with 410 Gone ("too old resource version"),
 * as it is for an agent whose watch was away while the history moved on. (With the watch cache on,
 * the testbed's own apiserver keeps ~100..100k events in memory and a fresh testbed's history starts
 * at revision 1: no version a test can hold goes out of it in a test's time.)
 */
import { Effect } from "effect"
import { Etcd3 } from "etcd3"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { startApiserver, waitApiserver, writeKubeconfig } from "../testbed/controlplane.ts"
import type { TestbedEnv } from "../testbed/env.ts"
import { freePort } from "../testbed/ports.ts"
import { stopDaemons } from "../testbed/processes.ts"

/** The client URL of the testbed's Kubernetes etcd (from its command line). */
export const k8sEtcdUrl = (env: TestbedEnv): string => {
  const p = env.pids.find((x) => x.name === "k8s-etcd")
  if (p === undefined) throw new Error("the testbed has no k8s-etcd process")
  const args = fs.readFileSync(`/proc/${p.pid}/cmdline`, "utf8").split("\0")
  const url = args[args.indexOf("--listen-client-urls") + 1]
  if (url === undefined || !url.startsWith("http://")) throw new Error(`k8s-etcd: no --listen-client-urls in ${args.join(" ")}`)
  return url
}

/** Started with the scope, stopped (and its files removed) when it closes. */
export const cachelessApiserver = (env: TestbedEnv) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const etcd = k8sEtcdUrl(env)
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bai-cacheless-"))
      fs.symlinkSync(path.join(env.stateDir, "pki"), path.join(dir, "pki"))
      const port = await freePort()
      const daemon = startApiserver(dir, Number(new URL(etcd).port), port, ["--watch-cache=false", "--etcd-compaction-interval=0"])
      const killAll = () => { try { process.kill(-daemon.pid, "SIGKILL") } catch { /* gone */ } }
      process.once("exit", killAll)
      try {
        await waitApiserver(daemon, port, env.apiserverToken)
      } catch (e) {
        await stopDaemons([daemon])
        throw e
      }
      const kubeconfig = path.join(dir, "kubeconfig")
      writeKubeconfig(kubeconfig, port, env.apiserverToken)
      return { daemon, dir, etcd, kubeconfig, killAll }
    }),
    ({ daemon, dir, killAll }) =>
      Effect.promise(async () => {
        process.removeListener("exit", killAll)
        await stopDaemons([daemon])
        fs.rmSync(dir, { recursive: true, force: true })
      })
  )

/** Compacts the etcd's history up to its current revision (physically); resolves to that revision. */
export const compactEtcdNow = async (etcdUrl: string): Promise<number> => {
  const client = new Etcd3({ hosts: etcdUrl })
  try {
    const { header } = await client.kv.range({ key: Buffer.from("/registry/") })
    await client.kv.compact({ revision: header.revision, physical: true })
    return Number(header.revision)
  } finally {
    client.close()
  }
}

/** `compactEtcdNow` as an Effect. */
export const compactEtcd = (etcdUrl: string) => Effect.promise(() => compactEtcdNow(etcdUrl))
