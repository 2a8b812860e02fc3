// vitest globalSetup of the `interop` project: the same testbed as globalSetup.ts, but the simulated
// kubelet runs the REAL Backend.AI 19.06 kernel runner for python kernels (realRunner.ts, sandbox.py).
// Fails with a clear message when the runner (../shared) or its Debian packages are missing.
import type { TestProject } from "vitest/node"
import { setupTestbed } from "./globalSetup.ts"
import { realRunnerOptions } from "./realRunner.ts"

export default function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  const realRunner = realRunnerOptions()
  return setupTestbed(project, { realRunner }, (env) => {
    if (env.realRunner === undefined) {
      throw new Error("BAI_TESTBED_REUSE names a testbed with the simulated runner only; start one with `npm run testbed -- up --real-runner`")
    }
  })
}
