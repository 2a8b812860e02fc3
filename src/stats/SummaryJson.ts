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
import type { NodeStats, PodStats, Summary } from "./KubeletSummary.ts"

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
  const summary = p.summary()
  p.ws()
  if (p.i !== text.length) p.fail()
  return summary === MISMATCH ? new SummaryMismatch(p.problem ?? "summary: not a Summary") : summary
}

const MISMATCH: unique symbol = Symbol("mismatch")
type Mismatch = typeof MISMATCH
type Writable<A> = { -readonly [K in keyof A]: A[K] }
type Counts = { [field: string]: number }

const QUOTE = 34
const COMMA = 44
const COLON = 58
const OPEN_OBJECT = 123
const CLOSE_OBJECT = 125
const OPEN_ARRAY = 91
const CLOSE_ARRAY = 93

const isDigit = (c: number) => c >= 48 && c <= 57
const isHex = (c: number) => (c >= 48 && c <= 57) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102)

const CPU = ["usageNanoCores", "usageCoreNanoSeconds"]
const MEMORY = ["availableBytes", "usageBytes", "workingSetBytes"]
const NETWORK = ["rxBytes", "txBytes"]
const FS = ["availableBytes", "capacityBytes", "usedBytes"]
const SUMMARY_KEYS = ["node", "pods"]
const NODE_KEYS = ["nodeName", "cpu", "memory", "network", "fs"]
const POD_KEYS = ["podRef", "cpu", "memory", "network", "volume", "ephemeral-storage"]
const POD_REF_KEYS = ["name", "namespace", "uid"]
const VOLUME_KEYS = ["name", "usedBytes"]

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

  /** At a value that should be an object of optional numbers. */
  counts(fields: ReadonlyArray<string>, what: string): Counts | Mismatch {
    if (!this.at(OPEN_OBJECT)) {
      this.skipValue()
      return this.mismatch(`${what}: expected an object`)
    }
    const out: Counts = {}
    let wrong = 0 // bit k: the last `fields[k]` was not a number
    if (this.enter(CLOSE_OBJECT)) {
      do {
        const k = this.key(fields)
        if (k < 0) this.skipValue()
        else if (this.numberAhead()) {
          out[fields[k]!] = this.number()
          wrong &= ~(1 << k)
        } else {
          this.skipValue()
          wrong |= 1 << k
          this.mismatch(`${what}.${fields[k]}: expected a number`)
        }
      } while (this.next(CLOSE_OBJECT))
    }
    return wrong === 0 ? out : MISMATCH
  }

  numberAhead(): boolean {
    const c = this.s.charCodeAt(this.i)
    return c === 45 || isDigit(c)
  }

  /** At a value that should be a string. */
  stringOr(what: string): string | Mismatch {
    if (this.at(QUOTE)) return this.string()
    this.skipValue()
    return this.mismatch(`${what}: expected a string`)
  }

  summary(): Summary | Mismatch {
    if (!this.at(OPEN_OBJECT)) {
      this.skipValue()
      return this.mismatch("summary: expected an object")
    }
    let node: NodeStats | Mismatch | undefined
    let pods: Array<PodStats> | Mismatch | undefined
    if (this.enter(CLOSE_OBJECT)) {
      do {
        const k = this.key(SUMMARY_KEYS)
        if (k === 0) node = this.node()
        else if (k === 1) pods = this.pods()
        else this.skipValue()
      } while (this.next(CLOSE_OBJECT))
    }
    if (node === undefined) return this.mismatch("node: expected an object")
    if (node === MISMATCH || pods === MISMATCH) return MISMATCH
    return pods === undefined ? { node } : { node, pods }
  }

  node(): NodeStats | Mismatch {
    if (!this.at(OPEN_OBJECT)) {
      this.skipValue()
      return this.mismatch("node: expected an object")
    }
    let nodeName: string | Mismatch | undefined
    let cpu: Counts | Mismatch | undefined
    let memory: Counts | Mismatch | undefined
    let network: Counts | Mismatch | undefined
    let fs: Counts | Mismatch | undefined
    if (this.enter(CLOSE_OBJECT)) {
      do {
        switch (this.key(NODE_KEYS)) {
          case 0:
            nodeName = this.stringOr("node.nodeName")
            break
          case 1:
            cpu = this.counts(CPU, "node.cpu")
            break
          case 2:
            memory = this.counts(MEMORY, "node.memory")
            break
          case 3:
            network = this.counts(NETWORK, "node.network")
            break
          case 4:
            fs = this.counts(FS, "node.fs")
            break
          default:
            this.skipValue()
        }
      } while (this.next(CLOSE_OBJECT))
    }
    if (nodeName === undefined) return this.mismatch("node.nodeName: expected a string")
    if (nodeName === MISMATCH || cpu === MISMATCH || memory === MISMATCH || network === MISMATCH || fs === MISMATCH) return MISMATCH
    const node: Writable<NodeStats> = { nodeName }
    if (cpu !== undefined) node.cpu = cpu
    if (memory !== undefined) node.memory = memory
    if (network !== undefined) node.network = network
    if (fs !== undefined) node.fs = fs
    return node
  }

  pods(): Array<PodStats> | Mismatch {
    if (!this.at(OPEN_ARRAY)) {
      this.skipValue()
      return this.mismatch("pods: expected an array")
    }
    const pods: Array<PodStats> = []
    let wrong = false
    if (this.enter(CLOSE_ARRAY)) {
      do {
        const pod = this.pod(pods.length)
        if (pod === MISMATCH) wrong = true
        else pods.push(pod)
      } while (this.next(CLOSE_ARRAY))
    }
    return wrong ? MISMATCH : pods
  }

  pod(index: number): PodStats | Mismatch {
    if (!this.at(OPEN_OBJECT)) {
      this.skipValue()
      return this.mismatch(`pods[${index}]: expected an object`)
    }
    let podRef: PodStats["podRef"] | Mismatch | undefined
    let cpu: Counts | Mismatch | undefined
    let memory: Counts | Mismatch | undefined
    let network: Counts | Mismatch | undefined
    let volume: PodStats["volume"] | Mismatch | undefined
    let ephemeral: Counts | Mismatch | undefined
    if (this.enter(CLOSE_OBJECT)) {
      do {
        switch (this.key(POD_KEYS)) {
          case 0:
            podRef = this.podRef(index)
            break
          case 1:
            cpu = this.counts(CPU, "pod.cpu")
            break
          case 2:
            memory = this.counts(MEMORY, "pod.memory")
            break
          case 3:
            network = this.counts(NETWORK, "pod.network")
            break
          case 4:
            volume = this.volume()
            break
          case 5:
            ephemeral = this.counts(FS, "pod.ephemeral-storage")
            break
          default:
            this.skipValue()
        }
      } while (this.next(CLOSE_OBJECT))
    }
    if (podRef === undefined) return this.mismatch(`pods[${index}].podRef: expected an object`)
    if (podRef === MISMATCH || cpu === MISMATCH || memory === MISMATCH || network === MISMATCH || volume === MISMATCH || ephemeral === MISMATCH) {
      return MISMATCH
    }
    const pod: Writable<PodStats> = { podRef }
    if (cpu !== undefined) pod.cpu = cpu
    if (memory !== undefined) pod.memory = memory
    if (network !== undefined) pod.network = network
    if (volume !== undefined) pod.volume = volume
    if (ephemeral !== undefined) pod["ephemeral-storage"] = ephemeral
    return pod
  }

  podRef(index: number): PodStats["podRef"] | Mismatch {
    const what = `pods[${index}].podRef`
    if (!this.at(OPEN_OBJECT)) {
      this.skipValue()
      return this.mismatch(`${what}: expected an object`)
    }
    let name: string | Mismatch | undefined
    let namespace: string | Mismatch | undefined
    let uid: string | Mismatch | undefined
    if (this.enter(CLOSE_OBJECT)) {
      do {
        switch (this.key(POD_REF_KEYS)) {
          case 0:
            name = this.stringOr(`${what}.name`)
            break
          case 1:
            namespace = this.stringOr(`${what}.namespace`)
            break
          case 2:
            uid = this.stringOr(`${what}.uid`)
            break
          default:
            this.skipValue()
        }
      } while (this.next(CLOSE_OBJECT))
    }
    if (typeof name !== "string" || typeof namespace !== "string" || typeof uid !== "string") {
      return this.mismatch(`${what}: expected name, namespace and uid strings`)
    }
    return { name, namespace, uid }
  }

  volume(): PodStats["volume"] | Mismatch {
    if (!this.at(OPEN_ARRAY)) {
      this.skipValue()
      return this.mismatch("pod.volume: expected an array")
    }
    const out: Array<{ name: string; usedBytes?: number }> = []
    let wrong = false
    if (this.enter(CLOSE_ARRAY)) {
      do {
        if (!this.at(OPEN_OBJECT)) {
          this.skipValue()
          wrong = true
          this.mismatch("pod.volume: expected objects")
          continue
        }
        let name: string | Mismatch | undefined
        let used: number | Mismatch | undefined
        if (this.enter(CLOSE_OBJECT)) {
          do {
            const k = this.key(VOLUME_KEYS)
            if (k === 0) name = this.stringOr("pod.volume.name")
            else if (k === 1) used = this.numberAhead() ? this.number() : (this.skipValue(), this.mismatch("pod.volume.usedBytes: expected a number"))
            else this.skipValue()
          } while (this.next(CLOSE_OBJECT))
        }
        if (typeof name !== "string" || used === MISMATCH) {
          wrong = true
          this.mismatch("pod.volume: expected objects with a name")
        } else out.push(used === undefined ? { name } : { name, usedBytes: used })
      } while (this.next(CLOSE_ARRAY))
    }
    return wrong ? MISMATCH : out
  }
}
