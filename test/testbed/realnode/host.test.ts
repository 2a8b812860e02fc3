// diffHost: what the real-node teardown check reports (pure logic; the real before/after comparison
// runs in the realnode project's teardown).
import { describe, expect, it } from "vitest"
import { diffHost, type HostSnapshot } from "./host.ts"

const base: HostSnapshot = {
  sysctls: { "net/ipv4/ip_forward": "0", "vm/overcommit_memory": "0" },
  nftRuleset: "",
  links: ["eth0", "lo"],
  loAddrs: ["inet 127.0.0.1/8", "inet6 ::1/128"],
  mounts: ["/ private", "/proc private"],
  cgroups: ["memory/process_api"],
  paths: { "/run/containerd": false, "/var/log/pods": false },
}

describe("diffHost", () => {
  it("is empty for the same state", () => {
    expect(diffHost(base, structuredClone(base))).toEqual([])
  })

  it("names every kind of leftover the real node can leave", () => {
    const after: HostSnapshot = {
      sysctls: { "net/ipv4/ip_forward": "1", "vm/overcommit_memory": "0", "kernel/panic": "10" },
      nftRuleset: "table ip filter {\n}\n",
      links: ["eth0", "lo", "tbreal0"],
      loAddrs: ["inet 127.0.0.1/8", "inet 127.0.0.9/32", "inet6 ::1/128"],
      mounts: ["/ shared", "/proc private", "/run/containerd/x private"],
      cgroups: ["memory/kubepods", "memory/process_api"],
      paths: { "/run/containerd": true, "/var/log/pods": false },
    }
    const d = diffHost(base, after)
    expect(d).toContain("sysctl net/ipv4/ip_forward: 0 -> 1")
    expect(d).toContain("sysctl kernel/panic: (absent) -> 10")
    expect(d.some((l) => l.startsWith("nft ruleset:"))).toBe(true)
    expect(d).toContain("link added: tbreal0")
    expect(d).toContain("lo address added: inet 127.0.0.9/32")
    expect(d).toContain("mount added: / shared") // propagation changed
    expect(d).toContain("mount removed: / private")
    expect(d).toContain("mount added: /run/containerd/x private")
    expect(d).toContain("cgroup added: memory/kubepods")
    expect(d).toContain("path /run/containerd: absent -> present")
    expect(d).toHaveLength(10)
  })
})
