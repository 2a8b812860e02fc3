import { assert, describe, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import { promisify } from "node:util"
import { Effect, References } from "effect"
import { Redis, SET_MANY_CHUNK } from "../../src/manager/Redis.ts"
import { redisServer } from "./RedisServer.ts"

const exec = promisify(execFile)

/** What another client sees (python3-redis, as the manager): every key's value (hex, null when absent) and TTL. */
const readWithPython = (port: number, keys: ReadonlyArray<string>) =>
  Effect.promise(() =>
    exec("/usr/bin/python3", [
      "-c",
      "import json, sys, redis\n" +
      "r = redis.Redis(port=int(sys.argv[1]), db=0)\n" +
      "keys = sys.argv[2:]\n" +
      "print(json.dumps([[None if r.get(k) is None else r.get(k).hex(), r.ttl(k)] for k in keys]))",
      String(port),
      ...keys
    ], { maxBuffer: 64 << 20 }).then((r) => JSON.parse(r.stdout) as Array<[string | null, number]>)
  )

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

  it.live("setManyEx: every key with its value and expiry as another client reads them, also after SCRIPT FLUSH and past one chunk", () =>
    Effect.gen(function*() {
      const server = yield* redisServer
      const redis = yield* Redis.make({ addr: server.addr })
      // values with every byte (msgpack is binary), one empty, keys beyond one script call
      const count = SET_MANY_CHUNK + 7
      const keys = Array.from({ length: count }, (_, i) => `kernel-${i}`)
      const values = keys.map((_, i) => i === 3 ? Buffer.alloc(0) : Buffer.from(Array.from({ length: 1 + (i % 300) }, (_, j) => (i + j) % 256)))
      yield* redis.set("kernel-5", "older", { ttlSeconds: 3000 })
      yield* redis.setManyEx(keys, values, 30)
      const seen = yield* readWithPython(server.port, [...keys, "absent"])
      for (let i = 0; i < count; i++) {
        assert.strictEqual(seen[i]![0], values[i]!.toString("hex"), keys[i])
        // a key with no expiry answers -1: require 0 < ttl <= 30 (the older key's 3000 s is replaced)
        assert.isAbove(seen[i]![1], 0, keys[i])
        assert.isAtMost(seen[i]![1], 30, keys[i])
      }
      assert.deepStrictEqual(seen[count], [null, -2])
      // Redis forgot the script (a restart does the same): the next call still writes
      yield* redis.command("SCRIPT", "FLUSH")
      yield* redis.setManyEx(["after-flush"], [Buffer.from([0x81, 0xa1, 0x61, 0xc0])], 300)
      assert.deepStrictEqual(yield* readWithPython(server.port, ["after-flush"]).pipe(Effect.map((r) => r[0]![0])), "81a161c0")
      assert.isAbove((yield* readWithPython(server.port, ["after-flush"]))[0]![1], 290)
      // nothing to write: no call; refused before anything is sent
      yield* redis.setManyEx([], [], 30)
      assert.strictEqual((yield* redis.setManyEx(["a", "b"], [Buffer.from("1")], 30).pipe(Effect.flip)).reason, "Other")
      assert.strictEqual((yield* redis.setManyEx(["a"], [Buffer.from("1")], 0).pipe(Effect.flip)).reason, "Other")
      assert.strictEqual((yield* redis.setManyEx(["a"], [Buffer.from("1")], 1.5).pipe(Effect.flip)).reason, "Other")
      assert.deepStrictEqual(yield* readWithPython(server.port, ["a", "b"]), [[null, -2], [null, -2]])
      // a key holding another type is overwritten, as SET does
      yield* redis.command("LPUSH", "a-list", "x")
      yield* redis.setManyEx(["a-list"], [Buffer.from("v")], 30)
      assert.deepStrictEqual((yield* readWithPython(server.port, ["a-list"]))[0]![0], Buffer.from("v").toString("hex"))
    }))

  it.live("setManyEx writes with plain SETs where Redis refuses scripts (an ACL without @scripting, or EVAL renamed away)", () =>
    Effect.gen(function*() {
      const server = yield* redisServer
      const redis = yield* Redis.make({ addr: server.addr })
      // the operator's Redis lets this user run SET but no script (Redis 6+ ACL)
      yield* redis.command("ACL", "SETUSER", "default", "-@scripting")
      const keys = Array.from({ length: SET_MANY_CHUNK + 3 }, (_, i) => `kernel-${i}`)
      const values = keys.map((_, i) => Buffer.from([0x81, 0xa1, 0x61, i % 256]))
      yield* redis.setManyEx(keys, values, 30)
      const seen = yield* readWithPython(server.port, keys)
      for (let i = 0; i < keys.length; i++) {
        assert.strictEqual(seen[i]![0], values[i]!.toString("hex"), keys[i])
        assert.isAbove(seen[i]![1], 0, keys[i])
        assert.isAtMost(seen[i]![1], 30, keys[i])
      }
      // and keeps doing so on the next cycle
      yield* redis.setManyEx(["next"], [Buffer.from("n")], 30)
      assert.strictEqual((yield* readWithPython(server.port, ["next"]))[0]![0], Buffer.from("n").toString("hex"))
    }).pipe(quiet))

  it.live("setManyEx keeps its script after a transient refusal (OOM): only a refusal for good switches to plain SETs", () =>
    Effect.gen(function*() {
      const server = yield* redisServer
      const redis = yield* Redis.make({ addr: server.addr })
      const evalshaCalls = redis.command("INFO", "commandstats").pipe(
        Effect.map((info) => Number(/cmdstat_evalsha:calls=(\d+)/.exec(String(info))?.[1] ?? 0))
      )
      // Redis over its memory limit refuses writes ("OOM command not allowed …") until memory is freed
      yield* redis.command("CONFIG", "SET", "maxmemory-policy", "noeviction")
      yield* redis.command("CONFIG", "SET", "maxmemory", "1")
      const refused = yield* redis.setManyEx(["k"], [Buffer.from("1")], 30).pipe(Effect.flip)
      assert.include(refused.message, "OOM")
      yield* redis.command("CONFIG", "SET", "maxmemory", "0")
      const before = yield* evalshaCalls
      yield* redis.setManyEx(["k"], [Buffer.from("2")], 30)
      assert.strictEqual((yield* readWithPython(server.port, ["k"]))[0]![0], Buffer.from("2").toString("hex"))
      assert.isAbove(yield* evalshaCalls, before, "the write after the OOM went without the script")
    }).pipe(quiet))

  it.live("setManyEx fails fast while Redis is down and writes again once it is back", () =>
    Effect.gen(function*() {
      const server = yield* redisServer
      const redis = yield* Redis.make({ addr: server.addr, commandTimeoutSeconds: 1 })
      yield* redis.setManyEx(["k"], [Buffer.from("1")], 30)
      yield* server.kill
      assert.strictEqual((yield* redis.setManyEx(["k"], [Buffer.from("2")], 30).pipe(Effect.flip)).reason, "Unavailable")
      yield* server.start
      // the restarted Redis holds no script: EVALSHA answers NOSCRIPT, the call falls back to EVAL
      yield* redis.setManyEx(["k"], [Buffer.from("3")], 30).pipe(Effect.delay("100 millis"), Effect.eventually)
      const seen = yield* readWithPython(server.port, ["k"])
      assert.strictEqual(seen[0]![0], Buffer.from("3").toString("hex"))
      assert.isAbove(seen[0]![1], 0)
    }).pipe(quiet))

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
