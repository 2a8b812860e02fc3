import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { spawnSync } from "node:child_process"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Scope } from "effect"
import { AgentConfig, decodeConfigText } from "../../src/config/AgentConfig.ts"
import { DownloadTooLarge, PathOutsideWorkDir } from "../../src/domain/Errors.ts"
import { fileMode, KernelFiles, relativeInWorkDir } from "../../src/kernel/KernelFiles.ts"
import { KernelTable } from "../../src/kernel/KernelTable.ts"
import { kernelInfo } from "./RunnerSupport.ts"

const kernel = (kernelId: string, scratchDir: string) => kernelInfo(kernelId, { scratchDir })

const ConfigLayer = Layer.effect(
  AgentConfig,
  decodeConfigText("t.toml", `[etcd]\nnamespace = "t"\n[container]\ndownload-max-size = "64k"\n`, {}, "host").pipe(Effect.orDie)
)
const TestLayer = KernelFiles.layer.pipe(Layer.provideMerge(KernelTable.layer), Layer.provide(ConfigLayer))

/** A scratch root with kernel `k`'s work dir, and an `outside` dir next to it; removed with the scope. */
const scratch = Effect.acquireRelease(
  Effect.sync(() => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "bai-files-"))
    const work = path.join(root, "k", "work")
    const outside = path.join(root, "outside")
    fs.mkdirSync(work, { recursive: true })
    fs.mkdirSync(outside)
    fs.writeFileSync(path.join(outside, "secret.txt"), "secret")
    return { root, work, outside }
  }),
  (s) => Effect.sync(() => fs.rmSync(s.root, { recursive: true, force: true }))
)

const withFiles = <A, E>(self: Effect.Effect<A, E, KernelFiles | KernelTable | Scope.Scope>) =>
  self.pipe(Effect.provide(TestLayer), Effect.scoped)

describe("Files", () => {
  it("relativeInWorkDir", () => {
    assert.strictEqual(relativeInWorkDir(""), "")
    assert.strictEqual(relativeInWorkDir("."), "")
    assert.strictEqual(relativeInWorkDir("a/b/../c/"), "a/c")
    assert.strictEqual(relativeInWorkDir("/home/work"), "")
    assert.strictEqual(relativeInWorkDir("/home/work/x/y"), "x/y")
    assert.strictEqual(relativeInWorkDir(".."), undefined)
    assert.strictEqual(relativeInWorkDir("a/../../b"), undefined)
    assert.strictEqual(relativeInWorkDir("/etc/passwd"), undefined)
    assert.strictEqual(relativeInWorkDir("/home/workshop"), undefined)
    assert.strictEqual(relativeInWorkDir("/home/work/../x"), undefined)
  })

  it("fileMode is Python's stat.filemode", () => {
    assert.strictEqual(fileMode(0o100644), "-rw-r--r--")
    assert.strictEqual(fileMode(0o040755), "drwxr-xr-x")
    assert.strictEqual(fileMode(0o120777), "lrwxrwxrwx")
    assert.strictEqual(fileMode(0o104755), "-rwsr-xr-x")
    assert.strictEqual(fileMode(0o041777), "drwxrwxrwt")
    assert.strictEqual(fileMode(0o102644), "-rw-r-Sr--")
  })

  it.effect("upload → list → download round trip; tar readable by tar(1)", () =>
    withFiles(Effect.gen(function*() {
      const s = yield* scratch
      yield* (yield* KernelTable).upsert(kernel("k", s.work))
      const files = yield* KernelFiles
      yield* files.upload("k", "hello.txt", Buffer.from("hello\n"))
      yield* files.upload("k", "/home/work/sub/deep/data.bin", Buffer.from([0, 1, 2, 255]))
      const longName = `sub/${"n".repeat(120)}.txt`
      yield* files.upload("k", longName, Buffer.from("long"))
      assert.strictEqual(fs.readFileSync(path.join(s.work, "hello.txt"), "utf8"), "hello\n")

      const top = yield* files.list("k", ".")
      assert.strictEqual(top.abspath, "/home/work")
      assert.strictEqual(top.errors, "")
      const entries = JSON.parse(top.files) as Array<{ mode: string; size: number; ctime: number; mtime: number; atime: number; filename: string }>
      assert.deepStrictEqual(entries.map((e) => [e.filename, e.mode[0]]), [["hello.txt", "-"], ["sub", "d"]])
      assert.strictEqual(entries[0]!.size, 6)
      assert.isTrue(entries.every((e) => typeof e.mtime === "number" && typeof e.atime === "number" && typeof e.ctime === "number"))
      assert.match(top.files, /"mtime": \d+\.\d+/)
      const sub = yield* files.list("k", "/home/work/sub")
      assert.strictEqual(sub.abspath, "/home/work/sub")
      const missing = yield* files.list("k", "nope")
      assert.strictEqual(missing.files, "[]")
      assert.notStrictEqual(missing.errors, "")

      const tarBytes = yield* files.download("k", "sub")
      const out = path.join(s.root, "extract")
      fs.mkdirSync(out)
      fs.writeFileSync(path.join(s.root, "a.tar"), tarBytes)
      const r = spawnSync("tar", ["-xf", path.join(s.root, "a.tar"), "-C", out], { encoding: "utf8" })
      assert.strictEqual(r.status, 0, r.stderr)
      assert.deepStrictEqual([...fs.readFileSync(path.join(out, "sub", "deep", "data.bin"))], [0, 1, 2, 255])
      assert.strictEqual(fs.readFileSync(path.join(out, longName), "utf8"), "long")
      const single = yield* files.download("k", "hello.txt")
      const listing = spawnSync("tar", ["-t"], { input: single, encoding: "utf8" })
      assert.strictEqual(listing.stdout.trim(), "hello.txt")
    })))

  it.effect("paths escaping the work dir are refused: .., absolute, symlinks out", () =>
    withFiles(Effect.gen(function*() {
      const s = yield* scratch
      yield* (yield* KernelTable).upsert(kernel("k", s.work))
      const files = yield* KernelFiles
      fs.symlinkSync(s.outside, path.join(s.work, "escape"))
      fs.symlinkSync(path.join(s.outside, "secret.txt"), path.join(s.work, "secret-link"))
      fs.mkdirSync(path.join(s.work, "inner"))
      fs.symlinkSync(path.join(s.work, "inner"), path.join(s.work, "inner-link"))

      const refused = [
        files.upload("k", "../x.txt", Buffer.from("x")),
        files.upload("k", "/etc/x.txt", Buffer.from("x")),
        files.upload("k", "escape/x.txt", Buffer.from("x")),
        files.upload("k", "escape/new/dir/x.txt", Buffer.from("x")),
        files.upload("k", "secret-link", Buffer.from("overwritten")),
        files.download("k", "../outside/secret.txt"),
        files.download("k", "/home/work/../outside"),
        files.download("k", "escape"),
        files.download("k", "secret-link"),
        files.list("k", ".."),
        files.list("k", "/tmp"),
        files.list("k", "escape")
      ]
      for (const op of refused) {
        const e = yield* Effect.flip(op as Effect.Effect<unknown, unknown>)
        assert.instanceOf(e, PathOutsideWorkDir)
      }
      assert.strictEqual(fs.readFileSync(path.join(s.outside, "secret.txt"), "utf8"), "secret")
      assert.isFalse(fs.existsSync(path.join(s.outside, "x.txt")))
      assert.isFalse(fs.existsSync(path.join(s.outside, "new")))
      // links are never followed, even pointing inside; a directory download stores them as links
      const inner = yield* Effect.flip(files.upload("k", "inner-link/ok.txt", Buffer.from("ok")))
      assert.instanceOf(inner, PathOutsideWorkDir)
      assert.isFalse(fs.existsSync(path.join(s.work, "inner", "ok.txt")))
      const whole = yield* files.download("k", ".")
      const listing = spawnSync("tar", ["-tv"], { input: whole, encoding: "utf8" })
      assert.match(listing.stdout, /work\/escape -> /)
      assert.match(listing.stdout, /work\/secret-link -> /)
      assert.notInclude(listing.stdout, "work/escape/")
    })))

  it.effect("downloads beyond container.download-max-size fail with DownloadTooLarge", () =>
    withFiles(Effect.gen(function*() {
      const s = yield* scratch
      yield* (yield* KernelTable).upsert(kernel("k", s.work))
      const files = yield* KernelFiles
      yield* files.upload("k", "big.bin", Buffer.alloc(70 * 1024))
      const e = yield* Effect.flip(files.download("k", "big.bin"))
      assert.instanceOf(e, DownloadTooLarge)
      assert.strictEqual((e as DownloadTooLarge).limit, 64 * 1024)
    })))
})
