// Container registry (Debian `docker-registry`, reference registry v2) on loopback with htpasswd
// basic auth, seeded with tiny schema2 images pushed through its HTTP API.
import { execFileSync } from "node:child_process"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { gzipSync } from "node:zlib"
import { waitUntil } from "./ports.ts"
import { assertAlive, type Daemon, spawnDaemon } from "./processes.ts"

export interface RegistryInfo {
  readonly url: string
  readonly host: string
  readonly username: string
  readonly password: string
}

export interface SeedImage {
  readonly repo: string
  readonly tag: string
  readonly labels: Readonly<Record<string, string>>
}

export const seedImages: ReadonlyArray<SeedImage> = [
  {
    repo: "lablup/python", tag: "3.6-ubuntu18.04",
    labels: {
      "ai.backend.kernelspec": "1", "ai.backend.runtime-type": "python",
      "ai.backend.runtime-path": "/usr/bin/python3", "ai.backend.envs.corecount": "OPENBLAS_NUM_THREADS,OMP_NUM_THREADS",
      "ai.backend.features": "batch query uid-match user-input", "ai.backend.base-distro": "ubuntu18.04",
      "ai.backend.resource.min.cpu": "1", "ai.backend.resource.min.mem": "256m",
      "ai.backend.service-ports": "jupyter:http:8080,myapp:tcp:8081",
    },
  },
  {
    repo: "lablup/python", tag: "3.9-ubuntu20.04",
    labels: {
      "ai.backend.kernelspec": "1", "ai.backend.runtime-type": "python", "ai.backend.runtime-path": "/usr/bin/python3",
      "ai.backend.features": "batch query uid-match user-input", "ai.backend.base-distro": "ubuntu20.04",
      "ai.backend.resource.min.cpu": "1", "ai.backend.resource.min.mem": "256m",
      "ai.backend.service-ports": "jupyter:http:8080",
    },
  },
  {
    repo: "lablup/lua", tag: "5.3-alpine3.8",
    labels: {
      "ai.backend.kernelspec": "1", "ai.backend.runtime-type": "lua", "ai.backend.runtime-path": "/usr/bin/lua",
      "ai.backend.features": "batch query", "ai.backend.base-distro": "alpine3.8",
      "ai.backend.resource.min.cpu": "1", "ai.backend.resource.min.mem": "64m",
    },
  },
]

/** bcrypt htpasswd line (python3's crypt module does bcrypt on glibc). */
const htpasswdLine = (user: string, password: string): string => {
  const hash = execFileSync("python3", ["-W", "ignore", "-c",
    "import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1<<5)))", password],
  { encoding: "utf8" }).trim()
  if (!hash.startsWith("$2")) throw new Error("testbed: python3 crypt cannot make bcrypt hashes")
  return `${user}:${hash}\n`
}

export const startRegistry = (stateDir: string, port: number, username: string, password: string): { daemon: Daemon; info: RegistryInfo } => {
  const dir = path.join(stateDir, "registry")
  fs.mkdirSync(path.join(dir, "storage"), { recursive: true })
  fs.writeFileSync(path.join(dir, "htpasswd"), htpasswdLine(username, password))
  const config = [
    "version: 0.1",
    "log: {level: warn}",
    "storage:",
    `  filesystem: {rootdirectory: ${JSON.stringify(path.join(dir, "storage"))}}`,
    "  delete: {enabled: true}",
    "http:",
    `  addr: 127.0.0.1:${port}`,
    "auth:",
    `  htpasswd: {realm: testbed, path: ${JSON.stringify(path.join(dir, "htpasswd"))}}`,
    "",
  ].join("\n")
  fs.writeFileSync(path.join(dir, "config.yml"), config)
  const daemon = spawnDaemon("registry", "docker-registry", ["serve", path.join(dir, "config.yml")], path.join(stateDir, "log"))
  const host = `127.0.0.1:${port}`
  return { daemon, info: { url: `http://${host}`, host, username, password } }
}

const authHeader = (r: RegistryInfo): string => `Basic ${Buffer.from(`${r.username}:${r.password}`).toString("base64")}`

export const waitRegistry = (d: Daemon, r: RegistryInfo): Promise<void> =>
  waitUntil("registry", async () => {
    assertAlive(d)
    const res = await fetch(`${r.url}/v2/`, { headers: { authorization: authHeader(r) } })
    return res.status === 200
  })

const sha256 = (b: Buffer): string => `sha256:${createHash("sha256").update(b).digest("hex")}`

const pushBlob = async (r: RegistryInfo, repo: string, blob: Buffer): Promise<string> => {
  const digest = sha256(blob)
  const head = await fetch(`${r.url}/v2/${repo}/blobs/${digest}`, { method: "HEAD", headers: { authorization: authHeader(r) } })
  if (head.status === 200) return digest
  const start = await fetch(`${r.url}/v2/${repo}/blobs/uploads/`, { method: "POST", headers: { authorization: authHeader(r) } })
  if (start.status !== 202) throw new Error(`testbed: registry upload start ${start.status}: ${await start.text()}`)
  const loc = new URL(start.headers.get("location") ?? "", r.url)
  loc.searchParams.set("digest", digest)
  const put = await fetch(loc, {
    method: "PUT", body: new Uint8Array(blob),
    headers: { authorization: authHeader(r), "content-type": "application/octet-stream" },
  })
  if (put.status !== 201) throw new Error(`testbed: registry blob put ${put.status}: ${await put.text()}`)
  return digest
}

/** Pushes one image (a config blob carrying `labels`, one empty layer) and returns the manifest digest. */
export const pushImage = async (r: RegistryInfo, img: SeedImage): Promise<string> => {
  const layer = gzipSync(Buffer.alloc(1024)) // an empty tar archive
  const config = Buffer.from(JSON.stringify({
    architecture: "amd64", os: "linux",
    config: { Labels: img.labels, Env: ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"], Cmd: ["/bin/sh"] },
    rootfs: { type: "layers", diff_ids: [sha256(Buffer.alloc(1024))] },
    history: [{ created_by: "bai-k8s-agent testbed" }],
  }))
  const layerDigest = await pushBlob(r, img.repo, layer)
  const configDigest = await pushBlob(r, img.repo, config)
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.docker.distribution.manifest.v2+json",
    config: { mediaType: "application/vnd.docker.container.image.v1+json", size: config.length, digest: configDigest },
    layers: [{ mediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip", size: layer.length, digest: layerDigest }],
  }))
  const res = await fetch(`${r.url}/v2/${img.repo}/manifests/${img.tag}`, {
    method: "PUT", body: new Uint8Array(manifest),
    headers: { authorization: authHeader(r), "content-type": "application/vnd.docker.distribution.manifest.v2+json" },
  })
  if (res.status !== 201) throw new Error(`testbed: registry manifest put ${res.status}: ${await res.text()}`)
  return sha256(manifest)
}

export const seedRegistry = async (r: RegistryInfo): Promise<Record<string, string>> => {
  const digests: Record<string, string> = {}
  for (const img of seedImages) digests[`${img.repo}:${img.tag}`] = await pushImage(r, img)
  return digests
}

/** Splits an image reference into registry host (if any), repository and tag. */
export const parseImageRef = (image: string): { host: string | undefined; repo: string; tag: string } => {
  let rest = image
  let host: string | undefined
  const slash = rest.indexOf("/")
  if (slash > 0) {
    const first = rest.slice(0, slash)
    if (first.includes(".") || first.includes(":") || first === "localhost") { host = first; rest = rest.slice(slash + 1) }
  }
  let tag = "latest"
  const at = rest.indexOf("@")
  if (at >= 0) { tag = rest.slice(at + 1); rest = rest.slice(0, at) } else {
    const colon = rest.lastIndexOf(":")
    if (colon > rest.lastIndexOf("/")) { tag = rest.slice(colon + 1); rest = rest.slice(0, colon) }
  }
  return { host, repo: rest, tag }
}

/** Looks the image up in the testbed registry (whatever host the reference names): its manifest digest, or undefined. */
export const resolveImage = async (r: RegistryInfo, image: string): Promise<string | undefined> => {
  const { repo, tag } = parseImageRef(image)
  const res = await fetch(`${r.url}/v2/${repo}/manifests/${tag}`, {
    method: "HEAD",
    headers: { authorization: authHeader(r), accept: "application/vnd.docker.distribution.manifest.v2+json" },
  })
  if (res.status !== 200) return undefined
  return res.headers.get("docker-content-digest") ?? "sha256:unknown"
}

/** `.dockerconfigjson` content for the pull secret. */
export const dockerConfigJson = (r: RegistryInfo): string =>
  JSON.stringify({ auths: { [r.host]: { username: r.username, password: r.password, auth: Buffer.from(`${r.username}:${r.password}`).toString("base64") } } })
