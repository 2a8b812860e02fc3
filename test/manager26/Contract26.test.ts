/**
 * The 25.15 / 26.x contract's argument side (src/manager26/Contract26.ts): its Schemas decode what the
 * manager's codec gives (a Uuid ext value or a str → the canonical text, a dict, None where allowed),
 * arguments are bound like Python binds them with `agent_id=` taken out and checked once
 * (`withAgentId`), and every refusal is a `TypeError` naming the method and the parameter.
 */
import { assert, describe, it } from "@effect/vitest"
import { Exit, Result, Schema } from "effect"
import * as Bai from "../../src/codec/bai/BaiMsgpack.ts"
import type { PythonError } from "../../src/domain/Errors.ts"
import { Decimal, Dict, KernelId, Str } from "../../src/manager26/Contract26.ts"
import { echoContract26 } from "./Contract26Support.ts"

const KID = "3f1e6f0e-8a4b-4f5e-9c1d-2b7a6c5d4e3f"
const SID = "0b9f8e7d-6c5b-4a39-8281-706f5e4d3c2b"
const uuid = (s: string) => Bai.Uuid.parse(s)!

// every method served, each handler answering its decoded arguments
const served = echoContract26("i-this")
const decode = (method: string, args: ReadonlyArray<unknown>, kwargs: Record<string, unknown> = {}) => {
  const m = served.get(method)
  assert.isDefined(m, method)
  return m!.decodeArgs(args, kwargs)
}
const typeError = (message: string): Result.Result<never, PythonError> => Result.fail({ name: "TypeError", args: [message] })

describe("Contract26 Schemas", () => {
  it("Str: a str and a Uuid ext value both decode to the text; other types are refused", () => {
    const str = Schema.decodeUnknownExit(Str)
    assert.deepStrictEqual(str("abc"), Exit.succeed("abc"))
    assert.deepStrictEqual(str(uuid(KID.toUpperCase())), Exit.succeed(KID))
    for (const bad of [1, null, undefined, true, [KID], { k: KID }, new Uint8Array(16), new Bai.PyDecimal("1")]) {
      assert.isTrue(Exit.isFailure(str(bad)), String(bad))
    }
  })

  it("KernelId: a canonical UUID as str or Uuid; '../x', uppercase, empty refused", () => {
    const kid = Schema.decodeUnknownExit(KernelId)
    assert.deepStrictEqual(kid(KID), Exit.succeed(KID))
    assert.deepStrictEqual(kid(uuid(KID)), Exit.succeed(KID))
    for (const bad of ["../x", KID.toUpperCase(), "", `${KID}\u0000`, 7]) assert.isTrue(Exit.isFailure(kid(bad)), String(bad))
  })

  it("Dict: a plain record; None is {}; a list or a str is refused", () => {
    const dict = Schema.decodeUnknownExit(Dict)
    assert.deepStrictEqual(dict({ a: 1 }), Exit.succeed({ a: 1 }))
    assert.deepStrictEqual(dict(null), Exit.succeed({}))
    for (const bad of [[], "x", 1, new Bai.PyDecimal("1"), uuid(KID)]) assert.isTrue(Exit.isFailure(dict(bad)), String(bad))
  })

  it("Decimal: a Decimal (ext 3), a str or a finite number → its text", () => {
    const dec = Schema.decodeUnknownExit(Decimal)
    assert.deepStrictEqual(dec(new Bai.PyDecimal("1.50")), Exit.succeed("1.50"))
    assert.deepStrictEqual(dec("1073741824"), Exit.succeed("1073741824"))
    assert.deepStrictEqual(dec(2), Exit.succeed("2"))
    for (const bad of [Number.NaN, null, [1], true]) assert.isTrue(Exit.isFailure(dec(bad)), String(bad))
  })
})

describe("Contract26 methods: binding, decoding and TypeError texts", () => {
  it("positional and keyword arguments bind like Python; Uuid and str arguments decode alike", () => {
    assert.deepStrictEqual(decode("check_running", [KID]), Result.succeed([KID]))
    assert.deepStrictEqual(decode("check_running", [uuid(KID)], { agent_id: "i-this" }), Result.succeed([KID]))
    assert.deepStrictEqual(decode("check_running", [], { kernel_id: uuid(KID) }), Result.succeed([KID]))
    assert.deepStrictEqual(
      decode("destroy_kernel", [KID, uuid(SID)], { reason: "user-requested", suppress_events: false, agent_id: "i-this" }),
      Result.succeed([KID, SID, "user-requested", false])
    )
    // left-out optional parameters are absent; None where None is allowed
    assert.deepStrictEqual(decode("destroy_kernel", [KID]), Result.succeed([KID]))
    assert.deepStrictEqual(decode("destroy_kernel", [KID, null, null, null]), Result.succeed([KID, null, null, false]))
    assert.deepStrictEqual(
      decode("execute", [SID, KID, 3, "r1", "query", "print(1)", {}, null]),
      Result.succeed([SID, KID, 3, "r1", "query", "print(1)", {}, null])
    )
    assert.deepStrictEqual(
      decode("create_kernels", [SID, [uuid(KID)], [{ image: {} }], {}, {}]),
      Result.succeed([SID, [KID], [{ image: {} }], {}, {}])
    )
    assert.deepStrictEqual(decode("sync_kernel_registry", [[[uuid(KID), SID]]]), Result.succeed([[[KID, SID]]]))
    assert.deepStrictEqual(decode("ping", [7]), Result.succeed([7]))
  })

  it("a wrong type is a TypeError naming the method, the parameter and both types", () => {
    assert.deepStrictEqual(decode("check_running", [5]), typeError("check_running() argument 'kernel_id' must be str, not int"))
    assert.deepStrictEqual(decode("check_running", [], { kernel_id: null }), typeError("check_running() argument 'kernel_id' must be str, not NoneType"))
    assert.deepStrictEqual(decode("execute", [SID, KID, 3.5, null, "query", "", {}]), typeError("execute() argument 'api_version' must be int, not float"))
    assert.deepStrictEqual(decode("execute", [SID, KID, 3, 4, "query", "", {}]), typeError("execute() argument 'run_id' must be str or None, not int"))
    assert.deepStrictEqual(decode("execute", [SID, KID, 3, null, "query", "", []]), typeError("execute() argument 'opts' must be dict, not list"))
    assert.deepStrictEqual(
      decode("execute", [SID, KID, 3, null, "query", "", {}, "soon"]),
      typeError("execute() argument 'flush_timeout' must be float or None, not str")
    )
    assert.deepStrictEqual(decode("upload_file", [KID, "a.txt", "text"]), typeError("upload_file() argument 'filedata' must be bytes, not str"))
    assert.deepStrictEqual(
      decode("destroy_kernel", [KID], { suppress_events: 1 }),
      typeError("destroy_kernel() argument 'suppress_events' must be bool or None, not int")
    )
    assert.deepStrictEqual(
      decode("create_kernels", [SID, [KID, 5], [{}, {}]]),
      typeError("create_kernels() argument 'raw_kernel_ids'[1] must be str, not int")
    )
    assert.deepStrictEqual(decode("create_kernels", [SID, KID, [{}]]), typeError("create_kernels() argument 'raw_kernel_ids' must be list, not str"))
    assert.deepStrictEqual(
      decode("sync_kernel_registry", [[[KID, SID, "x"]]]),
      typeError("sync_kernel_registry() argument 'raw_kernel_session_ids'[0] has more than 2 items")
    )
  })

  it("a kernel id that is not a canonical UUID is refused before any handler runs", () => {
    assert.deepStrictEqual(
      decode("get_logs", ["../etc"]),
      typeError("get_logs() argument 'kernel_id' must be a UUID in canonical form (str(uuid.uuid4())), not \"../etc\"")
    )
    assert.deepStrictEqual(
      decode("sync_kernel_registry", [[[KID, SID], ["x", SID]]]),
      typeError("sync_kernel_registry() argument 'raw_kernel_session_ids'[1][0] must be a UUID in canonical form (str(uuid.uuid4())), not \"x\"")
    )
  })

  it("arity, keywords and cross-argument checks", () => {
    assert.deepStrictEqual(decode("check_running", [KID, "extra"]), typeError("check_running() takes 1 positional arguments but 2 were given"))
    assert.deepStrictEqual(decode("check_running", []), typeError("check_running() missing required argument 'kernel_id'"))
    assert.deepStrictEqual(decode("check_running", [], { agent_id: "i-this" }), typeError("check_running() missing required argument 'kernel_id'"))
    assert.deepStrictEqual(decode("check_running", [KID], { kernel_id: KID }), typeError("check_running() got multiple values for argument 'kernel_id'"))
    assert.deepStrictEqual(decode("check_running", [KID], { nosuch: 1 }), typeError("check_running() got an unexpected keyword argument 'nosuch'"))
    assert.deepStrictEqual(
      decode("destroy_kernel", [KID, SID, "r", false, "extra"]),
      typeError("destroy_kernel() takes 4 positional arguments but 5 were given")
    )
    for (const [ids, configs] of [[[KID], []], [[], []], [[KID, KID], [{}]]] as const) {
      assert.deepStrictEqual(
        decode("create_kernels", [SID, ids, configs]),
        typeError("create_kernels(): raw_kernel_ids and raw_configs must be lists of the same non-zero length")
      )
    }
  })

  it("agent_id=: this agent's id or none passes; another is AgentIdNotFoundError, after binding", () => {
    assert.deepStrictEqual(decode("ping", ["x"], { agent_id: "i-this" }), Result.succeed(["x"]))
    assert.deepStrictEqual(decode("ping", ["x"], { agent_id: null }), Result.succeed(["x"]))
    assert.deepStrictEqual(
      decode("ping", ["x"], { agent_id: "i-other" }),
      Result.fail({ name: "AgentIdNotFoundError", args: ["agent i-other is not served here"] })
    )
    assert.deepStrictEqual(
      decode("check_running", [KID], { agent_id: "i-other" }),
      Result.fail({ name: "AgentIdNotFoundError", args: ["agent i-other is not served here"] })
    )
    // a bad argument list is told first, as Python's call binding fails before the handler looks the agent up
    assert.deepStrictEqual(decode("check_running", [5], { agent_id: "i-other" }), typeError("check_running() argument 'kernel_id' must be str, not int"))
  })

  it("every 26.x method the manager's essential path calls is in the contract", () => {
    for (const name of ["ping", "check_and_pull", "create_kernels", "destroy_kernel", "check_running", "execute"]) {
      assert.isTrue(served.has(name), name)
    }
  })
})
