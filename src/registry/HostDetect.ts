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

/** A parsed CIDR: family, network as bigint, prefix length. */
export interface Cidr {
  readonly family: 4 | 6
  readonly network: bigint
  readonly prefix: number
}

const ipv4ToBigInt = (ip: string): bigint =>
  ip.split(".").reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n)

const ipv6ToBigInt = (ip: string): bigint | undefined => {
  let s = ip.split("%")[0]!
  // an embedded IPv4 tail (::ffff:1.2.3.4)
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s)
  if (v4 !== null) {
    const n = ipv4ToBigInt(v4[1]!)
    s = s.slice(0, -v4[1]!.length) + `${(n >> 16n).toString(16)}:${(n & 0xffffn).toString(16)}`
  }
  const [head = "", tail] = s.split("::")
  const h = head === "" ? [] : head.split(":")
  const t = tail === undefined || tail === "" ? [] : tail.split(":")
  const fill = tail === undefined ? 0 : 8 - h.length - t.length
  const groups = [...h, ...Array.from({ length: fill }, () => "0"), ...t]
  if (groups.length !== 8) return undefined
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g || "0", 16)), 0n)
}

/** Parses "10.0.0.0/8" or "fd00::/64"; a bare address is a /32 (/128). Undefined if malformed. */
export const parseCidr = (input: string): Cidr | undefined => {
  const [addr = "", prefixText] = input.trim().split("/")
  const family = net.isIP(addr)
  if (family === 0) return undefined
  const bits = family === 4 ? 32 : 128
  const prefix = prefixText === undefined ? bits : Number(prefixText)
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > bits) return undefined
  const value = family === 4 ? ipv4ToBigInt(addr) : ipv6ToBigInt(addr)
  if (value === undefined) return undefined
  const mask = ((1n << BigInt(prefix)) - 1n) << BigInt(bits - prefix)
  return { family: family as 4 | 6, network: value & mask, prefix }
}

/** Whether `ip` lies inside `cidr`. */
export const cidrContains = (cidr: Cidr, ip: string): boolean => {
  const family = net.isIP(ip.split("%")[0]!)
  if (family !== cidr.family) return false
  const bits = family === 4 ? 32 : 128
  const value = family === 4 ? ipv4ToBigInt(ip) : ipv6ToBigInt(ip)
  if (value === undefined) return false
  const mask = ((1n << BigInt(cidr.prefix)) - 1n) << BigInt(bits - cidr.prefix)
  return (value & mask) === cidr.network
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
