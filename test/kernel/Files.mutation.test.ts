/**
 * The pure parts of the kernel file RPCs against CPython: `stat.filemode` (golden strings from
 * /usr/bin/python3 3.11, pasted below) and the tar writer read back by CPython's `tarfile`
 * (test/kernel/tar_oracle.py, run live), plus the work-dir path rules.
 */
import { assert, describe, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import { fileMode, podPath, POD_WORK_DIR, relativeInWorkDir, type TarEntry, tarEnd, tarEntry } from "../../src/kernel/KernelFiles.ts"
import { pythonExecutable } from "../interop/python.ts"

// /usr/bin/python3 -c "import stat; print(stat.filemode(m))" for each mode
const FILEMODE: ReadonlyArray<readonly [number, string]> = [
  [0o100644, "-rw-r--r--"],
  [0o40755, "drwxr-xr-x"],
  [0o120777, "lrwxrwxrwx"],
  [0o20666, "crw-rw-rw-"],
  [0o60660, "brw-rw----"],
  [0o10644, "prw-r--r--"],
  [0o140755, "srwxr-xr-x"],
  [0o104755, "-rwsr-xr-x"],
  [0o104644, "-rwSr--r--"],
  [0o102755, "-rwxr-sr-x"],
  [0o102745, "-rwxr-Sr-x"],
  [0o41777, "drwxrwxrwt"],
  [0o41776, "drwxrwxrwT"],
  [0o100000, "----------"],
  [0o107777, "-rwsrwsrwt"],
  [0o100421, "-r---w---x"],
  [0o100124, "---x-w-r--"]
]

interface Member {
  readonly name: string
  readonly type: string
  readonly mode: number
  readonly size: number
  readonly mtime: number
  readonly linkname: string
  readonly uname: string
  readonly gname: string
  readonly uid: number
  readonly gid: number
  readonly data: string | null
  readonly pax: Record<string, string>
}

const oracle = fileURLToPath(new URL("./tar_oracle.py", import.meta.url))

/** What CPython's tarfile makes of `entries` written by the agent. */
const readByPython = (entries: ReadonlyArray<TarEntry>): { readonly members?: ReadonlyArray<Member>; readonly error?: string } => {
  const tar = Buffer.concat([...entries.flatMap((e) => tarEntry(e)), tarEnd])
  assert.strictEqual(tar.length % 512, 0)
  const r = spawnSync(pythonExecutable, [oracle], { input: tar, maxBuffer: 64 * 1024 * 1024 })
  assert.strictEqual(r.status, 0, r.stderr.toString())
  return JSON.parse(r.stdout.toString("utf8"))
}

describe("fileMode prints '?' for a mode without a known file type, as CPython's stat.filemode (_stat)", () => {
  // python3 -c "import stat; print(stat.filemode(0o644), stat.filemode(0o170644))" → ?rw-r--r-- ?rw-r--r--
  it("0o644 → ?rw-r--r--", () => assert.strictEqual(fileMode(0o644), "?rw-r--r--"))
  it("0o170644 → ?rw-r--r--", () => assert.strictEqual(fileMode(0o170644), "?rw-r--r--"))
  it("0o100644 stays -rw-r--r--", () => assert.strictEqual(fileMode(0o100644), "-rw-r--r--"))
})

describe("fileMode is Python's stat.filemode", () => {
  for (const [mode, want] of FILEMODE) {
    it(`${mode.toString(8)} → ${want}`, () => assert.strictEqual(fileMode(mode), want))
  }
})

describe("tar entries read back by CPython's tarfile", () => {
  it("files, directories and symlinks: names, types, modes, sizes, mtimes, data", () => {
    const data = Buffer.from("hello, tar\n".repeat(60)) // 660 bytes: two data blocks
    const got = readByPython([
      { name: "d", type: "dir", mode: 0o40755, mtime: 1700000000 },
      { name: "d/f.txt", type: "file", mode: 0o100640, mtime: 1700000001.9, data },
      { name: "d/empty", type: "file", mode: 0o100600, mtime: 0 },
      { name: "d/block", type: "file", mode: 0o100644, mtime: 5, data: Buffer.alloc(512, 0x61) },
      { name: "d/link", type: "symlink", mode: 0o120777, mtime: 7, linkname: "f.txt" },
      { name: "d/sub/", type: "dir", mode: 0o41777, mtime: -5 }
    ])
    assert.isUndefined(got.error)
    assert.deepStrictEqual(got.members!.map((m) => [m.name, m.type, m.mode, m.size, m.mtime, m.linkname, m.data]), [
      ["d", "5", 0o755, 0, 1700000000, "", null],
      ["d/f.txt", "0", 0o640, 660, 1700000001, "", data.toString("hex")],
      ["d/empty", "0", 0o600, 0, 0, "", ""],
      ["d/block", "0", 0o644, 512, 5, "", "61".repeat(512)],
      ["d/link", "2", 0o777, 0, 7, "f.txt", null],
      ["d/sub", "5", 0o1777, 0, 0, "", null]
    ])
    for (const m of got.members!) {
      assert.strictEqual(m.uname, "work")
      assert.strictEqual(m.gname, "work")
      assert.strictEqual(m.uid, 0)
      assert.strictEqual(m.gid, 0)
    }
  })

  it("names and link targets longer than 100 bytes go in a PAX header (and a cut ustar name)", () => {
    const long = `${"dir/".repeat(30)}file-${"é".repeat(20)}.txt`
    const target = `../${"t".repeat(150)}`
    const got = readByPython([
      { name: long, type: "file", mode: 0o100644, mtime: 1, data: Buffer.from("x") },
      { name: "l", type: "symlink", mode: 0o120777, mtime: 2, linkname: target },
      { name: "x".repeat(100), type: "file", mode: 0o100644, mtime: 3, data: Buffer.from("y") },
      { name: "y".repeat(100), type: "dir", mode: 0o40755, mtime: 4 }
    ])
    assert.isUndefined(got.error)
    const m = got.members!
    assert.deepStrictEqual(m.map((x) => [x.name, x.linkname, x.data]), [
      [long, "", "78"],
      ["l", target, null],
      ["x".repeat(100), "", "79"],
      ["y".repeat(100), "", null]
    ])
    assert.deepStrictEqual(m[0]!.pax, { path: long })
    assert.deepStrictEqual(m[1]!.pax, { linkpath: target })
    assert.deepStrictEqual(m[2]!.pax, {})
    assert.deepStrictEqual(m[3]!.pax, { path: `${"y".repeat(100)}/` })
  })

  it("PAX record lengths count their own digits (a record of 99 vs 100 bytes)", () => {
    // " path=<v>\n" plus the length digits: pick values whose record length crosses 100
    // one archive (one CPython run) with every length from 88 to 96
    const names = Array.from({ length: 9 }, (_, i) => `${"p".repeat(101)}/${"q".repeat(88 + i)}`)
    const got = readByPython(names.map((name) => ({ name, type: "file" as const, mode: 0o100644, mtime: 1, data: Buffer.from("z") })))
    assert.isUndefined(got.error)
    assert.deepStrictEqual(got.members!.map((m) => [m.name, m.pax]), names.map((name) => [name, { path: name }]))
  })

  it("the header checksum is what tarfile computes (a flipped header byte is refused)", () => {
    const [h] = tarEntry({ name: "f", type: "file", mode: 0o100644, mtime: 1 })
    const bad = Buffer.from(h!)
    bad[0] = 0x67
    const r = spawnSync(pythonExecutable, [oracle], { input: Buffer.concat([bad, tarEnd]) })
    const out = JSON.parse(r.stdout.toString("utf8")) as { error?: string; members?: ReadonlyArray<Member> }
    assert.isTrue(out.error !== undefined || out.members!.length === 0)
    // the exact header fields
    assert.strictEqual(h!.subarray(257, 263).toString("latin1"), "ustar\0")
    assert.strictEqual(h!.subarray(263, 265).toString("latin1"), "00")
    assert.strictEqual(h!.subarray(100, 108).toString("latin1"), "0000644\0")
    assert.strictEqual(h!.subarray(124, 136).toString("latin1"), "00000000000\0")
    assert.strictEqual(h!.subarray(136, 148).toString("latin1"), "00000000001\0")
    let sum = 0
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : h![i]!
    assert.strictEqual(h!.subarray(148, 156).toString("latin1"), `${sum.toString(8).padStart(6, "0")}\0 `)
  })

  it("block layout: data padded to 512, no data blocks for empty files, directories get a slash", () => {
    assert.deepStrictEqual(tarEntry({ name: "a", type: "file", mode: 0o644, mtime: 0 }).map((b) => b.length), [512])
    assert.deepStrictEqual(tarEntry({ name: "a", type: "file", mode: 0o644, mtime: 0, data: Buffer.alloc(512) }).map((b) => b.length), [512, 512])
    assert.deepStrictEqual(tarEntry({ name: "a", type: "file", mode: 0o644, mtime: 0, data: Buffer.alloc(513) }).map((b) => b.length), [512, 513, 511])
    assert.deepStrictEqual(tarEntry({ name: "a", type: "dir", mode: 0o755, mtime: 0, data: Buffer.alloc(10) }).map((b) => b.length), [512])
    const [dir] = tarEntry({ name: "a", type: "dir", mode: 0o755, mtime: 0 })
    assert.strictEqual(dir!.subarray(0, 3).toString("latin1"), "a/\0")
    assert.strictEqual(dir!.subarray(156, 157).toString("latin1"), "5")
    assert.strictEqual(tarEnd.length, 1024)
    assert.isTrue(tarEnd.every((b) => b === 0))
  })

  it("raw blocks of a long name: a PAX header named PaxHeader with no link, then a ustar name of the first 100 bytes cut at a character", () => {
    // a reader without PAX support extracts the extended header as a plain file "PaxHeader"; the ustar
    // name it then sees is the path's first 100 bytes, never half a UTF-8 sequence
    const split = `${"a".repeat(99)}é${"z".repeat(20)}` // é takes bytes 99 and 100
    const blocks = tarEntry({ name: split, type: "file", mode: 0o100644, mtime: 0 })
    const [pax, ustar] = [blocks[0], blocks[blocks.length - 1]] // no data: the ustar header comes last
    assert.strictEqual(pax!.subarray(0, 10).toString("latin1"), "PaxHeader\0")
    assert.strictEqual(pax!.subarray(156, 157).toString("latin1"), "x")
    assert.isTrue(pax!.subarray(157, 257).every((b) => b === 0))
    assert.deepStrictEqual(ustar!.subarray(0, 100), Buffer.concat([Buffer.from("a".repeat(99)), Buffer.alloc(1)]))
    // a U+FFFD that is part of the name (readdir decodes invalid bytes to it) stays in the cut name
    const replacement = `\uFFFD${"b".repeat(120)}`
    const cut = tarEntry({ name: replacement, type: "file", mode: 0o100644, mtime: 0 }).at(-1)
    assert.deepStrictEqual(cut!.subarray(0, 100), Buffer.from(`\uFFFD${"b".repeat(97)}`))
  })

  it("a directory's name ends in exactly one slash (given with or without it), and its size field is 0 whatever data it carries", () => {
    // ustar (POSIX.1-1988) names a directory "name/"; size is the byte count of the data that follows (none for a directory)
    for (const name of ["d/sub", "d/sub/"]) {
      const [h] = tarEntry({ name, type: "dir", mode: 0o40755, mtime: 0, data: Buffer.from("ignored") })
      assert.strictEqual(h!.subarray(0, 7).toString("latin1"), "d/sub/\0", name)
      assert.strictEqual(h!.subarray(124, 136).toString("latin1"), "00000000000\0", name)
    }
    const [link] = tarEntry({ name: "l", type: "symlink", mode: 0o120777, mtime: 0, linkname: "t", data: Buffer.from("x") })
    assert.strictEqual(link!.subarray(124, 136).toString("latin1"), "00000000000\0")
  })
})

describe("work-dir paths", () => {
  it("relative paths and absolute paths under /home/work", () => {
    const cases: ReadonlyArray<readonly [string, string | undefined]> = [
      ["", ""],
      [".", ""],
      ["a", "a"],
      ["a/", "a"],
      ["a//b/", "a/b"],
      ["./a/../b", "b"],
      ["/home/work", ""],
      ["/home/work/", ""],
      ["/home/work/x/y", "x/y"],
      ["/home/work//x", "x"],
      ["/home/work/../work/z", "z"],
      ["/home/workx", undefined],
      ["/home/work/..", undefined],
      ["/etc/passwd", undefined],
      ["..", undefined],
      ["../x", undefined],
      ["a/../../x", undefined],
      ["a\0b", undefined],
      ["/", undefined]
    ]
    for (const [input, want] of cases) assert.strictEqual(relativeInWorkDir(input), want, JSON.stringify(input))
  })

  it("podPath", () => {
    assert.strictEqual(POD_WORK_DIR, "/home/work")
    assert.strictEqual(podPath(""), "/home/work")
    assert.strictEqual(podPath("a/b"), "/home/work/a/b")
  })
})
