// Port helpers: free-port discovery, "is this fixed port free" checks and readiness polling.
import * as net from "node:net"

/** Asks the kernel for a free TCP port on `host` (the socket is closed again; tiny race accepted). */
export const freePort = (host = "127.0.0.1"): Promise<number> =>
  new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once("error", reject)
    srv.listen(0, host, () => {
      const port = (srv.address() as net.AddressInfo).port
      srv.close(() => resolve(port))
    })
  })

/** Resolves true if `host:port` can be bound right now. */
export const isPortFree = (port: number, host = "127.0.0.1"): Promise<boolean> =>
  new Promise((resolve) => {
    const srv = net.createServer()
    srv.once("error", () => resolve(false))
    srv.listen({ port, host, exclusive: true }, () => srv.close(() => resolve(true)))
  })

/** Throws a clear error naming every fixed port that is taken. */
export const requireFree = async (ports: ReadonlyArray<{ what: string; port: number; host?: string }>): Promise<void> => {
  const taken: Array<string> = []
  for (const p of ports) {
    if (!(await isPortFree(p.port, p.host))) taken.push(`${p.what} ${p.host ?? "127.0.0.1"}:${p.port}`)
  }
  if (taken.length > 0) {
    throw new Error(`testbed: fixed port(s) already in use: ${taken.join(", ")} (is another dev testbed up? try \`npm run testbed -- down\`)`)
  }
}

/** Resolves once a TCP connection to host:port succeeds. */
export const canConnect = (port: number, host = "127.0.0.1"): Promise<boolean> =>
  new Promise((resolve) => {
    const s = net.connect({ port, host })
    s.once("connect", () => { s.destroy(); resolve(true) })
    s.once("error", () => resolve(false))
  })

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Polls `check` every `intervalMs` until it returns true or `timeoutMs` passes (then throws `what`). */
export const waitUntil = async (what: string, check: () => Promise<boolean>, timeoutMs = 30_000, intervalMs = 100): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try { if (await check()) return } catch { /* not ready yet */ }
    if (Date.now() > deadline) throw new Error(`testbed: timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(intervalMs)
  }
}
