// restart_kernel as manager 19.06 sends it (registry.py 819–834): `mounts: []` ("recovered from
// container config") and no `idle_timeout`; the Docker agent takes both from the old kernel.
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { decodeKernelConfig, resourceSpecJson } from "../../src/spec/KernelConfig.ts"
import { restartConfig } from "../../src/kernel/KernelLifecycle.ts"

const base = {
  image: { canonical: "index.docker.io/lablup/python:3.6-ubuntu18.04", labels: {} },
  resource_slots: { cpu: "1", mem: "268435456" },
  environ: {}
}

describe("restartConfig", () => {
  it.effect("mounts: [] and no idle_timeout → the old kernel's; sent values win; a bad old spec is ignored", () =>
    Effect.gen(function*() {
      const created = yield* decodeKernelConfig("k", { ...base, mounts: [["vf1", "local", "f00d", "ro"]], idle_timeout: 600 })
      const old = { resourceSpec: resourceSpecJson(created), idleTimeout: 600 }

      const managerRestart = { ...base, mounts: [] }
      const r = restartConfig(managerRestart, yield* decodeKernelConfig("k", managerRestart), old)
      assert.deepStrictEqual(r.mounts, [{ name: "vf1", host: "local", folderId: "f00d", permission: "ro" }])
      assert.strictEqual(r.idle_timeout, 600)

      const nullIdle = { ...base, idle_timeout: null }
      assert.strictEqual(restartConfig(nullIdle, yield* decodeKernelConfig("k", nullIdle), old).idle_timeout, 600)

      const explicit = { ...base, mounts: [["vf2", "local", "beef", "rw"]], idle_timeout: 0 }
      const e = restartConfig(explicit, yield* decodeKernelConfig("k", explicit), old)
      assert.deepStrictEqual(e.mounts.map((m) => m.name), ["vf2"])
      assert.strictEqual(e.idle_timeout, 0)

      // a recovery annotation is cluster data: a hostile mount name in it is not taken
      const hostile = { resourceSpec: JSON.stringify({ mounts: [["../etc", "local", "x", "rw"]] }), idleTimeout: 5 }
      const h = restartConfig(managerRestart, yield* decodeKernelConfig("k", managerRestart), hostile)
      assert.deepStrictEqual(h.mounts, [])
      assert.strictEqual(h.idle_timeout, 5)
      assert.deepStrictEqual(restartConfig(managerRestart, yield* decodeKernelConfig("k", managerRestart), { resourceSpec: "{", idleTimeout: 0 }).mounts, [])
    }))
})
