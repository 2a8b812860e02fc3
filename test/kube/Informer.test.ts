// The informer's pure parts: cache keys and versions read from hostile raw objects, the 410 decision,
// the cache update from a watch event, and when a relist is due.
import { assert, describe, it } from "@effect/vitest"
import { HashMap, Option } from "effect"
import { applyEvent, isGone, nextStep, objectKey, resourceVersionOf } from "../../src/kube/Informer.ts"
import { KubeError } from "../../src/kube/KubeClient.ts"

describe("Informer (pure parts)", () => {
  it("keys objects by namespace/name, cluster-scoped ones by name; no name, no key", () => {
    assert.strictEqual(objectKey({ metadata: { name: "p", namespace: "ns" } }), "ns/p")
    assert.strictEqual(objectKey({ metadata: { name: "node-1" } }), "node-1")
    assert.strictEqual(objectKey({ metadata: { name: "n", namespace: "" } }), "n")
    for (const bad of [undefined, null, 1, "x", [], {}, { metadata: null }, { metadata: [] }, { metadata: { name: 3 } }, { metadata: { name: "" } }]) {
      assert.isUndefined(objectKey(bad), JSON.stringify(bad))
    }
    // a non-string namespace is not trusted: the key falls back to the name alone
    assert.strictEqual(objectKey({ metadata: { name: "p", namespace: 7 } }), "p")
  })

  it("reads the resourceVersion only when it is a non-empty string", () => {
    assert.strictEqual(resourceVersionOf({ metadata: { resourceVersion: "42" } }), "42")
    for (const bad of [null, {}, { metadata: { resourceVersion: 42 } }, { metadata: { resourceVersion: "" } }, { metadata: "x" }]) {
      assert.isUndefined(resourceVersionOf(bad), JSON.stringify(bad))
    }
  })

  it("410 Gone (by reason or status) means relist; other failures do not", () => {
    assert.isTrue(isGone(new KubeError({ reason: "Gone", operation: "watch", message: "too old resource version" })))
    assert.isTrue(isGone(new KubeError({ reason: "Other", operation: "watch", status: 410, message: "expired" })))
    for (const reason of ["NotFound", "Conflict", "Timeout", "Unavailable", "Other", "Forbidden"] as const) {
      assert.isFalse(isGone(new KubeError({ reason, operation: "watch", message: "x" })), reason)
    }
    assert.isFalse(isGone(new KubeError({ reason: "Unavailable", operation: "watch", status: 500, message: "x" })))
  })

  it("applies watch events to the cache without touching the previous map", () => {
    const empty = HashMap.empty<string, number>()
    const added = applyEvent(empty, { type: "ADDED", key: "ns/a", object: 1 })
    const modified = applyEvent(added, { type: "MODIFIED", key: "ns/a", object: 2 })
    const other = applyEvent(modified, { type: "ADDED", key: "ns/b", object: 3 })
    const deleted = applyEvent(other, { type: "DELETED", key: "ns/a", object: 2 })
    assert.strictEqual(HashMap.size(empty), 0)
    assert.deepStrictEqual(HashMap.get(added, "ns/a"), Option.some(1))
    assert.deepStrictEqual(HashMap.get(modified, "ns/a"), Option.some(2))
    assert.deepStrictEqual(HashMap.get(added, "ns/a"), Option.some(1))
    assert.deepStrictEqual([...HashMap.keys(deleted)], ["ns/b"])
    assert.strictEqual(HashMap.size(other), 2)
    // deleting what is not there is a no-op, a MODIFIED for an unknown key adds it
    assert.strictEqual(HashMap.size(applyEvent(empty, { type: "DELETED", key: "x", object: 0 })), 0)
    assert.deepStrictEqual(HashMap.get(applyEvent(empty, { type: "MODIFIED", key: "x", object: 5 }), "x"), Option.some(5))
  })

  it("lists without a version or once the relist is due, watches otherwise", () => {
    assert.strictEqual(nextStep({ resourceVersion: undefined, relistAt: 2_000 }, 1_000), "list")
    assert.strictEqual(nextStep({ resourceVersion: "7", relistAt: 2_000 }, 1_000), "watch")
    assert.strictEqual(nextStep({ resourceVersion: "7", relistAt: 2_000 }, 1_999), "watch")
    assert.strictEqual(nextStep({ resourceVersion: "7", relistAt: 2_000 }, 2_000), "list")
    assert.strictEqual(nextStep({ resourceVersion: "7", relistAt: 2_000 }, 9_000), "list")
  })
})
