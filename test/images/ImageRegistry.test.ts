import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as http from "node:http"
import { decodeConfigText } from "../../src/config/AgentConfig.ts"
import { credentialsFor, isManagerRepo, isManagerTag, listRegistryImages, MAX_REGISTRY_ANSWER_BYTES, nextLink, registryHttpClientLayer, packImages, parseBearerChallenge, unpackImages } from "../../src/images/ImageRegistry.ts"

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

// ---------------------------------------------------------------------------------------------
// Where the registry credentials go: a registry and a second HTTP server on another origin (another
// port is another origin), both real sockets on 127.0.0.1.

interface Seen {
  readonly path: string
  readonly authorization: string | undefined
  readonly tracing: ReadonlyArray<string>
}

/** An HTTP server answering with `handler`, recording every request; closed with the scope. */
const server = (handler: (req: http.IncomingMessage, res: http.ServerResponse, origin: string) => void) =>
  Effect.acquireRelease(
    Effect.callback<{ origin: string; seen: Array<Seen>; close: () => void }>((resume) => {
      const seen: Array<Seen> = []
      let origin = ""
      const s = http.createServer((req, res) => {
        seen.push({ path: req.url ?? "", authorization: req.headers.authorization, tracing: Object.keys(req.headers).filter((h) => h === "b3" || h === "traceparent") })
        handler(req, res, origin)
      })
      s.listen(0, "127.0.0.1", () => {
        origin = `http://127.0.0.1:${(s.address() as { port: number }).port}`
        resume(Effect.succeed({ origin, seen, close: () => s.close() }))
      })
    }),
    (s) => Effect.sync(() => s.close())
  )

const json = (res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
  res.writeHead(status, { "content-type": "application/json", ...headers })
  res.end(JSON.stringify(body))
}

const creds = { username: "user", password: "s3cret" }
const basic = `Basic ${Buffer.from("user:s3cret").toString("base64")}`

/** A registry with one repo/tag, requiring Bearer tokens from `realm()`; the token is "tok". */
const tokenRegistry = (realm: () => string, link?: () => string) =>
  server((req, res) => {
    if (req.headers.authorization !== "Bearer tok") {
      return json(res, 401, { errors: [] }, { "www-authenticate": `Bearer realm="${realm()}",service="reg",scope="registry:catalog:*"` })
    }
    if (req.url?.startsWith("/v2/_catalog")) return json(res, 200, { repositories: ["lablup/python"] }, link === undefined ? {} : { link: `<${link()}>; rel="next"` })
    if (req.url?.startsWith("/v2/lablup/python/tags/list")) return json(res, 200, { tags: ["3.6"] })
    // the listing keeps only kernelspec-labelled images: a schema2 manifest and its config blob
    if (req.url?.startsWith("/v2/lablup/python/blobs/")) return json(res, 200, { config: { Labels: { "ai.backend.kernelspec": "1" } } })
    if (req.method === "GET" && req.url?.startsWith("/v2/lablup/python/manifests/")) {
      return json(res, 200, { schemaVersion: 2, config: { digest: "sha256:cc" } }, { "docker-content-digest": "sha256:aa" })
    }
    res.writeHead(200, { "docker-content-digest": "sha256:aa" })
    res.end()
  })

const tokenServer = server((req, res) => json(res, 200, { token: "tok" }))

describe("registry credentials stay with the registry's origin", () => {
  it.live("a Bearer realm on the registry's origin gets the credentials", () =>
    Effect.gen(function*() {
      let origin = ""
      const reg = yield* server((req, res) => {
        if (req.url?.startsWith("/token")) return json(res, 200, { token: "tok" })
        if (req.headers.authorization !== "Bearer tok") {
          return json(res, 401, {}, { "www-authenticate": `Bearer realm="${origin}/token",service="reg"` })
        }
        if (req.url?.startsWith("/v2/_catalog")) return json(res, 200, { repositories: [] })
        json(res, 404, {})
      })
      origin = reg.origin
      const entries = yield* listRegistryImages({ url: reg.origin, credentials: creds })
      assert.deepStrictEqual(entries, [])
      assert.deepInclude(reg.seen.filter((s) => s.path.startsWith("/token")).map((s) => s.authorization), basic)
    }).pipe(Effect.provide(registryHttpClientLayer(true)), Effect.scoped))

  it.live("a Bearer realm on another origin gets no credentials (an anonymous token request)", () =>
    Effect.gen(function*() {
      const auth = yield* tokenServer
      const reg = yield* tokenRegistry(() => `${auth.origin}/token`)
      const entries = yield* listRegistryImages({ url: reg.origin, credentials: creds })
      assert.deepStrictEqual(entries.map((e) => e.name), [`${new URL(reg.origin).host}/lablup/python:3.6`])
      assert.isAbove(auth.seen.length, 0, "the token endpoint was asked")
      assert.deepStrictEqual(auth.seen.map((s) => s.authorization), auth.seen.map(() => undefined), "no credentials to another origin")
      assert.deepStrictEqual([...auth.seen, ...reg.seen].flatMap((s) => s.tracing), [], "no trace context to a third party")
      // the registry itself never saw the password either way after the challenge: only Basic (its own) or the token
      for (const s of reg.seen) assert.include([undefined, basic, "Bearer tok"], s.authorization)
    }).pipe(Effect.provide(registryHttpClientLayer(true)), Effect.scoped))

  it.live("a Link to another origin is not followed with credentials (the listing fails instead)", () =>
    Effect.gen(function*() {
      const other = yield* server((req, res) => json(res, 200, { repositories: ["evil/x"] }))
      let origin = ""
      const reg = yield* server((req, res) => {
        if (req.headers.authorization !== basic) return json(res, 401, {}, { "www-authenticate": `Basic realm="reg"` })
        if (req.url?.startsWith("/v2/_catalog")) return json(res, 200, { repositories: ["a/b"] }, { link: `<${other.origin}/v2/_catalog?last=b>; rel="next"` })
        json(res, 404, {})
      })
      origin = reg.origin
      const e = yield* Effect.flip(listRegistryImages({ url: origin, credentials: creds }))
      assert.strictEqual(e.reason, "BadResponse")
      assert.match(e.message, /another origin/)
      assert.deepStrictEqual(other.seen, [], "nothing was sent to the other origin")
    }).pipe(Effect.provide(registryHttpClientLayer(true)), Effect.scoped))

  it.live("a plain-http realm naming the same machine by another host name is refused (origins compare scheme, host and port)", () =>
    Effect.gen(function*() {
      const auth = yield* tokenServer
      const reg = yield* tokenRegistry(() => `${auth.origin.replace("127.0.0.1", "localhost")}/token`)
      const e = yield* Effect.flip(listRegistryImages({ url: reg.origin, credentials: creds }))
      assert.strictEqual(e.reason, "Unauthorized")
      assert.match(e.message, /plain http on another host/)
      assert.deepStrictEqual(auth.seen, [], "the realm was not asked")
    }).pipe(Effect.provide(registryHttpClientLayer(true)), Effect.scoped))
})

describe("a hostile registry", () => {
  it.live("an answer larger than MAX_REGISTRY_ANSWER_BYTES fails the listing (BadResponse) instead of being buffered", () =>
    Effect.gen(function*() {
      // a well-formed catalog, just too large: one page of many long names
      const names = Array.from({ length: Math.ceil(MAX_REGISTRY_ANSWER_BYTES / 1000) + 10 }, (_, i) => `r${i}/${"x".repeat(990)}`)
      const reg = yield* server((req, res) => {
        if (req.url?.startsWith("/v2/_catalog")) return json(res, 200, { repositories: names })
        json(res, 404, {})
      })
      const e = yield* Effect.flip(listRegistryImages({ url: reg.origin, credentials: undefined }))
      assert.strictEqual(e.reason, "BadResponse")
      assert.match(e.message, /at most \d+ bytes/)
    }).pipe(Effect.provide(registryHttpClientLayer(true)), Effect.scoped))

  it.live("a token endpoint answering other than 200 fails the listing as Unauthorized", () =>
    Effect.gen(function*() {
      let origin = ""
      const reg = yield* server((req, res) => {
        if (req.url?.startsWith("/token")) return json(res, 500, { error: "down" })
        return json(res, 401, {}, { "www-authenticate": `Bearer realm="${origin}/token",service="reg"` })
      })
      origin = reg.origin
      const e = yield* Effect.flip(listRegistryImages({ url: reg.origin, credentials: creds }))
      assert.strictEqual(e.reason, "Unauthorized")
      assert.match(e.message, /HTTP 500/)
    }).pipe(Effect.provide(registryHttpClientLayer(true)), Effect.scoped))
})

describe("registry config", () => {
  it.effect("kubernetes.registry.verify-tls defaults to true", () =>
    Effect.gen(function*() {
      const loaded = yield* decodeConfigText("a.toml", `[etcd]\nnamespace = "n"\n`, {}, "h")
      assert.isTrue(loaded.config.kubernetes.registry["verify-tls"])
    }))
})
