import { defineConfig } from "vitest/config"

// Two projects: `unit` runs without external servers; `integration` (files named *.int.test.ts)
// gets one shared testbed (real etcd, Redis, registry, kube-apiserver, simulated kubelet) from
// test/testbed/globalSetup.ts, started once per run and torn down at the end, also on failure.
export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 180_000,
    maxWorkers: 2,
    projects: [
      {
        extends: true,
        test: {
          name: "unit",
          include: ["test/**/*.test.ts"],
          exclude: ["test/**/*.int.test.ts", "test/**/*.interop.test.ts", "test/**/*.realnode.test.ts", "**/node_modules/**"]
        }
      },
      {
        extends: true,
        test: {
          name: "integration",
          include: ["test/**/*.int.test.ts"],
          globalSetup: ["test/testbed/globalSetup.ts"]
        }
      },
      {
        extends: true,
        // tests that need ../shared/upstream (the real 19.06 runner, callosum 1.0.3); `.ci/run` runs them
        test: {
          name: "interop",
          include: ["test/**/*.interop.test.ts"],
          globalSetup: ["test/testbed/globalSetup.ts"]
        }
      }
    ]
  }
})
