// The real Docker registry (Debian `docker-registry`) configured for token auth (`auth: token` with
// realm, service, issuer and rootcertbundle), and the test's own token servers (token_server.py: JWTs
// signed by a test key whose certificate is the registry's root bundle). Images are pushed through a
// second registry process with htpasswd auth on the same storage directory (test/testbed/registry.ts),
// so the token registry serves them as its own.
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { freePort, waitUntil } from "../testbed/ports.ts"
import { assertAlive, type Daemon, spawnDaemon, stopDaemons } from "../testbed/processes.ts"
import { startRegistry, waitRegistry, type RegistryInfo } from "../testbed/registry.ts"

const python = process.env.BAI_PYTHON ?? "/usr/bin/python3"
const tokenServerPy = path.join(path.dirname(fileURLToPath(import.meta.url)), "token_server.py")
export const SERVICE = "bai-test-registry"
export const ISSUER = "bai-test-token-issuer"

export interface TokenServer {
  readonly origin: string
  /** Every /token request the server got. */
  readonly seen: () => Promise<ReadonlyArray<{ path: string; authorization: string | null; scopes: ReadonlyArray<string> }>>
}

export interface TokenTestbed {
  readonly dir: string
  readonly user: string
  readonly password: string
  /** Pushes images (htpasswd registry on the shared storage). */
  readonly seed: RegistryInfo
  /** Starts a token server (UPSTREAM: forward every non-/token path there: one origin for both). */
  readonly tokenServer: (host: string, upstream?: string, port?: number) => Promise<TokenServer>
  /** Starts a token-auth registry whose challenges name `realm`; its base URL. */
  readonly tokenRegistry: (realm: string) => Promise<string>
  readonly stop: () => Promise<void>
}

export const startTokenTestbed = async (dir: string): Promise<TokenTestbed> => {
  fs.mkdirSync(dir, { recursive: true })
  const logDir = path.join(dir, "log")
  fs.mkdirSync(logDir, { recursive: true })
  const key = path.join(dir, "token.key")
  const cert = path.join(dir, "token.crt")
  execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
    "-days", "2", "-subj", "/CN=bai-test-token-issuer"], { stdio: "ignore" })
  const daemons: Array<Daemon> = []
  const user = "tokenuser"
  const password = "token-secret"
  const seeder = startRegistry(dir, await freePort(), user, password)
  daemons.push(seeder.daemon)
  await waitRegistry(seeder.daemon, seeder.info)

  const tokenServer = async (host: string, upstream?: string, fixedPort?: number): Promise<TokenServer> => {
    const port = fixedPort ?? await freePort(host)
    const d = spawnDaemon(`token-${port}`, python, [tokenServerPy, host, String(port), key, cert, ISSUER, SERVICE, user, password, ...(upstream === undefined ? [] : [upstream])], logDir)
    daemons.push(d)
    const origin = `http://${host}:${port}`
    await waitUntil(`token server ${origin}`, async () => {
      assertAlive(d)
      return (await fetch(`${origin}/_seen`).catch(() => undefined))?.status === 200
    })
    return { origin, seen: async () => (await (await fetch(`${origin}/_seen`)).json()) as never }
  }

  let n = 0
  const tokenRegistry = async (realm: string): Promise<string> => {
    const port = await freePort()
    const conf = path.join(dir, `token-registry-${++n}.yml`)
    fs.writeFileSync(conf, [
      "version: 0.1",
      "log: {level: warn}",
      "storage:",
      `  filesystem: {rootdirectory: ${JSON.stringify(path.join(dir, "registry", "storage"))}}`,
      "http:",
      `  addr: 127.0.0.1:${port}`,
      "auth:",
      "  token:",
      `    realm: ${JSON.stringify(realm)}`,
      `    service: ${SERVICE}`,
      `    issuer: ${ISSUER}`,
      `    rootcertbundle: ${JSON.stringify(cert)}`,
      ""
    ].join("\n"))
    const d = spawnDaemon(`token-registry-${n}`, "docker-registry", ["serve", conf], logDir)
    daemons.push(d)
    const url = `http://127.0.0.1:${port}`
    // up when /v2/ answers the token challenge
    await waitUntil(`token registry ${url}`, async () => {
      assertAlive(d)
      return (await fetch(`${url}/v2/`).catch(() => undefined))?.status === 401
    })
    return url
  }

  return { dir, user, password, seed: seeder.info, tokenServer, tokenRegistry, stop: () => stopDaemons(daemons) }
}
