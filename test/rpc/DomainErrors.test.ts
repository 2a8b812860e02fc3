import { assert, describe, it } from "@effect/vitest"
import { kubernetesFailure } from "../../src/domain/Errors.ts"

describe("kubernetesFailure", () => {
  it("tells refused credentials (an operator must act) from an unavailable API server", () => {
    const forbidden = kubernetesFailure({ reason: "Forbidden", operation: "read pod log", message: "pods \"x\" is forbidden" })
    assert.strictEqual(forbidden._tag, "KubernetesForbidden")
    assert.strictEqual(forbidden.python.name, "ai.backend.agent.exception.KubernetesForbidden")
    assert.deepStrictEqual(forbidden.python.args, ["read pod log", "pods \"x\" is forbidden"])
    assert.strictEqual(kubernetesFailure({ reason: "Unauthorized", operation: "o", message: "m" })._tag, "KubernetesForbidden")
    for (const reason of ["Unavailable", "Timeout", "Other"]) {
      assert.strictEqual(kubernetesFailure({ reason, operation: "o", message: "m" })._tag, "KubernetesUnavailable")
    }
  })
})
