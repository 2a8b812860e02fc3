import { assert, describe, it } from "@effect/vitest"
import { Context, Deferred, Duration, Effect, Exit, Fiber, Layer, References, Scope } from "effect"
import * as Zmq from "zeromq"
import { KernelNotFound } from "../../src/domain/Errors.ts"
import { AgentRpcHandlers, AgentRpcs, type PartialAgentRpcHandlers } from "../../src/rpc/AgentRpcs.ts"
import { AiozmqClient, AiozmqRemoteError } from "../../src/rpc/aiozmq/AiozmqClient.ts"
import { AiozmqServer } from "../../src/rpc/aiozmq/AiozmqServer.ts"
import { encodeRequestHeader } from "../../src/rpc/aiozmq/Frames.ts"
import { HealthHandlers } from "../../src/rpc/handlers/Health.ts"
import { encode } from "../../src/codec/Msgpack.ts"

/**
 * An execute for run id `gated` signals `entered` and then waits for `release`: the tests synchronise on
 * these instead of on the clock.
 */
let entered = Deferred.makeUnsafe<void>()
let release = Deferred.makeUnsafe<void>()

/** Test-only handlers: a slow execute, a domain error, a defect, a result outside its schema. */
const TestHandlers: PartialAgentRpcHandlers = {
  execute: (_api, kernelId, runId) =>
    (runId === "gated"
      ? Deferred.succeed(entered, undefined).pipe(Effect.andThen(Deferred.await(release)))
      : Deferred.succeed(entered, undefined).pipe(Effect.andThen(Effect.sleep("300 millis")))).pipe(
      Effect.as({ runId: runId ?? kernelId, status: "finished" as const, exitCode: 0, options: null, files: [] })
    ),
  destroy_kernel: (kernelId) => Effect.fail(new KernelNotFound({ kernelId })),
  interrupt_kernel: () => Effect.die(new Error("boom")),
  get_logs: () => Effect.succeed({ logs: 42 as unknown as string })
}

const KID = "0b7a5b2c-5d0e-4bd4-a4d5-6a3f1a7f8a11"

const serverLayer = (options: { readonly shutdownGrace?: Duration.Input } = {}) =>
  AiozmqServer.layer({ bind: "tcp://127.0.0.1:*", ...options }).pipe(
    Layer.provide(AgentRpcHandlers.layer(HealthHandlers, Effect.succeed(TestHandlers)))
  )

const serverLayerAt = (bind: string) =>
  AiozmqServer.layer({ bind }).pipe(Layer.provide(AgentRpcHandlers.layer(HealthHandlers)))

const remoteError = <A, E>(exit: Exit.Exit<A, E>): AiozmqRemoteError => {
  assert.isTrue(Exit.isFailure(exit))
  const error = Exit.isFailure(exit) ? exit.cause.reasons.find((r) => r._tag === "Fail") : undefined
  assert.instanceOf(error && "error" in error ? error.error : undefined, AiozmqRemoteError)
  return (error as { error: AiozmqRemoteError }).error
}

describe("AiozmqServer", () => {
  it.live("answers ping, unknown methods, bad arity, domain errors, defects and NotImplemented", () =>
    Effect.gen(function*() {
      const server = yield* AiozmqServer
      const client = yield* AiozmqClient.make({ connect: server.endpoint, timeout: "5 seconds" })
      assert.strictEqual(yield* client.invoke(AgentRpcs.ping, "hello"), "hello")

      const notFound = remoteError(yield* Effect.exit(client.call("no_such_method", [])))
      assert.strictEqual(notFound.excType, "aiozmq.rpc.base.NotFoundError")
      assert.deepStrictEqual(notFound.args, ["no_such_method"])

      const arity = remoteError(yield* Effect.exit(client.call("ping", [])))
      assert.strictEqual(arity.excType, "aiozmq.rpc.base.ParametersError")
      const arity2 = remoteError(yield* Effect.exit(client.call("ping", ["a", "b"])))
      assert.strictEqual(arity2.excType, "aiozmq.rpc.base.ParametersError")

      const domain = remoteError(yield* Effect.exit(client.call("destroy_kernel", [KID])))
      assert.strictEqual(domain.excType, "ai.backend.agent.exception.KernelNotFound")
      assert.deepStrictEqual(domain.args, [KID])
      assert.strictEqual(domain.repr, `KernelNotFound('${KID}')`)

      const defect = remoteError(yield* Effect.exit(client.call("interrupt_kernel", [KID])))
      assert.strictEqual(defect.excType, "builtins.RuntimeError")
      const badResult = remoteError(yield* Effect.exit(client.call("get_logs", [KID])))
      assert.strictEqual(badResult.excType, "builtins.RuntimeError")

      const missing = remoteError(yield* Effect.exit(client.call("restart_kernel", [KID, {}])))
      assert.strictEqual(missing.excType, "ai.backend.agent.exception.NotImplemented")

      // the server still works after all that
      assert.strictEqual(yield* client.invoke(AgentRpcs.ping, "still here"), "still here")
    }).pipe(Effect.provide(serverLayer()), Effect.provideService(References.MinimumLogLevel, "None")))

  it.live("every method naming a kernel refuses a kernel id that is not a UUID, before its handler runs", () =>
    Effect.gen(function*() {
      const server = yield* AiozmqServer
      const client = yield* AiozmqClient.make({ connect: server.endpoint, timeout: "5 seconds" })
      const calls: ReadonlyArray<readonly [string, (kid: string) => ReadonlyArray<unknown>]> = [
        ["ping_kernel", (k) => [k]],
        ["create_kernel", (k) => [k, {}]],
        ["destroy_kernel", (k) => [k, "user-requested"]],
        ["restart_kernel", (k) => [k, {}]],
        ["interrupt_kernel", (k) => [k]],
        ["execute", (k) => [3, k, "run-1", "query", "x", {}]],
        ["get_completions", (k) => [k, "query", "x", {}]],
        ["get_logs", (k) => [k]],
        ["refresh_idle", (k) => [k]],
        ["start_service", (k) => [k, "jupyter", {}]],
        ["upload_file", (k) => [k, "a.txt", new Uint8Array([1])]],
        ["download_file", (k) => [k, "a.txt"]],
        ["list_files", (k) => [k, "."]]
      ]
      const badIds = ["../../etc", "", "k-1", KID.toUpperCase(), `${KID}/..`, `${KID}\0`, "..", `${KID} `]
      for (const [method, args] of calls) {
        for (const bad of badIds) {
          const error = remoteError(yield* Effect.exit(client.call(method, args(bad))))
          assert.strictEqual(error.excType, "aiozmq.rpc.base.ParametersError", `${method}(${JSON.stringify(bad)})`)
          assert.match(String(error.args[0]), /kernel_id must be a UUID/)
        }
      }
      // the handler never ran: destroy_kernel with a UUID reaches it (KernelNotFound)
      const domain = remoteError(yield* Effect.exit(client.call("destroy_kernel", [KID])))
      assert.strictEqual(domain.excType, "ai.backend.agent.exception.KernelNotFound")
    }).pipe(Effect.provide(serverLayer()), Effect.provideService(References.MinimumLogLevel, "None")))

  it.live("a request over the size limit gets an error reply on the same connection; other replies and the connection survive", () =>
    Effect.gen(function*() {
      const server = yield* AiozmqServer
      const client = yield* AiozmqClient.make({ connect: server.endpoint, timeout: "10 seconds" })
      const slow = yield* Effect.forkChild(client.invoke(AgentRpcs.execute, 3, KID, "run-1", "query", "x", {}, 2))
      // one frame of 1.5 MiB (over the 1 MiB limit): answered, not a dropped connection
      const big = remoteError(yield* Effect.exit(client.call("upload_file", [KID, "a.bin", new Uint8Array(1536 * 1024)])))
      assert.strictEqual(big.excType, "aiozmq.rpc.base.ParametersError")
      assert.match(String(big.args[0]), /exceeds the 1048576-byte limit/)
      // the slow request sent before them is still answered on the same connection
      assert.strictEqual((yield* Fiber.join(slow))?.runId, "run-1")
      assert.strictEqual(yield* client.invoke(AgentRpcs.ping, "same connection"), "same connection")
    }).pipe(
      Effect.provide(
        AiozmqServer.layer({ bind: "tcp://127.0.0.1:*", maxFrameBytes: 1024 * 1024 }).pipe(
          Layer.provide(AgentRpcHandlers.layer(HealthHandlers, Effect.succeed(TestHandlers)))
        )
      ),
      Effect.provideService(References.MinimumLogLevel, "None")
    ), 30_000)

  it.live("a peer's in-flight requests are bounded (count and bytes); other peers are still served", () =>
    Effect.gen(function*() {
      const server = yield* AiozmqServer
      const greedy = yield* AiozmqClient.make({ connect: server.endpoint, timeout: "10 seconds" })
      const other = yield* AiozmqClient.make({ connect: server.endpoint, timeout: "10 seconds" })
      const results = yield* Effect.forEach(
        Array.from({ length: 10 }, (_, i) => `run-${i}`),
        (runId) => Effect.exit(greedy.invoke(AgentRpcs.execute, 3, KID, runId, "query", "x", {}, 2)),
        { concurrency: "unbounded" }
      ).pipe(Effect.forkChild)
      // while the greedy peer's requests are held, another peer gets answers
      assert.strictEqual(yield* other.invoke(AgentRpcs.ping, "other peer"), "other peer")
      const exits = yield* Fiber.join(results)
      const ok = exits.filter(Exit.isSuccess).length
      const busy = exits.filter((e) => Exit.isFailure(e)).map((e) => remoteError(e))
      assert.strictEqual(ok, 4)
      assert.strictEqual(busy.length, 6)
      for (const b of busy) {
        assert.strictEqual(b.excType, "builtins.RuntimeError")
        assert.match(String(b.args[0]), /too many requests in flight/)
      }
      // bytes: two held requests of ~700 KiB fill the 1.5 MiB budget; the third is refused
      const code = "x".repeat(700 * 1024)
      const heavy = yield* Effect.forEach(
        ["h1", "h2", "h3"],
        (runId) => Effect.exit(greedy.invoke(AgentRpcs.execute, 3, KID, runId, "query", code, {}, 2)),
        { concurrency: "unbounded" }
      )
      assert.strictEqual(heavy.filter(Exit.isSuccess).length, 2)
      // everything released: the peer is served again
      assert.strictEqual((yield* greedy.invoke(AgentRpcs.execute, 3, KID, "after", "query", "x", {}, 2))?.runId, "after")
    }).pipe(
      Effect.provide(
        AiozmqServer.layer({
          bind: "tcp://127.0.0.1:*",
          maxFrameBytes: 1024 * 1024,
          maxInFlightPerPeer: 4,
          maxInFlightBytesPerPeer: 1536 * 1024
        }).pipe(Layer.provide(AgentRpcHandlers.layer(HealthHandlers, Effect.succeed(TestHandlers))))
      ),
      Effect.provideService(References.MinimumLogLevel, "None")
    ), 30_000)

  it.live("with an allowlist (ZAP), only listed addresses get a connection", () =>
    Effect.gen(function*() {
      const server = yield* AiozmqServer
      const port = server.endpoint.slice(server.endpoint.lastIndexOf(":") + 1)
      // connecting from 127.0.0.2 (listed): served
      const allowed = yield* AiozmqClient.make({ connect: `tcp://127.0.0.2:0;127.0.0.1:${port}`, timeout: "10 seconds" })
      assert.strictEqual(yield* allowed.invoke(AgentRpcs.ping, "listed"), "listed")
      // from 127.0.0.1 (not listed): the handshake is refused by the ZAP handler
      const denied = yield* Effect.acquireRelease(
        Effect.sync(() => new Zmq.Dealer({ linger: 0 })),
        (d) => Effect.sync(() => d.close())
      )
      const refused = yield* Effect.callback<string>((resume) => {
        denied.events.on("handshake:error:auth", (e) => resume(Effect.succeed(`${e.error.status ?? ""}`)))
      }).pipe(Effect.forkChild)
      denied.connect(`tcp://127.0.0.1:${port}`)
      assert.strictEqual(yield* Fiber.join(refused), "400")
      assert.strictEqual(yield* allowed.invoke(AgentRpcs.ping, "still"), "still")
    }).pipe(
      Effect.provide(
        AiozmqServer.layer({ bind: "tcp://127.0.0.1:*", allowedPeers: ["127.0.0.2", "10.0.0.0/8"] }).pipe(
          Layer.provide(AgentRpcHandlers.layer(HealthHandlers))
        )
      ),
      Effect.provideService(References.MinimumLogLevel, "None")
    ), 30_000)

  it.live("a taken port is reported as `cannot bind <endpoint>: address already in use`", () =>
    Effect.gen(function*() {
      const first = yield* AiozmqServer
      const error = yield* Layer.build(serverLayerAt(first.endpoint)).pipe(Effect.flip)
      assert.strictEqual(error._tag, "AiozmqServerError")
      assert.strictEqual(error.message, `cannot bind ${first.endpoint}: address already in use`)
    }).pipe(Effect.provide(serverLayer()), Effect.scoped, Effect.provideService(References.MinimumLogLevel, "None")))

  it.live("a slow execute does not block ping", () =>
    Effect.gen(function*() {
      const server = yield* AiozmqServer
      const client = yield* AiozmqClient.make({ connect: server.endpoint, timeout: "5 seconds" })
      entered = Deferred.makeUnsafe<void>()
      release = Deferred.makeUnsafe<void>()
      // the execute is inside its handler and stays there until released: the pings can only be
      // answered if the server does not serve requests one after another (else the client times out)
      const slow = yield* Effect.forkChild(client.invoke(AgentRpcs.execute, 3, KID, "gated", "query", "x", {}, 2))
      yield* Deferred.await(entered).pipe(Effect.timeout("10 seconds"))
      const pings = yield* Effect.forEach(Array.from({ length: 50 }, (_, i) => `p${i}`), (m) => client.invoke(AgentRpcs.ping, m), {
        concurrency: 16
      })
      assert.deepStrictEqual(pings, Array.from({ length: 50 }, (_, i) => `p${i}`))
      assert.isUndefined(slow.pollUnsafe())
      yield* Deferred.succeed(release, undefined)
      const result = yield* Fiber.join(slow)
      assert.strictEqual(result?.runId, "gated")
    }).pipe(Effect.provide(serverLayer())))

  it.live("a burst larger than one drain batch (256) is answered in full, each reply to its own request", () =>
    Effect.gen(function*() {
      const server = yield* AiozmqServer
      const client = yield* AiozmqClient.make({ connect: server.endpoint, timeout: "10 seconds" })
      const messages = Array.from({ length: 1000 }, (_, i) => `burst-${i}`)
      const replies = yield* Effect.forEach(messages, (m) => client.invoke(AgentRpcs.ping, m), { concurrency: "unbounded" })
      assert.deepStrictEqual(replies, messages)
      assert.strictEqual(yield* server.inFlight, 0)
    }).pipe(Effect.provide(serverLayer())))

  it.live("shutdown lets in-flight requests finish", () =>
    Effect.gen(function*() {
      const serverScope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(serverLayer({ shutdownGrace: "2 seconds" }), serverScope)
      const server = Context.get(context, AiozmqServer)
      const client = yield* AiozmqClient.make({ connect: server.endpoint, timeout: "5 seconds" })
      entered = Deferred.makeUnsafe<void>()
      const slow = yield* Effect.forkChild(client.invoke(AgentRpcs.execute, 3, KID, null, "query", "x", {}))
      yield* Deferred.await(entered).pipe(Effect.timeout("10 seconds")) // the request is in flight
      yield* Scope.close(serverScope, Exit.void)
      const result = yield* Fiber.join(slow)
      assert.strictEqual(result?.status, "finished")
    }).pipe(Effect.provideService(References.MinimumLogLevel, "Warn")))

  it.live("survives 10,000 random and mutated frames, then answers ping", () =>
    Effect.gen(function*() {
      const server = yield* AiozmqServer
      const dealer = yield* Effect.acquireRelease(
        Effect.sync(() => {
          const d = new Zmq.Dealer({ linger: 0 })
          d.connect(server.endpoint)
          return d
        }),
        (d) => Effect.sync(() => d.close())
      )
      let seed = 12345
      const rand = (n: number) => {
        seed = (seed * 1103515245 + 12345) & 0x7fffffff
        return seed % n
      }
      const randomBytes = (n: number) => Buffer.from(Array.from({ length: n }, () => rand(256)))
      const valid = [
        encodeRequestHeader({ pid: 1, rnd: 2, reqId: 7, timestamp: 0 }),
        Buffer.from("ping"),
        encode(["x"]),
        encode({})
      ]
      const mutate = (frames: Array<Buffer>): Array<Buffer> => {
        const out = frames.map((f) => Buffer.from(f))
        switch (rand(6)) {
          case 0:
            return out.slice(0, rand(out.length + 1))
          case 1:
            return [...out, randomBytes(rand(20))]
          case 2: {
            const f = out[rand(out.length)]!
            if (f.length > 0) f[rand(f.length)] = rand(256)
            return out
          }
          case 3: {
            const i = rand(out.length)
            out[i] = randomBytes(rand(40))
            return out
          }
          case 4:
            return out.map((f) => f.subarray(0, rand(f.length + 1)))
          default:
            return Array.from({ length: 1 + rand(6) }, () => randomBytes(rand(64)))
        }
      }
      for (let i = 0; i < 10_000; i++) {
        const frames = i % 2 === 0 ? mutate(valid) : Array.from({ length: 1 + rand(6) }, () => randomBytes(rand(48)))
        if (frames.length === 0) continue
        yield* Effect.promise(() => dealer.send(frames))
      }
      // a huge request too
      yield* Effect.promise(() => dealer.send([valid[0]!, valid[1]!, Buffer.alloc(900 * 1024), Buffer.alloc(900 * 1024)]))
      // the same connection is still served after all of it: the marker ping comes back
      const marker = encodeRequestHeader({ pid: 1, rnd: 2, reqId: 0xdeadbeef, timestamp: 0 })
      yield* Effect.promise(() => dealer.send([marker, Buffer.from("ping"), encode(["marker"]), encode({})]))
      let replies = 0
      let markerSeen = false
      while (!markerSeen) {
        // a request carrying extra leading frames gets them back as "routing" frames (like aiozmq)
        const frames = yield* Effect.promise(() => dealer.receive())
        const header = frames[frames.length - 2]
        const body = frames[frames.length - 1]
        replies++
        if (header !== undefined && header.length === 17 && header.readUInt32LE(4) === 0xdeadbeef) {
          assert.deepStrictEqual(body, encode("marker"))
          markerSeen = true
        }
      }
      assert.isAbove(replies, 100) // many mutated requests with a readable req_id were answered
      const client = yield* AiozmqClient.make({ connect: server.endpoint, timeout: "10 seconds" })
      assert.strictEqual(yield* client.invoke(AgentRpcs.ping, "alive"), "alive")
    }).pipe(
      Effect.provide(
        AiozmqServer.layer({ bind: "tcp://127.0.0.1:*", maxFrameBytes: 1024 * 1024 }).pipe(
          Layer.provide(AgentRpcHandlers.layer(HealthHandlers))
        )
      ),
      Effect.provideService(References.MinimumLogLevel, "None")
    ), 60_000)
})
