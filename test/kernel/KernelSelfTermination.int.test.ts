// A kernel that ends on its own (the runner process exits, so the simulated kubelet moves the pod —
// restartPolicy Never — to Succeeded for exit 0 or Failed otherwise) is reported by the watch
// (reconciler) as kernel_terminated(kid, "self-terminated", exit code), as the 19.06 Docker agent
// reports a container that exited by itself, and its objects, scratch dir and registry entry go.
// The exit is caused from inside the kernel: code sent to the runner signals its parent (the runner).
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { inject } from "vitest"
import { KernelLifecycle } from "../../src/kernel/KernelLifecycle.ts"
import { KernelTable } from "../../src/kernel/KernelTable.ts"
import { RunnerConnections } from "../../src/kernel/runner/RunnerConnections.ts"
import type { TestbedEnv } from "../testbed/env.ts"
import { eventually, kernelObjects, lifecycleLayer, makeSite, pythonConfig, takeEvent } from "./KernelLifecycleSupport.ts"

/** `kubectl get pod -w`: "<phase> <exit code>" lines of the pod's statuses, collected until the scope closes. */
const watchPod = (ns: string, name: string) =>
  Effect.gen(function*() {
    const seen: Array<string> = []
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        spawn(env.kubectl, [
          "--kubeconfig", env.kubeconfig, "-n", ns, "get", "pod", name, "-w", "-o",
          "jsonpath={.status.phase} {.status.containerStatuses[0].state.terminated.exitCode}{\"\\n\"}"
        ], { stdio: ["ignore", "pipe", "inherit"] })
      ),
      (c) => Effect.sync(() => c.kill("SIGTERM"))
    )
    child.stdout.on("data", (chunk: Buffer) => seen.push(chunk.toString()))
    // the watch is established once it printed the pod's current (Running) status
    yield* eventually(Effect.sync(() => seen.join("")), (s) => s.includes("Running"), 30)
    return seen
  })

const env: TestbedEnv = inject("testbed")
const T = { timeout: 180_000 }

/**
 * Creates a kernel, makes its runner die by `signal` (sent by code running in the kernel), then
 * requires the pod's phase and exit code as the kubelet reported them and the agent's event.
 */
const endsOnItsOwn = (signal: "SIGTERM" | "SIGKILL", phase: "Succeeded" | "Failed", exitCode: number) =>
  Effect.gen(function*() {
    const site = yield* makeSite(env)
    const kid = crypto.randomUUID()
    yield* Effect.gen(function*() {
      const lifecycle = yield* KernelLifecycle
      yield* lifecycle.create(kid, pythonConfig(env))
      // the observer: every status of the pod as the kubelet writes it (kubectl's watch)
      const seen = yield* watchPod(site.kubeNs, `kernel-${kid}`)
      const conn = yield* (yield* RunnerConnections).get(kid)
      // the runner (the testbed's, like the 19.06 runner) runs user code as its child process
      yield* conn.send("code", `import os, signal\nos.kill(os.getppid(), signal.${signal})\n`)
      const term = yield* takeEvent(site, "kernel_terminated", kid)
      assert.deepStrictEqual(term.args, [kid, "self-terminated", exitCode])
      // the exit code's oracle is the pod status the kubelet wrote (the agent deletes the pod after)
      const statuses = yield* eventually(Effect.sync(() => seen.join("")), (s) => s.includes(`${phase} ${exitCode}\n`), 30)
      assert.include(statuses, `${phase} ${exitCode}\n`)
      const left = yield* eventually(kernelObjects(env, site.kubeNs, kid), (xs) => xs.length === 0)
      assert.deepStrictEqual(left, [])
      assert.isFalse(fs.existsSync(path.join(site.scratchRoot, kid)))
      assert.isFalse((yield* (yield* KernelTable).list).some((k) => k.kernelId === kid))
    }).pipe(Effect.provide(lifecycleLayer(site, { withReconciler: true })))
  }).pipe(Effect.scoped)

describe("a kernel that ends on its own", () => {
  it.live("runner exits 0 → pod Succeeded → kernel_terminated(self-terminated, 0)", () => endsOnItsOwn("SIGTERM", "Succeeded", 0), T)
  it.live("runner killed (SIGKILL) → pod Failed, exit 137 → kernel_terminated(self-terminated, 137)", () => endsOnItsOwn("SIGKILL", "Failed", 137), T)
})
