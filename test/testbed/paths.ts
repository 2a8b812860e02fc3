// Well-known locations of the testbed: repository root, Kubernetes binaries, state dirs.
import * as path from "node:path"
import { fileURLToPath } from "node:url"

export const testbedDir = path.dirname(fileURLToPath(import.meta.url))
export const repoRoot = path.resolve(testbedDir, "../..")
export const k8sCacheDir = process.env.K8S_CACHE ?? "/var/cache/k8s-testbed"
export const k8sBinDir = path.join(k8sCacheDir, "bin")
export const kubectlPath = path.join(k8sBinDir, "kubectl")
export const stateRoot = path.join(repoRoot, ".testbed")

/** State dir of a named testbed instance (`dev` for the developer's one). */
export const stateDirOf = (name: string): string => path.join(stateRoot, name)
export const envFileOf = (stateDir: string): string => path.join(stateDir, "env.json")
