/**
 * The Callosum server over real ZeroMQ sockets, driven by a zeromq.js DEALER that writes the frames
 * callosum 1.0.3's client writes (contract §1.2–§1.4; the ping bytes are the contract's verified ones).
 * The interop suite (test/manager26/*.interop.test.ts) drives it with callosum's own Peer.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Layer, Schema } from "effect"
import { createRequire } from "node:module"
import * as Zmq from "zeromq"
import * as Bai from "../../../src/codec/bai/BaiMsgpack.ts"
import { KernelNotFound } from "../../../src/domain/Errors.ts"
import { CallosumHandlers, CallosumServer } from "../../../src/rpc/callosum/CallosumServer.ts"
import { method } from "../../../src/rpc/contract/Contract.ts"
import * as Msgpack from "../../../src/codec/Msgpack.ts"

const SnappyJS = createRequire(import.meta.url)("snappyjs") as { compress: (b: Uint8Array) => Uint8Array }
const hex = (s: string) => Buffer.from(s.replace(/\s/g, ""), "hex")
const PING_HEADER = hex("85 a4 74797065 01 a4 6d657468 a4 70696e67 a4 6f6b6579 c4 00 a3 736571 00 a3 7a6970 c2")
const PING_BODY = hex("82 a4 6d657461 c4 00 a4 626f6479 c4 14 82 a4 61726773 91 a4 70696e67 a6 6b7761726773 80")
const PING_REPLY_HEADER = hex("85 a4 74797065 02 a4 6d657468 a4 70696e67 a4 6f6b6579 c4 00 a3 736571 00 a3 7a6970 c2")
const PING_REPLY_BODY = hex("82 a4 6d657461 c4 01 90 a4 626f6479 c4 05 a4 70696e67")

const request = (meth: string, seq: number, args: ReadonlyArray<unknown>, kwargs: Record<string, unknown> = {}, okey: string | Uint8Array = new Uint8Array(0)) => [
  Buffer.from("UPPER"),
  Msgpack.encode({ type: 1, meth, okey, seq, zip: false }),
  Msgpack.encode({ meta: new Uint8Array(0), body: Bai.encode({ args, kwargs }) })
]

const reply = (frames: ReadonlyArray<Buffer>) => {
  const header = Msgpack.decode(frames[1]!) as { type: number; meth: string; okey: unknown; seq: number }
  const body = Msgpack.decode(frames[2]!) as { meta: Uint8Array; body: Uint8Array | null }
  return {
    header,
    meta: Msgpack.decode(body.meta),
    value: body.body === null ? undefined : Bai.decode(body.body)
  }
}

/** A DEALER connected to `endpoint`, closed with the scope (a 5 s receive timeout). */
const dealerTo = (endpoint: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const s = new Zmq.Dealer({ linger: 0, receiveTimeout: 5000 })
      s.connect(endpoint)
      return s
    }),
    (s) => Effect.sync(() => s.close())
  )

describe("CallosumServer", () => {
  it.live("PING/PONG, the contract's ping bytes, FAILURE for unknown methods and errors, concurrent handlers", () =>
    Effect.gen(function*() {
      const release = yield* Deferred.make<void>()
      const seen: Array<unknown> = []
      const server = yield* CallosumServer.make({ bind: "tcp://127.0.0.1:*" }).pipe(
        Effect.provide(CallosumHandlers.layerOf({
          ping: ([msg]) => Effect.succeed(msg),
          slow: () => Deferred.await(release).pipe(Effect.as("slow done")),
          destroy: ([kid]) => Effect.fail(new KernelNotFound({ kernelId: String(kid) })),
          echo: (args, kwargs) => Effect.sync(() => {
            seen.push(args, kwargs)
            return { n: args.length, agent: kwargs["agent_id"] ?? null }
          })
        }))
      )
      const dealer = yield* dealerTo(server.endpoint)
      const roundTrip = (frames: ReadonlyArray<Buffer>) =>
        Effect.promise(async () => {
          await dealer.send(frames as Array<Buffer>)
          return await dealer.receive()
        })

      // keep-alive handshake
      const pong = yield* roundTrip([Buffer.from("PING"), Buffer.alloc(0), Buffer.alloc(0)])
      assert.deepStrictEqual(pong.map((b) => b.toString()), ["PONG", "", ""])

      // the verified ping bytes in, the verified reply bytes out
      const r0 = yield* roundTrip([Buffer.from("UPPER"), PING_HEADER, PING_BODY])
      assert.deepStrictEqual(r0[1], PING_REPLY_HEADER)
      assert.deepStrictEqual(r0[2], PING_REPLY_BODY)

      // a str order key comes back as str (a0), a bin one as bin (c4 00)
      const r1 = reply(yield* roundTrip(request("ping", 1, ["x"], {}, "")))
      assert.strictEqual(r1.header.okey, "")

      // a slow handler does not hold back a ping: send both, the ping answers first
      yield* Effect.promise(() => dealer.send(request("slow", 2, []) as Array<Buffer>))
      const r3 = reply(yield* roundTrip(request("ping", 3, ["still here"])))
      assert.deepStrictEqual([r3.header.type, r3.header.seq, r3.value], [2, 3, "still here"])
      yield* Deferred.succeed(release, undefined)
      const r2 = reply(yield* Effect.promise(() => dealer.receive()))
      assert.deepStrictEqual([r2.header.meth, r2.header.seq, r2.value], ["slow", 2, "slow done"])

      // unknown method: FAILURE, and the loop keeps serving
      const r4 = reply(yield* roundTrip(request("nosuch", 4, [])))
      assert.strictEqual(r4.header.type, 3)
      assert.strictEqual((r4.meta as Array<string>)[0], "NotImplementedError")
      assert.isUndefined(r4.value)
      const r5 = reply(yield* roundTrip(request("ping", 5, ["after"])))
      assert.strictEqual(r5.value, "after")

      // a domain error: FAILURE [name, repr, traceback]
      const r6 = reply(yield* roundTrip(request("destroy", 6, ["k-1"])))
      assert.deepStrictEqual(r6.meta, ["KernelNotFound", "KernelNotFound('k-1')", ""])

      // agent_id keyword and ext-typed arguments reach the handler
      const kid = Bai.Uuid.parse("3f1e6f0e-8a4b-4f5e-9c1d-2b7a6c5d4e3f")!
      const r7 = reply(yield* roundTrip(request("echo", 7, [kid, "b"], { agent_id: "i-test" })))
      assert.deepStrictEqual(r7.value, { n: 2, agent: "i-test" })
      assert.instanceOf((seen[0] as Array<unknown>)[0], Bai.Uuid)

      // garbage arguments: FAILURE (TypeError), still serving
      const bad = [Buffer.from("UPPER"), Msgpack.encode({ type: 1, meth: "ping", okey: "", seq: 8, zip: false }), Buffer.from([0xc1])]
      const r8 = reply(yield* roundTrip(bad))
      assert.strictEqual((r8.meta as Array<string>)[0], "TypeError")
      assert.strictEqual(reply(yield* roundTrip(request("ping", 9, ["ok"]))).value, "ok")

      // zip: the whole body frame is python-snappy compressed (callosum RPCMessage.encode(compress=True))
      const [, , plainBody] = request("ping", 10, ["zipped"])
      const zipped = [
        Buffer.from("UPPER"),
        Msgpack.encode({ type: 1, meth: "ping", okey: new Uint8Array(0), seq: 10, zip: true }),
        Buffer.from(SnappyJS.compress(plainBody!))
      ]
      assert.strictEqual(reply(yield* roundTrip(zipped)).value, "zipped")
    }).pipe(Effect.scoped))

  it.live("the core's admission bounds hold on this wire too: a peer over its in-flight count gets a FAILURE at once", () =>
    Effect.gen(function*() {
      const release = yield* Deferred.make<void>()
      const server = yield* CallosumServer.make({ bind: "tcp://127.0.0.1:*", maxInFlightPerPeer: 1 }).pipe(
        Effect.provide(CallosumHandlers.layerOf({
          ping: ([msg]) => Effect.succeed(msg),
          slow: () => Deferred.await(release).pipe(Effect.as("slow done"))
        }))
      )
      const dealer = yield* dealerTo(server.endpoint)
      yield* Effect.promise(() => dealer.send(request("slow", 1, []) as Array<Buffer>))
      // the slow request holds the peer's only slot: the next one is refused, not queued
      const refused = reply(yield* Effect.promise(async () => {
        await dealer.send(request("ping", 2, ["x"]) as Array<Buffer>)
        return await dealer.receive()
      }))
      assert.deepStrictEqual([refused.header.type, refused.header.seq], [3, 2])
      assert.strictEqual((refused.meta as Array<string>)[0], "RuntimeError")
      assert.match((refused.meta as Array<string>)[1]!, /too many requests in flight/)
      yield* Deferred.succeed(release, undefined)
      const slow = reply(yield* Effect.promise(() => dealer.receive()))
      assert.deepStrictEqual([slow.header.seq, slow.value], [1, "slow done"])
      // the slot is free again
      const ok = reply(yield* Effect.promise(async () => {
        await dealer.send(request("ping", 3, ["y"]) as Array<Buffer>)
        return await dealer.receive()
      }))
      assert.strictEqual(ok.value, "y")
    }).pipe(Effect.scoped))

  it.live("a contract's methods: arguments bound and decoded before the handler, a refusal is a TypeError FAILURE", () =>
    Effect.gen(function*() {
      const calls: Array<ReadonlyArray<unknown>> = []
      const contract = {
        add: method("add", ["a", "b?"], Schema.Tuple([Schema.Number, Schema.optional(Schema.Number)]), Schema.Number)
      }
      const server = yield* CallosumServer.make({ bind: "tcp://127.0.0.1:*" }).pipe(
        Effect.provide(Layer.succeed(
          CallosumHandlers,
          CallosumHandlers.fromContract(contract, {
            add: (a: number, b?: number) => Effect.sync(() => {
              calls.push([a, b])
              return a + (b ?? 0)
            })
          }, { ignoreKeyword: "agent_id" })
        ))
      )
      const dealer = yield* dealerTo(server.endpoint)
      const roundTrip = (frames: ReadonlyArray<Buffer>) =>
        Effect.promise(async () => {
          await dealer.send(frames as Array<Buffer>)
          return reply(await dealer.receive())
        })
      // keywords bound by name, the ignored keyword taken out
      assert.strictEqual((yield* roundTrip(request("add", 1, [1], { b: 2, agent_id: "i-x" }))).value, 3)
      // a bad argument: FAILURE TypeError with the Schema's text (no describeRefusal here), and the handler never ran
      const bad = yield* roundTrip(request("add", 2, ["one"]))
      assert.strictEqual(bad.header.type, 3)
      assert.deepStrictEqual(bad.meta, ["TypeError", "TypeError('Expected number\\n  at [0]')", ""])
      const unbound = yield* roundTrip(request("add", 3, [1], { c: 2 }))
      assert.deepStrictEqual(unbound.meta, ["TypeError", "TypeError('add() got an unexpected keyword argument \\'c\\'')", ""])
      assert.deepStrictEqual(calls, [[1, 2]])
    }).pipe(Effect.scoped))
})
