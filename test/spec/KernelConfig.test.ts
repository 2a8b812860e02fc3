/**
 * Caller input in the create_kernel config (issue 13 "Caller input"): mount tuples, environ. Pure
 * decoding; the integration test (test/kernel/CallerInput.int.test.ts) checks that a refused create
 * leaves nothing behind on the cluster.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { buildPod, type KernelObjectsInput } from "../../src/kube/KernelObjects.ts"
import { checkVfolderPaths, decodeKernelConfig, environText, vfolderHostPath } from "../../src/spec/KernelConfig.ts"

const KID = "0b7a5b2c-5d0e-4bd4-a4d5-6a3f1a7f8a11"
const image = { canonical: "lablup/python:3.6-ubuntu18.04", labels: {} }
const config = (extra: Record<string, unknown>) => ({ image, resource_slots: { cpu: "1", mem: "1073741824" }, ...extra })

describe("create_kernel config: mounts", () => {
  it.effect("host and folder id are single path components; permissions are ro/rw/wd", () =>
    Effect.gen(function*() {
      const ok = yield* decodeKernelConfig(KID, config({
        mounts: [["data", "local", "a1b2c3d4e5f60718293a4b5c6d7e8f90", "ro"], ["legacy", "nfs1", "00ff", undefined].slice(0, 3)]
      }))
      assert.deepStrictEqual(ok.mounts.map((m) => [m.name, m.host, m.folderId, m.permission]), [
        ["data", "local", "a1b2c3d4e5f60718293a4b5c6d7e8f90", "ro"],
        ["legacy", "nfs1", "00ff", "rw"]
      ])
      const refused: ReadonlyArray<readonly [ReadonlyArray<unknown>, RegExp]> = [
        [["d", "..", "f00d", "rw"], /vfolder host must be one plain path component/],
        [["d", "../../etc", "f00d", "rw"], /vfolder host/],
        [["d", "", "f00d", "rw"], /vfolder host/],
        [["d", "a/b", "f00d", "rw"], /vfolder host/],
        [["d", "local\0x", "f00d", "rw"], /vfolder host/],
        [["d", "local", "..", "rw"], /folder id must be one plain path component/],
        [["d", "local", "../../../root/.ssh", "rw"], /folder id/],
        [["d", "local", "", "rw"], /folder id/],
        [["d", "local", "/etc", "rw"], /folder id/],
        [["d", "local", ".", "ro"], /folder id/],
        [["d", "local", "f00d", "rwx"], /mounts/],
        [["d", "local", "f00d", "admin"], /mounts/],
        [["..", "local", "f00d", "rw"], /folder names must be plain path components/]
      ]
      for (const [mount, pattern] of refused) {
        const error = yield* decodeKernelConfig(KID, config({ mounts: [mount] })).pipe(Effect.flip)
        assert.strictEqual(error._tag, "InvalidKernelConfig", JSON.stringify(mount))
        assert.match(error.message, pattern, JSON.stringify(mount))
      }
    }))

  it("the joined node path stays strictly under volumes/_mount", () => {
    const m = { host: "local", folderId: "f00d" }
    assert.strictEqual(vfolderHostPath("/mnt", "", m), "/mnt/local/f00d")
    assert.strictEqual(vfolderHostPath("/mnt/", "/vfroot", m), "/mnt/local/vfroot/f00d")
    assert.isUndefined(vfolderHostPath("/mnt", "../../..", m)) // an odd _fsprefix in etcd
    assert.isUndefined(vfolderHostPath("/mnt", "../..", m))
    assert.isUndefined(vfolderHostPath("mnt", "", m)) // not absolute
    assert.isUndefined(vfolderHostPath("/mnt", "", { host: "..", folderId: "f00d" }))
    assert.isUndefined(vfolderHostPath("/mnt", "", { host: "local", folderId: "../x" }))
    assert.match(
      checkVfolderPaths([{ name: "d", host: "local", folderId: "f00d", permission: "rw" }], { mount: "/mnt", fsprefix: "../../.." }) ?? "",
      /would not stay under volumes\/_mount/
    )
  })
})

describe("create_kernel config: environ", () => {
  it.effect("loader variables are refused, with every offending key named; names Kubernetes cannot carry are dropped", () =>
    Effect.gen(function*() {
      const error = yield* decodeKernelConfig(KID, config({
        environ: { LD_PRELOAD: "/tmp/x.so", LD_LIBRARY_PATH: "/tmp", LD_AUDIT: "/tmp/a.so", GLIBC_TUNABLES: "x", OK: "1" }
      })).pipe(Effect.flip)
      assert.strictEqual(error._tag, "InvalidKernelConfig")
      for (const key of ["LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "GLIBC_TUNABLES"]) {
        assert.include(error.message, `"${key}" is a dynamic-loader variable`)
      }
      const badName = yield* decodeKernelConfig(KID, config({ environ: { "A=B": "1", "BAD KEY": "x", B: "2" } }))
      assert.deepStrictEqual(badName.environ, { B: "2" }) // names Kubernetes cannot carry are dropped
      const nul = yield* decodeKernelConfig(KID, config({ environ: { A: "x\0y" } })).pipe(Effect.flip)
      assert.match(nul.message, /contains a NUL/)
    }))

  it.effect("the agent's own variables win: the caller's LOCAL_USER_ID/GROUP_ID and BACKENDAI_* never reach the pod", () =>
    Effect.gen(function*() {
      const kconfig = yield* decodeKernelConfig(KID, config({
        environ: { LOCAL_USER_ID: "0", LOCAL_GROUP_ID: "0", BACKENDAI_KERNEL_ID: "someone-else", BACKENDAI_X: "1", MY_VAR: "kept" }
      }))
      assert.deepStrictEqual(kconfig.environ, { MY_VAR: "kept" })
      assert.strictEqual(environText(kconfig.environ), "MY_VAR=kept\n")
      const input = (kernelUid: number): KernelObjectsInput => ({
        namespace: "ns",
        agentId: "i-test",
        kernelId: KID,
        config: kconfig,
        servicePorts: [],
        registryUrl: "",
        pullSecret: "s",
        krunnerVolume: { type: "hostPath", path: "/opt/backend.ai" },
        scratchVolume: { type: "hostPath", path: "/scratch" },
        scratchDir: `/scratch/${KID}/work`,
        vfolderMount: "",
        vfolderFsPrefix: "",
        kernelUid,
        kernelGid: -1,
        sandboxType: "docker",
        jailArgs: [],
        terminationGraceSeconds: 5,
        nodeSelector: {}
      } as unknown as KernelObjectsInput)
      const envOf = (uid: number) =>
        Object.fromEntries((buildPod(input(uid), new Map([[2000, 30000], [2001, 30001]])).spec!.containers[0]!.env ?? [])
          .map((e) => [e.name, e.value]))
      const unset = envOf(-1)
      assert.isUndefined(unset["LOCAL_USER_ID"]) // not configured: nobody sets it, the caller cannot either
      assert.isUndefined(unset["LOCAL_GROUP_ID"])
      assert.strictEqual(unset["BACKENDAI_KERNEL_ID"], KID)
      assert.isUndefined(unset["BACKENDAI_X"])
      assert.strictEqual(unset["MY_VAR"], "kept")
      assert.strictEqual(envOf(1000)["LOCAL_USER_ID"], "1000")
    }))
})

describe("create_kernel config: image labels", () => {
  it.effect("label keys with `/` arrive nested (etcd prefix read) and are flattened back; the create decodes", () =>
    Effect.gen(function*() {
      const kconfig = yield* decodeKernelConfig(KID, config({
        image: {
          canonical: "lablup/python:3.6-ubuntu18.04",
          labels: {
            "ai.backend.runtime-type": "python",
            "ai.backend.service-ports": "jupyter:http:8080",
            "com.example": { "build": { "rev": "abc", "": "top" }, "x": "1" },
            "org.opencontainers.image.version": 3
          }
        }
      }))
      assert.deepStrictEqual(kconfig.image.labels, {
        "ai.backend.runtime-type": "python",
        "ai.backend.service-ports": "jupyter:http:8080",
        "com.example/build/rev": "abc",
        "com.example/build": "top",
        "com.example/x": "1",
        "org.opencontainers.image.version": "3"
      })
      const bad = yield* decodeKernelConfig(KID, config({ image: { canonical: "x/y:z", labels: { a: { b: [1] } } } })).pipe(Effect.flip)
      assert.match(bad.message, /label "a\/b": expected a string or a nested mapping of strings/)
    }))
})
