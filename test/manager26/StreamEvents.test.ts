/**
 * The stream publisher's own logic with an in-memory RedisShape (the Redis side is proven by the
 * interop e2e): XADD arguments as the manager reads them, order kept across failed XADDs (retried,
 * never dropped), agent_started after the first heartbeat, events queued at shutdown flushed,
 * suppress_events honoured.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Scope } from "effect"
import { AgentEvents, type AgentInfo, EventPublisher } from "../../src/manager/EventPublisher.ts"
import { RedisError, type RedisShape } from "../../src/manager/Redis.ts"
import * as Bai from "../../src/codec/bai/BaiMsgpack.ts"
import { Sessions } from "../../src/manager26/Sessions.ts"
import { StreamEvents } from "../../src/manager26/StreamEvents.ts"

const info: AgentInfo = {
  ip: "10.0.0.5",
  region: "local",
  addr: "tcp://10.0.0.5:6001",
  resource_slots: { cpu: ["count", "4"], mem: ["bytes", "8589934592"] },
  version: "0.1.0",
  compute_plugins: {},
  images: new Uint8Array(),
  scaling_group: "default"
}

const fakeRedis = (failFirst: number) => {
  const added: Array<ReadonlyArray<unknown>> = []
  let failures = failFirst
  const redis: RedisShape = {
    command: (name, ...args) =>
      Effect.suspend(() => {
        if (name !== "XADD") return Effect.succeed(null)
        if (failures > 0) {
          failures--
          return Effect.fail(new RedisError({ reason: "Unavailable", operation: "XADD", message: "down" }))
        }
        added.push(args)
        return Effect.succeed(Buffer.from("1-0"))
      }),
    pipeline: () => Effect.succeed([]),
    setManyEx: () => Effect.void,
    getBuffer: () => Effect.succeed(undefined),
    set: () => Effect.void,
    status: Effect.succeed("ready")
  }
  return { redis, added }
}

const names = (added: Array<ReadonlyArray<unknown>>) => added.map((a) => String(a[6]))

describe("StreamEvents", () => {
  it.live("XADD events MAXLEN ~ 128 * name … source … args …; order kept through Redis failures; flush at close", () =>
    Effect.gen(function*() {
      const { added, redis } = fakeRedis(2)
      const scope = yield* Scope.make()
      const ctx = yield* Layer.buildWithScope(StreamEvents.layer({ agentId: "i-a", redis }).pipe(Layer.provideMerge(Sessions.layer)), scope)
      const publisher = Context.get(ctx, EventPublisher)
      const sessions = Context.get(ctx, Sessions)
      yield* sessions.record("k1", "s1")
      yield* publisher.publish(AgentEvents.instanceStarted())
      yield* publisher.publish(AgentEvents.instanceHeartbeat(info))
      yield* publisher.publish(AgentEvents.kernelTerminated("k1", "user-requested", 0))
      yield* sessions.record("k2", "s2")
      yield* sessions.suppressEvents("k2")
      yield* publisher.publish(AgentEvents.kernelTerminated("k2", "user-requested", 0))
      yield* publisher.publish(AgentEvents.instanceTerminated("shutdown"))
      // wait (bounded) until the writer got past the failures, or close and let the flush do it
      yield* Effect.gen(function*() {
        while (added.length < 4) yield* Effect.yieldNow
      }).pipe(Effect.timeoutOption("10 seconds"))
      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(names(added), ["agent_heartbeat", "agent_started", "kernel_terminated", "agent_terminated"])
      const first = added[0]!
      assert.deepStrictEqual(first.slice(0, 9).map(String), ["events", "MAXLEN", "~", "128", "*", "name", "agent_heartbeat", "source", "i-a"])
      assert.strictEqual(first[9], "args")
      const hb = Bai.decode(first[10] as Buffer) as Array<Record<string, unknown>>
      assert.strictEqual((hb[0]!["available_resource_slots"] as Bai.ExtValue).code, 8)
      assert.deepStrictEqual(Bai.decode(added[2]![10] as Buffer), ["k1", "s1", "user-requested", 0])
      assert.deepStrictEqual(Bai.decode(added[3]![10] as Buffer), ["shutdown"])
    }))

  it.live("publishDurable: kernel_terminated is written through Redis failures (no queue to drop it); the hand-off completes once XADD took it; one write per key", () =>
    Effect.gen(function*() {
      const { added, redis } = fakeRedis(3)
      const scope = yield* Scope.make()
      const ctx = yield* Layer.buildWithScope(StreamEvents.layer({ agentId: "i-a", redis, queueCapacity: 1 }).pipe(Layer.provideMerge(Sessions.layer)), scope)
      const publisher = Context.get(ctx, EventPublisher)
      const sessions = Context.get(ctx, Sessions)
      yield* sessions.record("k1", "s1")
      const handedOff = yield* publisher.publishDurable("k1", AgentEvents.kernelTerminated("k1", "force-terminated", null))
      const again = yield* publisher.publishDurable("k1", AgentEvents.kernelTerminated("k1", "force-terminated", null))
      yield* Effect.all([handedOff, again]).pipe(Effect.timeout("20 seconds"))
      assert.strictEqual(yield* publisher.pendingDurable, 0)
      const terminated = added.filter((a) => String(a[6]) === "kernel_terminated")
      assert.strictEqual(terminated.length, 1)
      assert.deepStrictEqual(Bai.decode(terminated[0]![10] as Buffer), ["k1", "s1", "force-terminated", null])
      yield* Scope.close(scope, Exit.void)
    }))
})
