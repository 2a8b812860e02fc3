// vitest globalSetup (every project): the whole-process tests run `node dist/main.js` (and
// dist/agentctl.js, dist/watcher.js), so dist/ must be the build of the current src/. `npm test`
// builds first; a bare `vitest run …` gets the same guarantee here: when dist/ is missing, an entry
// point is tsc's output instead of the bundle, or any file under src/ (or the build's tsconfig, the
// bundler's script) is newer than the oldest entry point, `npm run build`'s two steps (`tsc -p
// tsconfig.build.json`, then `node deploy/bundle.ts`) run before any test, and a failing build fails
// the run with its output.
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"

const root = path.join(import.meta.dirname, "..")
const entryPoints = ["main.js", "agentctl.js", "watcher.js"].map((f) => path.join(root, "dist", f))

const newestUnder = (dir: string): number => {
  let newest = 0
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue
    newest = Math.max(newest, fs.statSync(path.join(e.parentPath, e.name)).mtimeMs)
  }
  return newest
}

/** an import of a module of the agent's own (tsc's output); the bundle imports packages, `node:` and its `./chunks/` */
const RELATIVE_IMPORT = /^(?:import|export)\b[^;]*?\bfrom\s*"\.\.?\/(?!chunks\/)/m

/** Why dist/ is not the current build, or undefined when it is. */
export const staleReason = (): string | undefined => {
  const missing = entryPoints.find((f) => !fs.existsSync(f))
  if (missing !== undefined) return `${path.relative(root, missing)} is missing`
  const unbundled = entryPoints.find((f) => RELATIVE_IMPORT.test(fs.readFileSync(f, "utf8")))
  if (unbundled !== undefined) return `${path.relative(root, unbundled)} is tsc's output, not the bundle`
  const built = Math.min(...entryPoints.map((f) => fs.statSync(f).mtimeMs))
  const sources = Math.max(
    newestUnder(path.join(root, "src")),
    ...["tsconfig.json", "tsconfig.build.json", "deploy/bundle.ts"].map((f) => fs.statSync(path.join(root, f)).mtimeMs)
  )
  return sources > built ? "src/ changed after the last build" : undefined
}

export default function setup(): void {
  const why = staleReason()
  if (why === undefined) return
  console.log(`[currentBuild] ${why}: running tsc -p tsconfig.build.json && node deploy/bundle.ts`)
  try {
    execFileSync(path.join(root, "node_modules", ".bin", "tsc"), ["-p", "tsconfig.build.json"], { cwd: root, stdio: "pipe" })
    execFileSync(process.execPath, [path.join(root, "deploy", "bundle.ts")], { cwd: root, stdio: "pipe" })
  } catch (e) {
    const out = e as { stdout?: Buffer; stderr?: Buffer }
    throw new Error(
      `dist/ is not the current build (${why}) and \`npm run build\` failed:\n${out.stdout?.toString() ?? ""}${out.stderr?.toString() ?? ""}`
    )
  }
  // the bundler rewrites the entry points, but touch them anyway so a build that emitted nothing new
  // still counts as current
  const now = new Date()
  for (const f of entryPoints) fs.utimesSync(f, now, now)
  const still = staleReason()
  if (still !== undefined) throw new Error(`dist/ is still not the current build after tsc: ${still}`)
}
