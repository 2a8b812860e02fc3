// size: the three file RPCs share the work-dir path checks (no symlinks, no FIFOs: issue 13) and the download tar writer
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
 * Paths are relative to /home/work or absolute under it; `..` and other absolute paths are refused
 * with {@link PathOutsideWorkDir}. The work dir belongs to the kernel, which may swap any entry for a
 * symlink, FIFO or socket at any moment, so (issue 13, docs/security.md):
 *
 * - a path is never resolved twice: it is walked one component at a time from a descriptor of the
 *   work dir, each step opened `O_PATH | O_NOFOLLOW` relative to the previous descriptor (the
 *   `/proc/self/fd/N/<name>` idiom) and checked with fstat; a symlink anywhere on the given path is
 *   refused (PathOutsideWorkDir), even one pointing inside. Inside a downloaded directory, symlinks
 *   are archived as links (their text only), FIFOs, sockets and devices skipped;
 * - data is read and written through descriptors only: a file to read is re-opened from its `O_PATH`
 *   descriptor with `O_NONBLOCK` and checked to be a regular file (no open can block on a FIFO, no
 *   device is ever opened); an upload writes a new `O_EXCL` temp file beside the target and renames
 *   it over it (a failed or interrupted upload leaves the old file), and refuses to replace anything
 *   but a regular file;
 * - every filesystem call holds one of {@link FILE_OPS_MAX_THREADS} permits until it settles, so
 *   kernel file operations never occupy more than that many libuv pool threads, and each RPC gives
 *   up after {@link FILE_OP_TIMEOUT};
 * - `list_files` answers at most {@link LIST_MAX_ENTRIES} entries / {@link LIST_MAX_BYTES} bytes
 *   (saying so in `errors`); `download_file` at most `container.download-max-size` bytes and
 *   {@link DOWNLOAD_MAX_DEPTH} levels, reading no more directory entries than that size can hold.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Context, Duration, Effect, Exit, Layer, Scope, Semaphore } from "effect"
import { AgentConfig } from "../config/AgentConfig.ts"
import { DownloadTooLarge, FileOperationFailed, type KernelNotFound, PathOutsideWorkDir } from "../domain/Errors.ts"
import type { ListFilesResult } from "../domain/KernelResults.ts"
import { KernelTable } from "./KernelTable.ts"

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

// ---------------------------------------------------------------------------------------------
// Python's stat.filemode

export const fileMode = (mode: number): string => {
  const fmt = mode & 0o170000
  const type = fmt === 0o040000 ? "d" : fmt === 0o120000 ? "l" : fmt === 0o020000 ? "c" : fmt === 0o060000 ? "b"
    : fmt === 0o010000 ? "p" : fmt === 0o140000 ? "s" : fmt === 0o100000 ? "-" : "?" // CPython's _stat: '?' for an unknown type
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
// Descriptor-relative access (Linux)

/** `O_PATH` (Linux): a descriptor naming a file without opening it (no device side effects, never blocks). */
const O_PATH = 0o10000000
const { O_CREAT, O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_NONBLOCK, O_RDONLY, O_WRONLY } = fs.constants

/** `<name>` inside the directory open as `fd` (the magic link pins the directory: nothing is resolved twice). */
const at = (fd: number, name?: string): string => (name === undefined ? `/proc/self/fd/${fd}` : `/proc/self/fd/${fd}/${name}`)

/** Kernel file operations may occupy at most this many of libuv's (default 4) pool threads. */
const FILE_OPS_MAX_THREADS = 2
/** Each file RPC gives up after this long (the manager's RPC timeout is longer). */
const FILE_OP_TIMEOUT = Duration.seconds(60)
/** `list_files` answers at most this many entries … */
export const LIST_MAX_ENTRIES = 10_000
/** … and at most this many bytes of JSON. */
const LIST_MAX_BYTES = 4 * 1024 * 1024
/** `download_file` descends at most this many directory levels. */
const DOWNLOAD_MAX_DEPTH = 64

type Handle = fs.promises.FileHandle

// ---------------------------------------------------------------------------------------------
// The service

type FilesError = KernelNotFound | PathOutsideWorkDir | FileOperationFailed

export class KernelFiles extends Context.Service<KernelFiles, {
  readonly upload: (kernelId: string, filename: string, data: Uint8Array) => Effect.Effect<void, FilesError>
  readonly download: (kernelId: string, filepath: string) => Effect.Effect<Uint8Array, FilesError | DownloadTooLarge>
  readonly list: (kernelId: string, dirPath: string) => Effect.Effect<ListFilesResult, FilesError>
}>()("bai-agent/kernel/KernelFiles") {
  static readonly make = Effect.gen(function*() {
    const registry = yield* KernelTable
    const maxDownload = (yield* AgentConfig).config.container["download-max-size"]
    const pool = yield* Semaphore.make(FILE_OPS_MAX_THREADS)
    const asRoot = process.getuid?.() === 0

    const failed = (kernelId: string, p: string) => (e: unknown) => {
      const raw = e instanceof Error ? e.message : String(e)
      // the descriptor paths mean nothing to the user
      const message = raw.replace(/'\/proc\/self\/fd\/\d+(\/[^']*)?'/g, (_m, rest: string | undefined) => `'${rest === undefined ? p : rest.slice(1)}'`)
      return new FileOperationFailed({ kernelId, path: p, message })
    }
    const outside = (kernelId: string, p: string) => new PathOutsideWorkDir({ kernelId, path: p })
    const refuse = (kernelId: string, p: string, message: string) => new FileOperationFailed({ kernelId, path: p, message })

    /**
     * One filesystem call on a libuv pool thread. The pool permit is held until the call settles,
     * whatever happens to the calling fiber, so calls that never return pin at most
     * {@link FILE_OPS_MAX_THREADS} threads; the caller itself is interruptible (its timeout answers),
     * except with `whole` (for calls that cannot block): then it sees the call's result.
     */
    const io = <A>(kernelId: string, p: string, f: () => Promise<A>, whole = false): Effect.Effect<A, FileOperationFailed> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.gen(function*() {
          yield* restore(pool.take(1))
          const promise = Promise.resolve().then(f)
          yield* Effect.promise(() => promise.then(() => undefined, () => undefined)).pipe(
            Effect.andThen(pool.release(1)),
            Effect.forkDetach
          )
          const call = Effect.tryPromise({ try: () => promise, catch: failed(kernelId, p) })
          return yield* (whole ? call : restore(call))
        })
      )

    /**
     * Opens `target` with `flags`, interruptibly (with `onOpened`, called once it is open, the caller
     * waits for the open call itself); the descriptor is closed with the scope, or as soon as it
     * opens if the scope closed first (a close never waits on anything).
     */
    const open = (kernelId: string, p: string, target: string, flags: number, mode?: number, onOpened?: () => void) =>
      Effect.gen(function*() {
        const state: { handle: Handle | undefined; closed: boolean } = { handle: undefined, closed: false }
        const close = (h: Handle) => void h.close().catch(() => undefined)
        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            state.closed = true
            if (state.handle !== undefined) close(state.handle)
          })
        )
        return yield* io(kernelId, p, () =>
          fs.promises.open(target, flags, mode).then((h) => {
            onOpened?.()
            if (state.closed) close(h)
            else state.handle = h
            return h
          }), onOpened !== undefined)
      })

    /** `name` in directory `dir` as an `O_PATH` descriptor of the entry itself (a symlink is not followed), with its stat. */
    const openEntry = (kernelId: string, p: string, dir: Handle, name: string) =>
      Effect.gen(function*() {
        const h = yield* open(kernelId, p, at(dir.fd, name), O_PATH | O_NOFOLLOW)
        const st = yield* io(kernelId, p, () => h.stat())
        return { h, st }
      })

    /** The kernel's work dir as a directory descriptor. */
    const openRoot = (kernelId: string, p: string) =>
      Effect.gen(function*() {
        const info = yield* registry.touch(kernelId)
        const h = yield* open(kernelId, p, info.scratchDir, O_PATH | O_DIRECTORY)
        return h
      })

    /**
     * Walks `components` down from `dir` one at a time, never following a link: each must be a
     * directory (a symlink is refused as {@link PathOutsideWorkDir}). With `create`, missing ones are
     * made.
     */
    const descend = Effect.fnUntraced(function*(
      kernelId: string,
      p: string,
      dir: Handle,
      components: ReadonlyArray<string>,
      create: boolean
    ) {
      let cur = dir
      for (const c of components) {
        if (create) {
          const parent = cur
          const made = yield* io(kernelId, p, () =>
            fs.promises.mkdir(at(parent.fd, c), 0o755).then(() => true, (e: NodeJS.ErrnoException) =>
              e.code === "EEXIST" ? false : Promise.reject(e)
            ))
          if (made && asRoot) {
            // owned like its parent (the kernel's user), never following a link
            const owner = yield* io(kernelId, p, () => parent.stat())
            yield* io(kernelId, p, () => fs.promises.lchown(at(parent.fd, c), owner.uid, owner.gid))
          }
        }
        const { h, st } = yield* openEntry(kernelId, p, cur, c)
        if (st.isSymbolicLink()) return yield* outside(kernelId, p)
        if (!st.isDirectory()) return yield* refuse(kernelId, p, `'${c}' is not a directory`)
        cur = h
      }
      return cur
    })

    /** `rel` ("" = the work dir) as an `O_PATH` descriptor of the entry itself, reached without following links. */
    const resolve = Effect.fnUntraced(function*(kernelId: string, p: string, rel: string) {
      const root = yield* openRoot(kernelId, p)
      if (rel === "") return { h: root, st: yield* io(kernelId, p, () => root.stat()), name: "work" }
      const parts = rel.split("/")
      const name = parts.pop()!
      const dir = yield* descend(kernelId, p, root, parts, false)
      const entry = yield* openEntry(kernelId, p, dir, name)
      if (entry.st.isSymbolicLink()) return yield* outside(kernelId, p)
      return { ...entry, name }
    })

    /** Bounds a whole file RPC (and its scoped descriptors). */
    const bounded = (kernelId: string, p: string) => <A, E>(self: Effect.Effect<A, E, Scope.Scope>) =>
      self.pipe(
        Effect.timeoutOrElse({
          duration: FILE_OP_TIMEOUT,
          orElse: () => Effect.fail(refuse(kernelId, p, `timed out after ${Duration.format(FILE_OP_TIMEOUT)}`))
        }),
        Effect.scoped
      )

    /**
     * Reads a regular file through a fresh descriptor of the entry `entry` names (O_NONBLOCK:
     * whatever it turned into, the open cannot block), at most `max` bytes.
     */
    const readRegular = Effect.fnUntraced(function*(
      kernelId: string,
      p: string,
      entry: Handle,
      max: number,
      tooLarge: () => DownloadTooLarge
    ) {
      const fh = yield* open(kernelId, p, at(entry.fd), O_RDONLY | O_NONBLOCK)
      const st = yield* io(kernelId, p, () => fh.stat())
      if (!st.isFile()) return yield* refuse(kernelId, p, "not a regular file")
      if (st.size > max) return yield* tooLarge()
      const buf = Buffer.alloc(st.size)
      let off = 0
      while (off < buf.length) {
        const { bytesRead } = yield* io(kernelId, p, () => fh.read(buf, off, buf.length - off, off))
        if (bytesRead === 0) break // shrank meanwhile: the rest stays zero, as the header said st.size
        off += bytesRead
      }
      return { data: buf, st }
    })

    /** Up to `limit` names of the directory open as `dir` (unsorted), and whether there were more. */
    const readNames = (kernelId: string, p: string, dir: Handle, limit: number) =>
      io(kernelId, p, async () => {
        const d = await fs.promises.opendir(at(dir.fd), { bufferSize: 128 })
        const names: Array<string> = []
        let more = false
        for await (const e of d) {
          if (names.length >= limit) {
            more = true
            break
          }
          names.push(e.name)
        }
        return { names, more }
      })

    const upload = Effect.fn("KernelFiles.upload")(function*(kernelId: string, filename: string, data: Uint8Array) {
      const rel = relativeInWorkDir(filename)
      if (rel === undefined || rel === "") return yield* outside(kernelId, filename)
      yield* Effect.gen(function*() {
        const root = yield* openRoot(kernelId, filename)
        const parts = rel.split("/")
        const name = parts.pop()!
        const dir = yield* descend(kernelId, filename, root, parts, true)
        // what is there now may be replaced by a regular file, nothing else
        const existing = yield* io(kernelId, filename, () => fs.promises.lstat(at(dir.fd, name))).pipe(
          Effect.map((st) => st as fs.Stats | undefined),
          Effect.catch((e) => /ENOENT/.test(e.message) ? Effect.succeed(undefined) : Effect.fail(e))
        )
        if (existing?.isSymbolicLink()) return yield* outside(kernelId, filename)
        if (existing !== undefined && !existing.isFile()) return yield* refuse(kernelId, filename, "not a regular file")
        // a new file beside it, written in full, then renamed over it: a failed upload leaves the old file
        const tmp = `.bai-upload-${crypto.randomUUID()}`
        const created = { value: false }
        yield* Effect.gen(function*() {
          // an exclusive create of a new regular file cannot block: wait for it, so that `created`
          // is known when the upload is interrupted (and the temp file removed)
          const fh = yield* open(kernelId, filename, at(dir.fd, tmp), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NONBLOCK, 0o644, () => {
            created.value = true
          })
          const st = yield* io(kernelId, filename, () => fh.stat())
          if (!st.isFile()) return yield* refuse(kernelId, filename, "not a regular file")
          // the replaced file's owner and permissions (never set-id bits), else the directory's owner
          if (asRoot) {
            const owner = existing ?? (yield* io(kernelId, filename, () => dir.stat()))
            yield* io(kernelId, filename, () => fh.chown(owner.uid, owner.gid))
          }
          yield* io(kernelId, filename, () => fh.chmod(existing === undefined ? 0o644 : existing.mode & 0o777))
          yield* io(kernelId, filename, () => fh.writeFile(data))
          yield* io(kernelId, filename, () => fh.datasync())
          yield* io(kernelId, filename, () => fs.promises.rename(at(dir.fd, tmp), at(dir.fd, name)))
        }).pipe(
          Effect.onExit((exit) =>
            Exit.isSuccess(exit) || !created.value
              ? Effect.void
              // while the directory's descriptor is open; outside the permits (a finalizer must not
              // wait for one, and unlink never opens what it removes, so it cannot block on it)
              : Effect.promise(() => fs.promises.unlink(at(dir.fd, tmp)).catch(() => undefined))
          )
        )
      }).pipe(bounded(kernelId, filename))
    })

    const download = Effect.fn("KernelFiles.download")(function*(kernelId: string, filepath: string) {
      const rel = relativeInWorkDir(filepath)
      if (rel === undefined) return yield* outside(kernelId, filepath)
      return yield* Effect.gen(function*() {
        const top = yield* resolve(kernelId, filepath, rel)
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
        /** One entry (an `O_PATH` descriptor and its stat); a symlink inside a directory is stored as a link. */
        const walk = (
          parent: Handle | undefined,
          entry: { readonly h: Handle; readonly st: fs.Stats },
          name: string,
          depth: number
        ): Effect.Effect<void, FileOperationFailed | DownloadTooLarge | PathOutsideWorkDir, Scope.Scope> =>
          Effect.gen(function*() {
            const { h, st } = entry
            const mtime = st.mtimeMs / 1000
            if (st.isSymbolicLink()) {
              if (parent === undefined) return yield* outside(kernelId, filepath)
              // only the link's own text is read (readlink never follows the last component)
              const linkname = yield* io(kernelId, filepath, () => fs.promises.readlink(at(parent.fd, path.basename(name))))
              return yield* add(tarEntry({ name, type: "symlink", mode: st.mode, mtime, linkname }))
            }
            if (st.isDirectory()) {
              if (depth > DOWNLOAD_MAX_DEPTH) return yield* refuse(kernelId, filepath, `deeper than ${DOWNLOAD_MAX_DEPTH} directories`)
              yield* add(tarEntry({ name, type: "dir", mode: st.mode, mtime }))
              // every entry costs at least one 512-byte header: the size limit bounds the count
              const room = Math.max(0, Math.floor((maxDownload - total) / BLOCK))
              const { more, names } = yield* readNames(kernelId, filepath, h, room)
              if (more) return yield* tooLarge()
              for (const child of names.sort()) {
                yield* Effect.scoped(Effect.gen(function*() {
                  const e = yield* openEntry(kernelId, filepath, h, child).pipe(Effect.option)
                  if (e._tag === "None") return // vanished meanwhile
                  yield* walk(h, e.value, `${name}/${child}`, depth + 1)
                }))
              }
              return
            }
            if (!st.isFile()) {
              // devices, fifos, sockets: skipped in a directory, refused when asked for
              if (parent === undefined) return yield* refuse(kernelId, filepath, "not a regular file or directory")
              return
            }
            if (total + 2 * BLOCK + st.size > maxDownload) return yield* tooLarge()
            const { data, st: now } = yield* readRegular(kernelId, filepath, h, maxDownload - total - 2 * BLOCK, tooLarge)
            yield* add(tarEntry({ name, type: "file", mode: now.mode, mtime: now.mtimeMs / 1000, data }))
          })
        yield* walk(undefined, top, top.name, 0)
        chunks.push(tarEnd)
        return new Uint8Array(Buffer.concat(chunks))
      }).pipe(bounded(kernelId, filepath))
    })

    const list = Effect.fn("KernelFiles.list")(function*(kernelId: string, dirPath: string) {
      const rel = relativeInWorkDir(dirPath)
      if (rel === undefined) return yield* outside(kernelId, dirPath)
      const abspath = podPath(rel)
      return yield* Effect.gen(function*() {
        const resolved = yield* resolve(kernelId, dirPath, rel).pipe(
          Effect.map((r) => ({ ok: true as const, ...r })),
          Effect.catchTag("FileOperationFailed", (e) => Effect.succeed({ ok: false as const, message: e.message }))
        )
        if (!resolved.ok) return { files: "[]", errors: resolved.message, abspath }
        if (!resolved.st.isDirectory()) return { files: "[]", errors: `'${dirPath}' is not a directory`, abspath }
        const dir = resolved.h
        const entries = yield* readNames(kernelId, dirPath, dir, LIST_MAX_ENTRIES).pipe(
          Effect.map((r) => ({ ...r, error: "" })),
          Effect.catchTag("FileOperationFailed", (e) => Effect.succeed({ names: [] as Array<string>, more: false, error: e.message }))
        )
        const errors: Array<string> = entries.error === "" ? [] : [entries.error]
        // lstat (never follows the last component) in batches, one pool thread per batch
        const names = entries.names.sort()
        const batches: Array<ReadonlyArray<string>> = []
        for (let i = 0; i < names.length; i += 256) batches.push(names.slice(i, i + 256))
        const stats = yield* Effect.forEach(
          batches,
          (batch) =>
            io(kernelId, dirPath, async () => {
              const out: Array<{ readonly name: string; readonly st: fs.Stats | Error }> = []
              for (const name of batch) out.push({ name, st: await fs.promises.lstat(at(dir.fd, name)).catch((e: Error) => e) })
              return out
            }),
          { concurrency: FILE_OPS_MAX_THREADS }
        ).pipe(Effect.map((xs) => xs.flat()))
        const items: Array<string> = []
        let bytes = 2
        let truncated = entries.more
        for (const { name, st } of stats) {
          if (st instanceof Error) {
            errors.push(failed(kernelId, dirPath)(st).message)
            continue
          }
          const item = `{"mode": ${JSON.stringify(fileMode(st.mode))}, "size": ${st.size}, "ctime": ${pyFloat(st.ctimeMs / 1000)}, ` +
            `"mtime": ${pyFloat(st.mtimeMs / 1000)}, "atime": ${pyFloat(st.atimeMs / 1000)}, "filename": ${JSON.stringify(name)}}`
          bytes += item.length + 2
          if (bytes > LIST_MAX_BYTES) {
            truncated = true
            break
          }
          items.push(item)
        }
        if (truncated) errors.push(`listing truncated to ${items.length} entries`)
        return { files: `[${items.join(", ")}]`, errors: errors.join("\n"), abspath }
      }).pipe(bounded(kernelId, dirPath))
    })

    return KernelFiles.of({ upload, download, list })
  })

  static readonly layer = Layer.effect(KernelFiles, KernelFiles.make)
}
