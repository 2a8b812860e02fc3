/**
 * The msgpack codec question of issue 15 item 7: the hand-written Python-semantics codec
 * (`src/codec/Msgpack.ts`) against `msgpackr` (already a dependency through Effect), same run,
 * same process, rounds interleaved.
 *
 *   node bench/run.ts codec [--rounds 5] [--ms 300]
 *
 * 1. Speed: encode and decode of the agent's real messages (a ping's arguments and reply, a 19.06
 *    `create_kernel` config, an `execute` result with console output, the bench `list_files`
 *    reply, a 256 KiB `download_file` reply) → µs per call (median over rounds).
 * 2. Fidelity: msgpack-python's golden vectors (`test/codec/msgpack_golden.json`, the oracle of
 *    `test/codec/Msgpack.mutation.test.ts`): how many encodings come out byte for byte, how many of
 *    Python's encodings decode to the right value, how many of the inputs Python rejects are rejected.
 *    msgpackr gets its closest options (no records, maps as objects, minimal map headers, float64 only,
 *    undefined as nil, bin copied out of the frame as the hand codec does,
 *    64-bit ints as bigint); a Python `float` that is integral (`1.0`) has no JS spelling for it, so it
 *    is given as the plain number.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Effect } from "effect"
import { Packr, Unpackr } from "msgpackr"
import { isDeepStrictEqual } from "node:util"
import { readFileSync } from "node:fs"
import * as Msgpack from "../src/codec/Msgpack.ts"

const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`)
  return i < 0 ? fallback : Number(process.argv[i + 1])
}
const rounds = arg("rounds", 5)
const windowMs = arg("ms", 300)

const packr = new Packr({ useRecords: false, mapsAsObjects: true, variableMapSize: true, useFloat32: 0, encodeUndefinedAsNil: true, int64AsType: "bigint" })
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, copyBuffers: true, int64AsType: "bigint" })

const kid = "3f1e6f0e-8a4b-4f5e-9c1d-2b7a6c5d4e3f"
const messages: ReadonlyArray<readonly [string, unknown]> = [
  ["ping args", ["hello"]],
  ["ping reply", "hello"],
  ["create_kernel args", [kid, {
    image: {
      canonical: "cr.backend.ai/stable/python:3.9-ubuntu20.04",
      digest: "sha256:" + "ab".repeat(32),
      registry: { name: "cr.backend.ai", url: "https://cr.backend.ai", username: null, password: null },
      labels: { "ai.backend.kernelspec": "1", "ai.backend.features": "batch query uid-match user-input", "ai.backend.base-distro": "ubuntu16.04" }
    },
    resource_slots: { cpu: "1", mem: "1073741824", "cuda.shares": "0" },
    idle_timeout: 600,
    mounts: [],
    environ: { LANG: "C.UTF-8", BACKENDAI_KERNEL_ID: kid }
  }]],
  ["execute result", {
    runId: "run-1",
    status: "finished",
    exitCode: 0,
    options: null,
    files: [],
    console: Array.from({ length: 20 }, (_, i) => ["stdout", `line ${i}: ${"x".repeat(60)}\n`])
  }],
  ["list_files reply", JSON.parse(readFileSync(new URL("./list-files-reply.json", import.meta.url), "utf8"))],
  ["download_file 256 KiB", Buffer.alloc(256 * 1024, 7)]
]

const timeIt = (f: () => unknown): number => {
  // calls per window → µs per call
  let n = 0
  const end = performance.now() + windowMs
  while (performance.now() < end) {
    for (let i = 0; i < 64; i++) f()
    n += 64
  }
  return (windowMs * 1000) / n
}
const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

type Desc =
  | { readonly t: "nil" }
  | { readonly t: "bool"; readonly v: boolean }
  | { readonly t: "int"; readonly v: string }
  | { readonly t: "float"; readonly v: string }
  | { readonly t: "str" | "bin"; readonly v: string; readonly rep?: number }
  | { readonly t: "arr"; readonly v: ReadonlyArray<Desc>; readonly rep?: number }
  | { readonly t: "map"; readonly v?: ReadonlyArray<readonly [string, Desc]>; readonly rep?: number }
const golden = JSON.parse(readFileSync(new URL("../test/codec/msgpack_golden.json", import.meta.url), "utf8")) as {
  readonly encode: ReadonlyArray<{ readonly value: Desc; readonly hex?: string }>
  readonly decode: ReadonlyArray<{ readonly value: Desc; readonly hex: string }>
  readonly reject: ReadonlyArray<{ readonly hex: string }>
  readonly ext: ReadonlyArray<{ readonly hex: string }>
}
const pyFloat = (s: string) => (s === "inf" ? Infinity : s === "-inf" ? -Infinity : Number(s))
const value = (d: Desc, floats: "marker" | "number"): unknown => {
  switch (d.t) {
    case "nil":
      return null
    case "bool":
      return d.v
    case "int": {
      const b = BigInt(d.v)
      return b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b
    }
    case "float":
      return floats === "marker" ? new Msgpack.PyFloat(pyFloat(d.v)) : pyFloat(d.v)
    case "str":
      return d.v.repeat(d.rep ?? 1)
    case "bin":
      return Buffer.from(d.v.repeat(d.rep ?? 1), "hex")
    case "arr":
      return Array.from({ length: d.rep ?? 1 }, () => d.v.map((x) => value(x, floats))).flat()
    case "map":
      return d.rep !== undefined
        ? Object.fromEntries(Array.from({ length: d.rep }, (_, i) => [`k${i}`, i]))
        : Object.fromEntries((d.v ?? []).map(([k, v]) => [k, value(v, floats)]))
  }
}
const sameValue = (got: unknown, want: unknown): boolean =>
  (typeof want === "number" && Number.isNaN(want) && Number.isNaN(got as number)) ||
  isDeepStrictEqual(got instanceof Uint8Array ? Buffer.from(got) : got, want) ||
  // msgpackr gives every 64-bit int as bigint with int64AsType: "bigint"; the hand codec only the unsafe ones
  (typeof got === "bigint" && typeof want === "number" && got === BigInt(want))
const throws = (f: () => unknown) => {
  try {
    f()
    return false
  } catch {
    return true
  }
}

const fidelity = (name: string, enc: (v: unknown) => Uint8Array, dec: (b: Uint8Array) => unknown, floats: "marker" | "number") => {
  const exact = golden.encode.filter((c) => c.hex !== undefined)
  const encOk = exact.filter((c) => {
    try {
      return Buffer.from(enc(value(c.value, floats))).toString("hex") === c.hex
    } catch {
      return false
    }
  }).length
  const decCases = [...exact.map((c) => ({ hex: c.hex!, value: c.value })), ...golden.decode]
  const decOk = decCases.filter((c) => {
    try {
      return sameValue(dec(Buffer.from(c.hex, "hex")), value(c.value, "number"))
    } catch {
      return false
    }
  }).length
  const rejects = [...golden.reject, ...golden.ext]
  const rejOk = rejects.filter((c) => throws(() => dec(Buffer.from(c.hex, "hex")))).length
  console.log(
    `${name.padEnd(10)} encode byte-exact ${encOk}/${exact.length}   decode right ${decOk}/${decCases.length}   ` +
      `Python's rejects (incl. ext) rejected ${rejOk}/${rejects.length}`
  )
}

const program = Effect.sync(() => {
  console.log(`codec bench: ${rounds} rounds × ${windowMs} ms windows, µs per call (median; lower is better)`)
  const rows = messages.map(([label, v]) => {
    const bytes = Msgpack.encode(v)
    const same = Buffer.compare(Buffer.from(packr.pack(v)), bytes) === 0
    const hand = { enc: [] as Array<number>, dec: [] as Array<number> }
    const lib = { enc: [] as Array<number>, dec: [] as Array<number> }
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? [hand, lib] : [lib, hand]
      for (const which of order) {
        if (which === hand) {
          hand.enc.push(timeIt(() => Msgpack.encode(v)))
          hand.dec.push(timeIt(() => Msgpack.decode(bytes)))
        } else {
          lib.enc.push(timeIt(() => packr.pack(v)))
          lib.dec.push(timeIt(() => unpackr.unpack(bytes)))
        }
      }
    }
    return { label, size: bytes.length, same, hand, lib }
  })
  console.log(`${"message".padEnd(24)} ${"bytes".padStart(7)}  same bytes  ${"hand enc".padStart(9)} ${"msgpackr enc".padStart(13)} ${"hand dec".padStart(9)} ${"msgpackr dec".padStart(13)}`)
  for (const r of rows) {
    const f = (xs: ReadonlyArray<number>) => median(xs).toFixed(2).padStart(9)
    console.log(
      `${r.label.padEnd(24)} ${String(r.size).padStart(7)}  ${(r.same ? "yes" : "NO").padEnd(10)}  ${f(r.hand.enc)} ${f(r.lib.enc).padStart(13)} ${f(r.hand.dec)} ${f(r.lib.dec).padStart(13)}`
    )
  }
  console.log("fidelity against msgpack-python 1.0.3's golden vectors:")
  fidelity("hand", Msgpack.encode, (b) => Msgpack.decode(b), "marker")
  fidelity("msgpackr", (v) => packr.pack(v), (b) => unpackr.unpack(b), "number")
})

NodeRuntime.runMain(program)
