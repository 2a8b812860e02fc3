// The krunner volume of the real node, laid out as K1's agent leaves it (contract in the task
// brief; spec §7.3/§7.4), as a hostPath the agent's pod spec mounts:
//
//   <root>/backendai-krunner.<distro>/     the krunner env, mounted at /opt/backend.ai: a venv over the
//       pyvenv.cfg                          image's /usr/bin/python3 (`home = /usr/bin`, system site-packages on),
//       bin/python -> /usr/bin/python3      lib/python<X.Y>/site-packages/ai/backend/{kernel,helpers} EMPTY,
//       lib/python3.11/site-packages/…      as the 19.06 krunner ships them
//   <root>/kernel/   the runner package (ai/backend/kernel of backend.ai-agent 19.06, from ../shared/upstream)
//   <root>/helpers/  ai/backend/helpers
//   <root>/entrypoint.sh                    the 19.06 container entrypoint (runner/entrypoint.sh)
//   <root>/su-exec.<distro>.bin             su-exec.c (static)
//   <root>/libbaihook.<distro>.x86_64.so    libbaihook.c
// The pod mounts subPath `kernel` / `helpers` read-only at
// /opt/backend.ai/lib/python<X.Y>/site-packages/ai/backend/{kernel,helpers}.
import * as fs from "node:fs"
import * as path from "node:path"
import { repoRoot } from "../paths.ts"
import type { BuiltImages } from "./images.ts"

/** The real 19.06 runner (third-party test-bed component, see ../shared/upstream/…/README.md). */
export const upstreamRunnerSrc = process.env.BAI_UPSTREAM_RUNNER
  ?? path.resolve(repoRoot, "../shared/upstream/backend.ai-kernel-runner-19.06/src")

/** Python of the kernel images (Debian 12's), = config `kubernetes.krunner-volume.python-version`. */
export const KRUNNER_PYTHON_VERSION = "3.11"

export const buildKrunnerDir = (root: string, built: BuiltImages, distros: ReadonlyArray<string>): void => {
  const pkg = path.join(upstreamRunnerSrc, "ai", "backend")
  if (!fs.existsSync(path.join(pkg, "kernel", "__main__.py"))) {
    throw new Error(`testbed: the real 19.06 runner is missing (${pkg}/kernel); real-node mode needs ../shared/upstream or BAI_UPSTREAM_RUNNER`)
  }
  fs.rmSync(root, { recursive: true, force: true })
  fs.mkdirSync(root, { recursive: true })
  const copyTree = (from: string, to: string) => fs.cpSync(from, to, { recursive: true, filter: (s) => !s.includes("__pycache__") })
  copyTree(path.join(pkg, "kernel"), path.join(root, "kernel"))
  copyTree(path.join(pkg, "helpers"), path.join(root, "helpers"))
  fs.copyFileSync(path.join(pkg, "runner", "entrypoint.sh"), path.join(root, "entrypoint.sh"))
  for (const distro of new Set(distros)) {
    const env = path.join(root, `backendai-krunner.${distro}`)
    fs.mkdirSync(path.join(env, "bin"), { recursive: true })
    fs.writeFileSync(path.join(env, "pyvenv.cfg"), `home = /usr/bin\ninclude-system-site-packages = true\nversion = ${KRUNNER_PYTHON_VERSION}\n`)
    fs.symlinkSync("/usr/bin/python3", path.join(env, "bin", "python"))
    for (const sub of ["kernel", "helpers"]) {
      fs.mkdirSync(path.join(env, "lib", `python${KRUNNER_PYTHON_VERSION}`, "site-packages", "ai", "backend", sub), { recursive: true })
    }
    fs.copyFileSync(built.suExec, path.join(root, `su-exec.${distro}.bin`))
    fs.chmodSync(path.join(root, `su-exec.${distro}.bin`), 0o755)
    fs.copyFileSync(built.libbaihook, path.join(root, `libbaihook.${distro}.x86_64.so`))
  }
}
