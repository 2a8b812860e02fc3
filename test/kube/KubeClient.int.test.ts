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
import { compactEtcdNow, k8sEtcdUrl } from "./CachelessApiserver.ts"

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

/** The test's ConfigMaps (the namespace also gets the controller-manager's kube-root-ca.crt, at some point). */
const LISTED = { "bai-test/listed": "true" }
const listedOnly = "bai-test/listed=true"

/** A fresh namespace with `n` ConfigMaps, removed with the scope. */
const namespaceWithConfigMaps = (kube: KubeClient["Service"], n: number) =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const namespace = `list-${crypto.randomUUID().slice(0, 8)}`
      yield* kube.core("create namespace", (api) => api.createNamespace({ body: { metadata: { name: namespace } } }))
      for (let i = 0; i < n; i++) {
        yield* kube.core("create configmap", (api) =>
          api.createNamespacedConfigMap({ namespace, body: { metadata: { name: `cm-${i}`, labels: LISTED }, data: { i: String(i) } } }))
      }
      return namespace
    }),
    (namespace) => kube.core("delete namespace", (api) => api.deleteNamespace({ name: namespace })).pipe(Effect.ignore)
  )

describe("KubeClient.list on the testbed", () => {
  it.live("a list comes in pages, all of it, from the first page's snapshot; one page in flight for the client; each page kept as it arrives", () =>
    Effect.gen(function*() {
      const kube = yield* KubeClient.make({ kubeconfig: env.kubeconfig, requestTimeoutSeconds: 10, listPageSize: 2 })
      const namespace = yield* namespaceWithConfigMaps(kube, 5)
      const log: Array<string> = []
      let inFlight = 0
      let maxInFlight = 0
      const pageCalls: Array<{ readonly list: string; readonly limit: number; readonly cont: boolean }> = []
      const listOf = (name: string) =>
        kube.list(
          `list configmaps ${name}`,
          async (api, page) => {
            pageCalls.push({ list: name, limit: page.limit, cont: page._continue !== undefined })
            // an object made after the first page is not in this list (the snapshot of its first page)
            if (name === "a" && page._continue !== undefined && !log.includes("made")) {
              log.push("made")
              await api.createNamespacedConfigMap({ namespace, body: { metadata: { name: "cm-late", labels: LISTED } } })
            }
            log.push(`${name} page ${pageCalls.filter((c) => c.list === name).length}`)
            inFlight++
            maxInFlight = Math.max(maxInFlight, inFlight)
            try {
              return await api.listNamespacedConfigMap({ namespace, labelSelector: listedOnly, ...page })
            } finally {
              inFlight--
            }
          },
          (cm) => {
            log.push(`${name} kept ${cm.metadata?.name}`)
            return cm.metadata?.name ?? ""
          }
        )
      const [a, b] = yield* Effect.all([listOf("a"), listOf("b")], { concurrency: 2 })
      const five = ["cm-0", "cm-1", "cm-2", "cm-3", "cm-4"]
      assert.deepStrictEqual([...a.items].sort(), five)
      assert.isDefined(a.resourceVersion)
      // b's first page may come after cm-late was made
      assert.includeMembers([...b.items], five)
      assert.strictEqual(maxInFlight, 1, log.join(", "))
      assert.deepStrictEqual(pageCalls.filter((c) => c.list === "a").map((c) => [c.limit, c.cont]), [[2, false], [2, true], [2, true]])
      // page 1's objects were kept before page 2 was asked for
      assert.isBelow(log.indexOf("a kept cm-1"), log.indexOf("a page 2"), log.join(", "))
    }).pipe(Effect.scoped), 60_000)

  it.live("a continue token whose snapshot was compacted away (410) starts the list again", () =>
    Effect.gen(function*() {
      const kube = yield* KubeClient.make({ kubeconfig: env.kubeconfig, requestTimeoutSeconds: 10, listPageSize: 2 })
      const namespace = yield* namespaceWithConfigMaps(kube, 3)
      const calls: Array<string> = []
      let compacted = false
      const listed = yield* kube.list("list configmaps", async (api, page) => {
        calls.push(page._continue === undefined ? "first" : "continue")
        if (page._continue !== undefined && !compacted) {
          compacted = true
          // the history moves past the first page's version, and is compacted up to now
          await api.createNamespacedConfigMap({ namespace, body: { metadata: { name: "cm-late", labels: LISTED } } })
          await compactEtcdNow(k8sEtcdUrl(env))
        }
        return api.listNamespacedConfigMap({ namespace, labelSelector: listedOnly, ...page })
      }, (cm) => cm.metadata?.name ?? "")
      // the server answered the continued page 410; the list began again (once) and is whole (with a
      // label selector the server may answer a page short, so how many pages follow is its business)
      assert.deepStrictEqual(calls.slice(0, 3), ["first", "continue", "first"], calls.join(", "))
      assert.strictEqual(calls.filter((c) => c === "first").length, 2, calls.join(", "))
      assert.deepStrictEqual([...listed.items].sort(), ["cm-0", "cm-1", "cm-2", "cm-late"])
    }).pipe(Effect.scoped), 60_000)
})
