/**
 * The layer map of src/ (docs/architecture.md draws it) and the checks test/architecture/Layers.test.ts
 * runs over it. Pure: the test hands in file texts, this module answers with violations.
 *
 * A file may import files of its own layer or of a layer below it, never above. Inside one layer,
 * the folders (units) must not import each other in a cycle. Layers, bottom first:
 */
import ts from "typescript"

export interface Layer {
  readonly name: string
  /** Path prefixes relative to the repository root: a folder ends with `/`, a file is exact. */
  readonly paths: ReadonlyArray<string>
  /** What belongs here (documentation; docs/architecture.md repeats it). */
  readonly holds: string
}

export const LAYERS: ReadonlyArray<Layer> = [
  {
    name: "domain",
    paths: ["src/domain/", "src/version.ts"],
    holds: "values and errors the agent is about: errors the manager sees, units, kernel results, the clock"
  },
  {
    name: "codec",
    paths: ["src/codec/"],
    holds: "bytes <-> values: Python-semantics msgpack and its Schemas, the 26.x BAI msgpack/pickle"
  },
  {
    name: "spec",
    paths: ["src/spec/"],
    holds: "what the manager asks a kernel to be: the create_kernel config and its slot decimals"
  },
  {
    name: "platform",
    paths: ["src/config/", "src/observability/"],
    holds: "the agent's own config, metrics, logging, readiness, pid file, teardown"
  },
  {
    name: "adapters",
    paths: ["src/kube/", "src/manager/", "src/images/", "src/stats/", "src/rpc/", "src/http/"],
    holds: "one folder per outside party: Kubernetes, the manager's etcd/Redis/events, the image registry, " +
      "kubelet stats, the RPC wires, the HTTP endpoints"
  },
  {
    name: "kernel",
    paths: ["src/kernel/"],
    holds: "the kernels: create/restart/destroy, the kernel table, runner connections, execution, files"
  },
  {
    name: "app",
    paths: ["src/rpc/handlers/", "src/manager26/", "src/agentctl/", "src/AgentLive.ts"],
    holds: "what the manager calls, bound to the kernel services; the composition of all layers"
  },
  {
    name: "main",
    paths: ["src/main.ts", "src/watcher.ts", "src/agentctl.ts"],
    holds: "entry points: command line, config, runMain"
  }
]

/**
 * Imports the layer order allows but the design does not: the kernel services know no wire (their
 * results are domain/KernelResults.ts; a second contract plugs in without touching them).
 */
export const FORBIDDEN: ReadonlyArray<{ readonly from: string; readonly to: string; readonly why: string }> = [
  { from: "src/kernel/", to: "src/rpc/", why: "the kernel services know no wire: shared types live in src/domain/" }
]

/** Files longer than this need a `// size: <reason>` line among their first lines. */
export const MAX_LINES = 400
/** The marker: `// size: ` and a reason of at least a few words, in the first {@link SIZE_MARKER_WITHIN} lines. */
export const SIZE_MARKER = /^\/\/ size: .{12,}$/
export const SIZE_MARKER_WITHIN = 3

/** The layer of a repository-relative path (longest matching prefix wins), or undefined. */
export const layerOf = (file: string): { readonly index: number; readonly layer: Layer; readonly prefix: string } | undefined => {
  let best: { index: number; layer: Layer; prefix: string } | undefined
  LAYERS.forEach((layer, index) => {
    for (const prefix of layer.paths) {
      const matches = prefix.endsWith("/") ? file.startsWith(prefix) : file === prefix
      if (matches && (best === undefined || prefix.length > best.prefix.length)) best = { index, layer, prefix }
    }
  })
  return best
}

/** Relative imports (static, `export … from`, `import type`, dynamic `import("…")`) of a source text. */
export const relativeImportsOf = (text: string): ReadonlyArray<string> =>
  ts.preProcessFile(text, true, true).importedFiles.map((f) => f.fileName).filter((s) => s.startsWith("./") || s.startsWith("../"))

/** POSIX path resolution without touching the file system. */
export const resolveFrom = (file: string, specifier: string): string => {
  const parts = file.split("/").slice(0, -1)
  for (const seg of specifier.split("/")) {
    if (seg === "..") parts.pop()
    else if (seg !== ".") parts.push(seg)
  }
  return parts.join("/")
}

export interface Violation {
  readonly file: string
  readonly message: string
}

/** Every import of `files` (repository-relative path → text) against the layer order. */
export const layerViolations = (files: ReadonlyMap<string, string>): ReadonlyArray<Violation> => {
  const out: Array<Violation> = []
  // unit = the folder under src/ (or the root file) that owns a file, per layer, for the cycle check
  const unitOf = (file: string, prefix: string): string => prefix.endsWith("/") ? prefix : file
  const edges = new Map<string, Set<string>>()
  for (const [file, text] of files) {
    const from = layerOf(file)
    if (from === undefined) {
      out.push({ file, message: `${file} belongs to no layer: add its folder to LAYERS (test/architecture/LayerMap.ts)` })
      continue
    }
    for (const specifier of relativeImportsOf(text)) {
      const target = resolveFrom(file, specifier)
      if (!target.startsWith("src/")) {
        out.push({ file, message: `${file} imports ${specifier}: src/ imports nothing outside src/` })
        continue
      }
      const to = layerOf(target)
      if (to === undefined) continue // reported for the target itself
      for (const rule of FORBIDDEN) {
        if (file.startsWith(rule.from) && target.startsWith(rule.to)) {
          out.push({ file, message: `${file} imports ${specifier}: ${rule.why}` })
        }
      }
      if (to.index > from.index) {
        out.push({
          file,
          message: `${file} (layer ${from.layer.name}) imports ${specifier} (layer ${to.layer.name}): imports point down only — ` +
            LAYERS.map((l) => l.name).join(" ← ")
        })
      } else if (to.index === from.index) {
        const a = unitOf(file, from.prefix)
        const b = unitOf(target, to.prefix)
        if (a !== b) {
          const set = edges.get(a) ?? new Set<string>()
          set.add(b)
          edges.set(a, set)
        }
      }
    }
  }
  // a cycle between the folders of one layer: report each once, with the path round it
  const reported = new Set<string>()
  const visit = (unit: string, pathSoFar: ReadonlyArray<string>) => {
    for (const next of edges.get(unit) ?? []) {
      const at = pathSoFar.indexOf(next)
      if (at >= 0) {
        const cycle = [...pathSoFar.slice(at), next]
        const key = [...cycle.slice(0, -1)].sort().join(" ")
        if (!reported.has(key)) {
          reported.add(key)
          out.push({ file: next, message: `folders of one layer import each other in a cycle: ${cycle.join(" → ")}` })
        }
      } else if (pathSoFar.length < 32) {
        visit(next, [...pathSoFar, next])
      }
    }
  }
  for (const unit of edges.keys()) visit(unit, [unit])
  return out
}

/** Files over {@link MAX_LINES} lines without a `// size:` reason at their top. */
export const sizeViolations = (files: ReadonlyMap<string, string>): ReadonlyArray<Violation> => {
  const out: Array<Violation> = []
  for (const [file, text] of files) {
    const lines = text.split("\n")
    const count = text.endsWith("\n") ? lines.length - 1 : lines.length
    if (count <= MAX_LINES) continue
    if (lines.slice(0, SIZE_MARKER_WITHIN).some((l) => SIZE_MARKER.test(l))) continue
    out.push({
      file,
      message: `${file} has ${count} lines (> ${MAX_LINES}): split it, or say why not in a "// size: <reason>" line at its top`
    })
  }
  return out
}
