/**
 * RPC host auto-detection when `agent.rpc-listen-addr` has no host (spec §5.3, C1906 `identity.py`
 * `get_instance_ip`): the first local interface address inside the etcd hint
 * `config/network/subnet/agent` (a CIDR), else the address the hostname resolves to, else 127.0.0.1.
 * IPv4 and IPv6 CIDRs are both understood; link-local addresses are never picked.
 */
import { Effect } from "effect"
import * as dns from "node:dns"
import * as net from "node:net"
import * as os from "node:os"

/** A parsed CIDR: family, prefix length, and the subnet as a `node:net` BlockList (the matcher). */
export interface Cidr {
  readonly family: 4 | 6
  readonly prefix: number
  readonly subnet: net.BlockList
}

const familyName = (family: 4 | 6) => (family === 4 ? "ipv4" : "ipv6")

/** Parses "10.0.0.0/8" or "fd00::/64"; a bare address is a /32 (/128). Undefined if malformed. */
export const parseCidr = (input: string): Cidr | undefined => {
  const [addr = "", prefixText, extra] = input.trim().split("/")
  const family = net.isIP(addr)
  if (family === 0 || extra !== undefined) return undefined
  const bits = family === 4 ? 32 : 128
  const prefix = prefixText === undefined ? bits : Number(prefixText)
  if (prefixText === "" || !Number.isInteger(prefix) || prefix < 0 || prefix > bits) return undefined
  const subnet = new net.BlockList()
  subnet.addSubnet(addr, prefix, familyName(family as 4 | 6))
  return { family: family as 4 | 6, prefix, subnet }
}

/**
 * Whether `ip` (an interface address, possibly with a `%zone`) lies inside `cidr`. Families must
 * match: an IPv4-mapped IPv6 address is not inside an IPv4 CIDR (BlockList alone would say it is).
 */
export const cidrContains = (cidr: Cidr, ip: string): boolean => {
  const address = ip.split("%")[0]!
  const family = net.isIP(address)
  return family === cidr.family && cidr.subnet.check(address, familyName(cidr.family))
}

/** Local interface addresses as `os.networkInterfaces()` reports them. */
export type Interfaces = NodeJS.Dict<ReadonlyArray<{ readonly address: string; readonly family: string | number }>>

const isLinkLocal = (ip: string) => /^169\.254\./.test(ip) || /^fe80:/i.test(ip)

/** How the host was chosen (for the start-up log). */
export interface DetectedHost {
  readonly host: string
  readonly source: "subnet" | "hostname" | "fallback"
}

/**
 * Pure core: pick the host from the interfaces and the resolved hostname address. A malformed
 * hint is ignored (the caller logs it); an empty hint skips the interface scan.
 */
export const pickHost = (
  subnetHint: string | undefined,
  interfaces: Interfaces,
  hostnameAddress: string | undefined
): DetectedHost => {
  const cidr = subnetHint === undefined || subnetHint === "" ? undefined : parseCidr(subnetHint)
  if (cidr !== undefined) {
    for (const name of Object.keys(interfaces).sort()) {
      for (const a of interfaces[name] ?? []) {
        if (!isLinkLocal(a.address) && cidrContains(cidr, a.address)) return { host: a.address, source: "subnet" }
      }
    }
  }
  if (hostnameAddress !== undefined && hostnameAddress !== "" && !isLinkLocal(hostnameAddress)) {
    return { host: hostnameAddress, source: "hostname" }
  }
  return { host: "127.0.0.1", source: "fallback" }
}

/**
 * The IPv4 address `hostname` resolves to, or undefined (Python's `socket.gethostbyname` is
 * IPv4-only; an IPv6 RPC host can be neither bound without ZMQ_IPV6 nor dialled by manager 19.06).
 */
export const resolveHostname = (hostname: string): Effect.Effect<string | undefined> =>
  Effect.tryPromise(() => dns.promises.lookup(hostname, { family: 4 }).then((r) => (net.isIPv4(r.address) ? r.address : undefined))).pipe(
    Effect.timeoutOrElse({ duration: "3 seconds", orElse: () => Effect.succeed(undefined) }),
    Effect.orElseSucceed(() => undefined)
  )

/** Detects the RPC host of this machine from the subnet hint (spec §5.3). */
export const detectHost = (subnetHint: string | undefined): Effect.Effect<DetectedHost> =>
  Effect.gen(function*() {
    if (subnetHint !== undefined && subnetHint !== "" && parseCidr(subnetHint) === undefined) {
      yield* Effect.logWarning(`config/network/subnet/agent is not a CIDR (ignored): ${JSON.stringify(subnetHint)}`)
    }
    const interfaces = yield* Effect.sync(() => os.networkInterfaces() as Interfaces)
    const picked = pickHost(subnetHint, interfaces, undefined)
    if (picked.source === "subnet") return picked
    if (subnetHint !== undefined && subnetHint !== "") {
      yield* Effect.logWarning(`no local interface address inside ${subnetHint}; using the hostname's address`)
    }
    const resolved = yield* resolveHostname(os.hostname())
    return pickHost(undefined, interfaces, resolved)
  })
