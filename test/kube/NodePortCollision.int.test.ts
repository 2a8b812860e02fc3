// NodePort collision against the real kube-apiserver: NodePorts taken outside the agent (a Service
// created with kubectl) make the agent's create fail with 422 "provided port is already allocated";
// the agent marks them foreign, picks others and the create succeeds.
//
// The layout makes the first attempt collide for sure: container.port-range is 4 ports [a, a+3], the
// foreign Service holds a and a+2, the kernel needs 2 (no service ports). Any 2 consecutive ports of
// the range (the agent's pick: a random start, then the next ones) include a or a+2, so only the retry
// can end with the free pair {a+1, a+3}.
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { spawn } from "node:child_process"
import { inject } from "vitest"
import { KernelLifecycle } from "../../src/kernel/KernelLifecycle.ts"
import { NodePorts } from "../../src/kube/NodePorts.ts"
import type { TestbedEnv } from "../testbed/env.ts"
import { kubectlJson, lifecycleLayer, makeSite, pythonConfig, takeEvent } from "../kernel/KernelLifecycleSupport.ts"

const env: TestbedEnv = inject("testbed")

describe("NodePort collision", () => {
  it.live("NodePorts taken outside the agent → 422 → the agent picks other ports and the create succeeds", () =>
    Effect.gen(function*() {
      const base = yield* makeSite(env)
      // above the agents' default range (30000–31000) and random, so parallel runs rarely meet
      const a = 31100 + 4 * Math.floor(Math.random() * 390)
      const site = { ...base, toml: base.toml.replace("[container]\n", `[container]\nport-range = [${a}, ${a + 3}]\n`) }
      // the foreign Service (not labelled as the agent's); its ports must really be allocated
      const foreign = `foreign-${a}`
      const manifest = JSON.stringify({
        apiVersion: "v1",
        kind: "Service",
        metadata: { name: foreign, namespace: site.kubeNs },
        spec: { type: "NodePort", selector: { app: "none" }, ports: [{ name: "x", port: 80, nodePort: a }, { name: "y", port: 81, nodePort: a + 2 }] }
      })
      yield* createFromStdin(manifest)
      const svc = yield* kubectlJson(env, ["-n", site.kubeNs, "get", "service", foreign])
      assert.deepStrictEqual(svc.spec.ports.map((p: { nodePort: number }) => p.nodePort), [a, a + 2])

      const kid = crypto.randomUUID()
      yield* Effect.gen(function*() {
        const lifecycle = yield* KernelLifecycle
        const noServices = pythonConfig(env, {
          image: { ...pythonConfig(env).image, labels: { ...pythonConfig(env).image.labels, "ai.backend.service-ports": "" } }
        })
        const result = yield* lifecycle.create(kid, noServices)
        assert.deepStrictEqual([result.repl_in_port, result.repl_out_port].sort(), [a + 1, a + 3])
        const kernelSvc = yield* kubectlJson(env, ["-n", site.kubeNs, "get", "service", `kernel-${kid}`])
        assert.deepStrictEqual(
          kernelSvc.spec.ports.map((p: { nodePort: number }) => p.nodePort).sort(),
          [a + 1, a + 3]
        )
        // the agent holds only what it uses; the foreign Service is untouched
        assert.deepStrictEqual([...(yield* (yield* NodePorts).inUse)].sort(), [a + 1, a + 3])
        const after = yield* kubectlJson(env, ["-n", site.kubeNs, "get", "service", foreign])
        assert.deepStrictEqual(after.spec.ports.map((p: { nodePort: number }) => p.nodePort), [a, a + 2])
        // (create itself waited for the runner's status answer through these NodePorts)
        yield* lifecycle.destroy(kid, "user-requested")
        assert.strictEqual((yield* takeEvent(site, "kernel_terminated", kid)).args[1], "user-requested")
      }).pipe(Effect.provide(lifecycleLayer(site)))
    }).pipe(Effect.scoped), { timeout: 180_000 })
})

/** `kubectl create -f -` with the manifest on stdin. */
const createFromStdin = (manifest: string) =>
  Effect.callback<void, Error>((resume) => {
    const child = spawn(env.kubectl, ["--kubeconfig", env.kubeconfig, "create", "-f", "-"], { stdio: ["pipe", "ignore", "pipe"] })
    let err = ""
    child.stderr.on("data", (c: Buffer) => (err += c.toString()))
    child.on("exit", (code) => resume(code === 0 ? Effect.void : Effect.fail(new Error(`kubectl create: ${err}`))))
    child.stdin.end(manifest)
  })
