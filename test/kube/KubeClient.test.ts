import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Option, Stream } from "effect"
import * as fs from "node:fs"
import * as http from "node:http"
import * as os from "node:os"
import * as path from "node:path"
import { KubeClient } from "../../src/kube/KubeClient.ts"

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
