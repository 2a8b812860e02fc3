import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { kernelDir, kernelDirUnder, kernelWorkDir } from "../../src/kernel/ScratchPath.ts"

describe("ScratchPath", () => {
  it("a kernel id is one plain component directly under the scratch root", () => {
    const kid = "0b7a5b2c-5d0e-4bd4-a4d5-6a3f1a7f8a11"
    assert.strictEqual(kernelDirUnder("/var/lib/scratches", kid), `/var/lib/scratches/${kid}`)
    assert.strictEqual(kernelDirUnder("/var/lib/scratches/", kid), `/var/lib/scratches/${kid}`)
    for (const bad of ["", ".", "..", "../etc", "a/b", "/etc", "..\\x", "a\0b", "x/..", "./", "../../../../tmp"]) {
      assert.isUndefined(kernelDirUnder("/var/lib/scratches", bad), JSON.stringify(bad))
    }
  })

  it.effect("the effects fail before anything touches the disk", () =>
    Effect.gen(function*() {
      const error = yield* kernelDir("/srv/s", "../../etc").pipe(Effect.flip)
      assert.strictEqual(error._tag, "ScratchPathOutsideRoot")
      assert.match(error.message, /would not be a direct child of \/srv\/s/)
      assert.strictEqual(yield* kernelWorkDir("/srv/s", "k1"), "/srv/s/k1/work")
    }))
})
