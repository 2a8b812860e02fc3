import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { credentialsFor, isManagerRepo, isManagerTag, nextLink, packImages, parseBearerChallenge, unpackImages } from "../../src/registry/Images.ts"

describe("registry images", () => {
  it("only tags and repositories backend.ai-common 19.06's ImageRef accepts (docker.py 177, 221–222)", () => {
    for (const ok of ["3.6-ubuntu18.04", "latest", "1", "v1.0_rc", "A.b-c"]) assert.isTrue(isManagerTag(ok), ok)
    // valid Docker tags that raise ValueError('Invalid image tag') in the manager's heartbeat handler
    for (const bad of ["v1-", "_x", "1.", "x_", "-a", ""]) assert.isFalse(isManagerTag(bad), bad)
    assert.isTrue(isManagerRepo("lablup/python"))
    assert.isTrue(isManagerRepo("a/b-c/d__e.f"))
    assert.isFalse(isManagerRepo("Lablup/python"))
    assert.isFalse(isManagerRepo("a//b"))
  })

  it("packs to snappy(msgpack) and back", () => {
    const entries = [
      { name: "reg:5000/lablup/python:3.6", digest: "sha256:aa" },
      { name: "reg:5000/lablup/lua:5.3", digest: "sha256:bb" }
    ]
    assert.deepStrictEqual(unpackImages(packImages(entries)), entries)
    // msgpack of [] = 0x90; snappy raw block = varint length 1, literal tag 0x00, byte
    assert.deepStrictEqual(Array.from(packImages([])), [0x01, 0x00, 0x90])
  })

  it("follows Link pagination", () => {
    const base = new URL("http://r:5000/v2/_catalog?n=2")
    assert.strictEqual(nextLink(`</v2/_catalog?last=b&n=2>; rel="next"`, base)?.href, "http://r:5000/v2/_catalog?last=b&n=2")
    assert.isUndefined(nextLink(undefined, base))
  })

  it("parses Bearer challenges", () => {
    assert.deepStrictEqual(
      parseBearerChallenge(`Bearer realm="https://auth/token",service="registry",scope="repository:a/b:pull"`),
      { realm: "https://auth/token", service: "registry", scope: "repository:a/b:pull" }
    )
    assert.isUndefined(parseBearerChallenge(`Basic realm="x"`))
  })

  it.effect("finds credentials in a .dockerconfigjson", () =>
    Effect.gen(function*() {
      const doc = JSON.stringify({
        auths: {
          "https://other:443/v2/": { auth: Buffer.from("o:p").toString("base64") },
          "reg.example:5000": { auth: Buffer.from("user:pa:ss").toString("base64") }
        }
      })
      assert.deepStrictEqual(yield* credentialsFor(doc, "reg.example:5000"), { username: "user", password: "pa:ss" })
      assert.deepStrictEqual(yield* credentialsFor(doc, "other:443"), { username: "o", password: "p" })
      assert.isUndefined(yield* credentialsFor(doc, "nowhere"))
      const err = yield* Effect.flip(credentialsFor("{", "x"))
      assert.strictEqual(err.reason, "PullSecret")
    }))
})
