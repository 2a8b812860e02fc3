// The architecture as a test (issue 15, "done when"): every import in src/ points down the layer order
// of test/architecture/LayerMap.ts (drawn in docs/architecture.md), the folders of one layer do not
// import each other in a cycle, and no src/ file grows past ~400 lines without a `// size:` reason at
// its top. The checker is pure; its own cases below show it names the offending import.
import { assert, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"
import { LAYERS, layerOf, layerViolations, MAX_LINES, sizeViolations } from "./LayerMap.ts"

const root = path.join(import.meta.dirname, "..", "..")

const srcFiles = (): ReadonlyMap<string, string> => {
  const out = new Map<string, string>()
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
      const rel = `${dir}/${entry.name}`
      if (entry.isDirectory()) walk(rel)
      else if (entry.name.endsWith(".ts")) out.set(rel, fs.readFileSync(path.join(root, rel), "utf8"))
    }
  }
  walk("src")
  return out
}

const messages = (vs: ReadonlyArray<{ readonly message: string }>) => vs.map((v) => v.message)

describe("the layers of src/", () => {
  it("every import points down the layer order, and every file has a layer", () => {
    const files = srcFiles()
    assert.isAbove(files.size, 40)
    assert.deepStrictEqual(messages(layerViolations(files)), [])
  })

  it("every layer holds at least one file (the map describes the tree, not a wish)", () => {
    const files = [...srcFiles().keys()]
    for (const layer of LAYERS) {
      assert.isTrue(files.some((f) => layerOf(f)?.layer === layer), `layer ${layer.name} (${layer.paths.join(", ")}) holds no file`)
    }
  })

  it(`no file over ${MAX_LINES} lines without a "// size:" reason at its top`, () => {
    assert.deepStrictEqual(messages(sizeViolations(srcFiles())), [])
  })
})

describe("the checker", () => {
  it("names an import against the order, static, type-only or dynamic", () => {
    const files = new Map([
      ["src/domain/A.ts", `import { K } from "../kernel/K.ts"\n`],
      ["src/codec/B.ts", `import type { X } from "../kube/X.ts"\n`],
      ["src/kube/C.ts", `export const f = () => import("../kernel/K.ts")\n`],
      ["src/kernel/K.ts", `import { A } from "../domain/A.ts"\nexport { y } from "../AgentLive.ts"\n`],
      ["src/kube/X.ts", ""],
      ["src/AgentLive.ts", ""]
    ])
    const ms = messages(layerViolations(files))
    assert.strictEqual(ms.length, 4, ms.join("\n"))
    assert.include(ms[0], "src/domain/A.ts (layer domain) imports ../kernel/K.ts (layer kernel)")
    assert.include(ms[1], "src/codec/B.ts (layer codec) imports ../kube/X.ts (layer adapters)")
    assert.include(ms[2], "src/kube/C.ts (layer adapters) imports ../kernel/K.ts (layer kernel)")
    assert.include(ms[3], "src/kernel/K.ts (layer kernel) imports ../AgentLive.ts (layer app)")
  })

  it("lets a file import its own layer and the layers below", () => {
    const files = new Map([
      ["src/main.ts", `import "./AgentLive.ts"\nimport { V } from "./version.ts"\n`],
      ["src/AgentLive.ts", `import { K } from "./kernel/K.ts"\nimport { H } from "./rpc/handlers/H.ts"\n`],
      ["src/rpc/handlers/H.ts", `import { K } from "../../kernel/K.ts"\nimport { S } from "../aiozmq/S.ts"\n`],
      ["src/rpc/aiozmq/S.ts", `import { M } from "../../codec/M.ts"\nimport { C } from "../../config/C.ts"\n`],
      ["src/kernel/K.ts", `import { X } from "../kube/X.ts"\nimport { Q } from "./Q.ts"\n`],
      ["src/kernel/Q.ts", ""],
      ["src/kube/X.ts", `import { Spec } from "../spec/Spec.ts"\n`],
      ["src/spec/Spec.ts", `import { M } from "../codec/M.ts"\n`],
      ["src/config/C.ts", `import { U } from "../domain/U.ts"\n`],
      ["src/codec/M.ts", `import { U } from "../domain/U.ts"\n`],
      ["src/domain/U.ts", `import { Effect } from "effect"\n`],
      ["src/version.ts", ""]
    ])
    assert.deepStrictEqual(messages(layerViolations(files)), [])
  })

  it("names an import the order allows but the design forbids (kernel → rpc)", () => {
    const ms = messages(layerViolations(new Map([
      ["src/kernel/Execute.ts", `import type { ExecuteResult } from "../rpc/AgentRpcs.ts"\n`],
      ["src/rpc/AgentRpcs.ts", ""]
    ])))
    assert.deepStrictEqual(ms, [
      "src/kernel/Execute.ts imports ../rpc/AgentRpcs.ts: the kernel services know no wire: shared types live in src/domain/"
    ])
  })

  it("the longest prefix decides: rpc/handlers is app, the rest of rpc/ an adapter", () => {
    assert.strictEqual(layerOf("src/rpc/handlers/Kernel.ts")?.layer.name, "app")
    assert.strictEqual(layerOf("src/rpc/aiozmq/AiozmqServer.ts")?.layer.name, "adapters")
    const ms = messages(layerViolations(new Map([
      ["src/rpc/aiozmq/S.ts", `import { H } from "../handlers/H.ts"\n`],
      ["src/rpc/handlers/H.ts", ""]
    ])))
    assert.strictEqual(ms.length, 1)
    assert.include(ms[0], "src/rpc/aiozmq/S.ts (layer adapters) imports ../handlers/H.ts (layer app)")
  })

  it("reports a cycle between folders of one layer, and a file outside every layer", () => {
    const ms = messages(layerViolations(new Map([
      ["src/kube/A.ts", `import { B } from "../stats/B.ts"\n`],
      ["src/stats/B.ts", `import { C } from "../manager/C.ts"\n`],
      ["src/manager/C.ts", `import { A } from "../kube/A.ts"\n`],
      ["src/registry/Old.ts", ""],
      ["src/domain/D.ts", `import { T } from "../../test/T.ts"\n`]
    ])))
    assert.strictEqual(ms.length, 3, ms.join("\n"))
    assert.include(ms.join("\n"), "src/registry/Old.ts belongs to no layer")
    assert.include(ms.join("\n"), "src/domain/D.ts imports ../../test/T.ts: src/ imports nothing outside src/")
    assert.include(ms.join("\n"), "folders of one layer import each other in a cycle: src/kube/ → src/stats/ → src/manager/ → src/kube/")
  })

  it("wants a reason at the top of a long file", () => {
    const long = (head: string) => `${head}\n${"x\n".repeat(MAX_LINES)}`
    const ms = messages(sizeViolations(new Map([
      ["src/a/Reasoned.ts", long("// size: one state machine, its transitions read best together")],
      ["src/a/Bare.ts", long("/** a module */")],
      ["src/a/Empty.ts", long("// size: ")],
      ["src/a/Short.ts", "x\n".repeat(MAX_LINES)]
    ])))
    assert.deepStrictEqual(ms, [
      `src/a/Bare.ts has ${MAX_LINES + 1} lines (> ${MAX_LINES}): split it, or say why not in a "// size: <reason>" line at its top`,
      `src/a/Empty.ts has ${MAX_LINES + 1} lines (> ${MAX_LINES}): split it, or say why not in a "// size: <reason>" line at its top`
    ])
  })
})
