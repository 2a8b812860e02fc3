import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { AgentRpcHandlers, AgentRpcs } from "../../src/rpc/AgentRpcs.ts"
import { AiozmqClient } from "../../src/rpc/aiozmq/Client.ts"
import { AiozmqServer } from "../../src/rpc/aiozmq/AiozmqServer.ts"
import { HealthHandlers } from "../../src/rpc/handlers/Health.ts"

const ServerLive = AiozmqServer.layer({ bind: "tcp://127.0.0.1:*" }).pipe(
  Layer.provide(AgentRpcHandlers.layer(HealthHandlers))
)

describe("AiozmqServer", () => {
  it.live("ping round trip", () =>
    Effect.gen(function*() {
      const server = yield* AiozmqServer
      const client = yield* AiozmqClient.make({ connect: server.endpoint, timeout: "5 seconds" })
      const pong = yield* client.invoke(AgentRpcs.ping, "hello")
      assert.strictEqual(pong, "hello")
    }).pipe(Effect.provide(ServerLive)))
})
