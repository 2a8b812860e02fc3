import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Layer, Ref, Scope } from "effect"
import { TestClock } from "effect/testing"
import { computeSnapshot, nodeState, NodeResources, NodeResourcesError, reservedAmounts } from "../../src/kube/NodeResources.ts"
import { type AgentEvent, EventPublisher } from "../../src/manager/EventPublisher.ts"
import { Heartbeat } from "../../src/manager/Heartbeat.ts"
import { type ImageEntry, ImageRegistry, unpackImages } from "../../src/images/ImageRegistry.ts"
import { Registration } from "../../src/manager/Registration.ts"

const snapshot = computeSnapshot(
  [nodeState({
    metadata: { name: "n1" },
    status: { allocatable: { cpu: "4", memory: "1Gi" }, conditions: [{ type: "Ready", status: "True" }] }
  })!],
  [],
  reservedAmounts({ "reserved-cpu": 0, "reserved-mem": 0 })
)

/** Heartbeat's dependencies: events recorded in `sink`, resources healthy while `healthy`, running once `running`. */
const harness = (healthyAtFirst: boolean, images: ReadonlyArray<ImageEntry>) =>
  Effect.gen(function*() {
    const sink: Array<AgentEvent> = []
    const running = yield* Deferred.make<void>()
    const healthy = yield* Ref.make(healthyAtFirst)
    const deps = Layer.mergeAll(
      EventPublisher.layerTest(sink),
      Layer.succeed(NodeResources, NodeResources.of({
        snapshot: Ref.get(healthy).pipe(
          Effect.flatMap((ok) => ok ? Effect.succeed(snapshot) : Effect.fail(new NodeResourcesError({ reason: "NotSynced", message: "x" })))
        ),
        workers: Effect.succeed(snapshot.workers),
        synced: Effect.void
      })),
      ImageRegistry.layerTest(images),
      Layer.succeed(Registration, Registration.of({
        markRunning: Deferred.succeed(running, undefined).pipe(Effect.asVoid),
        awaitRunning: Deferred.await(running),
        asserted: Effect.succeed(undefined)
      }))
    )
    return { sink, running, healthy, deps }
  })

describe("Heartbeat", () => {
  it.effect("instance_heartbeat before instance_started (manager 19.06 refreshes addr/version/slots only on a beat from a non-ALIVE agent), both after running", () =>
    Effect.gen(function*() {
      const { sink, running, healthy, deps } = yield* harness(false, [])
      const scope = yield* Scope.make()
      yield* Heartbeat.make({ interval: "3 seconds", rpcAddr: { host: "10.0.0.1", port: 6001 }, region: "local", scalingGroup: "default" })
        .pipe(Effect.provide(deps), Scope.provide(scope))
      const names = () => sink.map((e) => e.name)
      yield* Deferred.succeed(running, undefined)
      // the first beats fail (resources not synced yet): no instance_started without a beat before it
      yield* TestClock.adjust("6 seconds")
      assert.deepStrictEqual(names(), [])
      yield* Ref.set(healthy, true)
      yield* TestClock.adjust("3 seconds")
      assert.deepStrictEqual(names(), ["instance_heartbeat", "instance_started"])
      yield* TestClock.adjust("3 seconds")
      assert.deepStrictEqual(names(), ["instance_heartbeat", "instance_started", "instance_heartbeat"], "instance_started only once")
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(sink.at(-1), { name: "instance_terminated", args: ["shutdown"] })
    }))

  it.effect("first beat at once after running, then instance_started, one beat per interval, failures counted, terminated on close", () =>
    Effect.gen(function*() {
      const { sink, running, healthy, deps } = yield* harness(true, [{ name: "reg:5000/a/b:1", digest: "sha256:1" }])
      const scope = yield* Scope.make()
      const heartbeat = yield* Heartbeat.make({
        interval: "3 seconds",
        rpcAddr: { host: "10.0.0.1", port: 6001 },
        region: "local",
        scalingGroup: "default"
      }).pipe(Effect.provide(deps), Scope.provide(scope))
      const names = () => sink.map((e) => e.name)

      yield* TestClock.adjust("10 seconds")
      assert.deepStrictEqual(names(), [], "nothing before the RPC server runs")

      yield* Deferred.succeed(running, undefined)
      yield* TestClock.adjust("0 millis")
      assert.deepStrictEqual(names(), ["instance_heartbeat", "instance_started"])
      const info = sink[0]!.args[0] as any
      assert.strictEqual(info.addr, "tcp://10.0.0.1:6001")
      assert.strictEqual(info.scaling_group, "default")
      assert.deepStrictEqual(info.resource_slots, { cpu: ["count", "4"], mem: ["bytes", "1073741824"], "cuda.device": ["count", "0"] })
      assert.deepStrictEqual(unpackImages(info.images), [{ name: "reg:5000/a/b:1", digest: "sha256:1" }])

      yield* TestClock.adjust("3 seconds")
      assert.strictEqual(names().filter((n) => n === "instance_heartbeat").length, 2)

      // a failing beat is skipped and counted; the loop goes on
      yield* Ref.set(healthy, false)
      yield* TestClock.adjust("6 seconds")
      assert.strictEqual(yield* heartbeat.failed, 2)
      assert.strictEqual(names().filter((n) => n === "instance_heartbeat").length, 2)
      yield* Ref.set(healthy, true)
      yield* TestClock.adjust("3 seconds")
      assert.strictEqual(names().filter((n) => n === "instance_heartbeat").length, 3)
      assert.strictEqual(yield* heartbeat.sent, 3)

      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(sink.at(-1), { name: "instance_terminated", args: ["shutdown"] })
    }))
})
