import { defineConfig } from "vitest/config"

// The unit tests Stryker runs against each mutant (`npm run test:mutation`, stryker.config.json):
// only the pure-logic unit tests of the mutated files, no testbed, no external servers, 1 worker
// (Stryker runs its own 1–2 test-runner processes on a 2-core machine).
export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    maxWorkers: 1,
    // mutants are switched at run time (Stryker's global active-mutant id), so the module cache can be
    // kept between runs: re-importing effect for every mutant costs seconds on a loaded machine
    isolate: false,
    // MUTATION_TESTS=a,b: only these test files (a quicker run over some of the mutated files)
    include: process.env.MUTATION_TESTS !== undefined ? process.env.MUTATION_TESTS.split(",") : [
      "test/codec/Msgpack.test.ts",
      "test/kube/KernelObjects.test.ts",
      "test/spec/KernelConfig.test.ts",
      "test/spec/SlotDecimal.test.ts",
      "test/stats/StatFormat.test.ts",
      "test/kube/NodeResources.test.ts",
      "test/kernel/RunQueue.test.ts",
      "test/kernel/RunnerRecords.test.ts",
      // MUTATION_BASELINE=1: the suite as it was before the *.mutation tests (the "before" column)
      ...(process.env.MUTATION_BASELINE === "1" ? [] : ["test/**/*.mutation.test.ts"])
    ],
    // zeromq (the runner connection's socket tests) aborts in worker threads; the pure cores, the run
    // queue included (RunQueue.test, RunnerRecords.test), need no sockets
    exclude: ["test/kernel/RunnerClient.mutation.test.ts", "test/**/*.int.test.ts", "test/**/*.interop.test.ts", "**/node_modules/**"]
  }
})
