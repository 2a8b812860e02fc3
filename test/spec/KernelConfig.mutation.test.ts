/**
 * KernelConfig's derivations against hand-derived expectations from the formats they reproduce:
 * K1's `write_to_text` resource.txt, the `ai.backend.service-ports` label grammar (spec §2.3), the
 * etcd label nesting, `environ.txt`, and the exact binary size text.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import {
  binarySizeText,
  checkVfolderPaths,
  decodeKernelConfig,
  environText,
  flattenLabels,
  isAgentSetVariable,
  isLoaderVariable,
  isPathComponent,
  parseServicePorts,
  resourceSpecJson,
  resourceText,
  vfolderHostPath
} from "../../src/spec/KernelConfig.ts"
import { slotValue } from "../../src/spec/SlotDecimal.ts"

const KID = "0b7a5b2c-5d0e-4bd4-a4d5-6a3f1a7f8a11"
const image = { canonical: "lablup/python:3.6-ubuntu18.04", labels: {} }

const decodeOk = (raw: unknown) => Effect.runSync(decodeKernelConfig(KID, raw))
const decodeErr = (raw: unknown): string => {
  const exit = Effect.runSyncExit(decodeKernelConfig(KID, raw))
  if (Exit.isSuccess(exit)) throw new Error("decoded")
  const e = exit.cause.reasons[0]
  return e !== undefined && e._tag === "Fail" ? (e.error as { message: string }).message : "?"
}
const ports = (label: string) => Effect.runSync(Effect.result(parseServicePorts(label)))

describe("service-ports label", () => {
  it("parses name:protocol:port lists with spaces and empty items", () => {
    const r = ports(" jupyter:http:8080 , ssh:tcp:2200,,term:pty:7681 ")
    assert.strictEqual(r._tag, "Success")
    if (r._tag === "Success") {
      assert.deepStrictEqual(r.success, [
        { name: "jupyter", protocol: "http", containerPort: 8080 },
        { name: "ssh", protocol: "tcp", containerPort: 2200 },
        { name: "term", protocol: "pty", containerPort: 7681 }
      ])
    }
    const empty = ports("")
    assert.deepStrictEqual(empty._tag === "Success" ? empty.success : undefined, [])
  })

  it("port bounds: 1025 and 65535 pass; 1024, 65536, 2000, 2001 do not", () => {
    for (const p of [1025, 65535, 1999, 2002]) assert.strictEqual(ports(`a:tcp:${p}`)._tag, "Success", String(p))
    for (const p of [0, 1024, 65536, 2000, 2001]) {
      const r = ports(`a:tcp:${p}`)
      assert.deepStrictEqual(r._tag === "Failure" ? r.failure : "", `ai.backend.service-ports: port ${p} of "a" must be in 1025–65535 and not 2000/2001`)
    }
  })

  it("malformed items and repeats are named", () => {
    for (const item of ["a:udp:3000", "a:tcp", ":tcp:3000", "a:tcp:30x0", "a:tcp:-3000", "a:TCP:3000", "xa:tcp:3000x"]) {
      const r = ports(item)
      assert.deepStrictEqual(r._tag === "Failure" ? r.failure : "", `ai.backend.service-ports: "${item}" is not name:tcp|pty|http:port`)
    }
    const sameName = ports("a:tcp:3000,a:http:3001")
    assert.deepStrictEqual(sameName._tag === "Failure" ? sameName.failure : "", `ai.backend.service-ports: "a:http:3001" repeats a name or port`)
    const samePort = ports("a:tcp:3000,b:http:3000")
    assert.deepStrictEqual(samePort._tag === "Failure" ? samePort.failure : "", `ai.backend.service-ports: "b:http:3000" repeats a name or port`)
  })

  it("a bad label fails the whole config decode with the label's message", () => {
    const msg = decodeErr({ image: { ...image, labels: { "ai.backend.service-ports": "a:tcp:80" } }, resource_slots: {} })
    assert.strictEqual(msg, `ai.backend.service-ports: port 80 of "a" must be in 1025–65535 and not 2000/2001`)
  })
})

describe("labels from etcd", () => {
  it("nested mappings flatten to slash keys; an empty key is the prefix itself; numbers stringify", () => {
    assert.deepStrictEqual(flattenLabels({ "com.example": { x: "1", "": "root", y: { z: 2 } }, plain: "p" }), {
      "com.example/x": "1",
      "com.example": "root",
      "com.example/y/z": "2",
      plain: "p"
    })
    assert.deepStrictEqual(flattenLabels({ "": { a: "1" } }), { a: "1" })
  })

  it("non-string leaves are refused with the key named", () => {
    assert.strictEqual(flattenLabels({ a: { b: null } }), `label "a/b": expected a string or a nested mapping of strings`)
    assert.strictEqual(flattenLabels({ a: [1] }), `label "a": expected a string or a nested mapping of strings`)
    assert.strictEqual(flattenLabels({ a: true }), `label "a": expected a string or a nested mapping of strings`)
    assert.strictEqual(flattenLabels({ a: new Uint8Array(1) }), `label "a": expected a string or a nested mapping of strings`)
    assert.strictEqual(flattenLabels({ ["k".repeat(200)]: null }), `label ${JSON.stringify("k".repeat(120))}: expected a string or a nested mapping of strings`)
  })

  it("nesting: 17 levels flatten, 18 are refused", () => {
    const nest = (n: number): unknown => {
      let v: unknown = "leaf"
      for (let i = 0; i < n; i++) v = { k: v }
      return v
    }
    assert.deepStrictEqual(flattenLabels({ r: nest(16) }), { [["r", ...Array(16).fill("k")].join("/")]: "leaf" })
    assert.isString(flattenLabels({ r: nest(18) }))
    assert.match(decodeErr({ image: { ...image, labels: { r: nest(18) } }, resource_slots: {} }), /expected a string or a nested mapping/)
  })
})

describe("environ", () => {
  it("agent-set and loader variables", () => {
    for (const k of ["LOCAL_USER_ID", "LOCAL_GROUP_ID", "BACKENDAI_X", "LD_PRELOAD"]) assert.isTrue(isAgentSetVariable(k), k)
    for (const k of ["LOCAL_USER", "XBACKENDAI_", "LD_LIBRARY_PATH", "PATH"]) assert.isFalse(isAgentSetVariable(k), k)
    for (const k of ["LD_PRELOAD", "LD_AUDIT", "LD_", "GLIBC_TUNABLES"]) assert.isTrue(isLoaderVariable(k), k)
    for (const k of ["XLD_PRELOAD", "GLIBC_TUNABLE", "ld_preload"]) assert.isFalse(isLoaderVariable(k), k)
  })

  it("decode: agent variables dropped, Kubernetes-invalid names dropped, loader and NUL refused (all listed)", () => {
    const ok = decodeOk({ image, resource_slots: {}, environ: { A: "1", "-x.y": "2", "1BAD": "3", "a b": "4", BACKENDAI_K: "5", LOCAL_USER_ID: "0", N: 7 } })
    assert.deepStrictEqual(ok.environ, { A: "1", "-x.y": "2", N: "7" })
    assert.strictEqual(
      decodeErr({ image, resource_slots: {}, environ: { LD_AUDIT: "x", V: "a\0b", GLIBC_TUNABLES: "y" } }),
      `environ: "LD_AUDIT" is a dynamic-loader variable and cannot be set, the value of "V" contains a NUL character, "GLIBC_TUNABLES" is a dynamic-loader variable and cannot be set`
    )
  })

  it("environText: KEY=VALUE lines of shell-safe names without newlines", () => {
    assert.strictEqual(environText({ A: "1", _b2: "x=y", "-x": "no", "2A": "no", M: "a\nb", E: "" }), "A=1\n_b2=x=y\nE=\n")
    assert.strictEqual(environText({}), "")
  })
})

describe("resource texts", () => {
  it("binarySizeText: largest exact binary unit, else bytes", () => {
    assert.strictEqual(binarySizeText(0), "0")
    assert.strictEqual(binarySizeText(1023), "1023")
    assert.strictEqual(binarySizeText(1024), "1k")
    assert.strictEqual(binarySizeText(1536), "1536")
    assert.strictEqual(binarySizeText(3 * 1024 * 1024), "3m")
    assert.strictEqual(binarySizeText(1024 ** 3), "1g")
    assert.strictEqual(binarySizeText(1024 ** 3 + 1024), "1048577k")
    assert.strictEqual(binarySizeText(2 * 1024 ** 4), "2t")
    assert.strictEqual(binarySizeText(1024 ** 5), "1024t")
    assert.strictEqual(binarySizeText(1000000000), "1000000000")
    assert.strictEqual(binarySizeText(2048.9), "2k")
    assert.strictEqual(binarySizeText(3n ** 40n * 1024n), `${3n ** 40n}k`)
  })

  it("resource.txt in K1's write_to_text format", () => {
    const config = decodeOk({
      image,
      resource_slots: { cpu: "1.5", mem: "1E+9" },
      idle_timeout: 600,
      mounts: [["data", "local", "f00d", "ro"], ["w", "nfs", "beef"]]
    })
    assert.strictEqual(
      resourceText(KID, config),
      [
        `CID=${KID}`,
        "SCRATCH_SIZE=0m",
        "MOUNTS=data:ro,w:rw",
        `SLOTS={"cpu":"1.5","mem":"1000000000"}`,
        "IDLE_TIMEOUT=600",
        "CPU_SHARES=0:1.5",
        "MEM_SHARES=root:1000000000",
        ""
      ].join("\n")
    )
    const bare = decodeOk({ image, resource_slots: { mem: "2147483648.7" }, idle_timeout: null })
    assert.strictEqual(
      resourceText(KID, bare),
      `CID=${KID}\nSCRATCH_SIZE=0m\nMOUNTS=\nSLOTS={"mem":"2147483648.7"}\nIDLE_TIMEOUT=0\nCPU_SHARES=0:0\nMEM_SHARES=root:2g\n`
    )
    const none = decodeOk({ image, resource_slots: {} })
    assert.match(resourceText(KID, none), /\nMEM_SHARES=root:0\n$/)
    assert.strictEqual(none.idle_timeout, 0)
    assert.deepStrictEqual(none.mounts, [])
    assert.deepStrictEqual(none.environ, {})
    assert.deepStrictEqual(none.image.labels, {})
  })

  it("resource_spec JSON", () => {
    const config = decodeOk({ image, resource_slots: { cpu: 2, mem: "1_024" }, idle_timeout: "30", mounts: [["d", "h", "f", "wd"]] })
    assert.deepStrictEqual(JSON.parse(resourceSpecJson(config)), {
      slots: { cpu: "2", mem: "1024" },
      mounts: [["d", "h", "f", "wd"]],
      scratch_disk_size: 0,
      idle_timeout: 30
    })
    const n = decodeOk({ image, resource_slots: {}, idle_timeout: null })
    assert.strictEqual(JSON.parse(resourceSpecJson(n)).idle_timeout, 0)
  })

  it("slot values that are not finite non-negative decimals are refused with the slot path", () => {
    assert.strictEqual(decodeErr({ image, resource_slots: { cpu: "-1" } }), "resource_slots.cpu: expected a non-negative decimal")
    assert.strictEqual(decodeErr({ image, resource_slots: { cpu: "NaN" } }), "resource_slots.cpu: expected a finite decimal, got NaN or Infinity")
    assert.strictEqual(decodeErr({ image, resource_slots: { cpu: "x" } }), "resource_slots.cpu: expected a decimal number (Python Decimal syntax)")
  })

  it("every problem is listed, joined by '; '; a config that is not a dict names 'config'", () => {
    const msg = decodeErr({ image: { canonical: "" }, resource_slots: { cpu: "x", mem: "-1" } })
    assert.strictEqual(msg.split("; ").length, 3)
    assert.match(msg, /^image\.canonical: /)
    assert.match(decodeErr(null), /^config: /)
  })
})

describe("paths", () => {
  it("isPathComponent", () => {
    for (const s of ["a", "...", "a.b", "-"]) assert.isTrue(isPathComponent(s), s)
    for (const s of ["", ".", "..", "a/b", "/", "a\0"]) assert.isFalse(isPathComponent(s), s)
  })

  it("vfolderHostPath joins mount/host/fsprefix/id and stays under the mount root", () => {
    const m = { host: "local", folderId: "f00d" }
    assert.strictEqual(vfolderHostPath("/mnt/vf", "", m), "/mnt/vf/local/f00d")
    assert.strictEqual(vfolderHostPath("/mnt/vf/", "/vfs/", m), "/mnt/vf/local/vfs/f00d")
    assert.strictEqual(vfolderHostPath("/", "", m), "/local/f00d")
    assert.isUndefined(vfolderHostPath("mnt", "", m))
    assert.isUndefined(vfolderHostPath("/mnt", "../../..", m))
    assert.isUndefined(vfolderHostPath("/mnt", "", { host: "..", folderId: "f" }))
    assert.isUndefined(vfolderHostPath("/mnt", "", { host: "h", folderId: "a/b" }))
    assert.isUndefined(vfolderHostPath("/mnt/vf", "../../mnt/vfx", m))
    assert.strictEqual(
      checkVfolderPaths([{ name: "a", host: "h", folderId: "f", permission: "rw" }, { name: "b", host: "h", folderId: "g", permission: "ro" }], { mount: "/m", fsprefix: "" }),
      undefined
    )
    assert.strictEqual(
      checkVfolderPaths([{ name: "a", host: "h", folderId: "f", permission: "rw" }], { mount: "/m", fsprefix: "../../x" }),
      `the vfolder "a" (host "h") would not stay under volumes/_mount "/m"`
    )
  })
})

describe("slot values: each refusal names its reason, and the digit bounds", () => {
  // CPython's decimal.Decimal decides the category (test/spec/slot_decimal_oracle.py 40 gave these verdicts):
  // Decimal(s) raises → not a decimal; parses but not is_finite() → NaN/Infinity; finite and < 0 →
  // negative; finite with more than 40 digits on either side of the point → too many digits
  const NOT_DECIMAL = "expected a decimal number (Python Decimal syntax)"
  const NOT_FINITE = "expected a finite decimal, got NaN or Infinity"
  const TOO_LONG = "expected a decimal with at most 40 digits on either side of the point"

  it("Infinity and NaN in every spelling Decimal() accepts are refused as not finite, not as unparsable", () => {
    for (const s of ["Inf", "-Infinity", "+inf", "INFINITY", "NaN", "-nan", "sNaN", "NaN7"]) {
      assert.deepStrictEqual(slotValue(s), { ok: false, message: NOT_FINITE }, s)
    }
    for (const s of ["Infinit", "infx", "nan.5", "sinf"]) assert.deepStrictEqual(slotValue(s), { ok: false, message: NOT_DECIMAL }, s)
  })

  it("40 digits on either side of the point pass, 41 do not", () => {
    assert.deepStrictEqual(slotValue("1E+39"), { ok: true, value: `1${"0".repeat(39)}` })
    assert.deepStrictEqual(slotValue("1e-40"), { ok: true, value: `0.${"0".repeat(39)}1` })
    assert.deepStrictEqual(slotValue("1E+40"), { ok: false, message: TOO_LONG })
    assert.deepStrictEqual(slotValue("1e-41"), { ok: false, message: TOO_LONG })
  })
})

describe("names and paths at their edges", () => {
  it("folder names: letters, digits and ._- only, whole name; . and .. refused", () => {
    const mount = (name: string) => ({ image, resource_slots: {}, mounts: [[name, "local", "f00d", "rw"]] })
    assert.deepStrictEqual(decodeOk(mount("My-data_1.2")).mounts.map((m) => m.name), ["My-data_1.2"])
    for (const name of [".", "..", "a b", "d/", "/d", "", "dé"]) {
      assert.strictEqual(decodeErr(mount(name)), "mounts.0: folder names must be plain path components", JSON.stringify(name))
    }
  })

  it("a refused host, folder id or loader variable is shown by its first 80 characters", () => {
    const x80 = "x".repeat(80)
    assert.strictEqual(
      decodeErr({ image, resource_slots: {}, mounts: [["d", `${x80}yyyy/`, "f", "rw"]] }),
      `mounts.0: the vfolder host must be one plain path component, got "${x80}"`
    )
    assert.strictEqual(
      decodeErr({ image, resource_slots: {}, mounts: [["d", "local", `${x80}../`, "rw"]] }),
      `mounts.0: the folder id must be one plain path component, got "${x80}"`
    )
    const ld = `LD_${"A".repeat(77)}`
    assert.strictEqual(decodeErr({ image, resource_slots: {}, environ: { [`${ld}BBBB`]: "1" } }), `environ: "${ld}" is a dynamic-loader variable and cannot be set`)
  })

  it("a config that is not a mapping is refused at the top (no path: \"config\")", () => {
    for (const raw of [5, null, "x", []]) assert.strictEqual(decodeErr(raw), "config: Expected object", JSON.stringify(raw))
  })

  it("service-ports items are matched whole: a name cannot contain ':'", () => {
    const r = ports("x:a:tcp:3000")
    assert.deepStrictEqual(r._tag === "Failure" ? r.failure : "", `ai.backend.service-ports: "x:a:tcp:3000" is not name:tcp|pty|http:port`)
  })

  it("environ.txt keeps shell-style names only, the whole name", () => {
    assert.strictEqual(environText({ "A-B": "1", "A.B": "2", _OK9: "3", "9A": "4" }), "_OK9=3\n")
  })

  it("nesting: 17 levels of mappings below the key still flatten", () => {
    let v: unknown = "leaf"
    for (let i = 0; i < 17; i++) v = { k: v }
    assert.deepStrictEqual(flattenLabels({ r: v }), { [["r", ...Array(17).fill("k")].join("/")]: "leaf" })
  })

  it("vfolder paths: leading slashes of _fsprefix are all dropped; the root / itself as volumes/_mount", () => {
    const m = { host: "local", folderId: "f00d" }
    assert.strictEqual(vfolderHostPath("/mnt", "//vfroot", m), "/mnt/local/vfroot/f00d")
    assert.strictEqual(vfolderHostPath("/", "", m), "/local/f00d")
    assert.strictEqual(vfolderHostPath("/", "vfs", m), "/local/vfs/f00d")
  })
})
