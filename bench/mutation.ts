/**
 * `npm run test:mutation` (docs/mutation.md): Stryker over the pure cores, one group of mutated files
 * at a time with only the unit tests of that group (the vitest runner runs every included test file for
 * every mutant, so small groups are what keeps a run possible on a 2-core machine), then the per-file
 * table of bench/mutation-table.ts. Each group keeps its own incremental file under .stryker/.
 *
 * Usage: node bench/mutation.ts [group…]   (default: every group)
 * MUTATION_CONCURRENCY=n overrides stryker.config.json's concurrency (1 on a machine shared with others),
 * MUTATION_TIMEOUT_MS=n its timeoutMS (the allowance over a mutant run's expected time).
 */
import { spawnSync } from "node:child_process"
import { copyFileSync, existsSync, mkdirSync } from "node:fs"

interface Group {
  readonly name: string
  readonly mutate: ReadonlyArray<string>
  /** Pre-existing unit tests that import the mutated files, then the new *.mutation tests. */
  readonly tests: ReadonlyArray<string>
}

export const GROUPS: ReadonlyArray<Group> = [
  {
    name: "frames",
    mutate: ["src/rpc/aiozmq/Frames.ts", "src/codec/PySchema.ts"],
    tests: ["test/codec/Msgpack.test.ts", "test/rpc/Frames.mutation.test.ts", "test/codec/PySchema.mutation.test.ts"]
  },
  {
    name: "statformat",
    mutate: ["src/stats/StatFormat.ts"],
    tests: ["test/stats/StatFormat.test.ts", "test/stats/StatFormat.mutation.test.ts"]
  },
  {
    name: "noderesources",
    mutate: ["src/kube/NodeResources.ts:1-291"],
    tests: ["test/kube/NodeResources.test.ts", "test/kube/NodeResources.mutation.test.ts"]
  },
  {
    name: "kernelobjects",
    mutate: ["src/kube/KernelObjects.ts"],
    tests: ["test/kube/KernelObjects.test.ts", "test/kube/KernelObjects.mutation.test.ts"]
  },
  {
    name: "kernelconfig",
    mutate: ["src/spec/KernelConfig.ts"],
    tests: ["test/spec/KernelConfig.test.ts", "test/spec/SlotDecimal.test.ts", "test/spec/KernelConfig.mutation.test.ts"]
  },
  {
    name: "slotdecimal",
    mutate: ["src/spec/SlotDecimal.ts"],
    tests: ["test/spec/SlotDecimal.test.ts", "test/spec/KernelConfig.test.ts", "test/spec/KernelConfig.mutation.test.ts"]
  },
  {
    name: "files",
    mutate: ["src/kernel/KernelFiles.ts:1-166"],
    tests: ["test/kernel/Files.test.ts", "test/kernel/Files.mutation.test.ts"]
  },
  {
    name: "runqueue",
    mutate: ["src/kernel/runner/RunQueue.ts"],
    tests: ["test/kernel/RunQueue.test.ts", "test/kernel/RunQueue.mutation.test.ts"]
  },
  {
    name: "msgpack",
    mutate: ["src/codec/Msgpack.ts"],
    // MsgpackDialect.mutation and Codec.test cover the manager-26 dialect paths (ext types, int/UUID map keys,
    // unique keys, re-entrant encode): 95 mutants had no coverage without them
    tests: ["test/codec/Msgpack.test.ts", "test/codec/Msgpack.mutation.test.ts", "test/codec/MsgpackDialect.mutation.test.ts", "test/manager26/Codec.test.ts"]
  }
]

const wanted = process.argv.slice(2)
const groups = wanted.length === 0 ? GROUPS : GROUPS.filter((g) => wanted.includes(g.name))
if (groups.length === 0) {
  console.error(`unknown group; one of: ${GROUPS.map((g) => g.name).join(", ")}`)
  process.exit(2)
}
mkdirSync(".stryker", { recursive: true })
const reports: Array<string> = []
for (const g of groups) {
  console.log(`\n== ${g.name}: ${g.mutate.join(", ")}`)
  const r = spawnSync(
    "stryker",
    [
      "run",
      "--mutate",
      g.mutate.join(","),
      "--incrementalFile",
      `.stryker/incremental-${g.name}.json`,
      ...(process.env.MUTATION_CONCURRENCY !== undefined ? ["--concurrency", process.env.MUTATION_CONCURRENCY] : []),
      ...(process.env.MUTATION_TIMEOUT_MS !== undefined ? ["--timeoutMS", process.env.MUTATION_TIMEOUT_MS] : [])
    ],
    { stdio: "inherit", env: { ...process.env, MUTATION_TESTS: g.tests.join(",") } }
  )
  if (r.status !== 0) {
    console.error(`stryker failed for group ${g.name} (exit ${r.status})`)
    process.exit(1)
  }
  copyFileSync(".stryker/mutation.json", `.stryker/mutation-${g.name}.json`)
  reports.push(`.stryker/mutation-${g.name}.json`)
}
const all = GROUPS.map((g) => `.stryker/mutation-${g.name}.json`).filter((f) => existsSync(f))
const t = spawnSync(process.execPath, ["bench/mutation-table.ts", ...all], { stdio: "inherit" })
process.exit(t.status ?? 1)
