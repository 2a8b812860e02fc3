import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { decodeConfigText } from "../../src/config/AgentConfig.ts"

const base = `[etcd]\nnamespace = "ns"\n`

describe("[agent] manager-contract", () => {
  it.effect("defaults to 19.06, accepts 26, refuses anything else", () =>
    Effect.gen(function*() {
      const dflt = yield* decodeConfigText("x.toml", base, {}, "box")
      assert.strictEqual(dflt.config.agent["manager-contract"], "19.06")
      const m26 = yield* decodeConfigText("x.toml", `${base}[agent]\nmanager-contract = "26"\n`, {}, "box")
      assert.strictEqual(m26.config.agent["manager-contract"], "26")
      assert.deepStrictEqual(m26.warnings, [])
      const bad = yield* Effect.exit(decodeConfigText("x.toml", `${base}[agent]\nmanager-contract = "25"\n`, {}, "box"))
      assert.isTrue(Exit.isFailure(bad))
    }))
})
