/**
 * The manager side played by independent implementations: Python aiozmq (`connect_rpc`, what manager
 * 19.06 uses) for RPC, pyzmq PULL + msgpack for events (test/interop/*.py).
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Layer, Queue, References } from "effect"
import { KernelNotFound } from "../../src/domain/Errors.ts"
import { AgentEvents, EventPublisher } from "../../src/manager/EventPublisher.ts"
import { AgentRpcHandlers, type PartialAgentRpcHandlers } from "../../src/rpc/AgentRpcs.ts"
import { AiozmqServer } from "../../src/rpc/aiozmq/AiozmqServer.ts"
import { HealthHandlers } from "../../src/rpc/handlers/Health.ts"
import { PyFloat } from "../../src/codec/Msgpack.ts"
import { runPython, spawnPython } from "../interop/python.ts"

const KID = "0b7a5b2c-5d0e-4bd4-a4d5-6a3f1a7f8a11"

/**
 * The execute of run id `gated` waits until the client calls `refresh_idle`: a client that gets its pings
 * answered while that execute is still pending proves the server serves requests concurrently, with no
 * clock involved.
 */
let gate = Deferred.makeUnsafe<void>()

const TestHandlers: PartialAgentRpcHandlers = {
  refresh_idle: () => Deferred.succeed(gate, undefined).pipe(Effect.asVoid),
  execute: (_api, kernelId, runId, _mode, _code, _opts, flushTimeout) =>
    (runId === "gated" ? Deferred.await(gate) : Effect.sleep("300 millis")).pipe(
      Effect.as({
        runId: runId ?? kernelId,
        status: "finished" as const,
        exitCode: 0,
        options: null,
        files: [flushTimeout ?? null]
      })
    ),
  destroy_kernel: (kernelId) => Effect.fail(new KernelNotFound({ kernelId })),
  download_file: () => Effect.succeed(new Uint8Array([0x1f, 0x8b]))
}

describe("interop with Python aiozmq / pyzmq", () => {
  it.live("an aiozmq connect_rpc client drives the server", () =>
    Effect.gen(function*() {
      const server = yield* AiozmqServer
      gate = Deferred.makeUnsafe<void>()
      const [line] = yield* runPython("aiozmq_client.py", [server.endpoint])
      const r = JSON.parse(line!)
      assert.strictEqual(r.ping, "hello")
      assert.strictEqual(r.ping_kw, "kw")
      assert.deepStrictEqual(r.not_found, ["no_such_method"])
      assert.deepStrictEqual(r.parameters_error, ["ParametersError", "ParametersError"])
      assert.deepStrictEqual(r.domain_error, ["ai.backend.agent.exception.KernelNotFound", [KID], `KernelNotFound('${KID}')`])
      assert.strictEqual(r.download_file_type, "bytes")
      assert.strictEqual(r.concurrent.pings, 50)
      assert.strictEqual(r.concurrent.execute_status, "finished")
      assert.strictEqual(r.concurrent.execute_run_id, "gated")
      assert.isTrue(r.concurrent.execute_pending_after_pings)
    }).pipe(
      Effect.provide(
        AiozmqServer.layer({ bind: "tcp://127.0.0.1:*" }).pipe(
          Layer.provide(AgentRpcHandlers.layer(HealthHandlers, Effect.succeed(TestHandlers)))
        )
      ),
      Effect.provideService(References.MinimumLogLevel, "Warn")
    ), 30_000)

  it.live("aiozmq connect_rpc sees the limits: an oversized request answered on the same connection, a bounded burst, a bad kernel id", () =>
    Effect.gen(function*() {
      const server = yield* AiozmqServer
      const [line] = yield* runPython("aiozmq_limits.py", [server.endpoint, KID])
      const r = JSON.parse(line!)
      assert.match(r.oversize, /exceeds the 1048576-byte limit/)
      assert.strictEqual(r.slow_after_oversize, "run-1")
      assert.strictEqual(r.ping_after_oversize, "same connection")
      assert.strictEqual(r.served, 4)
      // aiozmq raises builtins it knows as themselves
      assert.deepStrictEqual(r.refused, ["RuntimeError"])
      assert.strictEqual(r.ping_after_burst, "still")
      assert.match(r.bad_kernel_id, /kernel_id must be a UUID/)
    }).pipe(
      Effect.provide(
        AiozmqServer.layer({ bind: "tcp://127.0.0.1:*", maxFrameBytes: 1024 * 1024, maxInFlightPerPeer: 4 }).pipe(
          Layer.provide(AgentRpcHandlers.layer(HealthHandlers, Effect.succeed(TestHandlers)))
        )
      ),
      Effect.provideService(References.MinimumLogLevel, "None")
    ), 60_000)

  it.live("a pyzmq PULL socket receives and decodes the events", () =>
    Effect.gen(function*() {
      const pull = yield* spawnPython("event_pull.py", ["3"])
      const addr = yield* Queue.take(pull.lines)
      const publisher = yield* EventPublisher.make({ eventAddr: addr, agentId: "i-py" })
      yield* publisher.publish(AgentEvents.instanceStarted())
      yield* publisher.publish(AgentEvents.kernelTerminated("k1", "self-terminated", null))
      yield* publisher.publish(
        AgentEvents.instanceHeartbeat({
          ip: "127.0.0.1",
          region: "local",
          addr: "tcp://127.0.0.1:6001",
          resource_slots: { cpu: ["count", "4"] },
          version: "v19.09",
          compute_plugins: { cpu: { version: "1", load: new PyFloat(1) } },
          images: new Uint8Array([0xca, 0xfe])
        })
      )
      const events = [yield* Queue.take(pull.lines), yield* Queue.take(pull.lines), yield* Queue.take(pull.lines)].map((l) =>
        JSON.parse(l)
      )
      assert.deepStrictEqual(events[0], ["instance_started", "i-py", []])
      assert.deepStrictEqual(events[1], ["kernel_terminated", "i-py", ["k1", "self-terminated", null]])
      const info = events[2][2][0]
      assert.deepStrictEqual(info.images, { bin: "cafe" })
      assert.deepStrictEqual(info.resource_slots, { cpu: ["count", "4"] })
      assert.deepStrictEqual(info.compute_plugins.cpu.load, { float: 1 })
      assert.strictEqual(yield* pull.exitCode, 0)
    }), 30_000)
})
