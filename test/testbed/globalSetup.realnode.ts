// vitest globalSetup of the `realnode` project (*.realnode.test.ts): a testbed with a real node
// (containerd + real kubelet + kube-proxy, real kernel images; `up --real-node`). Root only.
import type { TestProject } from "vitest/node"
import { setupTestbed } from "./globalSetup.ts"

export default function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  return setupTestbed(project, { realNode: true }, (env) => {
    if (env.realNode === undefined) throw new Error("BAI_TESTBED_REUSE names a testbed without a real node; start one with `npm run testbed -- up --real-node`")
  })
}
