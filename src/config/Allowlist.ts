/**
 * `agent.rpc-allowed-peers`: the manager addresses allowed to connect to the RPC port, checked by the
 * server's ZeroMQ ZAP handler at each handshake (before any request is read). No dependencies
 * beyond node:net, so that config validation can use it.
 */
import * as net from "node:net"

/**
 * The allowlist as a `net.BlockList` (used as an allow list): `"10.0.0.2"`, `"10.0.0.0/24"`,
 * `"fd00::/8"`. A bad entry is reported, never ignored.
 */
export const parseAllowedPeers = (entries: ReadonlyArray<string>): net.BlockList | string => {
  const list = new net.BlockList()
  for (const entry of entries) {
    const [address, prefix, ...rest] = entry.trim().split("/")
    const family = net.isIP(address ?? "")
    if (family === 0 || rest.length > 0) return `${JSON.stringify(entry)} is not an IP address or CIDR block`
    const type = family === 6 ? "ipv6" : "ipv4"
    if (prefix === undefined) {
      list.addAddress(address!, type)
      continue
    }
    const bits = /^\d{1,3}$/.test(prefix) ? Number(prefix) : NaN
    if (!(bits >= 0 && bits <= (family === 6 ? 128 : 32))) return `${JSON.stringify(entry)} has a bad prefix length`
    list.addSubnet(address!, bits, type)
  }
  return list
}

/** Whether a peer address (as ZAP reports it) is on the allowlist; IPv4-mapped IPv6 counts as IPv4. */
export const peerAllowed = (list: net.BlockList, address: string): boolean => {
  const plain = address.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, "")
  const family = net.isIP(plain)
  return family !== 0 && list.check(plain, family === 6 ? "ipv6" : "ipv4")
}
