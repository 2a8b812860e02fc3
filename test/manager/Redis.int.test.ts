import { assert, describe, it } from "@effect/vitest"
import { Effect, References } from "effect"
import { Redis } from "../../src/manager/Redis.ts"
import { redisServer } from "./RedisServer.ts"

const quiet = Effect.provideService(References.MinimumLogLevel, "None")

describe("Redis", () => {
  it.live("pipelines commands in one round trip and reads bytes back", () =>
    Effect.gen(function*() {
      const server = yield* redisServer
      const redis = yield* Redis.make({ addr: server.addr })
      const value = Buffer.from([0x81, 0xa1, 0x61, 0xc0]) // msgpack {"a": nil}
      const replies = yield* redis.pipeline([["SET", "k1", value, "EX", 30], ["SET", "k2", "v2"], ["TTL", "k1"]])
      assert.deepStrictEqual(replies.slice(0, 2), ["OK", "OK"])
      // TTL answers -1 for a key with no expiry: the expiry must be there, 0 < ttl <= 30
      assert.isAbove(replies[2] as number, 0)
      assert.isAtMost(replies[2] as number, 30)
      assert.deepStrictEqual(yield* redis.getBuffer("k1"), value)
      assert.isUndefined(yield* redis.getBuffer("absent"))
      yield* redis.set("k3", "x", { ttlSeconds: 300 })
      assert.isAbove((yield* redis.command("TTL", "k3")) as number, 290)
      const error = yield* redis.pipeline([["SET", "k4", "1"], ["INCRBY", "k2", "x"]]).pipe(Effect.flip)
      assert.strictEqual(error.reason, "Command")
      assert.strictEqual(yield* redis.status, "ready")
    }))

  it.live("fails fast while Redis is down and works again once it is back, without a new client", () =>
    Effect.gen(function*() {
      const server = yield* redisServer
      const redis = yield* Redis.make({ addr: server.addr, commandTimeoutSeconds: 1 })
      yield* redis.set("before", "1")
      yield* server.kill
      const down = yield* redis.set("during", "1").pipe(Effect.flip)
      assert.strictEqual(down.reason, "Unavailable")
      yield* server.start
      // ioredis reconnects in the background (back-off ≤ 2 s)
      yield* redis.set("after", "1").pipe(Effect.delay("100 millis"), Effect.eventually)
      assert.deepStrictEqual(yield* redis.getBuffer("after"), Buffer.from("1"))
    }).pipe(quiet))

  it.live("starts without Redis and connects when it appears", () =>
    Effect.gen(function*() {
      const server = yield* redisServer
      yield* server.kill
      const redis = yield* Redis.make({ addr: server.addr, connectTimeoutSeconds: 0.2 })
      assert.notStrictEqual(yield* redis.status, "ready")
      yield* server.start
      yield* redis.set("late", "1").pipe(Effect.delay("100 millis"), Effect.eventually)
      assert.deepStrictEqual(yield* redis.getBuffer("late"), Buffer.from("1"))
    }).pipe(quiet))

  it.live("rejects an address that is not host:port", () =>
    Effect.gen(function*() {
      const error = yield* Redis.make({ addr: "tcp://x:y" }).pipe(Effect.flip)
      assert.strictEqual(error.reason, "Other")
    }))
})
