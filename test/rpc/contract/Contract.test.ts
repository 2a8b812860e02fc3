/**
 * The one argument binder of both manager contracts (`inspect.Signature.bind` semantics) and
 * `servedMethods`: the argument Schema decides, a refusal is the wire's argument error.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Result, Schema } from "effect"
import { bindArguments, method, servedMethods } from "../../../src/rpc/contract/Contract.ts"

const params = ["kernel_id", "session_id?", "reason?", "suppress_events?"]

describe("contract", () => {
  it("binds positional, then keywords by name; a left-out optional before a given one is undefined", () => {
    assert.deepStrictEqual(bindArguments("m", params, ["k"], {}), ["k"])
    assert.deepStrictEqual(bindArguments("m", params, ["k"], { reason: "r" }), ["k", undefined, "r"])
    assert.deepStrictEqual(bindArguments("m", params, [], { kernel_id: "k", suppress_events: true }), ["k", undefined, undefined, true])
    // the ignored keyword (26.x `agent_id`) is not a parameter
    assert.deepStrictEqual(bindArguments("m", params, ["k", "s"], { agent_id: "i-1" }, "agent_id"), ["k", "s"])
    // without keywords the arity is the Schema's (19.06 get_completions sends an unnamed extra `mode`)
    assert.deepStrictEqual(bindArguments("m", ["a"], [1, 2], {}), [1, 2])
  })

  it("refuses what Python's bind refuses, in Python's words", () => {
    assert.strictEqual(bindArguments("m", params, ["k"], { nope: 1 }), "m() got an unexpected keyword argument 'nope'")
    assert.strictEqual(bindArguments("m", params, ["k"], { kernel_id: "k" }), "m() got multiple values for argument 'kernel_id'")
    assert.strictEqual(bindArguments("m", params, [], { reason: "r" }), "m() missing required argument 'kernel_id'")
    assert.strictEqual(bindArguments("m", ["a"], [1, 2], { b: 1 }), "m() takes 1 positional arguments but 2 were given")
    assert.strictEqual(bindArguments("m", params, ["k"], { agent_id: "i-1" }), "m() got an unexpected keyword argument 'agent_id'")
    assert.strictEqual(bindArguments("m", params, "k", {}), "arguments are not a sequence")
    assert.strictEqual(bindArguments("m", params, ["k"], [1]), "keyword arguments are not a mapping")
  })

  it("servedMethods: bound arguments go through the argument Schema; refusals are the wire's argument error", () => {
    const contract = { add: method("add", ["a", "b?"], Schema.Tuple([Schema.Number, Schema.optionalKey(Schema.Number)]), Schema.Number) }
    const served = servedMethods(contract, { add: (a: number, b?: number) => Effect.succeed(a + (b ?? 0)) }, (m) => ({ name: "TypeError", args: [m] }))
    const add = served.get("add")!
    assert.deepStrictEqual(add.decodeArgs([1], { b: 2 }), Result.succeed([1, 2]))
    const bad = add.decodeArgs(["x"], {})
    assert.isTrue(Result.isFailure(bad) && bad.failure.name === "TypeError" && String(bad.failure.args[0]).includes("Expected number"))
    assert.deepStrictEqual(add.decodeArgs([1], { c: 2 }), Result.fail({ name: "TypeError", args: ["add() got an unexpected keyword argument 'c'"] }))
    // a method without a handler is not served (the wire answers it as unknown)
    assert.isUndefined(servedMethods(contract, {}, (m) => ({ name: "TypeError", args: [m] })).get("add"))
  })
})
