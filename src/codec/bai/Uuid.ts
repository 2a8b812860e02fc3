/** A Python `uuid.UUID` (msgpack ext 1: its 16 bytes). */
export class Uuid {
  readonly bytes: Uint8Array
  constructor(bytes: Uint8Array) {
    if (bytes.length !== 16) throw new RangeError("a UUID has 16 bytes")
    this.bytes = Uint8Array.from(bytes)
  }
  /** From `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (or 32 hex digits); undefined when not a UUID. */
  static parse(text: string): Uuid | undefined {
    const hex = text.replace(/-/g, "")
    if (!/^[0-9a-fA-F]{32}$/.test(hex) || !/^[0-9a-fA-F-]+$/.test(text)) return undefined
    return new Uuid(Buffer.from(hex, "hex"))
  }
  toString(): string {
    const h = Buffer.from(this.bytes).toString("hex")
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`
  }
}
