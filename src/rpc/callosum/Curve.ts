/**
 * CURVE authentication of the manager channel (contract §1.7), as the Python agent does it with
 * callosum's `init_authenticator` and `AgentAuthHandler`:
 *
 * - the ROUTER is a CURVE server with the agent's secret key and ZAP domain "local";
 * - a ZAP handler (a REP socket on `inproc://zeromq.zap.01` in the same ZeroMQ context) answers each
 *   handshake: 200 only for domain "local", mechanism CURVE and a client key equal to the manager's
 *   public key; anything else 400. Without a ZAP handler libzmq would accept any CURVE client.
 *
 * Key files are pyzmq certificates (`zmq.auth.create_certificates`): `public-key = "<z85>"` and, in
 * the `.key_secret` file, `secret-key = "<z85>"`.
 */
import { Effect, Schema } from "effect"
import * as fs from "node:fs"

export const ZAP_DOMAIN = "local"

export class CurveConfigError extends Schema.TaggedError<CurveConfigError>()("CurveConfigError", {
  file: Schema.String,
  message: Schema.String
}) {}

const Z85 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"

/** Z85 encoding (ZeroMQ RFC 32) of a byte string whose length is a multiple of 4. */
export const z85Encode = (bytes: Uint8Array): string => {
  if (bytes.length % 4 !== 0) throw new RangeError("Z85 needs a multiple of 4 bytes")
  let out = ""
  for (let i = 0; i < bytes.length; i += 4) {
    let v = ((bytes[i]! << 24) >>> 0) + (bytes[i + 1]! << 16) + (bytes[i + 2]! << 8) + bytes[i + 3]!
    const chunk: Array<string> = []
    for (let j = 0; j < 5; j++) {
      chunk.unshift(Z85[v % 85]!)
      v = Math.floor(v / 85)
    }
    out += chunk.join("")
  }
  return out
}

const isZ85Key = (s: string) => s.length === 40 && [...s].every((c) => Z85.includes(c))

/** `public-key` and `secret-key` of a pyzmq certificate file. */
export const readCertificate = (file: string): Effect.Effect<{ readonly publicKey: string; readonly secretKey?: string }, CurveConfigError> =>
  Effect.try({
    try: () => fs.readFileSync(file, "utf8"),
    catch: (e) => new CurveConfigError({ file, message: e instanceof Error ? e.message : String(e) })
  }).pipe(
    Effect.flatMap((text) => {
      const key = (name: string) => new RegExp(`^\\s*${name}\\s*=\\s*"([^"]*)"`, "m").exec(text)?.[1]
      const publicKey = key("public-key")
      const secretKey = key("secret-key")
      if (publicKey === undefined || !isZ85Key(publicKey)) {
        return Effect.fail(new CurveConfigError({ file, message: "no valid public-key (40 Z85 characters)" }))
      }
      if (secretKey !== undefined && !isZ85Key(secretKey)) {
        return Effect.fail(new CurveConfigError({ file, message: "secret-key is not 40 Z85 characters" }))
      }
      return Effect.succeed(secretKey === undefined ? { publicKey } : { publicKey, secretKey })
    })
  )

/** The ZAP reply to one request (RFC 27): `[version, request id, status, text, user id, metadata]`. */
export const zapReply = (request: ReadonlyArray<Buffer>, allowedClientKeys: ReadonlySet<string>): Array<Buffer> => {
  const [version, requestId, domain, , , mechanism, credential] = request
  const ok = version?.toString() === "1.0" && domain?.toString() === ZAP_DOMAIN && mechanism?.toString() === "CURVE" &&
    credential !== undefined && credential.length === 32 && allowedClientKeys.has(z85Encode(credential))
  return [
    Buffer.from("1.0"),
    requestId ?? Buffer.alloc(0),
    Buffer.from(ok ? "200" : "400"),
    Buffer.from(ok ? "OK" : "Unauthorized"),
    Buffer.from(ok ? "manager" : ""),
    Buffer.alloc(0)
  ]
}
