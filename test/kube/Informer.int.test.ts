// The informer against the testbed's real kube-apiserver (labelled ConfigMaps of a fresh namespace): it
// lists and follows the watch; a watch the server answers with 410 Gone (a second apiserver without
// watch cache, its etcd compacted past the version) makes it relist; and the periodic
// relist repairs what a watch that went blind (silently stopped delivering) missed. The test's seam is
// the KubeClient service: lists and watches reach the real server, and the test wraps `watch` to
// record what the server answered or to blind it.
import { assert, describe, it } from "@effect/vitest"
import { type Duration, Effect, HashMap, Option, Stream } from "effect"
import { inject } from "vitest"
import * as Informer from "../../src/kube/Informer.ts"
import { KubeClient, type KubeClientShape, type KubeError } from "../../src/kube/KubeClient.ts"
import { freshKubeNamespace, type TestbedEnv } from "../testbed/env.ts"
import { cachelessApiserver, compactEtcd } from "./CachelessApiserver.ts"

const env: TestbedEnv = inject("testbed")

const LABEL = "bai-test/informer"

const setup = (kubeconfig = env.kubeconfig) => Effect.gen(function*() {
  const kube = yield* KubeClient.make({ kubeconfig, requestTimeoutSeconds: 20 })
  const namespace = yield* Effect.promise(() => freshKubeNamespace(env, "inf"))
  yield* Effect.addFinalizer(() => kube.core("delete namespace", (api) => api.deleteNamespace({ name: namespace })).pipe(Effect.ignore))
  const create = (name: string) =>
    kube.core("create configmap", (api) => api.createNamespacedConfigMap({ namespace, body: { metadata: { name, labels: { [LABEL]: "yes" } }, data: { k: "v" } } }))
  const remove = (name: string) => kube.core("delete configmap", (api) => api.deleteNamespacedConfigMap({ namespace, name }))
  const options = (relistInterval: Duration.Input) => ({
    kind: "test-configmaps",
    path: `/api/v1/namespaces/${namespace}/configmaps`,
    query: { labelSelector: LABEL },
    list: kube.core("list configmaps", (api) => api.listNamespacedConfigMap({ namespace, labelSelector: LABEL })).pipe(
      Effect.map((l) => ({ items: l.items, resourceVersion: l.metadata?.resourceVersion }))
    ),
    decode: (raw: unknown) => Effect.succeed(raw),
    relistInterval
  })
  return { kube, namespace, create, remove, options }
})

/** Waits (bounded) until the cache satisfies `ok`. */
const until = <A>(informer: Informer.Informer<A>, ok: (m: HashMap.HashMap<string, A>) => boolean, what: string) =>
  informer.changes.pipe(
    Stream.filter(ok),
    Stream.runHead,
    Effect.timeoutOrElse({ duration: "60 seconds", orElse: () => Effect.die(new Error(`informer: never ${what}`)) })
  )

describe("Informer on the testbed", () => {
  it.live("lists, then follows the watch: added, modified and deleted objects, keyed namespace/name", () =>
    Effect.gen(function*() {
      const { create, kube, namespace, options, remove } = yield* setup()
      yield* create("before")
      const informer = yield* Informer.make(options("5 minutes")).pipe(Effect.provideService(KubeClient, kube))
      yield* informer.synced
      assert.isTrue(yield* informer.isSynced)
      assert.isTrue(Option.isSome(yield* informer.get(`${namespace}/before`)))
      yield* create("after")
      yield* until(informer, (m) => HashMap.has(m, `${namespace}/after`), "saw the created ConfigMap")
      yield* remove("before")
      const last = yield* until(informer, (m) => !HashMap.has(m, `${namespace}/before`), "saw the deletion")
      assert.deepStrictEqual([...HashMap.keys(Option.getOrThrow(last))].filter((k) => k.startsWith(namespace)), [`${namespace}/after`])
    }).pipe(Effect.scoped), { timeout: 120_000 })

  it.live("relists when the real server answers the watch with 410 Gone (its version was compacted away)", () =>
    Effect.gen(function*() {
      const cacheless = yield* cachelessApiserver(env)
      const { create, kube, namespace, options, remove } = yield* setup(cacheless.kubeconfig)
      yield* create("ghost")
      const listed = yield* options("5 minutes").list
      assert.strictEqual(listed.items.length, 1)
      // the history moves on and is compacted past the listed version while nobody watches
      yield* remove("ghost")
      yield* create("fresh")
      const compacted = yield* compactEtcd(cacheless.etcd)
      assert.isTrue(compacted > Number(listed.resourceVersion), `${compacted} > ${listed.resourceVersion}`)
      const failures: Array<KubeError> = []
      const recording: KubeClientShape = {
        ...kube,
        watch: <A>(p: string, q: Parameters<KubeClientShape["watch"]>[1]) => kube.watch<A>(p, q).pipe(Stream.tapError((e) => Effect.sync(() => void failures.push(e))))
      }
      const informer = yield* Informer.make({ ...options("5 minutes"), initial: listed }).pipe(Effect.provideService(KubeClient, recording))
      assert.deepStrictEqual([...HashMap.keys(yield* informer.items)], [`${namespace}/ghost`])
      // the watch from the compacted version cannot tell of the deletion: only a relist can
      yield* until(informer, (m) => HashMap.has(m, `${namespace}/fresh`) && !HashMap.has(m, `${namespace}/ghost`), "relisted after 410")
      // the server itself said Gone (the informer's own decision is not the oracle)
      assert.isTrue(failures.some((e) => e.reason === "Gone" && e.status === 410), JSON.stringify(failures))
    }).pipe(Effect.scoped), { timeout: 180_000 })

  it.live("the periodic relist repairs a deletion the watch never delivered (a watch that went silent)", () =>
    Effect.gen(function*() {
      const { create, kube, namespace, options, remove } = yield* setup()
      yield* create("doomed")
      yield* create("survivor")
      let blind = false
      let swallowed = 0
      // blind: events are swallowed and the watch never ends (a server or proxy that went silent)
      const blinding: KubeClientShape = {
        ...kube,
        watch: <A>(p: string, q: Parameters<KubeClientShape["watch"]>[1]) =>
          kube.watch<A>(p, q).pipe(
            Stream.filter(() => {
              if (blind) swallowed++
              return !blind
            }),
            Stream.concat(Stream.suspend(() => (blind ? Stream.never : Stream.empty)))
          )
      }
      const informer = yield* Informer.make(options("3 seconds")).pipe(Effect.provideService(KubeClient, blinding))
      yield* informer.synced
      assert.isTrue(Option.isSome(yield* informer.get(`${namespace}/doomed`)))
      blind = true
      yield* remove("doomed")
      // every watch from now on is blind: only a relist can tell the informer
      yield* until(informer, (m) => !HashMap.has(m, `${namespace}/doomed`), "relisted while the watch was blind")
      yield* Effect.logInfo(`watch events swallowed: ${swallowed}`)
      assert.isTrue(Option.isSome(yield* informer.get(`${namespace}/survivor`)))
    }).pipe(Effect.scoped), { timeout: 120_000 })
})
