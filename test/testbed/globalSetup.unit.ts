// vitest globalSetup of the `unit` project: installs the Debian packages unit tests call (nix-bin
// for test/deploy) on first use, like the testbed does for its daemons. Fast when present.
import { spawnSync } from "node:child_process"
import * as path from "node:path"
import { testbedDir } from "./paths.ts"

export default function setup(): void {
  const r = spawnSync("bash", [path.join(testbedDir, "prereqs.sh"), "unit"], { encoding: "utf8", stdio: ["ignore", "inherit", "pipe"] })
  if (r.status !== 0) throw new Error(r.stderr.trim() || `prereqs.sh unit failed with exit code ${r.status}`)
}
