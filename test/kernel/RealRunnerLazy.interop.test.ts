// Runner sockets opened on first use, against the REAL 19.06 runner (issue 17 goal 2): a restarted
// agent adopts a running kernel without opening its sockets; the kernel's first call after that opens
// them, and its run's output arrives complete from the same interpreter; they stay open for the next
// run and close with the kernel.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer, Scope } from "effect"
import { inject } from "vitest"
import { KernelLifecycle } from "../../src/kernel/KernelLifecycle.ts"
import { RunnerConnections } from "../../src/kernel/runner/RunnerConnections.ts"
import { consoleText, executeToEnd, executionLayer } from "../rpc/RealRunnerSupport.ts"
import type { TestbedEnv } from "../testbed/env.ts"
import { makeSite, pythonConfig } from "./KernelLifecycleSupport.ts"
import { waitFor } from "./RunnerSupport.ts"

const env: TestbedEnv = inject("testbed")

/** Builds the execution stack in its own scope (closed by the caller: agent shutdown). */
const startAgent = (site: Parameters<typeof executionLayer>[0], withReconciler: boolean) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(executionLayer(site, { withReconciler }), scope)
    return { scope, context }
  })

describe("runner sockets opened on first use, with the real runner", () => {
  it.live("an adopted kernel holds no sockets until its first run, whose output then arrives complete", () =>
    Effect.gen(function*() {
      const site = yield* makeSite(env)
      const kid = crypto.randomUUID()
      const lines = (n: number) => Array.from({ length: n }, (_, i) => `line ${i}\n`).join("")
      // agent A creates the kernel (its creation asks the runner: sockets open), leaves state, stops
      const a = yield* startAgent(site, false)
      yield* Effect.gen(function*() {
        yield* (yield* KernelLifecycle).create(kid, pythonConfig(env))
        assert.isTrue(yield* (yield* (yield* RunnerConnections).get(kid)).socketsOpen)
        const r = yield* executeToEnd(kid, "import os\nmarker = 'set by agent A'\npid = os.getpid()")
        assert.strictEqual(r[r.length - 1]!.status, "finished")
      }).pipe(Effect.provide(a.context))
      yield* Scope.close(a.scope, Exit.void)

      // agent B adopts it: a connection, no sockets
      const b = yield* startAgent(site, true)
      yield* Effect.addFinalizer(() => Scope.close(b.scope, Exit.void))
      yield* Effect.gen(function*() {
        const conns = yield* RunnerConnections
        yield* waitFor("the kernel adopted", conns.list, (ids) => ids.includes(kid), "60 seconds")
        const conn = yield* conns.get(kid)
        assert.isFalse(yield* conn.socketsOpen)
        // the first call: same runner process and interpreter, every line
        const first = yield* executeToEnd(kid, `import os\nprint(marker, pid == os.getpid())\nfor i in range(300):\n    print('line', i)`)
        assert.strictEqual(consoleText(first, "stdout"), `set by agent A True\n${lines(300)}`)
        assert.isTrue(yield* conn.socketsOpen)
        // the same sockets carry the next run
        assert.strictEqual(consoleText(yield* executeToEnd(kid, "for i in range(100):\n    print('line', i, flush=True)"), "stdout"), lines(100))
        assert.isTrue(yield* conn.socketsOpen)
        yield* (yield* KernelLifecycle).destroy(kid, "user-requested")
        assert.isFalse(yield* conn.socketsOpen)
        assert.isFalse((yield* conns.list).includes(kid))
      }).pipe(Effect.provide(b.context))
    }).pipe(Effect.scoped), 240_000)
})
