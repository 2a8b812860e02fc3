// KubeClient against the testbed's kube-apiserver (TLS, token user): API calls reuse kept-alive
// connections. client-node 2.0 builds a new undici Agent for every request, i.e. a new TCP + TLS
// connection per call (a handshake on both sides on the critical path of every create step).
// Observed independently of the client: undici's diagnostics channel reports every new connection.
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as diagnostics from "node:diagnostics_channel"
import { inject } from "vitest"
import { KubeClient } from "../../src/kube/KubeClient.ts"
import type { TestbedEnv } from "../testbed/env.ts"

const env: TestbedEnv = inject("testbed")

/** Counts the new connections undici opens to the API server while the scope lives. */
const connectionsToApiserver = Effect.acquireRelease(
  Effect.sync(() => {
    const port = new URL(env.apiserver).port
    let count = 0
    const onConnect = (message: unknown) => {
      const params = (message as { connectParams?: { port?: unknown } }).connectParams
      if (String(params?.port) === port) count++
    }
    diagnostics.subscribe("undici:client:connected", onConnect)
    return { count: () => count, onConnect }
  }),
  ({ onConnect }) => Effect.sync(() => diagnostics.unsubscribe("undici:client:connected", onConnect))
)

describe("KubeClient on the testbed", () => {
  it.live("sequential API calls share one kept-alive connection (not a TLS handshake per call)", () =>
    Effect.gen(function*() {
      const kube = yield* KubeClient.make({ kubeconfig: env.kubeconfig, requestTimeoutSeconds: 10 })
      const seen = yield* connectionsToApiserver
      for (let i = 0; i < 10; i++) {
        const list = yield* kube.core("list namespaces", (api) => api.listNamespace())
        assert.isAbove(list.items.length, 0)
      }
      // and the other API groups go through the same pool
      yield* kube.networking("list network policies", (api) => api.listNamespacedNetworkPolicy({ namespace: "default" }))
      assert.strictEqual(seen.count(), 1)
    }).pipe(Effect.scoped), 60_000)
})
