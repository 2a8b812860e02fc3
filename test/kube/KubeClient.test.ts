import { assert, describe, it } from "@effect/vitest"
import * as k8s from "@kubernetes/client-node"
import { Cause, Effect, Exit, Fiber, Option, References, Stream } from "effect"
import * as fs from "node:fs"
import * as http from "node:http"
import * as os from "node:os"
import * as path from "node:path"
import { KubeClient, KubeError, withoutManagedFields } from "../../src/kube/KubeClient.ts"

/** An "API server" that accepts connections and never answers (a paused kube-apiserver). */
const silentServer = Effect.acquireRelease(
  Effect.callback<{ server: http.Server; port: number; requests: () => number }>((resume) => {
    let requests = 0
    const server = http.createServer(() => {
      requests++
    })
    server.listen(0, "127.0.0.1", () =>
      resume(Effect.succeed({ server, port: (server.address() as { port: number }).port, requests: () => requests })))
  }),
  ({ server }) =>
    Effect.callback<void>((resume) => {
      server.closeAllConnections()
      server.close(() => resume(Effect.void))
    })
)

const kubeconfigFor = (port: number): string => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bai-kubeclient-"))
  const file = path.join(dir, "kubeconfig")
  fs.writeFileSync(
    file,
    [
      "apiVersion: v1",
      "kind: Config",
      "clusters:",
      `- name: c\n  cluster:\n    server: http://127.0.0.1:${port}\n    insecure-skip-tls-verify: true`,
      "users:",
      "- name: u\n  user:\n    token: t",
      "contexts:",
      "- name: x\n  context:\n    cluster: c\n    user: u",
      "current-context: x"
    ].join("\n")
  )
  return file
}

describe("KubeClient.watch", () => {
  it.live("a watch whose server never answers can be interrupted at once (no hang on shutdown)", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const { port, requests } = yield* silentServer
        const kube = yield* KubeClient.make({ kubeconfig: kubeconfigFor(port), requestTimeoutSeconds: 5 })
        const fiber = yield* kube.watch("/api/v1/nodes", { timeoutSeconds: 300 }).pipe(Stream.runDrain, Effect.forkChild)
        // wait until the request reached the server (headers never come back)
        while (requests() === 0) yield* Effect.sleep("20 millis")
        // before the fix the interruption waited for the response headers: up to timeoutSeconds + 30 s
        const stopped = yield* Fiber.interrupt(fiber).pipe(Effect.timeoutOption("10 seconds"))
        assert.isTrue(Option.isSome(stopped), "the watch did not stop within 10 s of its interruption")
      })
    ), 30_000)
})

/** An "API server" answering every request with `status` and a Kubernetes Status body (or `body`). */
const scriptedServer = (status: number, body: unknown) =>
  Effect.acquireRelease(
    Effect.callback<{ server: http.Server; port: number }>((resume) => {
      const server = http.createServer((_req, res) => {
        res.writeHead(status, { "content-type": "application/json" })
        res.end(typeof body === "string" ? body : JSON.stringify(body))
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed({ server, port: (server.address() as { port: number }).port })))
    }),
    ({ server }) =>
      Effect.callback<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  )

const statusBody = (code: number, reason: string, message: string) => ({
  kind: "Status",
  apiVersion: "v1",
  metadata: {},
  status: "Failure",
  message,
  reason,
  code
})

/** The KubeError of one `readNamespacedPod` against a server answering `status` with `body`. */
const errorOf = (status: number, body: unknown) =>
  Effect.scoped(
    Effect.gen(function*() {
      const { port } = yield* scriptedServer(status, body)
      const kube = yield* KubeClient.make({ kubeconfig: kubeconfigFor(port), requestTimeoutSeconds: 10 })
      return yield* kube.core("read pod", (api) => api.readNamespacedPod({ name: "p", namespace: "ns" })).pipe(Effect.flip)
    })
  )

describe("KubeClient error mapping (real HTTP answers through the client library)", () => {
  const cases: ReadonlyArray<readonly [number, string, string]> = [
    [404, "NotFound", "NotFound"],
    [409, "AlreadyExists", "AlreadyExists"],
    [409, "Conflict", "Conflict"],
    [410, "Expired", "Gone"],
    [422, "Invalid", "Invalid"],
    [403, "Forbidden", "Forbidden"],
    [401, "Unauthorized", "Unauthorized"],
    [429, "TooManyRequests", "Unavailable"],
    [500, "InternalError", "Unavailable"],
    [503, "ServiceUnavailable", "Unavailable"],
    [504, "Timeout", "Unavailable"],
    [400, "BadRequest", "Other"]
  ]
  for (const [status, serverReason, reason] of cases) {
    it.live(`${status} ${serverReason} → KubeError ${reason}, status and the server's message kept`, () =>
      Effect.gen(function*() {
        const message = `pods "p" says ${serverReason} (${status})`
        const e = yield* errorOf(status, statusBody(status, serverReason, message))
        assert.strictEqual(e._tag, "KubeError")
        assert.strictEqual(e.reason, reason)
        assert.strictEqual(e.status, status)
        assert.strictEqual(e.operation, "read pod")
        // client-node drops the body of a 401 answer ("HTTP-Code: 401 Message: Unauthorized")
        if (status === 401) assert.include(e.message, "401")
        else assert.strictEqual(e.message, message)
      }), 30_000)
  }

  it.live("a 409 without a Status body is a Conflict; a non-JSON body becomes the message", () =>
    Effect.gen(function*() {
      const e = yield* errorOf(409, "upstream said no")
      assert.strictEqual(e.reason, "Conflict")
      assert.strictEqual(e.status, 409)
      assert.include(e.message, "upstream said no")
    }), 30_000)

  it.live("starts, with a warning, on a client-node without the private createDispatcher it wraps (kept-alive connections off)", () =>
    Effect.gen(function*() {
      const proto = k8s.KubeConfig.prototype as unknown as { createDispatcher?: unknown }
      const original = proto.createDispatcher
      assert.isFunction(original, "client-node 2.0.1 has it: this test simulates an upgrade without it")
      yield* Effect.acquireRelease(
        Effect.sync(() => void delete proto.createDispatcher),
        () => Effect.sync(() => void (proto.createDispatcher = original))
      )
      const exit = yield* KubeClient.make({ kubeconfig: kubeconfigFor(1), requestTimeoutSeconds: 1 }).pipe(Effect.exit)
      assert.isTrue(Exit.isSuccess(exit), String(exit))
    }).pipe(Effect.scoped, Effect.provideService(References.MinimumLogLevel, "None")))

  it.live("connection refused → Unavailable without a status", () =>
    Effect.gen(function*() {
      // a port that was just free: nothing listens on it
      const port = yield* Effect.scoped(Effect.map(scriptedServer(200, {}), (s) => s.port))
      const kube = yield* KubeClient.make({ kubeconfig: kubeconfigFor(port), requestTimeoutSeconds: 10 })
      const e = yield* kube.core("read pod", (api) => api.readNamespacedPod({ name: "p", namespace: "ns" })).pipe(Effect.flip)
      assert.strictEqual(e.reason, "Unavailable")
      assert.isUndefined(e.status)
      assert.match(e.message, /ECONNREFUSED/)
    }), 30_000)

  it.live("no answer within the request timeout → Timeout", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const { port } = yield* silentServer
        const kube = yield* KubeClient.make({ kubeconfig: kubeconfigFor(port), requestTimeoutSeconds: 1 })
        const e = yield* kube.core("read pod", (api) => api.readNamespacedPod({ name: "p", namespace: "ns" })).pipe(Effect.flip)
        assert.strictEqual(e.reason, "Timeout")
        assert.strictEqual(e.operation, "read pod")
        assert.isUndefined(e.status)
      })
    ), 30_000)

  it.live("a watch whose stream carries an ERROR event with a 410 Status ends with KubeError Gone", () =>
    Effect.gen(function*() {
      const e = yield* Effect.scoped(
        Effect.gen(function*() {
          // what kube-apiserver sends for a too old resourceVersion: 200, then one ERROR event
          const { port } = yield* scriptedServer(200, `${JSON.stringify({ type: "ERROR", object: statusBody(410, "Expired", "too old resource version: 1 (42)") })}\n`)
          const kube = yield* KubeClient.make({ kubeconfig: kubeconfigFor(port), requestTimeoutSeconds: 10 })
          return yield* kube.watch("/api/v1/pods", { resourceVersion: "1" }).pipe(Stream.runDrain, Effect.flip, Effect.timeout("20 seconds"))
        })
      )
      assert.strictEqual(e.reason, "Gone")
      assert.strictEqual(e.status, 410)
      assert.strictEqual(e.message, "too old resource version: 1 (42)")
    }), 30_000)

  it.live("a watch answered 403 ends with KubeError Forbidden (status kept), not Unavailable", () =>
    Effect.gen(function*() {
      const e = yield* Effect.scoped(
        Effect.gen(function*() {
          const { port } = yield* scriptedServer(403, statusBody(403, "Forbidden", "pods is forbidden"))
          const kube = yield* KubeClient.make({ kubeconfig: kubeconfigFor(port), requestTimeoutSeconds: 10 })
          return yield* kube.watch("/api/v1/pods", {}).pipe(Stream.runDrain, Effect.flip, Effect.timeout("20 seconds"))
        })
      )
      assert.strictEqual(e._tag, "KubeError")
      assert.strictEqual((e as { reason: string }).reason, "Forbidden")
      assert.strictEqual((e as { status?: number }).status, 403)
    }), 30_000)

  it.live("a watch answered 410 Gone ends with KubeError Gone (the caller relists)", () =>
    Effect.gen(function*() {
      const e = yield* Effect.scoped(
        Effect.gen(function*() {
          const { port } = yield* scriptedServer(410, statusBody(410, "Expired", "too old resource version"))
          const kube = yield* KubeClient.make({ kubeconfig: kubeconfigFor(port), requestTimeoutSeconds: 10 })
          return yield* kube.watch("/api/v1/pods", { resourceVersion: "1" }).pipe(Stream.runDrain, Effect.flip, Effect.timeout("20 seconds"))
        })
      )
      assert.strictEqual(e._tag, "KubeError")
      assert.strictEqual((e as { reason: string }).reason, "Gone")
    }), 30_000)
})

describe("withoutManagedFields", () => {
  it("drops metadata.managedFields in place and nothing else; anything without them is left alone", () => {
    const pod = { metadata: { name: "p", labels: { a: "b" }, managedFields: [{ manager: "kubelet" }] }, spec: { nodeName: "n" } }
    const kept = withoutManagedFields(pod)
    assert.strictEqual(kept, pod)
    assert.deepStrictEqual(JSON.parse(JSON.stringify(kept)), { metadata: { name: "p", labels: { a: "b" } }, spec: { nodeName: "n" } })
    for (const other of [null, undefined, "x", 3, {}, { metadata: null }, { metadata: "m" }, { metadata: { name: "q" } }]) {
      assert.deepStrictEqual(withoutManagedFields(other), other)
    }
  })
})

describe("KubeClient.list against a server that never ends its list", () => {
  it.live("the same continue token again is refused with a precise error (no endless loop)", () =>
    Effect.scoped(
      Effect.gen(function*() {
        const { port } = yield* scriptedServer(200, { kind: "ConfigMapList", apiVersion: "v1", metadata: { continue: "again", resourceVersion: "7" }, items: [] })
        const kube = yield* KubeClient.make({ kubeconfig: kubeconfigFor(port), requestTimeoutSeconds: 5 })
        let pages = 0
        const exit = yield* kube.list("list configmaps", (api, page) => {
          pages++
          return api.listNamespacedConfigMap({ namespace: "n", ...page })
        }).pipe(Effect.timeout("10 seconds"), Effect.exit)
        assert.isTrue(Exit.isFailure(exit))
        const error = Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined
        assert.instanceOf(error, KubeError)
        assert.include((error as KubeError).message, "continue token")
        // the first page, then the one that gave the token back
        assert.strictEqual(pages, 2)
      })
    ), 30_000)
})
