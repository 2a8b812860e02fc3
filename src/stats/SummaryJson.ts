/**
 * The kubelet Summary document read straight from its JSON text: `parseSummary(text)` is
 * `Schema.decodeUnknown(Summary)(JSON.parse(text))` (KubeletSummary.ts) without building the parsed
 * tree. At 1,000 kernels the stats loop reads ~2 MB of summaries every 2 s, of which it uses a few
 * numbers per pod; JSON.parse made ~40 objects and ~20 strings per pod (containers, timestamps,
 * interfaces…) only to drop them, and with the agent's 1 MiB young generation most of them were
 * promoted before they died. This scanner validates the whole text as JSON (the grammar of RFC 8259,
 * as JSON.parse: a syntax error throws a SyntaxError) and keeps only the Summary's fields, with the
 * Schema's rules: a declared field of the wrong type makes the document a {@link SummaryMismatch},
 * the last of duplicate keys wins, other fields are skipped. test/stats/SummaryJson.test.ts checks
 * both against JSON.parse + the Schema on generated and corrupted documents.
 */
import type { Summary } from "./KubeletSummary.ts"

/** Why a document is not a {@link Summary}. */
export class SummaryMismatch {
  readonly message: string
  constructor(message: string) {
    this.message = message
  }
}

/** Parses and projects a Summary document; throws a SyntaxError when the text is not JSON. */
export const parseSummary = (text: string): Summary | SummaryMismatch => {
  const p = new Scanner(text)
  p.ws()
  const value = summary(p)
  p.ws()
  if (p.i !== text.length) p.fail()
  return value === MISMATCH ? new SummaryMismatch(p.problem ?? "summary: expected an object") : (value as Summary)
}

const MISMATCH: unique symbol = Symbol("mismatch")
type Mismatch = typeof MISMATCH

const QUOTE = 34
const COMMA = 44
const COLON = 58
const OPEN_OBJECT = 123
const CLOSE_OBJECT = 125
const OPEN_ARRAY = 91
const CLOSE_ARRAY = 93

const isDigit = (c: number) => c >= 48 && c <= 57
const isHex = (c: number) => (c >= 48 && c <= 57) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102)

class Scanner {
  readonly s: string
  i = 0
  /** The first field found of the wrong type (the message of a mismatch). */
  problem: string | undefined = undefined
  /** Open containers of skipped values (their closing characters), reused. */
  private readonly open: Array<number> = []

  constructor(s: string) {
    this.s = s
  }

  fail(): never {
    throw new SyntaxError(`not JSON at position ${this.i}`)
  }

  mismatch(what: string): Mismatch {
    this.problem ??= what
    return MISMATCH
  }

  ws(): void {
    const s = this.s
    let i = this.i
    for (;;) {
      const c = s.charCodeAt(i)
      if (c === 32 || c === 10 || c === 13 || c === 9) i++
      else break
    }
    this.i = i
  }

  /** At a value: whether it is `c` (an object or an array). */
  at(c: number): boolean {
    return this.s.charCodeAt(this.i) === c
  }

  /** At `{` or `[`: consumes it; true if a member/element follows (whitespace skipped). */
  enter(close: number): boolean {
    this.i++
    this.ws()
    if (this.s.charCodeAt(this.i) === close) {
      this.i++
      return false
    }
    return true
  }

  /** After a member/element: true if another follows (`,` consumed, whitespace skipped). */
  next(close: number): boolean {
    this.ws()
    const c = this.s.charCodeAt(this.i)
    if (c === COMMA) {
      this.i++
      this.ws()
      return true
    }
    if (c !== close) this.fail()
    this.i++
    return false
  }

  /** At a string: skips it; whether it has escapes. */
  skipString(): boolean {
    const s = this.s
    if (s.charCodeAt(this.i) !== QUOTE) this.fail()
    let i = this.i + 1
    let escaped = false
    for (;;) {
      const c = s.charCodeAt(i)
      if (c === QUOTE) break
      if (c === 92) {
        escaped = true
        const e = s.charCodeAt(i + 1)
        if (e === 117) {
          for (let k = 2; k < 6; k++) {
            if (!isHex(s.charCodeAt(i + k))) {
              this.i = i
              this.fail()
            }
          }
          i += 6
        } else if (e === 34 || e === 92 || e === 47 || e === 98 || e === 102 || e === 110 || e === 114 || e === 116) {
          i += 2
        } else {
          this.i = i
          this.fail()
        }
      } else if (c < 32 || c !== c) {
        // a control character, or the end of the text (NaN)
        this.i = i
        this.fail()
      } else i++
    }
    this.i = i + 1
    return escaped
  }

  string(): string {
    const start = this.i
    const escaped = this.skipString()
    return escaped ? (JSON.parse(this.s.slice(start, this.i)) as string) : this.s.slice(start + 1, this.i - 1)
  }

  /** At a member: its key's index in `names` (-1: another key); then at its value. */
  key(names: ReadonlyArray<string>): number {
    const start = this.i
    const escaped = this.skipString()
    let found = -1
    if (escaped) {
      found = names.indexOf(JSON.parse(this.s.slice(start, this.i)) as string)
    } else {
      const length = this.i - start - 2
      for (let k = 0; k < names.length; k++) {
        const name = names[k]!
        if (name.length === length && this.s.startsWith(name, start + 1)) {
          found = k
          break
        }
      }
    }
    this.ws()
    if (this.s.charCodeAt(this.i) !== COLON) this.fail()
    this.i++
    this.ws()
    return found
  }

  /** At a member: skips its key; then at its value. */
  skipKey(): void {
    this.skipString()
    this.ws()
    if (this.s.charCodeAt(this.i) !== COLON) this.fail()
    this.i++
    this.ws()
  }

  /** At a number: its value (as JSON.parse reads it). */
  number(): number {
    const s = this.s
    const start = this.i
    let i = start
    if (s.charCodeAt(i) === 45) i++
    const first = s.charCodeAt(i)
    if (first === 48) i++
    else if (first >= 49 && first <= 57) {
      do i++
      while (isDigit(s.charCodeAt(i)))
    } else {
      this.i = i
      this.fail()
    }
    let integer = true
    if (s.charCodeAt(i) === 46) {
      integer = false
      i++
      if (!isDigit(s.charCodeAt(i))) {
        this.i = i
        this.fail()
      }
      do i++
      while (isDigit(s.charCodeAt(i)))
    }
    const e = s.charCodeAt(i)
    if (e === 101 || e === 69) {
      integer = false
      i++
      const sign = s.charCodeAt(i)
      if (sign === 43 || sign === 45) i++
      if (!isDigit(s.charCodeAt(i))) {
        this.i = i
        this.fail()
      }
      do i++
      while (isDigit(s.charCodeAt(i)))
    }
    this.i = i
    if (integer && i - start <= 15) {
      // at most 15 characters: exact in a double, no substring
      const negative = s.charCodeAt(start) === 45
      let v = 0
      for (let k = negative ? start + 1 : start; k < i; k++) v = v * 10 + (s.charCodeAt(k) - 48)
      return negative ? -v : v
    }
    return Number(s.slice(start, i))
  }

  literal(word: string): void {
    if (!this.s.startsWith(word, this.i)) this.fail()
    this.i += word.length
  }

  /** At a value: skips it (validated; nesting kept on `open`, not on the call stack). */
  skipValue(): void {
    const open = this.open
    const base = open.length
    for (;;) {
      const c = this.s.charCodeAt(this.i)
      if (c === OPEN_OBJECT) {
        if (this.enter(CLOSE_OBJECT)) {
          open.push(CLOSE_OBJECT)
          this.skipKey()
          continue
        }
      } else if (c === OPEN_ARRAY) {
        if (this.enter(CLOSE_ARRAY)) {
          open.push(CLOSE_ARRAY)
          continue
        }
      } else if (c === QUOTE) this.skipString()
      else if (c === 116) this.literal("true")
      else if (c === 102) this.literal("false")
      else if (c === 110) this.literal("null")
      else this.number()
      // after a value: close what ends here, or go on with the next member/element
      for (;;) {
        if (open.length === base) return
        const close = open[open.length - 1]!
        if (this.next(close)) {
          if (close === CLOSE_OBJECT) this.skipKey()
          break
        }
        open.pop()
      }
    }
  }

  numberAhead(): boolean {
    const c = this.s.charCodeAt(this.i)
    return c === 45 || isDigit(c)
  }

  /** At a value of the wrong kind: skips it. */
  wrong(): Mismatch {
    this.skipValue()
    return MISMATCH
  }
}

/** Reads a value at the scanner's position: the value, or MISMATCH when it is not of the reader's kind. */
type Reader = (p: Scanner) => unknown

const number: Reader = (p) => (p.numberAhead() ? p.number() : p.wrong())
const string: Reader = (p) => (p.at(QUOTE) ? p.string() : p.wrong())

interface Field {
  readonly key: string
  readonly read: Reader
  /** What a value must be (the message of a mismatch). */
  readonly expected: string
  readonly required?: boolean
}

/**
 * An object with `fields` (others skipped): a new object of the fields present, the last of duplicate
 * keys winning, or MISMATCH when a field's last value is not of its kind or a required field is absent.
 */
const struct = (what: string, fields: ReadonlyArray<Field>): Reader => {
  const names = fields.map((f) => f.key)
  return (p) => {
    if (!p.at(OPEN_OBJECT)) return p.wrong()
    const out: { [key: string]: unknown } = {}
    let wrong = 0 // bit k: the last value of fields[k] was not of its kind
    let seen = 0 // bit k: fields[k] is in `out`
    if (p.enter(CLOSE_OBJECT)) {
      do {
        const k = p.key(names)
        if (k < 0) {
          p.skipValue()
          continue
        }
        const v = fields[k]!.read(p)
        if (v === MISMATCH) {
          wrong |= 1 << k
          p.mismatch(`${what}.${names[k]}: expected ${fields[k]!.expected}`)
        } else {
          wrong &= ~(1 << k)
          seen |= 1 << k
          out[names[k]!] = v
        }
      } while (p.next(CLOSE_OBJECT))
    }
    if (wrong !== 0) return MISMATCH
    for (let k = 0; k < fields.length; k++) {
      if (fields[k]!.required === true && (seen & (1 << k)) === 0) return p.mismatch(`${what}.${names[k]}: expected ${fields[k]!.expected}`)
    }
    return out
  }
}

/** An array of `element`s, or MISMATCH when it is not an array or one element does not match. */
const array = (element: Reader): Reader => (p) => {
  if (!p.at(OPEN_ARRAY)) return p.wrong()
  const out: Array<unknown> = []
  let wrong = false
  if (p.enter(CLOSE_ARRAY)) {
    do {
      const v = element(p)
      if (v === MISMATCH) wrong = true
      else out.push(v)
    } while (p.next(CLOSE_ARRAY))
  }
  return wrong ? MISMATCH : out
}

const counts = (what: string, keys: ReadonlyArray<string>): Field => ({
  key: what,
  read: struct(what, keys.map((key) => ({ key, read: number, expected: "a number" }))),
  expected: "an object of numbers"
})

const cpu = counts("cpu", ["usageNanoCores", "usageCoreNanoSeconds"])
const memory = counts("memory", ["availableBytes", "usageBytes", "workingSetBytes"])
const network = counts("network", ["rxBytes", "txBytes"])
const fsFields = ["availableBytes", "capacityBytes", "usedBytes"]

const podRef = struct("podRef", ["name", "namespace", "uid"].map((key) => ({ key, read: string, expected: "a string", required: true })))
const volume = struct("volume", [
  { key: "name", read: string, expected: "a string", required: true },
  { key: "usedBytes", read: number, expected: "a number" }
])
const pod = struct("pod", [
  { key: "podRef", read: podRef, expected: "an object with name, namespace and uid", required: true },
  cpu,
  memory,
  network,
  { key: "volume", read: array(volume), expected: "an array of named volumes" },
  counts("ephemeral-storage", fsFields)
])
const node = struct("node", [{ key: "nodeName", read: string, expected: "a string", required: true }, cpu, memory, network, counts("fs", fsFields)])
const summary = struct("summary", [
  { key: "node", read: node, expected: "an object", required: true },
  { key: "pods", read: array(pod), expected: "an array of pods" }
])
