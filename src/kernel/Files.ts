/**
 * File RPCs on a kernel's work dir (spec §8.6; K1 left them as no-ops, spec §11.3 item 4). The agent
 * sees the pod's `/home/work` at `KernelInfo.scratchDir` (`<container.scratch-root>/<kid>/work`), so
 * these work on the local filesystem, with no exec into the pod:
 *
 * - `upload_file(kid, filename, bytes)` writes `<work>/<filename>` (parent dirs created);
 * - `download_file(kid, path)` answers a tar (ustar, PAX for long names) of the file or directory,
 *   entries named from its basename like `docker cp`; at most `container.download-max-size` bytes,
 *   else {@link DownloadTooLarge};
 * - `list_files(kid, path)` answers `{files: JSON text of [{mode, size, ctime, mtime, atime,
 *   filename}], errors, abspath}` with `abspath` in the pod's view (`/home/work/...`).
 *
 * Paths are relative to /home/work or absolute under it. Anything that escapes the work dir — `..`,
 * other absolute paths, a symlink (anywhere on the path) pointing out — is refused with
 * {@link PathOutsideWorkDir}: paths are resolved with realpath and compared with the work dir's own
 * realpath; uploads open the final component with O_NOFOLLOW.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Context, Effect, Layer } from "effect"
import { AgentConfig } from "../config/AgentConfig.ts"
import { DownloadTooLarge, FileOperationFailed, type KernelNotFound, PathOutsideWorkDir } from "../domain/Errors.ts"
import type { ListFilesResult } from "../rpc/AgentRpcs.ts"
import { KernelRegistry } from "./KernelRegistry.ts"

export const POD_WORK_DIR = "/home/work"

// ---------------------------------------------------------------------------------------------
// Paths

/**
 * The path relative to the work dir (`""` = the work dir itself) of a user path that is relative to
 * /home/work or absolute under it; None when it escapes lexically.
 */
export const relativeInWorkDir = (userPath: string): string | undefined => {
  if (userPath.includes("\0")) return undefined
  let p = userPath
  if (path.posix.isAbsolute(p)) {
    const n = path.posix.normalize(p)
    if (n !== POD_WORK_DIR && !n.startsWith(`${POD_WORK_DIR}/`)) return undefined
    p = n.slice(POD_WORK_DIR.length).replace(/^\/+/, "")
  }
  const rel = path.posix.normalize(p === "" ? "." : p)
  if (rel === ".." || rel.startsWith("../") || path.posix.isAbsolute(rel)) return undefined
  return rel === "." ? "" : rel.replace(/\/+$/, "")
}

/** `/home/work/<rel>` */
export const podPath = (rel: string): string => (rel === "" ? POD_WORK_DIR : `${POD_WORK_DIR}/${rel}`)

const isInside = (root: string, p: string): boolean => p === root || p.startsWith(root.endsWith(path.sep) ? root : root + path.sep)

// ---------------------------------------------------------------------------------------------
// Python's stat.filemode

export const fileMode = (mode: number): string => {
  const fmt = mode & 0o170000
  const type = fmt === 0o040000 ? "d" : fmt === 0o120000 ? "l" : fmt === 0o020000 ? "c" : fmt === 0o060000 ? "b"
    : fmt === 0o010000 ? "p" : fmt === 0o140000 ? "s" : "-"
  const bit = (m: number, c: string) => (mode & m ? c : "-")
  const special = (x: number, s: number, lower: string, upper: string) =>
    mode & s ? (mode & x ? lower : upper) : (mode & x ? "x" : "-")
  return type +
    bit(0o400, "r") + bit(0o200, "w") + special(0o100, 0o4000, "s", "S") +
    bit(0o040, "r") + bit(0o020, "w") + special(0o010, 0o2000, "s", "S") +
    bit(0o004, "r") + bit(0o002, "w") + special(0o001, 0o1000, "t", "T")
}

/** A float the way Python's json prints it (`1.0`, not `1`). */
const pyFloat = (x: number): string => (Number.isInteger(x) ? x.toFixed(1) : String(x))

// ---------------------------------------------------------------------------------------------
// ustar

const BLOCK = 512

const octal = (n: number, width: number): string => n.toString(8).padStart(width - 1, "0") + "\0"

const paxRecord = (key: string, value: string): Buffer => {
  const body = ` ${key}=${value}\n`
  let len = Buffer.byteLength(body) + 1
  while (Buffer.byteLength(`${len}${body}`) !== len) len++
  return Buffer.from(`${len}${body}`)
}

const padded = (data: Buffer): ReadonlyArray<Buffer> => {
  const rest = data.length % BLOCK
  return rest === 0 ? [data] : [data, Buffer.alloc(BLOCK - rest)]
}

export interface TarEntry {
  readonly name: string
  readonly type: "file" | "dir" | "symlink"
  readonly mode: number
  readonly mtime: number
  readonly data?: Buffer
  readonly linkname?: string
}

const header = (e: { name: string; type: "0" | "5" | "2" | "x"; mode: number; size: number; mtime: number; linkname: string }): Buffer => {
  const h = Buffer.alloc(BLOCK)
  h.write(e.name, 0, 100, "utf8")
  h.write(octal(e.mode & 0o7777, 8), 100, "ascii")
  h.write(octal(0, 8), 108, "ascii")
  h.write(octal(0, 8), 116, "ascii")
  h.write(octal(e.size, 12), 124, "ascii")
  h.write(octal(Math.max(0, Math.floor(e.mtime)), 12), 136, "ascii")
  h.write("        ", 148, "ascii")
  h.write(e.type, 156, "ascii")
  h.write(e.linkname, 157, 100, "utf8")
  h.write("ustar\0", 257, "ascii")
  h.write("00", 263, "ascii")
  h.write("work", 265, "ascii")
  h.write("work", 297, "ascii")
  let sum = 0
  for (const b of h) sum += b
  h.write(octal(sum, 7) + " ", 148, "ascii")
  return h
}

/** One entry's blocks (with a PAX header first when the name or link does not fit). */
export const tarEntry = (e: TarEntry): ReadonlyArray<Buffer> => {
  const name = e.type === "dir" && !e.name.endsWith("/") ? `${e.name}/` : e.name
  const linkname = e.linkname ?? ""
  const out: Array<Buffer> = []
  const fits = (s: string) => Buffer.byteLength(s) <= 100
  if (!fits(name) || !fits(linkname)) {
    const pax = Buffer.concat([
      ...(fits(name) ? [] : [paxRecord("path", name)]),
      ...(fits(linkname) ? [] : [paxRecord("linkpath", linkname)])
    ])
    out.push(header({ name: "PaxHeader", type: "x", mode: 0o644, size: pax.length, mtime: e.mtime, linkname: "" }), ...padded(pax))
  }
  const data = e.data ?? Buffer.alloc(0)
  const cut = (s: string) => (fits(s) ? s : Buffer.from(s).subarray(0, 100).toString("utf8").replace(/\uFFFD+$/, ""))
  out.push(header({
    name: cut(name),
    type: e.type === "file" ? "0" : e.type === "dir" ? "5" : "2",
    mode: e.mode,
    size: e.type === "file" ? data.length : 0,
    mtime: e.mtime,
    linkname: cut(linkname)
  }))
  if (e.type === "file" && data.length > 0) out.push(...padded(data))
  return out
}

/** The end-of-archive marker. */
export const tarEnd: Buffer = Buffer.alloc(BLOCK * 2)

// ---------------------------------------------------------------------------------------------
// The service

type FilesError = KernelNotFound | PathOutsideWorkDir | FileOperationFailed

export class KernelFiles extends Context.Service<KernelFiles, {
  readonly upload: (kernelId: string, filename: string, data: Uint8Array) => Effect.Effect<void, FilesError>
  readonly download: (kernelId: string, filepath: string) => Effect.Effect<Uint8Array, FilesError | DownloadTooLarge>
  readonly list: (kernelId: string, dirPath: string) => Effect.Effect<ListFilesResult, FilesError>
}>()("bai-agent/kernel/KernelFiles") {
  static readonly make = Effect.gen(function*() {
    const registry = yield* KernelRegistry
    const maxDownload = (yield* AgentConfig).config.container["download-max-size"]

    const failed = (kernelId: string, p: string) => (e: unknown) =>
      new FileOperationFailed({ kernelId, path: p, message: e instanceof Error ? e.message : String(e) })
    const io = <A>(kernelId: string, p: string, f: () => Promise<A>) => Effect.tryPromise({ try: f, catch: failed(kernelId, p) })
    const outside = (kernelId: string, p: string) => new PathOutsideWorkDir({ kernelId, path: p })

    /** The kernel's work dir, real path. */
    const workRoot = (kernelId: string) =>
      registry.touch(kernelId).pipe(
        Effect.flatMap((info) => io(kernelId, info.scratchDir, () => fs.promises.realpath(info.scratchDir)))
      )

    /** An existing path inside the work dir, as a real path (symlinks resolved and checked). */
    const resolveExisting = Effect.fnUntraced(function*(kernelId: string, userPath: string) {
      const rel = relativeInWorkDir(userPath)
      if (rel === undefined) return yield* outside(kernelId, userPath)
      const root = yield* workRoot(kernelId)
      const real = yield* io(kernelId, userPath, () => fs.promises.realpath(path.join(root, rel)))
      if (!isInside(root, real)) return yield* outside(kernelId, userPath)
      return { root, rel, real }
    })

    const upload = Effect.fn("KernelFiles.upload")(function*(kernelId: string, filename: string, data: Uint8Array) {
      const rel = relativeInWorkDir(filename)
      if (rel === undefined || rel === "") return yield* outside(kernelId, filename)
      const root = yield* workRoot(kernelId)
      // the nearest existing ancestor must resolve inside; what is created below it is plain dirs
      const parent = path.dirname(path.join(root, rel))
      const existing = yield* Effect.sync(() => {
        let p = parent
        while (!fs.existsSync(p) && isInside(root, path.dirname(p))) p = path.dirname(p)
        return p
      })
      const realAncestor = yield* io(kernelId, filename, () => fs.promises.realpath(existing))
      if (!isInside(root, realAncestor)) return yield* outside(kernelId, filename)
      const realParent = path.join(realAncestor, path.relative(existing, parent))
      yield* io(kernelId, filename, () => fs.promises.mkdir(realParent, { recursive: true }))
      const checkedParent = yield* io(kernelId, filename, () => fs.promises.realpath(realParent))
      if (!isInside(root, checkedParent)) return yield* outside(kernelId, filename)
      let target = path.join(checkedParent, path.basename(rel))
      // an existing symlink may be followed only when it points inside
      const lst = yield* Effect.promise(() => fs.promises.lstat(target).catch(() => undefined))
      if (lst?.isSymbolicLink()) {
        const real = yield* io(kernelId, filename, () => fs.promises.realpath(target))
        if (!isInside(root, real)) return yield* outside(kernelId, filename)
        target = real
      }
      const flags = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC | fs.constants.O_NOFOLLOW
      yield* io(kernelId, filename, async () => {
        const fh = await fs.promises.open(target, flags, 0o644)
        try {
          await fh.writeFile(data)
        } finally {
          await fh.close()
        }
      })
    })

    const download = Effect.fn("KernelFiles.download")(function*(kernelId: string, filepath: string) {
      const { real, root } = yield* resolveExisting(kernelId, filepath)
      const chunks: Array<Buffer> = []
      let total = tarEnd.length
      const tooLarge = () => new DownloadTooLarge({ kernelId, path: filepath, limit: maxDownload })
      const add = (blocks: ReadonlyArray<Buffer>) =>
        Effect.suspend(() => {
          for (const b of blocks) total += b.length
          if (total > maxDownload) return Effect.fail(tooLarge())
          chunks.push(...blocks)
          return Effect.void
        })
      const walk = (abs: string, name: string): Effect.Effect<void, FileOperationFailed | DownloadTooLarge> =>
        Effect.gen(function*() {
          const st = yield* io(kernelId, filepath, () => fs.promises.lstat(abs))
          const mtime = st.mtimeMs / 1000
          if (st.isSymbolicLink()) {
            const linkname = yield* io(kernelId, filepath, () => fs.promises.readlink(abs))
            return yield* add(tarEntry({ name, type: "symlink", mode: st.mode, mtime, linkname }))
          }
          if (st.isDirectory()) {
            yield* add(tarEntry({ name, type: "dir", mode: st.mode, mtime }))
            const names = yield* io(kernelId, filepath, () => fs.promises.readdir(abs))
            for (const child of names.sort()) yield* walk(path.join(abs, child), `${name}/${child}`)
            return
          }
          if (!st.isFile()) return // devices, fifos, sockets are skipped
          if (total + BLOCK + st.size > maxDownload) return yield* tooLarge()
          const data = yield* io(kernelId, filepath, () => fs.promises.readFile(abs))
          yield* add(tarEntry({ name, type: "file", mode: st.mode, mtime, data }))
        })
      yield* walk(real, real === root ? "work" : path.basename(real))
      chunks.push(tarEnd)
      return new Uint8Array(Buffer.concat(chunks))
    })

    const list = Effect.fn("KernelFiles.list")(function*(kernelId: string, dirPath: string) {
      const rel = relativeInWorkDir(dirPath)
      if (rel === undefined) return yield* outside(kernelId, dirPath)
      const resolved = yield* resolveExisting(kernelId, dirPath).pipe(
        Effect.map((r) => ({ ok: true as const, ...r })),
        Effect.catchTag("FileOperationFailed", (e) => Effect.succeed({ ok: false as const, message: e.message }))
      )
      const abspath = podPath(rel)
      if (!resolved.ok) return { files: "[]", errors: resolved.message, abspath }
      const real = resolved.real
      const entries = yield* io(kernelId, dirPath, () => fs.promises.readdir(real)).pipe(
        Effect.map((names) => ({ names: names.sort(), error: "" })),
        Effect.catchTag("FileOperationFailed", (e) => Effect.succeed({ names: [] as Array<string>, error: e.message }))
      )
      const errors: Array<string> = entries.error === "" ? [] : [entries.error]
      const items: Array<string> = []
      for (const name of entries.names) {
        const st = yield* Effect.promise(() => fs.promises.lstat(path.join(real, name)).catch((e: unknown) => e as Error))
        if (st instanceof Error) {
          errors.push(st.message)
          continue
        }
        items.push(
          `{"mode": ${JSON.stringify(fileMode(st.mode))}, "size": ${st.size}, "ctime": ${pyFloat(st.ctimeMs / 1000)}, ` +
            `"mtime": ${pyFloat(st.mtimeMs / 1000)}, "atime": ${pyFloat(st.atimeMs / 1000)}, "filename": ${JSON.stringify(name)}}`
        )
      }
      return { files: `[${items.join(", ")}]`, errors: errors.join("\n"), abspath }
    })

    return KernelFiles.of({ upload, download, list })
  })

  static readonly layer = Layer.effect(KernelFiles, KernelFiles.make)
}
