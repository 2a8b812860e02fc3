/**
 * callosum 1.0.3's own client Peer (../shared/upstream, Debian's python3-zmq/msgpack/attr) against the
 * agent's Callosum server, with the manager's ext-typed arguments pickled by Debian's python3 (enums
 * by name), both order-key forms, a slow call next to a ping, and an unknown method; then the 26.x
 * contract (Contract26 + the agent_id= check) as the manager's calls meet it.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Layer, Queue } from "effect"
import * as Zmq from "zeromq"
import * as Bai from "../../src/codec/bai/BaiMsgpack.ts"
import { CallosumHandlers, CallosumServer } from "../../src/rpc/callosum/CallosumServer.ts"
import { spawnPython } from "../interop/python.ts"
import { echoContract26 } from "./Contract26Support.ts"

describe("callosum 1.0.3 Peer → CallosumServer", () => {
  it.live("handshake, ping, ext-typed arguments, concurrency, unknown method", () =>
    Effect.gen(function*() {
      const release = yield* Deferred.make<void>()
      const server = yield* CallosumServer.make({ bind: "tcp://127.0.0.1:*" }).pipe(
        Effect.provide(CallosumHandlers.layerOf({
          ping: ([msg]) => Effect.succeed(msg),
          echo: (args, kwargs) =>
            Effect.succeed({
              plain: Bai.plain(args),
              types: args.map((a) => (a === null || typeof a !== "object" ? typeof a : a.constructor.name)),
              refIsImageRef: Object.values(args[1] as object)[0] instanceof Bai.ImageRef,
              member: (args[2] as Bai.PyEnum).member,
              agentId: kwargs["agent_id"] ?? null
            }),
          slow: () => Deferred.await(release).pipe(Effect.as("slow done")),
          release: () => Deferred.succeed(release, undefined).pipe(Effect.as(null))
        }))
      )
      const peer = yield* spawnPython("../manager26/callosum_peer.py", [server.endpoint])
      const lines: Array<Record<string, unknown>> = []
      for (;;) {
        const line = yield* Queue.take(peer.lines).pipe(Effect.timeoutOption("60 seconds"))
        if (line._tag === "None") assert.fail(`callosum_peer.py stalled: ${peer.stderr()}`)
        const r = JSON.parse(line.value) as Record<string, unknown>
        if (r["done"] === true) break
        lines.push(r)
      }
      assert.strictEqual(yield* peer.exitCode, 0, peer.stderr())
      const by = new Map(lines.map((r) => [r["check"], r]))
      assert.strictEqual(by.get("ping")!["result"], "ping")
      assert.strictEqual(by.get("ping-str-okey")!["result"], "s")
      const kid = "3f1e6f0e-8a4b-4f5e-9c1d-2b7a6c5d4e3f"
      assert.deepStrictEqual(by.get("echo")!["result"], {
        plain: [
          { canonical: { auto_pull: "digest" } },
          {
            [kid]: {
              canonical: "cr.backend.ai/stable/python:3.9-ubuntu20.04",
              name: "python",
              project: "stable",
              tag: "3.9-ubuntu20.04",
              registry: "cr.backend.ai",
              architecture: "x86_64",
              is_local: false
            }
          },
          "single-node",
          kid
        ],
        types: ["Object", "Object", "PyEnum", "Uuid"],
        refIsImageRef: true,
        member: "SINGLE_NODE",
        agentId: "i-peer"
      })
      assert.deepStrictEqual([by.get("concurrent")!["ping"], by.get("concurrent")!["slowDoneFirst"]], ["during slow", false])
      assert.strictEqual(by.get("slow")!["result"], "slow done")
      assert.strictEqual(by.get("unknown")!["failed"], true)
      assert.strictEqual(by.get("unknown")!["name"], "NotImplementedError")
      assert.strictEqual(by.get("after-unknown")!["result"], "still")
    }).pipe(Effect.scoped), { timeout: 120_000 })

  it.live("CURVE: the manager's keypair is admitted, another keypair is refused at the handshake", () =>
    Effect.gen(function*() {
      const agent = Zmq.curveKeyPair()
      const manager = Zmq.curveKeyPair()
      const intruder = Zmq.curveKeyPair()
      const server = yield* CallosumServer.make({
        bind: "tcp://127.0.0.1:*",
        curve: { secretKey: agent.secretKey, allowedClientKeys: [manager.publicKey] }
      }).pipe(Effect.provide(CallosumHandlers.layerOf({ ping: ([msg]) => Effect.succeed(msg) })))
      const peer = yield* spawnPython("../manager26/callosum_curve_peer.py", [
        server.endpoint,
        JSON.stringify({
          agentPublic: agent.publicKey,
          managerPublic: manager.publicKey,
          managerSecret: manager.secretKey,
          intruderPublic: intruder.publicKey,
          intruderSecret: intruder.secretKey
        })
      ])
      const lines: Array<Record<string, unknown>> = []
      for (;;) {
        const line = yield* Queue.take(peer.lines).pipe(Effect.timeoutOption("60 seconds"))
        if (line._tag === "None") assert.fail(`callosum_curve_peer.py stalled: ${peer.stderr()}`)
        const r = JSON.parse(line.value) as Record<string, unknown>
        if (r["done"] === true) break
        lines.push(r)
      }
      assert.strictEqual(yield* peer.exitCode, 0, peer.stderr())
      assert.deepStrictEqual(lines, [{ who: "manager", result: "curve" }, { who: "intruder", refused: true }])
    }).pipe(Effect.scoped), { timeout: 120_000 })

  it.live("the 26.x contract on the wire: UUID and str ids decode alike, keywords bind, refusals are TypeErrors naming the parameter", () =>
    Effect.gen(function*() {
      const KID = "3f1e6f0e-8a4b-4f5e-9c1d-2b7a6c5d4e3f"
      const SID = "0b9f8e7d-6c5b-4a39-8281-706f5e4d3c2b"
      // every method answers the arguments its handler was given (a list: Python sees what was decoded)
      const methods = echoContract26("i-peer")
      // the result Schemas are the real handlers' business: here the methods answer their arguments as is
      const asIs = new Map([...methods].map(([name, m]) => [name, { ...m, encodeSuccess: Exit.succeed }]))
      const server = yield* CallosumServer.make({ bind: "tcp://127.0.0.1:*" }).pipe(Effect.provide(Layer.succeed(CallosumHandlers, asIs)))
      const peer = yield* spawnPython("../manager26/callosum_contract_peer.py", [server.endpoint, "i-peer"])
      const by = new Map<unknown, Record<string, unknown>>()
      for (;;) {
        const line = yield* Queue.take(peer.lines).pipe(Effect.timeoutOption("60 seconds"))
        if (line._tag === "None") assert.fail(`callosum_contract_peer.py stalled: ${peer.stderr()}`)
        const r = JSON.parse(line.value) as Record<string, unknown>
        if (r["done"] === true) break
        by.set(r["check"], r)
      }
      assert.strictEqual(yield* peer.exitCode, 0, peer.stderr())
      assert.deepStrictEqual(by.get("uuid")!["result"], [KID])
      assert.deepStrictEqual(by.get("str")!["result"], [KID])
      assert.deepStrictEqual(by.get("keywords")!["result"], [KID, SID, "user-requested", false])
      const executed = by.get("execute")!["result"] as Array<unknown>
      assert.deepStrictEqual([executed.slice(0, 3), executed.slice(4)], [[SID, KID, 3], ["query", "print(1)", {}, null]])
      assert.deepStrictEqual(by.get("wrong-type")!["error"], ["TypeError", "TypeError('check_running() argument \\'kernel_id\\' must be str, not int')"])
      const badId = by.get("bad-id")!["error"] as Array<string>
      assert.strictEqual(badId[0], "TypeError")
      assert.match(String(badId[1]), /get_logs\(\) argument .*kernel_id.* must be a UUID in canonical form/)
      assert.deepStrictEqual(by.get("missing")!["error"], ["TypeError", "TypeError('execute() missing required argument \\'api_version\\'')"])
      assert.deepStrictEqual(by.get("other-agent")!["error"], ["AgentIdNotFoundError", "AgentIdNotFoundError('agent i-someone-else is not served here')"])
      assert.deepStrictEqual(by.get("no-agent-id")!["result"], ["r2515"])
    }).pipe(Effect.scoped), { timeout: 120_000 })
})
