import { assert, describe, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"

describe("flake.nix", () => {
  it("parses with nix-instantiate --parse", () => {
    const r = spawnSync("nix-instantiate", ["--parse", "flake.nix"], { encoding: "utf8" })
    assert.strictEqual(r.error, undefined, "nix-instantiate is missing (apt-get install nix-bin)")
    assert.strictEqual(r.status, 0, r.stderr)
    for (const attr of ["packages", "apps", "devShells", "buildNpmPackage", "nodejs_24"]) assert.include(r.stdout, attr)
  })
})
