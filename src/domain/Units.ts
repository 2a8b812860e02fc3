/**
 * Pure parsers for the human units accepted in agent.toml: durations ("3s", "500ms", "1.5m", plain
 * numbers = seconds) and binary sizes ("1G", "512m", "10Gi", "1.5GiB", plain numbers = bytes).
 * Binary sizes follow Backend.AI's BinarySize: every suffix is a power of 1024.
 */

const durationUnits: Record<string, number> = {
  ms: 1e-3,
  s: 1,
  sec: 1,
  m: 60,
  min: 60,
  h: 3600,
  d: 86400
}

/** Seconds, or undefined when the input is not a duration. */
export const parseDurationSeconds = (input: string | number): number | undefined => {
  if (typeof input === "number") return Number.isFinite(input) && input >= 0 ? input : undefined
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(input)
  if (m === null) return undefined
  const unit = (m[2] ?? "").toLowerCase()
  const factor = unit === "" ? 1 : durationUnits[unit]
  return factor === undefined ? undefined : Number(m[1]) * factor
}

const sizeUnits: Record<string, number> = { "": 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 }

/** Bytes (integer), or undefined when the input is not a binary size. */
export const parseBinarySize = (input: string | number): number | undefined => {
  if (typeof input === "number") return Number.isInteger(input) && input >= 0 ? input : undefined
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*$/i.exec(input)
  if (m === null) return undefined
  const factor = sizeUnits[(m[2] ?? "").toLowerCase()]
  return factor === undefined ? undefined : Math.floor(Number(m[1]) * factor)
}

/** `host:port` (IPv6 hosts in brackets); undefined on a malformed address. */
export const parseHostPort = (input: string): { host: string; port: number } | undefined => {
  const m = /^\s*(?:\[([^\]]*)\]|([^:\s]*)):(\d{1,5})\s*$/.exec(input)
  if (m === null) return undefined
  const port = Number(m[3])
  if (port > 65535) return undefined
  return { host: m[1] ?? m[2] ?? "", port }
}

export const formatHostPort = (a: { readonly host: string; readonly port: number }): string =>
  a.host.includes(":") ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`
