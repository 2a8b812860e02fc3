// Registry Bearer-token auth and `Link` pagination against the real Docker registry (Debian
// `docker-registry` 2.8) configured with `auth: token`; the token servers are the test's own
// (test/images/token_server.py: JWTs signed by a test key, Basic credentials checked, every token
// request recorded). The registry enforces the token's scopes, so a token for the catalog or for
// another repository is refused there, not by this test.
//
// docker-registry 2.8 paginates `_catalog` by `n`/`last` with a `Link` header but ignores `n` on
// `tags/list` (all tags in one answer); the tags `Link` is covered against a scripted server in
// Images.test.ts.
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll } from "vitest"
import { listRegistryImages, registryHttpClientLayer } from "../../src/images/ImageRegistry.ts"
import { freePort } from "../testbed/ports.ts"
import { pushImage } from "../testbed/registry.ts"
import { startTokenTestbed, type TokenTestbed } from "./tokenRegistry.ts"

const kernelspec = { "ai.backend.kernelspec": "1", "ai.backend.runtime-type": "python" }
// 7 repositories (4 pages of 2); one tag without the kernelspec label (left out: its labels were read)
const images = [
  { repo: "lablup/python", tag: "3.6-ubuntu18.04", labels: kernelspec },
  { repo: "lablup/python", tag: "3.9-ubuntu20.04", labels: kernelspec },
  { repo: "lablup/python", tag: "no-kernelspec", labels: { "org.example": "x" } },
  { repo: "lablup/lua", tag: "5.3-alpine3.8", labels: kernelspec },
  ...["r1", "r2", "r3", "r4", "r5"].map((r) => ({ repo: `extra/${r}`, tag: "1.0", labels: kernelspec }))
]

let tb: TokenTestbed
let dir: string
const digests = new Map<string, string>()

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "bai-token-registry-"))
  tb = await startTokenTestbed(dir)
  for (const img of images) digests.set(`${img.repo}:${img.tag}`, await pushImage(tb.seed, img))
}, 120_000)

afterAll(async () => {
  await tb?.stop()
  if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true })
})

describe("registry with token auth (real docker-registry, auth: token)", () => {
  it.live("lists every page of the catalog and reads labels with a token per repository scope", () =>
    Effect.gen(function*() {
      // the token endpoint and the registry on one origin (as Harbor serves them)
      const port = yield* Effect.promise(() => freePort())
      const registry = yield* Effect.promise(() => tb.tokenRegistry(`http://127.0.0.1:${port}/token`))
      const front = yield* Effect.promise(() => tb.tokenServer("127.0.0.1", registry, port))
      const credentials = { username: tb.user, password: tb.password }

      const entries = yield* listRegistryImages({ url: front.origin, credentials, pageSize: 2 })

      const host = new URL(front.origin).host
      const expected = images.filter((i) => i.labels === kernelspec)
        .map((i) => ({ name: `${host}/${i.repo}:${i.tag}`, digest: digests.get(`${i.repo}:${i.tag}`)! }))
        .sort((a, b) => (a.name < b.name ? -1 : 1))
      assert.deepStrictEqual(entries, expected)

      const seen = yield* Effect.promise(() => front.seen())
      const basic = `Basic ${Buffer.from(`${tb.user}:${tb.password}`).toString("base64")}`
      assert.isTrue(seen.every((s) => s.authorization === basic), "every token request carried the credentials")
      const scopes = new Set(seen.flatMap((s) => s.scopes))
      assert.isTrue(scopes.has("registry:catalog:*"))
      for (const repo of new Set(images.map((i) => i.repo))) assert.isTrue(scopes.has(`repository:${repo}:pull`), repo)
    }).pipe(Effect.provide(registryHttpClientLayer(true))))

  it.live("a realm on another origin (another port) is asked without credentials; the private registry then refuses", () =>
    Effect.gen(function*() {
      const other = yield* Effect.promise(() => tb.tokenServer("127.0.0.1"))
      const registry = yield* Effect.promise(() => tb.tokenRegistry(`${other.origin}/token`))
      const e = yield* Effect.flip(listRegistryImages({ url: registry, credentials: { username: tb.user, password: tb.password } }))
      assert.strictEqual(e.reason, "Unauthorized")
      const seen = yield* Effect.promise(() => other.seen())
      assert.isAbove(seen.length, 0, "the realm was asked")
      assert.deepStrictEqual(seen.map((s) => s.authorization), seen.map(() => null), "no Authorization to another origin")
    }).pipe(Effect.provide(registryHttpClientLayer(true))))

  it.live("a realm over plain http on another host is refused (not asked at all)", () =>
    Effect.gen(function*() {
      const far = yield* Effect.promise(() => tb.tokenServer("127.0.0.2"))
      const registry = yield* Effect.promise(() => tb.tokenRegistry(`${far.origin}/token`))
      const e = yield* Effect.flip(listRegistryImages({ url: registry, credentials: { username: tb.user, password: tb.password } }))
      assert.strictEqual(e.reason, "Unauthorized")
      assert.match(e.message, /plain http/)
      assert.deepStrictEqual(yield* Effect.promise(() => far.seen()), [], "nothing was sent to the other host")
    }).pipe(Effect.provide(registryHttpClientLayer(true))))
})
