import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { cidrContains, parseCidr, pickHost, resolveHostname } from "../../src/manager/HostDetect.ts"

describe("RPC host auto-detection", () => {
  it("parses CIDRs", () => {
    const c = parseCidr("10.1.2.3/8")!
    assert.deepInclude(c, { family: 4, prefix: 8 })
    // the host bits of the written address do not matter: the subnet is 10.0.0.0/8
    assert.isTrue(cidrContains(c, "10.0.0.0"))
    assert.isTrue(cidrContains(c, "10.255.255.255"))
    assert.isFalse(cidrContains(c, "11.0.0.0"))
    assert.strictEqual(parseCidr("10.0.0.1")?.prefix, 32)
    assert.strictEqual(parseCidr("fd00::/64")?.family, 6)
    for (const bad of ["", "10.0.0.0/33", "x/8", "10.0.0/8", "10.0.0.0/-1", "10.0.0.0/", "10.0.0.0/8/8", "10.0.0.0/8.5", "fd00::/129"]) assert.isUndefined(parseCidr(bad), bad)
  })

  it("matches addresses", () => {
    const c = parseCidr("192.168.0.0/16")!
    assert.isTrue(cidrContains(c, "192.168.10.20"))
    assert.isFalse(cidrContains(c, "192.169.0.1"))
    assert.isFalse(cidrContains(c, "fd00::1"))
    assert.isTrue(cidrContains(parseCidr("0.0.0.0/0")!, "8.8.8.8"))
    assert.isTrue(cidrContains(parseCidr("fd00:1::/32")!, "fd00:1:2::3"))
    assert.isFalse(cidrContains(parseCidr("fd00:1::/32")!, "fd01::3"))
    assert.isTrue(cidrContains(parseCidr("::ffff:0:0/96")!, "::ffff:10.0.0.1"))
    // families must match (node's BlockList alone maps IPv4-mapped IPv6 addresses onto IPv4 rules)
    assert.isFalse(cidrContains(parseCidr("10.0.0.0/8")!, "::ffff:10.0.0.1"))
    assert.isFalse(cidrContains(parseCidr("::ffff:0:0/96")!, "10.0.0.1"))
    // an interface address with a zone
    assert.isTrue(cidrContains(parseCidr("fe80::/10")!, "fe80::1%eth0"))
  })

  const interfaces = {
    eth0: [{ address: "fe80::1", family: "IPv6" }, { address: "10.0.5.7", family: "IPv4" }],
    eth1: [{ address: "192.168.1.9", family: "IPv4" }],
    lo: [{ address: "127.0.0.1", family: "IPv4" }]
  }

  it("takes the first interface address inside the hint", () => {
    assert.deepStrictEqual(pickHost("192.168.0.0/16", interfaces, "10.0.5.7"), { host: "192.168.1.9", source: "subnet" })
    assert.deepStrictEqual(pickHost("10.0.0.0/8", interfaces, undefined), { host: "10.0.5.7", source: "subnet" })
  })

  it("falls back to the hostname's address, then 127.0.0.1", () => {
    assert.deepStrictEqual(pickHost("172.16.0.0/12", interfaces, "10.0.5.7"), { host: "10.0.5.7", source: "hostname" })
    assert.deepStrictEqual(pickHost(undefined, interfaces, "10.0.5.7"), { host: "10.0.5.7", source: "hostname" })
    assert.deepStrictEqual(pickHost("not a cidr", interfaces, undefined), { host: "127.0.0.1", source: "fallback" })
    assert.deepStrictEqual(pickHost("", {}, "169.254.0.3"), { host: "127.0.0.1", source: "fallback" })
  })

  // Python's socket.gethostbyname (C1906 identity.get_instance_ip) is IPv4-only: a dual-stack host
  // whose name resolves to an IPv6 address first must not get an RPC host the ROUTER cannot bind
  // (no ZMQ_IPV6, like aiozmq) and manager 19.06 cannot dial.
  it.effect("the hostname's address is an IPv4 address, like gethostbyname", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* resolveHostname("localhost"), "127.0.0.1")
      assert.isUndefined(yield* resolveHostname("::1"))
    }))
})
