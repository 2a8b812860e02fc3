/**
 * CURVE on the Callosum server (contract §1.7): the manager's key gets its PONG, another key and a
 * plain (NULL) client get nothing, because the ZAP handler refuses them. Real ZeroMQ sockets.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Zmq from "zeromq"
import { CallosumHandlers, CallosumServer } from "../../../src/rpc/callosum/CallosumServer.ts"
import { readCertificate, z85Encode, zapReply } from "../../../src/rpc/callosum/Curve.ts"

describe("CURVE", () => {
  it("Z85 (RFC 32 vector) and the ZAP decision", () => {
    assert.strictEqual(z85Encode(Buffer.from("864FD26FB559F75B", "hex")), "HelloWorld")
    const manager = Zmq.curveKeyPair()
    const raw = (z: string) => {
      // decode Z85 the long way round: find the 32 bytes whose encoding is z (via the encoder's inverse)
      const alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
      const out = Buffer.alloc(32)
      for (let i = 0; i < 8; i++) {
        let v = 0
        for (let j = 0; j < 5; j++) v = v * 85 + alphabet.indexOf(z[i * 5 + j]!)
        out.writeUInt32BE(v, i * 4)
      }
      return out
    }
    const key = raw(manager.publicKey)
    assert.strictEqual(z85Encode(key), manager.publicKey)
    const req = (domain: string, mech: string, k: Buffer) =>
      [Buffer.from("1.0"), Buffer.from("1"), Buffer.from(domain), Buffer.from("127.0.0.1"), Buffer.alloc(0), Buffer.from(mech), k]
    const allowed = new Set([manager.publicKey])
    assert.strictEqual(zapReply(req("local", "CURVE", key), allowed)[2]!.toString(), "200")
    assert.strictEqual(zapReply(req("other", "CURVE", key), allowed)[2]!.toString(), "400")
    assert.strictEqual(zapReply(req("local", "NULL", key), allowed)[2]!.toString(), "400")
    assert.strictEqual(zapReply(req("local", "CURVE", raw(Zmq.curveKeyPair().publicKey)), allowed)[2]!.toString(), "400")
  })

  it.effect("reads pyzmq certificate files", () =>
    Effect.gen(function*() {
      const pair = Zmq.curveKeyPair()
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bai-curve-"))
      const file = path.join(dir, "agent.key_secret")
      fs.writeFileSync(file, `metadata\ncurve\n    public-key = "${pair.publicKey}"\n    secret-key = "${pair.secretKey}"\n`)
      assert.deepStrictEqual(yield* readCertificate(file), { publicKey: pair.publicKey, secretKey: pair.secretKey })
      fs.writeFileSync(file, `curve\n    public-key = "short"\n`)
      assert.isTrue((yield* Effect.exit(readCertificate(file)))._tag === "Failure")
      fs.rmSync(dir, { recursive: true })
    }))

  it.live("the manager's key gets PONG; another key and a plain client do not", () =>
    Effect.gen(function*() {
      const agent = Zmq.curveKeyPair()
      const manager = Zmq.curveKeyPair()
      const intruder = Zmq.curveKeyPair()
      const server = yield* CallosumServer.make({
        bind: "tcp://127.0.0.1:*",
        curve: { secretKey: agent.secretKey, allowedClientKeys: [manager.publicKey] }
      }).pipe(Effect.provide(CallosumHandlers.layerOf({ ping: ([m]) => Effect.succeed(m) })))
      const pingWith = (options: Partial<Zmq.SocketOptions<Zmq.Dealer>>) =>
        Effect.acquireUseRelease(
          Effect.sync(() => new Zmq.Dealer({ linger: 0, receiveTimeout: 2000, ...options })),
          (dealer) =>
            Effect.promise(async () => {
              dealer.connect(server.endpoint)
              await dealer.send([Buffer.from("PING"), Buffer.alloc(0), Buffer.alloc(0)])
              try {
                return (await dealer.receive())[0]!.toString()
              } catch {
                return "no answer"
              }
            }),
          (dealer) => Effect.sync(() => dealer.close())
        )
      const curveClient = (pair: { publicKey: string; secretKey: string }) => ({
        curveServerKey: agent.publicKey,
        curvePublicKey: pair.publicKey,
        curveSecretKey: pair.secretKey,
        zapDomain: "local"
      })
      assert.strictEqual(yield* pingWith(curveClient(manager)), "PONG")
      assert.strictEqual(yield* pingWith(curveClient(intruder)), "no answer")
      assert.strictEqual(yield* pingWith({}), "no answer")
      assert.strictEqual(yield* pingWith(curveClient(manager)), "PONG")
    }).pipe(Effect.scoped))
})
