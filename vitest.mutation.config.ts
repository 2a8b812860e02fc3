import { defineConfig } from "vitest/config"

// The unit tests Stryker runs against each mutant (`npm run test:mutation`, stryker.config.json):
// only the pure-logic unit tests of the mutated files, no testbed, no external servers, 1 worker
// (Stryker runs its own 1–2 test-runner processes on a 2-core machine).
export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    maxWorkers: 1,
    include: [
      "test/rpc/Msgpack.test.ts",
      "test/kube/KernelObjects.test.ts",
      "test/kernel/KernelConfig.test.ts",
      "test/kernel/SlotDecimal.test.ts",
      "test/stats/StatFormat.test.ts",
      "test/kube/NodeResources.test.ts",
      "test/kernel/Files.test.ts",
      "test/kernel/FilesAdversary.test.ts",
      // MUTATION_BASELINE=1: the suite as it was before the *.mutation tests (the "before" column)
      ...(process.env.MUTATION_BASELINE === "1" ? [] : ["test/**/*.mutation.test.ts"])
    ],
    exclude: ["test/**/*.int.test.ts", "test/**/*.interop.test.ts", "**/node_modules/**"]
  }
})
