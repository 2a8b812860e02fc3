// The kernel as an adversary of the file RPCs (issue 13): it owns its work dir and may put FIFOs,
// sockets and symlinks there, and swap entries while the agent works on them. The service runs
// here in-process on a temp dir (the agent process on the testbed: FilesAdversary.int.test.ts).
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Scope } from "effect"
import { AgentConfig, decodeConfigText } from "../../src/config/AgentConfig.ts"
import { FileOperationFailed, PathOutsideWorkDir } from "../../src/domain/Errors.ts"
import { KernelFiles, LIST_MAX_ENTRIES } from "../../src/kernel/KernelFiles.ts"
import { KernelTable } from "../../src/kernel/KernelTable.ts"
import { swapper } from "./FilesSupport.ts"
import { kernelInfo } from "./RunnerSupport.ts"

const ConfigLayer = Layer.effect(
  AgentConfig,
  decodeConfigText("t.toml", `[etcd]\nnamespace = "t"\n[container]\ndownload-max-size = "256m"\n`, {}, "host").pipe(Effect.orDie)
)
const TestLayer = KernelFiles.layer.pipe(Layer.provideMerge(KernelTable.layer), Layer.provide(ConfigLayer))

/** Opens every FIFO under `dir` for reading and closes it: a writer blocked in open(2) on it goes on. */
const unblockFifos = (dir: string) => {
  for (const name of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
    const p = path.join(dir, name)
    if (fs.lstatSync(p).isFIFO()) fs.closeSync(fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK))
  }
}

/** Kernel `k`'s work dir and an `outside` dir beside it holding a canary; removed with the scope. */
const scratchIn = (base: string) => Effect.acquireRelease(
  Effect.sync(() => {
    const root = fs.mkdtempSync(path.join(base, "bai-files-adv-"))
    const work = path.join(root, "k", "work")
    const outside = path.join(root, "outside")
    fs.mkdirSync(work, { recursive: true })
    fs.mkdirSync(outside)
    fs.writeFileSync(path.join(outside, "canary"), "CANARY-SECRET")
    return { root, work, outside }
  }),
  (s) =>
    Effect.sync(() => {
      unblockFifos(s.work)
      fs.rmSync(s.root, { recursive: true, force: true })
    })
)
const scratch = scratchIn(os.tmpdir())
/** tmpfs when there is one: creating 10 000 files on a busy disk takes half a minute. */
const fastScratch = scratchIn(fs.existsSync("/dev/shm") ? "/dev/shm" : os.tmpdir())

const withFiles = <A, E>(self: Effect.Effect<A, E, KernelFiles | KernelTable | Scope.Scope>) =>
  self.pipe(Effect.provide(TestLayer), Effect.scoped)

/** Fails (instead of hanging the test) when `self` does not complete within `seconds`. */
const within = (seconds: number, what: string) => <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.timeoutOrElse(self, { duration: `${seconds} seconds`, orElse: () => Effect.die(new Error(`${what}: no answer within ${seconds} s`)) })

describe("Files: the kernel as an adversary", () => {
  it.live("a FIFO given to 6 concurrent uploads: refused at once, list_files still answers", () =>
    withFiles(Effect.gen(function*() {
      const s = yield* scratch
      yield* (yield* KernelTable).upsert(kernelInfo("k", { scratchDir: s.work }))
      const files = yield* KernelFiles
      assert.strictEqual(spawnSync("mkfifo", [path.join(s.work, "x")]).status, 0)
      const uploads = yield* Effect.forEach(
        Array.from({ length: 6 }),
        () => Effect.flip(files.upload("k", "x", Buffer.from("hello"))),
        { concurrency: "unbounded" }
      ).pipe(within(30, "6 uploads to a FIFO"))
      for (const e of uploads) assert.instanceOf(e, FileOperationFailed)
      const listed = yield* files.list("k", ".").pipe(within(30, "list_files after the uploads"))
      assert.deepStrictEqual((JSON.parse(listed.files) as Array<{ filename: string; mode: string }>).map((e) => [e.filename, e.mode[0]]), [["x", "p"]])
      // downloads of it are refused, and a directory holding it is archived without it
      assert.instanceOf(yield* Effect.flip(files.download("k", "x")).pipe(within(30, "download of a FIFO")), FileOperationFailed)
      const tar = yield* files.download("k", ".").pipe(within(30, "download of the work dir"))
      assert.strictEqual(spawnSync("tar", ["-t"], { input: tar, encoding: "utf8" }).stdout.trim(), "work/")
      assert.isTrue(fs.lstatSync(path.join(s.work, "x")).isFIFO())
    })), { timeout: 120_000 })

  it.live("sockets are refused like FIFOs", () =>
    withFiles(Effect.gen(function*() {
      const s = yield* scratch
      yield* (yield* KernelTable).upsert(kernelInfo("k", { scratchDir: s.work }))
      const files = yield* KernelFiles
      const sock = path.join(s.work, "sock")
      yield* Effect.acquireRelease(
        Effect.callback<net.Server>((resume) => {
          const server = net.createServer().listen(sock, () => resume(Effect.succeed(server)))
        }),
        (server) => Effect.sync(() => server.close())
      )
      assert.instanceOf(yield* Effect.flip(files.upload("k", "sock", Buffer.from("x"))).pipe(within(30, "upload")), FileOperationFailed)
      assert.instanceOf(yield* Effect.flip(files.download("k", "sock")).pipe(within(30, "download")), FileOperationFailed)
      assert.isTrue(fs.lstatSync(sock).isSocket())
    })), { timeout: 120_000 })

  it.live("an upload cut off half-way leaves the old file whole and no temp file", () =>
    withFiles(Effect.gen(function*() {
      const s = yield* scratch
      yield* (yield* KernelTable).upsert(kernelInfo("k", { scratchDir: s.work }))
      const files = yield* KernelFiles
      const target = path.join(s.work, "keep.txt")
      fs.writeFileSync(target, "old content")
      const big = Buffer.alloc(96 * 1024 * 1024, 0x61)
      const fiber = yield* Effect.forkChild(files.upload("k", "keep.txt", big))
      // until the upload has started writing (a temp file beside it, or the target itself changing)
      const started = () =>
        fs.readdirSync(s.work).some((n) => n !== "keep.txt") || fs.statSync(target).size !== "old content".length
      for (let i = 0; i < 2000 && !started(); i++) yield* Effect.sleep("5 millis")
      assert.isTrue(started(), "the upload never started writing")
      yield* Fiber.interrupt(fiber)
      assert.strictEqual(fs.readFileSync(target, "utf8"), "old content")
      // the temp file goes away (its removal runs in the interruption's finalizer)
      for (let i = 0; i < 400 && fs.readdirSync(s.work).length > 1; i++) yield* Effect.sleep("25 millis")
      assert.deepStrictEqual(fs.readdirSync(s.work), ["keep.txt"])
      // and a complete upload replaces it
      yield* files.upload("k", "keep.txt", Buffer.from("new content"))
      assert.strictEqual(fs.readFileSync(target, "utf8"), "new content")
      assert.deepStrictEqual(fs.readdirSync(s.work), ["keep.txt"])
    })), { timeout: 120_000 })

  it.live.skipIf(process.getuid?.() !== 0)("as root: an upload keeps the replaced file's owner and mode (minus set-id bits), new ones get the directory's owner", () =>
    withFiles(Effect.gen(function*() {
      const s = yield* scratch
      yield* (yield* KernelTable).upsert(kernelInfo("k", { scratchDir: s.work }))
      const files = yield* KernelFiles
      fs.chownSync(s.work, 1234, 1235)
      const old = path.join(s.work, "tool")
      fs.writeFileSync(old, "old")
      fs.chownSync(old, 1234, 1235)
      fs.chmodSync(old, 0o4755)
      yield* files.upload("k", "tool", Buffer.from("new"))
      const st = fs.statSync(old)
      assert.deepStrictEqual([st.uid, st.gid, st.mode & 0o7777], [1234, 1235, 0o755])
      yield* files.upload("k", "sub/dir/new.txt", Buffer.from("x"))
      for (const p of ["sub", "sub/dir", "sub/dir/new.txt"]) {
        const n = fs.statSync(path.join(s.work, p))
        assert.deepStrictEqual([n.uid, n.gid], [1234, 1235], p)
      }
    })))

  it.live("list_files answers at most LIST_MAX_ENTRIES entries and says it truncated", () =>
    withFiles(Effect.gen(function*() {
      const s = yield* fastScratch
      yield* (yield* KernelTable).upsert(kernelInfo("k", { scratchDir: s.work }))
      const files = yield* KernelFiles
      const many = path.join(s.work, "many")
      fs.mkdirSync(many)
      for (let i = 0; i < LIST_MAX_ENTRIES + 50; i++) fs.closeSync(fs.openSync(path.join(many, `f${i}`), "w"))
      const r = yield* files.list("k", "many")
      assert.strictEqual((JSON.parse(r.files) as Array<unknown>).length, LIST_MAX_ENTRIES)
      assert.match(r.errors, /truncated/)
    })), { timeout: 120_000 })

  it.live("a symlink-swap loop during 400 download+upload pairs never reads or writes outside the work dir", () =>
    withFiles(Effect.gen(function*() {
      const s = yield* scratch
      yield* (yield* KernelTable).upsert(kernelInfo("k", { scratchDir: s.work }))
      const files = yield* KernelFiles
      const swapping = yield* swapper(s.work, s.outside)
      let leaked = 0
      let served = 0
      let linksSeen = 0
      for (let i = 0; i < 400; i++) {
        const target = i % 2 === 0 ? "f" : "d"
        const got = yield* files.download("k", target).pipe(Effect.option)
        if (got._tag === "Some") {
          served++
          if (Buffer.from(got.value).includes("CANARY-SECRET")) leaked++
          if (target === "d" && spawnSync("tar", ["-tv"], { input: Buffer.from(got.value), encoding: "utf8" }).stdout.includes("d/link -> ")) linksSeen++
        }
        yield* files.upload("k", i % 2 === 0 ? "f" : `d/up${i}.txt`, Buffer.from(`upload ${i}`)).pipe(Effect.ignore)
      }
      // the swapper ran all along
      assert.isNull(swapping.exitCode)
      assert.strictEqual(leaked, 0, `${leaked} of ${served} downloads carried the canary`)
      // and the directory downloads did meet the link inside d (stored as a link, not followed)
      assert.isAbove(linksSeen, 0, "no download of d contained its symlink")
      assert.deepStrictEqual(fs.readdirSync(s.outside), ["canary"])
      assert.strictEqual(fs.readFileSync(path.join(s.outside, "canary"), "utf8"), "CANARY-SECRET")
      assert.isTrue(served > 0)
    })), { timeout: 300_000 })

  it.live("a path through a symlink is refused even when the link points inside", () =>
    withFiles(Effect.gen(function*() {
      const s = yield* scratch
      yield* (yield* KernelTable).upsert(kernelInfo("k", { scratchDir: s.work }))
      const files = yield* KernelFiles
      fs.mkdirSync(path.join(s.work, "real"))
      fs.writeFileSync(path.join(s.work, "real", "a.txt"), "a")
      fs.symlinkSync("real", path.join(s.work, "alias"))
      for (const op of [files.download("k", "alias/a.txt"), files.list("k", "alias"), files.upload("k", "alias/b.txt", Buffer.from("b"))]) {
        assert.instanceOf(yield* Effect.flip(op as Effect.Effect<unknown, unknown>), PathOutsideWorkDir)
      }
      assert.deepStrictEqual(fs.readdirSync(path.join(s.work, "real")), ["a.txt"])
    })))
})
