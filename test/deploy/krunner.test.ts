// deploy/krunner: assemble.sh builds the krunner volume layout the pod spec mounts (the env with EMPTY
// ai/backend/{kernel,helpers} mount points, the runner package beside it as kernel/ and helpers/), and
// build.sh renders the DaemonSet with the image it built. Synthetic inputs (a tiny env tarball and an
// agent source tree); docker is replaced by `true`.
import { assert, describe, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { krunnerMounts } from "../../src/kube/KernelObjects.ts"

const withTemp = (f: (dir: string) => void) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bai-krunner-"))
  try {
    f(dir)
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

const write = (p: string, text = "", mode = 0o644) => {
  fs.mkdirSync(path.dirname(p), { recursive: true })
  fs.writeFileSync(p, text, { mode })
}

/** A backend.ai-agent 19.06 `src` tree and a krunner env tarball (python 3.6, empty mount points). */
const inputs = (dir: string, opts: { kernelInEnv?: boolean; noRunner?: boolean } = {}) => {
  const src = path.join(dir, "agent-src")
  if (opts.noRunner !== true) write(path.join(src, "ai/backend/kernel/__main__.py"), "print('runner')\n")
  write(path.join(src, "ai/backend/kernel/python/__init__.py"))
  write(path.join(src, "ai/backend/helpers/__init__.py"))
  write(path.join(src, "ai/backend/runner/entrypoint.sh"), "#!/bin/sh\n", 0o755)
  write(path.join(src, "ai/backend/runner/su-exec.ubuntu16.04.bin"), "bin", 0o755)
  write(path.join(src, "ai/backend/runner/libbaihook.ubuntu16.04.x86_64.so"), "so")
  const env = path.join(dir, "env")
  write(path.join(env, "bin/python"), "#!/bin/sh\n", 0o755)
  fs.mkdirSync(path.join(env, "lib/python3.6/site-packages/ai/backend/kernel"), { recursive: true })
  fs.mkdirSync(path.join(env, "lib/python3.6/site-packages/ai/backend/helpers"), { recursive: true })
  write(path.join(env, "lib/python3.6/site-packages/zmq/__init__.py"))
  if (opts.kernelInEnv === true) write(path.join(env, "lib/python3.6/site-packages/ai/backend/kernel/stale.py"))
  const tar = path.join(dir, "krunner-env.ubuntu16.04.x86_64.tar.xz")
  const t = spawnSync("tar", ["-cJf", tar, "-C", env, "."], { encoding: "utf8" })
  assert.strictEqual(t.status, 0, t.stderr)
  return { src, tar }
}

const assemble = (args: ReadonlyArray<string>) => spawnSync("sh", ["deploy/krunner/assemble.sh", ...args], { encoding: "utf8" })

describe("deploy/krunner/assemble.sh", () => {
  it("builds exactly the layout the kernel pod mounts", () =>
    withTemp((dir) => {
      const { src, tar } = inputs(dir)
      const out = path.join(dir, "out")
      const r = assemble(["--agent-src", src, "--krunner-env", tar, "--out", out])
      assert.strictEqual(r.status, 0, r.stderr)
      // every subPath the pod mounts (docker sandbox) exists in the volume
      for (const [, subPath] of krunnerMounts("ubuntu16.04", "x86_64", "3.6", "docker")) {
        assert.isTrue(fs.existsSync(path.join(out, subPath)), subPath)
      }
      assert.isTrue(fs.existsSync(path.join(out, "kernel/__main__.py")))
      assert.isTrue(fs.existsSync(path.join(out, "helpers/__init__.py")))
      // the env's package dirs are empty mount points
      for (const d of ["kernel", "helpers"]) {
        assert.deepStrictEqual(fs.readdirSync(path.join(out, `backendai-krunner.ubuntu16.04/lib/python3.6/site-packages/ai/backend/${d}`)), [])
      }
      assert.match(fs.readFileSync(path.join(out, "VERSION"), "utf8"), /ubuntu16\.04 x86_64 python3\.6/)
      assert.deepStrictEqual(fs.readdirSync(out).filter((n) => n.startsWith(".")), [], "no temporary left")
    }))

  it("refuses inputs that could not run a kernel", () =>
    withTemp((dir) => {
      const noRunner = inputs(path.join(dir, "a"), { noRunner: true })
      const r1 = assemble(["--agent-src", noRunner.src, "--krunner-env", noRunner.tar, "--out", path.join(dir, "o1")])
      assert.strictEqual(r1.status, 1)
      assert.match(r1.stderr, /ai\/backend\/kernel/)
      const stale = inputs(path.join(dir, "b"), { kernelInEnv: true })
      const r2 = assemble(["--agent-src", stale.src, "--krunner-env", stale.tar, "--out", path.join(dir, "o2")])
      assert.strictEqual(r2.status, 1)
      assert.match(r2.stderr, /empty mount point/)
      const ok = inputs(path.join(dir, "c"))
      const r3 = assemble(["--agent-src", ok.src, "--krunner-env", ok.tar, "--python-version", "3.11", "--out", path.join(dir, "o3")])
      assert.strictEqual(r3.status, 1)
      assert.match(r3.stderr, /python3\.11/)
    }))
})

describe("deploy/krunner/build.sh and the DaemonSet", () => {
  it("the DaemonSet names build.sh's default image (no placeholder); build.sh renders it with the image it built", () =>
    withTemp((dir) => {
      const ds = fs.readFileSync("deploy/kubernetes/krunner-daemonset.yaml", "utf8")
      const build = fs.readFileSync("deploy/krunner/build.sh", "utf8")
      const dflt = /^DEFAULT_IMAGE=(\S+)$/m.exec(build)?.[1]
      assert.isString(dflt)
      assert.include(ds, `image: ${dflt}`)
      assert.notMatch(ds, /REGISTRY\/|:VERSION\b|image: <|image: \$/)
      const { src, tar } = inputs(dir)
      const r = spawnSync("sh", ["deploy/krunner/build.sh", "--agent-src", src, "--krunner-env", tar, "--image", "reg.example:5000/bai/krunner:1"], {
        encoding: "utf8",
        env: { ...process.env, DOCKER: "true" }
      })
      try {
        assert.strictEqual(r.status, 0, r.stderr)
        assert.include(r.stdout, "image: reg.example:5000/bai/krunner:1")
        assert.notInclude(r.stdout, `image: ${dflt}`)
        assert.include(r.stdout, "kind: DaemonSet")
      } finally {
        fs.rmSync("deploy/krunner/files", { recursive: true, force: true })
      }
    }))
})
