/**
 * The kernel runner's records (spec §8.1–§8.3), decoded without effects: every message on REPL-out is
 * two frames `[type, payload]`. {@link makeRecordDecoder} turns one message into what it means to the
 * agent: output for the current run, a poll-ending record, a reply to a request, or nothing. It holds
 * the only state decoding needs: one incremental UTF-8 decoder per stream, so multi-byte sequences
 * split across records survive.
 *
 * The kernel is an adversary (issue 13): records are cut at {@link RECORD_MAX_BYTES} (never inside a
 * UTF-8 sequence), a reply is copied out of its frame (it must not keep the frame's buffer alive), and
 * the limits the run queue and the sockets enforce are defined here.
 */
import { Data, Option } from "effect"
import * as Msgpack from "../../codec/Msgpack.ts"

/** Limits (spec §12: 10 MiB per record, 4096 records per run). */
export const RECORD_MAX_BYTES = 10 * 1024 * 1024
export const RUN_MAX_ITEMS = 4096
/** Bytes of output a run buffers before dropping (the run queue's 4096 × 10 MiB would be 40 GiB). */
export const RUN_MAX_BYTES = 64 * 1024 * 1024
/** Buffered output of all of a kernel's runs together (uncollected finished runs included). */
export const KERNEL_MAX_BUFFERED_BYTES = 64 * 1024 * 1024
/** ZeroMQ `maxMessageSize` on the PULL socket: one record and some framing. */
export const MESSAGE_MAX_BYTES = RECORD_MAX_BYTES + 64 * 1024
/** ZeroMQ receive high-water mark (messages) on the PULL socket. */
export const RECEIVE_HWM = 16
/** Finished runs whose output was not collected, kept per kernel. */
export const MAX_UNCOLLECTED_RUNS = 32

/** Statuses that end a poll (spec §8.4). */
export type EndStatus = "waiting-input" | "clean-finished" | "build-finished" | "finished" | "exec-timeout"

/** A decoded runner record, as buffered in a run. */
export type OutputItem =
  | { readonly _tag: "Stream"; readonly stream: "stdout" | "stderr"; readonly text: string }
  | { readonly _tag: "Media"; readonly mime: string; readonly data: string }
  | { readonly _tag: "Other"; readonly type: string; readonly text: string }
  | {
    readonly _tag: "End"
    readonly status: EndStatus
    readonly exitCode: number | null
    readonly options: { readonly [key: string]: unknown } | null
  }

export type EndItem = Extract<OutputItem, { readonly _tag: "End" }>
export type OutputRecord = Exclude<OutputItem, EndItem>

/** What one poll of a run collected: output in arrival order, and the record that ended the poll. */
export interface PollResult {
  readonly items: ReadonlyArray<OutputRecord>
  /** None: the flush window elapsed (status `continued`). */
  readonly end: Option.Option<EndItem>
}

/** A frame pair to send. */
export type RunnerFrame = readonly [type: string, payload: string | Uint8Array]

const END_TYPES: ReadonlySet<string> = new Set(["waiting-input", "clean-finished", "build-finished", "finished", "exec-timeout"])

/** `finished` and `exec-timeout` end the run; the other end statuses only end a poll. */
export const endsRun = (status: EndStatus): boolean => status === "finished" || status === "exec-timeout"

/** Cuts `data` to at most `max` bytes without splitting a UTF-8 sequence. */
export const truncateUtf8 = (data: Uint8Array, max: number): Uint8Array => {
  if (data.length <= max) return data
  let end = max
  // back off over continuation bytes (10xxxxxx) to the start of the sequence that does not fit
  while (end > 0 && end > max - 4 && (data[end]! & 0xc0) === 0x80) end--
  return data.subarray(0, end)
}

export const parseJson = (text: string): Option.Option<unknown> => {
  try {
    return Option.some(JSON.parse(text) as unknown)
  } catch {
    return Option.none()
  }
}

const isRecord = (u: unknown): u is { readonly [key: string]: unknown } => typeof u === "object" && u !== null && !Array.isArray(u)

/** A `media` payload: JSON `{type, data}`; anything else (raw HTML, spec §11.3 item 15) is text/html. */
export const decodeMedia = (text: string): { readonly mime: string; readonly data: string } => {
  const parsed = parseJson(text)
  if (Option.isSome(parsed) && isRecord(parsed.value) && typeof parsed.value.type === "string") {
    const data = parsed.value.data
    return { mime: parsed.value.type, data: typeof data === "string" ? data : JSON.stringify(data ?? null) }
  }
  return { mime: "text/html", data: text }
}

/** A poll-ending record's payload: `{"exitCode": n}` / `{"is_password": bool}` / empty. */
export const decodeEnd = (status: EndStatus, text: string): EndItem => {
  const parsed = parseJson(text)
  const obj = Option.isSome(parsed) && isRecord(parsed.value) ? parsed.value : {}
  if (status === "waiting-input") {
    return { _tag: "End", status, exitCode: null, options: { is_password: obj.is_password === true } }
  }
  const code = obj.exitCode
  return {
    _tag: "End",
    status,
    exitCode: typeof code === "number" && Number.isInteger(code) ? code : null,
    options: null
  }
}

/** A `status` reply: msgpack `{started_at}` (int, float or a 64-bit int). */
export const decodeStatus = (data: Uint8Array): Option.Option<number> => {
  try {
    const v = Msgpack.decode(data)
    if (isRecord(v)) {
      const s = v.started_at
      if (typeof s === "number") return Option.some(s)
      if (typeof s === "bigint") return Option.some(Number(s))
    }
    return Option.none()
  } catch {
    return Option.none()
  }
}

/** An item's weight against the byte budgets (UTF-16 units; a bound, not an exact byte count). */
export const itemSize = (it: OutputItem): number =>
  it._tag === "Stream" || it._tag === "Other" ? it.text.length : it._tag === "Media" ? it.data.length : 0

/** What one message means to the agent. */
export type RunnerRecord = Data.TaggedEnum<{
  /** Output for the current run (already decoded; a stream record whose bytes end mid-sequence may carry no text). */
  Output: { readonly items: ReadonlyArray<OutputRecord> }
  /** A poll-ending record; `flushed`: what the stream decoders still held when the run ended. */
  End: { readonly flushed: ReadonlyArray<OutputRecord>; readonly end: EndItem }
  /** A `status` reply: None when malformed. */
  Status: { readonly startedAt: Option.Option<number> }
  /** A `completion` / `service-result` reply, copied out of its frame. */
  Reply: { readonly type: "completion" | "service-result"; readonly data: Uint8Array }
  /** Nothing for the agent (`apps-result`). */
  Ignored: {}
}>
export const RunnerRecord = Data.taggedEnum<RunnerRecord>()

export interface Decoded {
  readonly record: RunnerRecord
  /** The payload's length when it was cut at {@link RECORD_MAX_BYTES}. */
  readonly truncatedFrom: Option.Option<number>
}

const utf8Text = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("utf8")

/** A decoder for one connection's records. */
export const makeRecordDecoder = () => {
  const decoders = { stdout: new TextDecoder("utf-8"), stderr: new TextDecoder("utf-8") }
  const stream = (stream: "stdout" | "stderr", text: string): ReadonlyArray<OutputRecord> =>
    text.length > 0 ? [{ _tag: "Stream", stream, text }] : []

  const decodeRecord = (type: string, data: Uint8Array): RunnerRecord => {
    switch (type) {
      case "stdout":
      case "stderr":
        return RunnerRecord.Output({ items: stream(type, decoders[type].decode(data, { stream: true })) })
      case "status":
        return RunnerRecord.Status({ startedAt: decodeStatus(data) })
      case "completion":
      case "service-result":
        return RunnerRecord.Reply({ type, data: Uint8Array.prototype.slice.call(data) })
      case "apps-result":
        return RunnerRecord.Ignored()
      case "media":
        return RunnerRecord.Output({ items: [{ _tag: "Media", ...decodeMedia(utf8Text(data)) }] })
      default: {
        if (!END_TYPES.has(type)) return RunnerRecord.Output({ items: [{ _tag: "Other", type, text: utf8Text(data) }] })
        const status = type as EndStatus
        // a run ends: flush the incremental decoders (a dangling partial sequence becomes U+FFFD)
        const flushed = endsRun(status) ? [...stream("stdout", decoders.stdout.decode()), ...stream("stderr", decoders.stderr.decode())] : []
        return RunnerRecord.End({ flushed, end: decodeEnd(status, utf8Text(data)) })
      }
    }
  }

  return (type: string, raw: Uint8Array): Decoded => {
    const data = truncateUtf8(raw, RECORD_MAX_BYTES)
    return { record: decodeRecord(type, data), truncatedFrom: data.length < raw.length ? Option.some(raw.length) : Option.none() }
  }
}
