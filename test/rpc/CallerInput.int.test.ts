// Caller input at the RPC edge, end to end (issue 13 "Caller input"): the agent's real RPC socket over
// the lifecycle stack on the testbed (real kube-apiserver, simulated kubelet, etcd). Kernel ids that are
// not UUIDs and traversal mounts are refused before anything is made: kubectl (the observer) sees no
// object, and canary directories next to the scratch root and under volumes/_mount survive.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { inject } from "vitest"
import { AgentShutdown } from "../../src/kernel/AgentShutdown.ts"
import { KernelExecution } from "../../src/kernel/KernelExecution.ts"
import { KernelFiles } from "../../src/kernel/KernelFiles.ts"
import { Etcd } from "../../src/manager/Etcd.ts"
import { AgentRpcHandlers } from "../../src/rpc/AgentRpcs.ts"
import { AiozmqClient, AiozmqRemoteError } from "../../src/rpc/aiozmq/AiozmqClient.ts"
import { AiozmqServer } from "../../src/rpc/aiozmq/AiozmqServer.ts"
import { HealthHandlers } from "../../src/rpc/handlers/Health.ts"
import { KernelHandlers } from "../../src/rpc/handlers/Kernel.ts"
import { RunnerHandlers } from "../../src/rpc/handlers/Runner.ts"
import { labelledObjects, lifecycleLayer, makeSite, pythonConfig, type Site } from "../kernel/KernelLifecycleSupport.ts"
import type { TestbedEnv } from "../testbed/env.ts"

const env: TestbedEnv = inject("testbed")

/** The agent's RPC side on a free port over the lifecycle stack of `site` (every service kept in the context). */
const agentLayer = (site: Site) => {
  const Core = lifecycleLayer(site)
  const Services = Layer.mergeAll(KernelExecution.layer, KernelFiles.layer, AgentShutdown.layerTest).pipe(Layer.provideMerge(Core))
  const Handlers = AgentRpcHandlers.layer(HealthHandlers, KernelHandlers, RunnerHandlers).pipe(Layer.provideMerge(Services))
  return AiozmqServer.layer({ bind: "tcp://127.0.0.1:*" }).pipe(Layer.provideMerge(Handlers))
}

const remoteError = (exit: Exit.Exit<unknown, unknown>): AiozmqRemoteError => {
  assert.isTrue(Exit.isFailure(exit), "expected the call to fail")
  const reason = Exit.isFailure(exit) ? exit.cause.reasons.find((r) => r._tag === "Fail") : undefined
  const error = reason !== undefined && "error" in reason ? reason.error : undefined
  assert.instanceOf(error, AiozmqRemoteError, String(error))
  return error as AiozmqRemoteError
}

/** A directory with a file in it, removed at the end of the test. */
const canary = (dir: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      fs.mkdirSync(dir, { recursive: true })
      fs.writeFileSync(path.join(dir, "canary.txt"), "still here")
      return dir
    }),
    (d) => Effect.sync(() => fs.rmSync(d, { recursive: true, force: true }))
  )

const intact = (dir: string) => fs.existsSync(path.join(dir, "canary.txt"))

describe("caller input through the agent's RPC socket", () => {
  it.live("non-UUID kernel ids and traversal mounts leave no Kubernetes objects and delete no directories", () =>
    Effect.gen(function*() {
      const site = yield* makeSite(env)
      const context = yield* Layer.build(agentLayer(site))
      const server = yield* AiozmqServer.pipe(Effect.provideContext(context))
      const etcd = yield* Etcd.pipe(Effect.provideContext(context))
      const client = yield* AiozmqClient.make({ connect: server.endpoint, timeout: "90 seconds" })

      // a directory next to the scratch root, named by a kernel-id traversal
      const sibling = yield* canary(`${site.scratchRoot}-canary`)
      const siblingId = `../${path.basename(sibling)}`
      const kid = crypto.randomUUID()
      const mountRoot = (yield* etcd.get("volumes/_mount")) ?? ""
      assert.isTrue(path.isAbsolute(mountRoot), `volumes/_mount is ${mountRoot}`)

      // every call first; the damage is observed before the replies are judged
      const outcomes: Array<readonly [string, string, Exit.Exit<unknown, unknown>]> = []
      const call = (label: string, expected: string, method: string, args: ReadonlyArray<unknown>) =>
        Effect.exit(client.call(method, args)).pipe(Effect.map((exit) => void outcomes.push([`${method} ${label}`, expected, exit])))
      for (const bad of [siblingId, "..", ".", "", `${crypto.randomUUID()}/../..`, "KERNEL-1", crypto.randomUUID().toUpperCase()]) {
        const label = JSON.stringify(bad)
        yield* call(label, "aiozmq.rpc.base.ParametersError", "create_kernel", [bad, pythonConfig(env)])
        yield* call(label, "aiozmq.rpc.base.ParametersError", "restart_kernel", [bad, pythonConfig(env)])
        yield* call(label, "aiozmq.rpc.base.ParametersError", "destroy_kernel", [bad, "user-requested"])
        yield* call(label, "aiozmq.rpc.base.ParametersError", "upload_file", [bad, "x.txt", new Uint8Array([1])])
      }
      // traversal mounts and loader variables: refused in the config, before anything is made
      for (const mount of [["d", "..", "..", "rw"], ["d", "local", "../../..", "rw"], ["d", "local/../..", "x", "ro"], ["d", "local", "f00d", "rwx"]]) {
        yield* call(JSON.stringify(mount), "ai.backend.agent.exception.InvalidKernelConfig", "create_kernel", [kid, pythonConfig(env, { mounts: [mount] })])
      }
      yield* call("LD_PRELOAD", "ai.backend.agent.exception.InvalidKernelConfig", "create_kernel", [kid, pythonConfig(env, { environ: { LD_PRELOAD: "/tmp/x.so" } })])
      // an _fsprefix in etcd that climbs out of volumes/_mount: refused before any object
      yield* etcd.put("volumes/_fsprefix", "../../..")
      yield* call("_fsprefix ../../..", "ai.backend.agent.exception.KernelCreationFailed", "create_kernel", [kid, pythonConfig(env, { mounts: [["d", "local", "f00d", "rw"]] })])

      // the observer: nothing in the namespace, nothing in the scratch root, the canary intact
      assert.deepStrictEqual(yield* labelledObjects(env, site.kubeNs), [])
      assert.isTrue(intact(sibling), "the canary next to the scratch root survived")
      assert.deepStrictEqual(fs.readdirSync(site.scratchRoot), [])
      // and each call got the typed refusal
      for (const [what, expected, exit] of outcomes) {
        assert.strictEqual(remoteError(exit).excType, expected, what)
      }
      const climbing = remoteError(outcomes[outcomes.length - 1]![2])
      assert.match(String(climbing.args[2]), /would not stay under volumes\/_mount/)
    }).pipe(Effect.scoped), 300_000)
})
