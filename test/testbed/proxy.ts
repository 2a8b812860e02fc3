// kube-proxy's NodePort role: for every NodePort Service, listen on every node IP at the nodePort and
// TCP-forward each connection to a local port of a runner process backing the Service (byte-counted).
import * as net from "node:net"
import type * as k8s from "@kubernetes/client-node"

/** A pod's local TCP port, or (real runner in its own network namespace) a function that opens the
 *  connection, e.g. through the pod sandbox's Unix socket. */
export type Target =
  | { readonly podUid: string; readonly port: number }
  | { readonly podUid: string; readonly connect: () => net.Socket }

/** Picks a backend for `service`'s `port` at connection time (undefined: no ready endpoint). */
export type Resolver = (service: k8s.V1Service, port: k8s.V1ServicePort) => Target | undefined
export type Counter = (podUid: string, rxBytes: number, txBytes: number) => void

interface Listener { readonly server: net.Server; service: k8s.V1Service; port: k8s.V1ServicePort }

export class NodePortProxy {
  private readonly listeners = new Map<string, Listener>()
  private readonly services = new Map<string, k8s.V1Service>()
  private readonly nodeIps: ReadonlyArray<string>
  private readonly resolve: Resolver
  private readonly count: Counter
  private readonly log: (msg: string) => void
  constructor(nodeIps: ReadonlyArray<string>, resolve: Resolver, count: Counter, log: (msg: string) => void) {
    this.nodeIps = nodeIps
    this.resolve = resolve
    this.count = count
    this.log = log
  }

  upsert(svc: k8s.V1Service): void { this.services.set(svc.metadata!.uid!, svc); this.reconcile() }
  remove(svc: k8s.V1Service): void { this.services.delete(svc.metadata!.uid!); this.reconcile() }
  reset(list: ReadonlyArray<k8s.V1Service>): void {
    this.services.clear()
    for (const s of list) this.services.set(s.metadata!.uid!, s)
    this.reconcile()
  }

  close(): void { for (const l of this.listeners.values()) l.server.close(); this.listeners.clear() }

  private reconcile(): void {
    const wanted = new Map<string, { service: k8s.V1Service; port: k8s.V1ServicePort; ip: string }>()
    for (const svc of this.services.values()) {
      if (svc.spec?.type !== "NodePort" && svc.spec?.type !== "LoadBalancer") continue
      for (const port of svc.spec.ports ?? []) {
        if (port.nodePort === undefined || (port.protocol ?? "TCP") !== "TCP") continue
        for (const ip of this.nodeIps) wanted.set(`${ip}:${port.nodePort}`, { service: svc, port, ip })
      }
    }
    for (const [key, l] of this.listeners) {
      if (!wanted.has(key)) { l.server.close(); this.listeners.delete(key) }
    }
    for (const [key, w] of wanted) {
      const existing = this.listeners.get(key)
      if (existing !== undefined) { existing.service = w.service; existing.port = w.port; continue }
      const listener: Listener = { server: net.createServer((s) => this.forward(listener, s)), service: w.service, port: w.port }
      listener.server.on("error", (e) => this.log(`nodeport ${key}: ${e.message}`))
      listener.server.listen(w.port.nodePort, w.ip)
      this.listeners.set(key, listener)
    }
  }

  private forward(l: Listener, client: net.Socket): void {
    forward(client, () => this.resolve(l.service, l.port), this.count)
  }
}

/** Pipes `client` to the target `resolve` names at connection time (retried for 1 s), byte-counted. */
const forward = (client: net.Socket, resolve: () => Target | undefined, count: Counter): void => {
  client.on("error", () => undefined)
  client.pause()
  const attempt = (triesLeft: number): void => {
    const target = resolve()
    if (target === undefined) {
      if (triesLeft > 0) setTimeout(() => attempt(triesLeft - 1), 100)
      else client.destroy()
      return
    }
    const upstream = "connect" in target ? target.connect() : net.connect({ host: "127.0.0.1", port: target.port })
    // no Nagle on either leg (kube-proxy forwards in the kernel, a NAT rule: it adds no delay of its
    // own): with it, a small write behind an unacknowledged one waited for the peer's delayed ACK,
    // ~40 ms on a ZMTP handshake or a runner's status answer through this relay
    client.setNoDelay(true)
    upstream.setNoDelay(true)
    upstream.on("error", () => client.destroy())
    client.on("close", () => upstream.destroy())
    upstream.on("close", () => client.destroy())
    client.on("data", (b: Buffer) => count(target.podUid, b.length, 0))
    upstream.on("data", (b: Buffer) => count(target.podUid, 0, b.length))
    client.pipe(upstream)
    upstream.pipe(client)
    client.resume()
  }
  attempt(10)
}

/**
 * The pod network's role: a pod's own address (a loopback address of its own, 127.0.0.0/8 all
 * belongs to `lo`) answers on each of its container ports, forwarding to the pod's runner, so a
 * client reaches `podIP:2000` as it would on a cluster where the host routes to the pod network.
 * Returns a function that stops listening.
 */
export const listenPodAddress = (
  podIP: string,
  containerPorts: Iterable<number>,
  resolve: (containerPort: number) => Target | undefined,
  count: Counter,
  log: (msg: string) => void
): () => void => {
  const servers = [...new Set(containerPorts)].map((containerPort) => {
    const server = net.createServer((client) => forward(client, () => resolve(containerPort), count))
    server.on("error", (e) => log(`pod address ${podIP}:${containerPort}: ${e.message}`))
    server.listen(containerPort, podIP)
    return server
  })
  return () => { for (const s of servers) s.close() }
}
