// vitest globalSetup of the `realnode` project (*.realnode.test.ts): a testbed with a real node
// (containerd + real kubelet + kube-proxy, real kernel images; `up --real-node`). Root only.
import type { TestProject } from "vitest/node"
import { setupTestbed } from "./globalSetup.ts"

export default function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  return setupTestbed(project, true)
}
