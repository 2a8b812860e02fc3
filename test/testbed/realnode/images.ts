// Real kernel images for the real node, built with Debian tools only (no Docker, nothing fetched but
// apt packages): a root filesystem made of the host's installed Debian packages (the closure of
// python3 + the 19.06 runner's imports + what the 19.06 entrypoint.sh calls), packed with umoci into
// an OCI layout, then pushed with skopeo to the testbed registry as schema2 with the Backend.AI labels.
//
// Images (OCI layout tags):
//   pause          static pause (k8s build/pause/linux/pause.c): the sandbox image, imported into containerd
//   python         the rootfs: sh (dash), bash, coreutils, passwd (useradd/groupadd), libc-bin (ldconfig),
//                  python3 with zmq, msgpack, janus, uvloop, jupyter_client, ipykernel, nest_asyncio,
//                  async_timeout. No runner inside: it comes from the krunner volume, as in production.
//   sigterm        python + /usr/local/bin/sh = term-ignoring-sh.c: PID 1 ignores SIGTERM
// The layout is built once per machine (cache key: package versions + sources) under the k8s cache.
import { execFile } from "node:child_process"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { promisify } from "node:util"
import { k8sCacheDir } from "../paths.ts"
import { type RegistryInfo, resolveImage, seedImages, type SeedImage } from "../registry.ts"

const run = promisify(execFile)
const sh = async (cmd: string, args: ReadonlyArray<string>, opts: { cwd?: string } = {}): Promise<string> =>
  (await run(cmd, [...args], { maxBuffer: 256 << 20, ...opts })).stdout

export const realnodeSrcDir = path.join(path.dirname(new URL(import.meta.url).pathname), "c")
const BUILD_VERSION = "5" // bump when the build recipe below changes

/** Debian packages whose installed files (with their dependency closure) make the python rootfs. */
export const ROOTFS_PACKAGES = [
  "dash", "bash", "coreutils", "passwd", "login", "libc-bin", "grep", "sed", "findutils", "procps",
  "python3", "python3-zmq", "python3-msgpack", "python3-janus", "python3-uvloop", "python3-jupyter-client",
  "python3-ipykernel", "python3-nest-asyncio", "python3-async-timeout",
] as const
const EXCLUDE = ["/usr/share/doc/", "/usr/share/man/", "/usr/share/info/", "/usr/share/locale/", "/usr/share/lintian/", "/usr/share/bug/"]
const USRMERGE = ["bin", "sbin", "lib", "lib64"]

export const SIGTERM_IMAGE: SeedImage = {
  repo: "lablup/python-sigterm", tag: "3.9-ubuntu20.04",
  labels: { ...seedImages.find((i) => i.tag === "3.9-ubuntu20.04")!.labels },
}

/** The seeded python tags, replaced by real images in real-node mode (labels as seeded). */
export const realPythonImages = (): ReadonlyArray<SeedImage> => seedImages.filter((i) => i.repo === "lablup/python")

/** The dependency closure of `pkgs` among installed packages. */
const packageClosure = async (pkgs: ReadonlyArray<string>): Promise<Array<string>> => {
  const out = await sh("apt-cache", ["depends", "--recurse", "--installed", "--no-recommends", "--no-suggests", "--no-conflicts",
    "--no-breaks", "--no-replaces", "--no-enhances", ...pkgs])
  const names = [...new Set(out.split("\n").filter((l) => l !== "" && !l.startsWith(" ") && !l.startsWith("<")))]
  // apt-cache lists both sides of `a | b` alternatives: keep what is installed
  const status = await run("dpkg-query", ["-W", "-f", "${db:Status-Abbrev}|${Package}\\n", ...names], { maxBuffer: 16 << 20 })
    .then((r) => r.stdout, (e: { stdout?: string }) => e.stdout ?? "")
  return status.split("\n").filter((l) => l.startsWith("ii")).map((l) => l.split("|")[1]!).sort()
}

const fileHash = (files: ReadonlyArray<string>): string => {
  const h = createHash("sha256")
  for (const f of files) h.update(f).update(fs.readFileSync(f))
  return h.digest("hex")
}

const gccStatic = (src: string, out: string, extra: ReadonlyArray<string> = []): Promise<string> =>
  sh("gcc", ["-Os", "-static", ...extra, "-o", out, src]).then(() => sh("strip", [out]))

export interface BuiltImages {
  /** OCI layout dir (tags pause, python, sigterm) */
  readonly layout: string
  /** static binaries for the krunner dir */
  readonly suExec: string
  readonly libbaihook: string
}

/** Builds (or finds in the cache) the OCI layout and the krunner helper binaries. */
export const buildImages = async (log: (l: string) => void): Promise<BuiltImages> => {
  const closure = await packageClosure(ROOTFS_PACKAGES)
  const versions = await sh("dpkg-query", ["-W", "-f", "${Package} ${Version}\\n", ...closure])
  const sources = fs.readdirSync(realnodeSrcDir).sort().map((f) => path.join(realnodeSrcDir, f))
  const key = createHash("sha256").update(BUILD_VERSION).update(versions).update(fileHash(sources))
    .digest("hex").slice(0, 16)
  const dir = path.join(k8sCacheDir, "realnode-images", key)
  const done = path.join(dir, ".done")
  const result: BuiltImages = { layout: path.join(dir, "oci"), suExec: path.join(dir, "bin", "su-exec"), libbaihook: path.join(dir, "bin", "libbaihook.so") }
  if (fs.existsSync(done)) return result
  const t0 = performance.now()
  log(`[realnode] building kernel images from ${closure.length} installed Debian packages (once, cached in ${dir})`)
  fs.rmSync(dir, { recursive: true, force: true })
  const bin = path.join(dir, "bin")
  const work = path.join(dir, "work")
  fs.mkdirSync(bin, { recursive: true })
  fs.mkdirSync(work, { recursive: true })
  // pause.c of the Kubernetes source build-k8s.sh fetched (read from the tarball: the unpacked tree may be gone)
  const pauseSrc = path.join(work, "pause.c")
  fs.writeFileSync(pauseSrc, await sh("tar", ["-xzOf", path.join(k8sCacheDir, "kubernetes_1.20.5+really1.20.2.orig.tar.gz"), "kubernetes-1.20.2/build/pause/linux/pause.c"]))
  await Promise.all([
    gccStatic(pauseSrc, path.join(bin, "pause"), ["-DVERSION=3.4.1-testbed"]),
    gccStatic(path.join(realnodeSrcDir, "su-exec.c"), result.suExec),
    gccStatic(path.join(realnodeSrcDir, "term-ignoring-sh.c"), path.join(bin, "term-ignoring-sh")),
    sh("gcc", ["-shared", "-fPIC", "-Os", "-o", result.libbaihook, path.join(realnodeSrcDir, "libbaihook.c")]),
  ])
  const layout = result.layout
  await sh("umoci", ["init", "--layout", layout])
  const unpack = async (tag: string, bundle: string): Promise<string> => {
    await sh("umoci", ["unpack", "--image", `${layout}:${tag}`, bundle])
    return path.join(bundle, "rootfs")
  }
  const config = (tag: string, args: ReadonlyArray<string>) => sh("umoci", ["config", "--image", `${layout}:${tag}`, "--os", "linux", "--architecture", "amd64", ...args])

  // pause
  await sh("umoci", ["new", "--image", `${layout}:pause`])
  const pauseRoot = await unpack("pause", path.join(work, "pause"))
  fs.copyFileSync(path.join(bin, "pause"), path.join(pauseRoot, "pause"))
  fs.chmodSync(path.join(pauseRoot, "pause"), 0o755)
  await sh("umoci", ["repack", "--image", `${layout}:pause`, path.join(work, "pause")])
  await config("pause", ["--config.entrypoint", "/pause", "--config.user", "65535:65535"])

  // python: the installed files of the closure
  await sh("umoci", ["new", "--image", `${layout}:python`])
  const root = await unpack("python", path.join(work, "python"))
  for (const d of USRMERGE) { fs.mkdirSync(path.join(root, "usr", d), { recursive: true }); fs.symlinkSync(`usr/${d}`, path.join(root, d)) }
  const listed = (await sh("dpkg", ["-L", ...closure])).split("\n")
    .filter((p) => p.startsWith("/") && !EXCLUDE.some((e) => p.startsWith(e)) && !USRMERGE.includes(p.slice(1)) && p !== "/.")
  // the byte code py3compile made at install time (not in dpkg's lists): without it every kernel start
  // compiles IPython & co. again (the site dirs are read-only to the kernel user), and the 19.06 runner's
  // 10 s wait for the ipykernel runs out on a loaded node ("failed to start jupyter kernel", exit 127)
  const pyver = `cpython-${(await sh("python3", ["-c", "import sys; print(f'{sys.version_info[0]}{sys.version_info[1]}')"])).trim()}`
  const pyc = listed.filter((p) => p.endsWith(".py")).flatMap((p) => {
    const dir = path.join(path.dirname(p), "__pycache__")
    return [dir, path.join(dir, `${path.basename(p, ".py")}.${pyver}.pyc`)]
  })
  const files = [...new Set([...listed, ...pyc])].filter((p) => { try { fs.lstatSync(p); return true } catch { return false } })
  fs.writeFileSync(path.join(work, "files.txt"), `${files.map((p) => p.slice(1)).join("\n")}\n`)
  await sh("bash", ["-c", `set -o pipefail; tar -C / --no-recursion -cf - -T ${JSON.stringify(path.join(work, "files.txt"))} | tar -C ${JSON.stringify(root)} --keep-directory-symlink -xf -`])
  for (const d of ["tmp", "var/tmp"]) { fs.mkdirSync(path.join(root, d), { recursive: true }); fs.chmodSync(path.join(root, d), 0o1777) }
  for (const d of ["root", "home", "run", "etc/ld.so.conf.d", "opt"]) fs.mkdirSync(path.join(root, d), { recursive: true })
  fs.writeFileSync(path.join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
  fs.writeFileSync(path.join(root, "etc/group"), "root:x:0:\nnogroup:x:65534:\n")
  for (const f of ["etc/shadow", "etc/gshadow"]) { fs.writeFileSync(path.join(root, f), f.endsWith("gshadow") ? "root:*::\nnogroup:*::\n" : "root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n", { mode: 0o640 }) }
  await sh("ldconfig", ["-r", root])
  await sh("umoci", ["repack", "--image", `${layout}:python`, path.join(work, "python")])
  await config("python", ["--config.env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "--config.env", "LANG=C.UTF-8",
    "--config.cmd", "/bin/sh", "--config.workingdir", "/home/work"])
  for (const img of realPythonImages()) {
    await config("python", ["--tag", `python-${img.tag}`, ...Object.entries(img.labels).flatMap(([k, v]) => ["--config.label", `${k}=${v}`])])
  }

  // sigterm: one more layer on top of python
  const sroot = await unpack("python", path.join(work, "sigterm"))
  fs.mkdirSync(path.join(sroot, "usr/local/bin"), { recursive: true })
  fs.copyFileSync(path.join(bin, "term-ignoring-sh"), path.join(sroot, "usr/local/bin/sh"))
  fs.chmodSync(path.join(sroot, "usr/local/bin/sh"), 0o755)
  await sh("umoci", ["repack", "--image", `${layout}:sigterm`, path.join(work, "sigterm")])
  await config("sigterm", Object.entries(SIGTERM_IMAGE.labels).flatMap(([k, v]) => ["--config.label", `${k}=${v}`]))
  await sh("umoci", ["gc", "--layout", layout])
  fs.rmSync(work, { recursive: true, force: true })
  fs.writeFileSync(done, `${versions}`)
  log(`[realnode] kernel images built in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
  return result
}

/** Pushes the real images to the testbed registry as schema2 (skopeo); returns `repo:tag → manifest digest`. */
export const pushImages = async (built: BuiltImages, r: RegistryInfo): Promise<Record<string, string>> => {
  const pushes: Array<[string, SeedImage]> = [...realPythonImages().map((i): [string, SeedImage] => [`python-${i.tag}`, i]), ["sigterm", SIGTERM_IMAGE]]
  const out: Record<string, string> = {}
  // sequential: the python tags share their layer blob (the first push uploads it, the others mount it)
  for (const [tag, img] of pushes) {
    await sh("skopeo", ["copy", "-q", "--format", "v2s2", "--dest-tls-verify=false", "--dest-creds", `${r.username}:${r.password}`,
      `oci:${built.layout}:${tag}`, `docker://${r.host}/${img.repo}:${img.tag}`])
    const digest = await resolveImage(r, `${img.repo}:${img.tag}`)
    if (digest === undefined) throw new Error(`testbed: ${img.repo}:${img.tag} not in the registry after the push`)
    out[`${img.repo}:${img.tag}`] = digest
  }
  return out
}

/** The pause image as a docker-archive, for `ctr image import` (containerd's sandbox image is never pulled). */
export const pauseArchive = async (built: BuiltImages, file: string, ref: string): Promise<void> => {
  fs.rmSync(file, { force: true })
  await sh("skopeo", ["copy", "-q", `oci:${built.layout}:pause`, `docker-archive:${file}:${ref}`])
}

/** Copies `from` to a new tag `to` inside the testbed registry (blobs are shared). */
export const copyTag = async (r: RegistryInfo, from: string, to: string): Promise<void> => {
  const creds = `${r.username}:${r.password}`
  await sh("skopeo", ["copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false", "--src-creds", creds, "--dest-creds", creds,
    `docker://${r.host}/${from}`, `docker://${r.host}/${to}`])
}
