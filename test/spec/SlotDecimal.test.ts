/**
 * Slot values are Python Decimal strings (manager 19.06 sends `"1E+1"` for 10 CPUs). CPython itself
 * is the oracle: a golden table produced with /usr/bin/python3 3.11 (`decimal.Decimal`), and a
 * seeded fuzz of 3,000 strings over the characters that matter, each decided by the live interpreter
 * (test/spec/slot_decimal_oracle.py) and by the agent.
 */
import { assert, describe, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import { Effect } from "effect"
import { decodeKernelConfig, resourceText } from "../../src/spec/KernelConfig.ts"
import { resourceQuantities } from "../../src/kube/KernelObjects.ts"
import { SLOT_MAX_DIGITS, slotIntegerPart, slotValue } from "../../src/spec/SlotDecimal.ts"
import { pythonExecutable } from "../interop/python.ts"

const oracleScript = new URL("./slot_decimal_oracle.py", import.meta.url).pathname

/** Runs the CPython oracle over `inputs`. */
const oracle = (inputs: ReadonlyArray<string>) =>
  Effect.callback<ReadonlyArray<readonly [boolean, string | null]>, Error>((resume) => {
    const child = spawn(pythonExecutable, [oracleScript, String(SLOT_MAX_DIGITS)], { stdio: ["pipe", "pipe", "inherit"] })
    let out = ""
    child.stdout.on("data", (c: Buffer) => (out += c.toString("utf8")))
    child.on("error", (e) => resume(Effect.fail(e)))
    child.on("exit", (code) =>
      resume(code === 0 ? Effect.succeed(JSON.parse(out)) : Effect.fail(new Error(`oracle exited ${code}`)))
    )
    child.stdin.end(JSON.stringify(inputs))
    return Effect.sync(() => child.kill("SIGKILL"))
  })

// [input, CPython's verdict]: the plain value, or null where Decimal() raises / the value is refused
const GOLDEN: ReadonlyArray<readonly [string, string | null]> = [
  ["1E+1", "10"],
  ["1e+9", "1000000000"],
  ["1E+9", "1000000000"],
  [" 4 ", "4"],
  ["\t4\n", "4"],
  ["0.5", "0.5"],
  ["00012.500", "12.5"],
  ["1_000", "1000"],
  ["1__0", "10"],
  ["_1", "1"],
  ["1_", "1"],
  ["1._5", "1.5"],
  ["1e1_0", "10000000000"],
  ["+4", "4"],
  ["-0", "0"],
  ["-0.0", "0"],
  ["0E+999999999", "0"],
  [".5", "0.5"],
  ["5.", "5"],
  ["1.e5", "100000"],
  ["1e-0", "1"],
  ["\u00a04\u00a0", "4"],
  ["\u20034", "4"],
  ["\x1c4\x1f", "4"],
  ["\u0661\u0662", "12"],
  ["\u0661.\u0665E\u0662", "150"],
  ["\u{1D7D9}", "1"],
  ["1073741824", "1073741824"],
  ["9007199254740993", "9007199254740993"], // 2^53 + 1: a float would say ...992
  ["1.5E+3", "1500"],
  ["2.5e-1", "0.25"],
  // refused
  ["-1", null],
  ["-0.5", null],
  ["Inf", null],
  ["-inf", null],
  ["Infinity", null],
  ["NaN", null],
  ["sNaN", null],
  ["nan12", null],
  ["", null],
  [" ", null],
  ["_", null],
  ["__", null],
  [".", null],
  ["1e", null],
  [".e5", null],
  ["e5", null],
  ["1 0", null],
  [" _ 4", null],
  ["4 _ ", null],
  ["0x10", null],
  ["4\u200b", null],
  ["4\x00", null],
  ["\u00b2", null],
  ["\u00bd", null],
  ["1g", null],
  ["1E+999999999", null], // finite, but past SLOT_MAX_DIGITS
  ["1e-41", null]
]

describe("slot values (Python Decimal strings)", () => {
  it("match the golden table produced by CPython", () => {
    for (const [input, expected] of GOLDEN) {
      const r = slotValue(input)
      assert.deepStrictEqual(r.ok ? r.value : null, expected, JSON.stringify(input))
    }
  })

  it.live("agree with the live CPython interpreter on the golden table and 3,000 fuzzed strings", () =>
    Effect.gen(function*() {
      const alphabet = ["0", "1", "7", "9", "_", " ", ".", "e", "E", "+", "-", "\u0661", "\u00a0", "\t", "i", "n", "f", "a", "s", "N", "x"]
      let seed = 20190601
      const rand = (n: number) => {
        seed = (seed * 1103515245 + 12345) & 0x7fffffff
        return seed % n
      }
      const numeric = ["0", "1", "5", "9", "0", "_", ".", "e", "+", "-", " "]
      const fuzz = Array.from({ length: 3000 }, (_, i) => {
        const chars = i % 2 === 0 ? alphabet : numeric
        return Array.from({ length: rand(9) }, () => chars[rand(chars.length)]).join("")
      })
      const inputs = [...GOLDEN.map(([s]) => s), ...fuzz]
      const verdicts = yield* oracle(inputs)
      let accepted = 0
      inputs.forEach((input, i) => {
        const r = slotValue(input)
        const [ok, value] = verdicts[i]!
        if (ok) accepted++
        assert.deepStrictEqual(r.ok ? r.value : null, ok ? value : null, JSON.stringify(input))
      })
      assert.isAbove(accepted, 400) // the fuzz reaches the accepting paths too
    }), 60_000)

  it.effect("a create config with manager 19.06's slots decodes, and byte counts stay exact", () =>
    Effect.gen(function*() {
      const config = yield* decodeKernelConfig("kid", {
        image: { canonical: "lablup/python:3.6-ubuntu18.04", labels: {} },
        resource_slots: { cpu: "1E+1", mem: "9.007199254740993E+15", "cuda.device": "0" }
      })
      assert.deepStrictEqual(config.resource_slots, { cpu: "10", mem: "9007199254740993", "cuda.device": "0" })
      assert.strictEqual(slotIntegerPart(config.resource_slots["mem"]!), 9007199254740993n)
      assert.include(resourceText("kid", config), "MEM_SHARES=root:9007199254740993\n")
      assert.deepStrictEqual(resourceQuantities(config.resource_slots), { cpu: "10", memory: "9007199254740993" })
      const bad = yield* decodeKernelConfig("kid", {
        image: { canonical: "x/y:z", labels: {} },
        resource_slots: { cpu: "NaN", mem: "-1" }
      }).pipe(Effect.flip)
      assert.match(bad.message, /resource_slots\.cpu: expected a finite decimal/)
      assert.match(bad.message, /resource_slots\.mem: expected a non-negative decimal/)
    }))
})
