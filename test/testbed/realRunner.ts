// Where the real Backend.AI 19.06 kernel runner comes from (../shared/upstream/backend.ai-kernel-runner-19.06,
// a third-party component used like a Debian package, never part of this repository) and what it needs.
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { repoRoot, testbedDir } from "./paths.ts"

/** Debian's interpreter: the runner needs the python3-* packages, not a pyenv/virtualenv python. */
export const realRunnerPython = "/usr/bin/python3"

/** The runner's source tree: BAI_RUNNER_SRC, else ../shared/upstream/… next to the repository. */
export const realRunnerSrc = (): string =>
  process.env.BAI_RUNNER_SRC ?? path.resolve(repoRoot, "../shared/upstream/backend.ai-kernel-runner-19.06/src")

/** Checks the runner tree and installs its Debian packages when missing (prereqs.sh --real-runner);
 *  throws an Error that says what is missing and how to get it. */
export const realRunnerOptions = (log: (line: string) => void = console.log): { src: string; python: string } => {
  const src = realRunnerSrc()
  if (!fs.existsSync(path.join(src, "ai", "backend", "kernel", "__main__.py"))) {
    throw new Error(
      `the real Backend.AI 19.06 kernel runner is not at ${src} (ai/backend/kernel/__main__.py missing). ` +
        "Put the shared reference tree at ../shared next to the repository " +
        "(../shared/upstream/backend.ai-kernel-runner-19.06/src) or set BAI_RUNNER_SRC to the runner's src " +
        "directory. `npm test` (unit + integration) does not need it; `npm run test:interop` does."
    )
  }
  const r = spawnSync("bash", [path.join(testbedDir, "prereqs.sh"), "--real-runner"], { encoding: "utf8" })
  for (const l of r.stdout.split("\n")) if (l !== "") log(l)
  if (r.status !== 0) throw new Error(`real runner prerequisites: ${r.stderr.trim() || `prereqs.sh exited ${r.status}`}`)
  return { src, python: realRunnerPython }
}
