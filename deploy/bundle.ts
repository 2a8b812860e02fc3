/**
 * `node deploy/bundle.ts` — the second step of `npm run build` (after `tsc -p tsconfig.build.json`):
 * each entry point (`dist/main.js`, `dist/agentctl.js`, `dist/watcher.js`) is replaced by ONE
 * tree-shaken ES module bundled from its `src/*.ts` with rolldown. Node then loads one file instead of
 * ~1,500 modules (an ESM record, source text and bytecode per module; the whole `effect` barrel;
 * every generated API class of @kubernetes/client-node): the loaded agent drops from ~200 to ~126 MiB
 * RSS (bench/README.md, "memory"). The other files tsc wrote under dist/ stay (tests import
 * dist/version.js; `bench/run.ts import-cost` compares dist/AgentLive.js with the bundle).
 *
 * Left to node_modules (resolved at run time from dist/, so the install keeps node_modules/):
 * - zeromq and msgpackr: native addons (zeromq's prebuilt addon, the optional msgpackr-extract), found
 *   relative to their own package directory;
 * - etcd3 (and @grpc/*, which only it uses): it loads `../proto/rpc.proto` relative to its `__dirname`;
 * - ioredis: reads its own package.json relative to `__dirname` (the CLIENT SETINFO lib-ver); bundling
 *   it saves nothing measurable.
 * JSDoc comments are dropped (they are half of the bundle's text: −14 MiB RSS); names and formatting
 * are kept, so stack traces stay readable (`dist/*.js.map` maps them back to src/).
 */
import * as fs from "node:fs"
import { isBuiltin } from "node:module"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { type Plugin, rolldown } from "rolldown"

const root = fileURLToPath(new URL("..", import.meta.url))
export const ENTRY_POINTS = ["main", "agentctl", "watcher"] as const
/** the packages left to node_modules (test/deploy/bundle.test.ts checks the bundles import nothing else) */
export const EXTERNAL = ["zeromq", "msgpackr", "msgpackr-extract", "etcd3", "@grpc/grpc-js", "@grpc/proto-loader", "ioredis"]

export const isExternal = (id: string): boolean => EXTERNAL.some((p) => id === p || id.startsWith(`${p}/`))

const BUILTIN_PREFIX = "\0builtin:"

/**
 * Node's built-in modules, imported as CommonJS (`process.getBuiltinModule`) instead of an ES `import`.
 *
 * An ES import of a built-in (`import * as http from "node:http"`, and also a default or named import)
 * makes Node build the module's namespace from ALL of its exports, which runs every lazy getter on
 * them: `http.WebSocket` / `CloseEvent` / `MessageEvent` load Node's own copy of undici (745 KB of
 * source) with the web streams, worker_threads, perf_hooks and assert; `fs.promises` loads
 * fs/promises and the REPL history; `crypto.webcrypto` / `subtle` load WebCrypto — none of which the
 * idle agent uses. Each such import becomes a CommonJS module that IS the built-in's `module.exports`
 * (what `require` returns: no getter runs); rolldown's interop reads each property on use, so a lazy
 * export (`NFS.promises` in effect's file system) still loads what it guards when, and only if, it is
 * read. node:module stays an ES import: rolldown's own runtime imports `createRequire` from it (through
 * this plugin it would depend on itself and be split into a chunk of its own), and its namespace loads
 * nothing.
 */
export const builtinsAsCommonJs = (): Plugin => ({
  name: "builtins-as-commonjs",
  // node:module stays an ES import: rolldown's runtime takes `createRequire` from it (and its namespace loads nothing)
  resolveId: (id) =>
    isBuiltin(id) && id !== "node:module" && id !== "module" ? { id: `${BUILTIN_PREFIX}${id.startsWith("node:") ? id : `node:${id}`}`, moduleSideEffects: false } : null,
  load: (id) =>
    id.startsWith(BUILTIN_PREFIX)
      ? `module.exports = process.getBuiltinModule(${JSON.stringify(id.slice(BUILTIN_PREFIX.length))})`
      : null
})

/** bundles src/<name>.ts into <outDir>/<name>.js (bench/import-cost.ts bundles src/AgentLive.ts the same way) */
export const bundleOne = async (name: string, outDir: string): Promise<void> => {
  const bundle = await rolldown({
    cwd: root,
    input: { [name]: path.join(root, "src", `${name}.ts`) },
    platform: "node",
    external: isExternal,
    plugins: [builtinsAsCommonJs()],
    treeshake: true,
    logLevel: "warn"
  })
  const out = await bundle.write({
    dir: outDir,
    format: "esm",
    entryFileNames: "[name].js",
    // a dynamic import() in src/ becomes a chunk loaded on first use
    chunkFileNames: "chunks/[name]-[hash].js",
    sourcemap: true,
    comments: { jsdoc: false, legal: false, annotation: true },
    // non-ASCII characters escaped: V8 keeps a Latin-1 source as one byte per character, anything else
    // (one "…" in a message suffices) as two: −4.7 MiB of heap for the 4.7 MB main.js
    charset: "ascii"
  })
  await bundle.close()
  const entry = out.output.find((c) => c.type === "chunk" && c.isEntry)
  if (entry === undefined) throw new Error(`bundle: no entry chunk for src/${name}.ts`)
  const modules = out.output.reduce((n, c) => n + (c.type === "chunk" ? Object.keys(c.modules).length : 0), 0)
  const size = fs.statSync(path.join(outDir, entry.fileName)).size
  console.log(`bundle: ${path.relative(root, path.join(outDir, entry.fileName))} (${(size / 2 ** 20).toFixed(1)} MiB, ${modules} modules, ${out.output.length - 1} other files)`)
}

if (import.meta.main) {
  for (const name of ENTRY_POINTS) await bundleOne(name, path.join(root, "dist"))
}
