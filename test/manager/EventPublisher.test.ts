import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Layer, Option, Queue, References, Schedule } from "effect"
import * as Zmq from "zeromq"
import { type AgentEvent, AgentEvents, EventPublisher } from "../../src/manager/EventPublisher.ts"
import { decode, encode } from "../../src/codec/Msgpack.ts"
import { spawnPython } from "../interop/python.ts"
import { freePort } from "../testbed/ports.ts"

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex")

const pullSocket = Effect.acquireRelease(
  Effect.promise(async () => {
    const pull = new Zmq.Pull({ linger: 0 })
    await pull.bind("tcp://127.0.0.1:*")
    return pull
  }),
  (pull) => Effect.sync(() => pull.close())
)

describe("EventPublisher", () => {
  it.live("sends 3-frame events byte-exactly (spec §1.2)", () =>
    Effect.gen(function*() {
      const pull = yield* pullSocket
      const addr = pull.lastEndpoint!.replace("tcp://", "")
      const publisher = yield* EventPublisher.make({ eventAddr: addr, agentId: "i-test" })
      yield* publisher.publish(AgentEvents.instanceStarted())
      yield* publisher.publish(AgentEvents.kernelTerminated("k1", "self-terminated", null))
      yield* publisher.publish(
        AgentEvents.instanceHeartbeat({
          ip: "127.0.0.1",
          region: "local",
          addr: "tcp://127.0.0.1:6001",
          resource_slots: { cpu: ["count", "4"], mem: ["bytes", "8589934592"] },
          version: "v19.09",
          compute_plugins: {},
          images: new Uint8Array([1, 2, 3]),
          scaling_group: "default"
        })
      )
      const [name1, agent1, body1] = yield* Effect.promise(() => pull.receive())
      assert.strictEqual(name1!.toString(), "instance_started")
      assert.strictEqual(agent1!.toString(), "i-test")
      assert.deepStrictEqual(body1, hex("90"))
      const [name2, , body2] = yield* Effect.promise(() => pull.receive())
      assert.strictEqual(name2!.toString(), "kernel_terminated")
      assert.deepStrictEqual(body2, Buffer.concat([hex("93 a2 6b 31 af"), Buffer.from("self-terminated"), hex("c0")]))
      const [, , body3] = yield* Effect.promise(() => pull.receive())
      const [info] = decode(body3!) as [Record<string, unknown>]
      assert.deepStrictEqual(info.images, Buffer.from([1, 2, 3]))
      assert.deepStrictEqual(info.resource_slots, { cpu: ["count", "4"], mem: ["bytes", "8589934592"] })
      assert.isTrue(body3!.includes(encode(new Uint8Array([1, 2, 3]))))
    }))

  it.live("waits for the event address without blocking publish", () =>
    Effect.gen(function*() {
      const pull = yield* pullSocket
      const address = yield* Deferred.make<string>()
      const publisher = yield* EventPublisher.make({ eventAddr: Deferred.await(address), agentId: "i-wait" })
      yield* publisher.publish(AgentEvents.kernelPreparing("k2"))
      yield* Deferred.succeed(address, pull.lastEndpoint!)
      const [name, , body] = yield* Effect.promise(() => pull.receive())
      assert.strictEqual(name!.toString(), "kernel_preparing")
      assert.deepStrictEqual(decode(body!), ["k2"])
    }))

  it.live("a manager that is not there never blocks: events beyond the buffers are dropped and counted", () =>
    Effect.gen(function*() {
      const publisher = yield* EventPublisher.make({
        eventAddr: "127.0.0.1:1", // nobody listens
        agentId: "i-alone",
        queueCapacity: 10,
        sendHighWaterMark: 5,
        sendTimeoutMillis: 10
      })
      // publish returns although nothing is ever sent (a blocking publish never gets through 1000
      // events: the bound turns that into a failure), then the overflow is counted; both waits are on
      // conditions, bounded
      yield* Effect.forEach(Array.from({ length: 1000 }, (_, i) => `k${i}`), (k) => publisher.publish(AgentEvents.kernelStarted(k)), {
        discard: true
      }).pipe(Effect.timeout("20 seconds"))
      const dropped = yield* publisher.dropped.pipe(
        Effect.repeat({ until: (n) => n > 900, schedule: Schedule.spaced("20 millis") }),
        Effect.timeout("20 seconds")
      )
      assert.isAbove(dropped, 900)
      assert.isAtMost(dropped, 1000)
    }).pipe(Effect.provideService(References.MinimumLogLevel, "None")))

  it.effect("layerTest records events", () =>
    Effect.gen(function*() {
      const sink: Array<AgentEvent> = []
      yield* Effect.gen(function*() {
        const publisher = yield* EventPublisher
        yield* publisher.publish(AgentEvents.instanceTerminated("shutdown"))
      }).pipe(Effect.provide(Layer.fresh(EventPublisher.layerTest(sink))))
      assert.strictEqual(sink[0]!.name, "instance_terminated")
    }))

  // The manager (a pyzmq PULL socket, test/manager/manager_pull.py) is away while the queue of ordinary
  // events overflows, and comes up later at the address the agent was given: every kernel_terminated
  // queued meanwhile arrives, once, and each hand-off completes only then.
  it.live("durable events survive a full queue and a manager that comes late", () =>
    Effect.gen(function*() {
      const port = yield* Effect.promise(() => freePort())
      const publisher = yield* EventPublisher.make({
        eventAddr: `127.0.0.1:${port}`, // nobody there yet
        agentId: "i-durable",
        queueCapacity: 10,
        sendTimeoutMillis: 20,
        durableRetryMaxMillis: 200
      })
      const kernels = Array.from({ length: 40 }, (_, i) => `kernel-${i}`)
      const handOffs: Array<Effect.Effect<void>> = []
      for (const [i, kid] of kernels.entries()) {
        for (let j = 0; j < 20; j++) yield* publisher.publish(AgentEvents.kernelStarted(`noise-${i}-${j}`))
        handOffs.push(yield* publisher.publishDurable(kid, AgentEvents.kernelTerminated(kid, "user-requested", i)))
      }
      // the same kernel again while its event is pending: nothing more is queued
      const again = yield* publisher.publishDurable("kernel-0", AgentEvents.kernelTerminated("kernel-0", "user-requested", 0))
      assert.isAbove(yield* publisher.dropped, 100) // the ordinary queue was full
      assert.strictEqual(yield* publisher.pendingDurable, kernels.length)
      // not handed off while no manager is connected
      assert.isTrue(Option.isNone(yield* Effect.timeoutOption(handOffs[0]!, "1500 millis")))

      const manager = yield* spawnPython("../manager/manager_pull.py", [`tcp://127.0.0.1:${port}`])
      assert.strictEqual(yield* Queue.take(manager.lines), `127.0.0.1:${port}`)
      const seen = new Map<string, number>()
      const exits = new Map<string, unknown>()
      while ([...kernels].some((k) => !seen.has(k))) {
        const line = yield* Queue.take(manager.lines).pipe(
          Effect.timeoutOrElse({ duration: "60 seconds", orElse: () => Effect.die(new Error(`missing: ${kernels.filter((k) => !seen.has(k)).join(" ")}; stderr ${manager.stderr()}`)) })
        )
        const [name, agent, args] = JSON.parse(line) as [string, string, Array<unknown>]
        assert.strictEqual(agent, "i-durable")
        if (name !== "kernel_terminated") continue
        const kid = args[0] as string
        seen.set(kid, (seen.get(kid) ?? 0) + 1)
        exits.set(kid, args[2])
      }
      yield* Effect.all([...handOffs, again], { discard: true }).pipe(Effect.timeout("10 seconds"))
      assert.strictEqual(yield* publisher.pendingDurable, 0)
      for (const [i, kid] of kernels.entries()) {
        assert.strictEqual(seen.get(kid), 1, kid)
        assert.strictEqual(exits.get(kid), i)
      }
    }).pipe(Effect.provideService(References.MinimumLogLevel, "None")), { timeout: 120_000 })

  it.live("a durable event is delivered in order with ordinary ones when the manager is there", () =>
    Effect.gen(function*() {
      const pull = yield* pullSocket
      const publisher = yield* EventPublisher.make({ eventAddr: pull.lastEndpoint!, agentId: "i-order" })
      yield* publisher.publish(AgentEvents.kernelStarted("k1"))
      const sent = yield* publisher.publishDurable("k1", AgentEvents.kernelTerminated("k1", "self-terminated", null))
      yield* publisher.publish(AgentEvents.instanceTerminated("shutdown"))
      const names: Array<string> = []
      for (let i = 0; i < 3; i++) names.push((yield* Effect.promise(() => pull.receive()))[0]!.toString())
      assert.deepStrictEqual(names, ["kernel_started", "kernel_terminated", "instance_terminated"])
      yield* sent.pipe(Effect.timeout("10 seconds"))
    }))
})
