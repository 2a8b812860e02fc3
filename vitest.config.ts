import { defineConfig } from "vitest/config"

// Projects: `unit` runs without external servers; `integration` (files named *.int.test.ts) gets one
// shared testbed (real etcd, Redis, registry, kube-apiserver, simulated kubelet) from
// test/testbed/globalSetup.ts, started once per run and torn down at the end, also on failure;
// `interop` (*.interop.test.ts) gets the same testbed with the REAL 19.06 kernel runner for python
// kernels (test/testbed/globalSetup.interop.ts; needs ../shared, fails with a clear message without it).
// `npm test` runs unit + integration only (a clone without ../shared passes); `npm run test:interop`
// runs interop; `npm run test:realnode` runs `realnode` (*.realnode.test.ts: a testbed with a real node —
// containerd, real kubelet + kube-proxy, real kernel images; root). Run one project per vitest invocation:
// each testbed project starts its own testbed. Every project first makes dist/ the build of the current
// src/ (test/currentBuild.ts): the whole-process tests never run a stale or missing build, and never skip.
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
          exclude: ["test/**/*.int.test.ts", "test/**/*.interop.test.ts", "test/**/*.realnode.test.ts", "**/node_modules/**"],
          globalSetup: ["test/currentBuild.ts", "test/testbed/globalSetup.unit.ts"]
        }
      },
      {
        extends: true,
        test: {
          name: "integration",
          include: ["test/**/*.int.test.ts"],
          globalSetup: ["test/currentBuild.ts", "test/testbed/globalSetup.ts"]
        }
      },
      {
        extends: true,
        test: {
          name: "interop",
          include: ["test/**/*.interop.test.ts"],
          globalSetup: ["test/currentBuild.ts", "test/testbed/globalSetup.interop.ts"]
        }
      },
      {
        // `npm run test:realnode` (root): a testbed with a real node (containerd + kubelet + kube-proxy)
        extends: true,
        test: {
          name: "realnode",
          include: ["test/**/*.realnode.test.ts"],
          globalSetup: ["test/currentBuild.ts", "test/testbed/globalSetup.realnode.ts"],
          hookTimeout: 900_000,
          testTimeout: 180_000,
          fileParallelism: false
        }
      }
    ]
  }
})
