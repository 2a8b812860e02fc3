import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, FileSystem } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { kernelDirOwner, prepareScratchDir } from "../../src/kube/ScratchDir.ts"

const tempRoot = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "bai-scratch-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

const mode = (p: string) => fs.statSync(p).mode & 0o7777

describe("prepareScratchDir", () => {
  it.effect("makes <kid> 0711 and <kid>/work 0700 whatever the umask, owned as the kernel uid when configured", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot
      const old = process.umask(0o000)
      try {
        const me = process.getuid!()
        const myGid = process.getgid!()
        yield* prepareScratchDir(path.join(root, "k1"), { uid: me, gid: myGid })
        assert.strictEqual(mode(path.join(root, "k1")), 0o711)
        assert.strictEqual(mode(path.join(root, "k1", "work")), 0o700)
        const st = fs.statSync(path.join(root, "k1", "work"))
        assert.strictEqual(st.uid, me)
        assert.strictEqual(st.gid, myGid)
        // an existing directory (a restart reusing it) is brought to the same modes
        fs.chmodSync(path.join(root, "k1", "work"), 0o777)
        yield* prepareScratchDir(path.join(root, "k1"), { uid: me, gid: myGid })
        assert.strictEqual(mode(path.join(root, "k1", "work")), 0o700)
      } finally {
        process.umask(old)
      }
    }).pipe(Effect.scoped, Effect.provide(NodeFileSystem.layer)))

  it.effect("without a configured kernel uid the work dir is not opened to others (0711 / 0755 as before: the agent's own)", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot
      yield* prepareScratchDir(path.join(root, "k2"), { uid: -1, gid: -1 })
      assert.strictEqual(mode(path.join(root, "k2")), 0o711)
      assert.strictEqual(mode(path.join(root, "k2", "work")) & 0o022, 0, "no group/other write")
    }).pipe(Effect.scoped, Effect.provide(NodeFileSystem.layer)))

  it.effect("another kernel uid: root gives the work dir to it; a non-root agent fails with the reason", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot
      const work = path.join(root, "k3", "work")
      if (process.getuid!() === 0) {
        yield* prepareScratchDir(path.join(root, "k3"), { uid: 54321, gid: 54322 })
        const st = fs.statSync(work)
        assert.deepStrictEqual([st.uid, st.gid, st.mode & 0o7777], [54321, 54322, 0o700])
        assert.strictEqual(fs.statSync(path.join(root, "k3")).uid, 0, "the kernel dir stays the agent's")
      } else {
        const e = yield* Effect.flip(prepareScratchDir(path.join(root, "k3"), { uid: process.getuid!() + 1, gid: -1 }))
        assert.match(e.message, /kernel-uid/)
      }
    }).pipe(Effect.scoped, Effect.provide(NodeFileSystem.layer)))
})

describe("kernelDirOwner", () => {
  it("configured ids win; unset ids are the entrypoint's 9001 for a root agent, the agent's own otherwise", () => {
    assert.deepStrictEqual(kernelDirOwner({ uid: 1234, gid: 5678 }, 0), { uid: 1234, gid: 5678 })
    assert.deepStrictEqual(kernelDirOwner({ uid: -1, gid: -1 }, 0), { uid: 9001, gid: 9001 })
    assert.deepStrictEqual(kernelDirOwner({ uid: 1234, gid: -1 }, 0), { uid: 1234, gid: 9001 })
    assert.deepStrictEqual(kernelDirOwner({ uid: -1, gid: -1 }, 1000), { uid: -1, gid: -1 })
  })
})

describe("prepareScratchDir and symbolic links", () => {
  it.effect("a symbolic link planted at the kernel's path (or its work dir) is refused, never followed", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot
      const elsewhere = path.join(root, "elsewhere")
      fs.mkdirSync(elsewhere, { mode: 0o755 })
      fs.chmodSync(elsewhere, 0o755)
      fs.symlinkSync(elsewhere, path.join(root, "k5"))
      const e = yield* Effect.flip(prepareScratchDir(path.join(root, "k5"), { uid: -1, gid: -1 }))
      assert.match(e.message, /not a directory \(SymbolicLink\)/)
      assert.strictEqual(mode(elsewhere), 0o755, "the link's target was not chmod-ed")
      assert.isFalse(fs.existsSync(path.join(elsewhere, "work")), "nothing was made through the link")
      fs.mkdirSync(path.join(root, "k6"))
      fs.symlinkSync(elsewhere, path.join(root, "k6", "work"))
      const w = yield* Effect.flip(prepareScratchDir(path.join(root, "k6"), { uid: -1, gid: -1 }))
      assert.match(w.message, /not a directory \(SymbolicLink\)/)
      assert.strictEqual(mode(elsewhere), 0o755, "the work link's target was not chmod-ed")
    }).pipe(Effect.scoped, Effect.provide(NodeFileSystem.layer)))
})

/**
 * A FileSystem whose `ops` calls are each held until `n` of them are in flight together (bounded:
 * a call left alone fails after 5 s), i.e. a preparation that issues them one after the other
 * fails. Each held call then goes to the real file system.
 */
const heldTogether = (ops: ReadonlyArray<"lstat" | "chmod" | "chown">, n: number) =>
  Effect.gen(function*() {
    const real = yield* FileSystem.FileSystem
    const all = yield* Deferred.make<void>()
    let arrived = 0
    const hold = <A, E>(op: string, call: Effect.Effect<A, E>) =>
      Effect.suspend(() => {
        if (++arrived === n) Deferred.doneUnsafe(all, Effect.void)
        return Deferred.await(all).pipe(
          Effect.timeoutOrElse({ duration: "5 seconds", orElse: () => Effect.die(new Error(`${op} was not issued together with ${n - 1} other call(s)`)) }),
          Effect.andThen(call)
        )
      })
    const wrapped: FileSystem.FileSystem = {
      ...real,
      ...(ops.includes("lstat") ? { lstat: (p: string) => hold(`lstat ${p}`, real.lstat(p)) } : {}),
      ...(ops.includes("chmod") ? { chmod: (p: string, m: number) => hold(`chmod ${p}`, real.chmod(p, m)) } : {}),
      ...(ops.includes("chown") ? { chown: (p: string, u: number, g: number) => hold(`chown ${p}`, real.chown(p, u, g)) } : {})
    }
    return wrapped
  })

describe("prepareScratchDir on the critical path of a create", () => {
  it.live("checks both paths in one round and sets modes and owner in one round (not one file-system call after the other)", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot
      const me = process.getuid!()
      const myGid = process.getgid!()
      const lstats = yield* heldTogether(["lstat"], 2)
      const made = yield* prepareScratchDir(path.join(root, "k7"), { uid: me, gid: myGid }).pipe(Effect.provideService(FileSystem.FileSystem, lstats))
      assert.isTrue(made.madeKernelDir)
      assert.strictEqual(made.work, path.join(root, "k7", "work"))
      const attrs = yield* heldTogether(["chmod", "chown"], 3)
      const again = yield* prepareScratchDir(path.join(root, "k7"), { uid: me, gid: myGid }).pipe(Effect.provideService(FileSystem.FileSystem, attrs))
      assert.isFalse(again.madeKernelDir)
      assert.strictEqual(mode(path.join(root, "k7")), 0o711)
      assert.strictEqual(mode(path.join(root, "k7", "work")), 0o700)
      const modesOnly = yield* heldTogether(["chmod"], 2)
      yield* prepareScratchDir(path.join(root, "k8"), { uid: -1, gid: -1 }).pipe(Effect.provideService(FileSystem.FileSystem, modesOnly))
      assert.strictEqual(mode(path.join(root, "k8")), 0o711)
      assert.strictEqual(mode(path.join(root, "k8", "work")), 0o755)
    }).pipe(Effect.scoped, Effect.provide(NodeFileSystem.layer)))
})
