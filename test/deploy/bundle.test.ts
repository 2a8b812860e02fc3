/**
 * The shipped entry points are the bundles of deploy/bundle.ts (test/currentBuild.ts builds them):
 * each is one file that imports only Node's built-ins, the packages deliberately left to
 * node_modules (`EXTERNAL`: native addons and packages that read files next to themselves), optional
 * packages that ws and debug try in a try/catch, and its own `./chunks/` — not the ~1,500 modules of
 * tsc's output — and it runs.
 */
import { assert, describe, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import { builtinModules } from "node:module"
import * as path from "node:path"
import { ENTRY_POINTS, isExternal } from "../../deploy/bundle.ts"

/** `require`d by ws and debug inside a try/catch, absent from node_modules: the fallback is taken, as without the bundle */
const OPTIONAL = new Set(["bufferutil", "utf-8-validate", "supports-color"])
const SPECIFIER = /^(?:import|export)\b[^;]*?\bfrom\s*"([^"]+)"|^import\s*"([^"]+)"|\bimport\(\s*"([^"]+)"\s*\)|\b__require\(\s*"([^"]+)"\s*\)/gm

const specifiersOf = (file: string): ReadonlyArray<string> =>
  [...fs.readFileSync(file, "utf8").matchAll(SPECIFIER)].map((m) => m[1] ?? m[2] ?? m[3] ?? m[4]!)

const isBuiltin = (s: string) => s.startsWith("node:") || builtinModules.includes(s) || builtinModules.includes(s.split("/")[0]!)

describe("the bundled entry points", () => {
  for (const name of ENTRY_POINTS) {
    const file = path.resolve("dist", `${name}.js`)

    it(`dist/${name}.js imports only built-ins, the external packages and its own chunks`, () => {
      const specifiers = specifiersOf(file)
      assert.isAbove(specifiers.length, 0)
      const unexpected = specifiers.filter((s) =>
        !isBuiltin(s) && !isExternal(s) && !OPTIONAL.has(s) && !s.startsWith("./chunks/")
      )
      assert.deepStrictEqual([...new Set(unexpected)], [], `dist/${name}.js imports modules outside the bundle`)
      for (const s of specifiers.filter((x) => x.startsWith("./chunks/"))) {
        assert.isTrue(fs.existsSync(path.join(path.dirname(file), s)), `dist/${name}.js: missing chunk ${s}`)
      }
    })

    it(`node dist/${name}.js does not run the lazy getters of Node's built-ins (no Node-bundled undici loaded)`, () => {
      // an ES import of node:http builds its namespace from every export, and `http.WebSocket`'s getter
      // loads Node's own undici (deploy/bundle.ts, builtinsAsCommonJs); the bundle's built-ins are CommonJS
      const listLoaded = `data:text/javascript,process.on("exit", () => process._rawDebug("LOADED " + JSON.stringify(process.moduleLoadList)))`
      const r = spawnSync(process.execPath, ["--import", listLoaded, file, "--help"], { encoding: "utf8", timeout: 120_000 })
      assert.strictEqual(r.status, 0, r.stderr)
      const line = r.stderr.split("\n").find((l) => l.startsWith("LOADED "))
      assert.isDefined(line, r.stderr)
      const loaded: ReadonlyArray<string> = JSON.parse(line!.slice("LOADED ".length))
      assert.include(loaded, "NativeModule net", "the probe sees the built-ins the bundle loads")
      assert.notInclude(loaded, "NativeModule internal/deps/undici/undici")
    })

    it(`node dist/${name}.js --help runs`, () => {
      const r = spawnSync(process.execPath, [file, "--help"], { encoding: "utf8", timeout: 120_000 })
      assert.strictEqual(r.status, 0, r.stderr)
      assert.include(r.stdout, "USAGE")
    })
  }
})
