// Config errors never echo secret values (issue 13, secrets): a password of the wrong type, a broken
// TOML line holding a password, or credentials inside the registry URL.
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { decodeConfigText } from "../../src/config/AgentConfig.ts"

const SECRET = "hunter2-Zq9"

const problemsOf = (text: string, env: NodeJS.ProcessEnv = {}) =>
  Effect.flip(decodeConfigText("agent.toml", text, env, "h")).pipe(Effect.map((e) => e.message))

describe("config errors and secrets", () => {
  it.effect("a password of the wrong type is named, not shown", () =>
    Effect.gen(function*() {
      const m = yield* problemsOf(`[etcd]\nnamespace = "n"\npassword = 987654321\n`)
      assert.match(m, /etcd\.password/)
      assert.notInclude(m, "987654321")
      const arr = yield* problemsOf(`[etcd]\nnamespace = "n"\npassword = ["${SECRET}"]\n`)
      assert.match(arr, /etcd\.password/)
      assert.notInclude(arr, SECRET)
    }))

  it.effect("a TOML syntax error on the password's line does not quote it", () =>
    Effect.gen(function*() {
      const m = yield* problemsOf(`[etcd]\nnamespace = "n"\npassword = "${SECRET}\n`)
      assert.match(m, /not valid TOML/)
      assert.notInclude(m, SECRET)
      const m2 = yield* problemsOf(`[etcd]\nnamespace = "n"\npassword = ${SECRET}\n`)
      assert.notInclude(m2, SECRET)
    }))

  it.effect("credentials in kubernetes.registry.url are not echoed", () =>
    Effect.gen(function*() {
      const m = yield* problemsOf(`[etcd]\nnamespace = "n"\n[kubernetes.registry]\nurl = "ftp://user:${SECRET}@reg"\n`)
      assert.match(m, /kubernetes\.registry\.url/)
      assert.notInclude(m, SECRET)
    }))
})
