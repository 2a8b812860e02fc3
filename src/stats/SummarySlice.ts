/**
 * A kubelet Summary document cut down to the pods of some namespaces before it is parsed (issue 17 goal
 * 4). At 200 nodes / 5,000 pods most of a node's pods are not this agent's kernels: the stats loop kept
 * only the kernels' pods, after `JSON.parse` had built every pod's objects (the biggest part of a read's
 * CPU and garbage). Here the pods are found with byte searches (`Buffer.indexOf`, native) and only the
 * node part and the wanted pods' text are decoded and handed to `JSON.parse`.
 *
 * The layout relied on is the kubelet's (Go's encoder, compact or indented; `pods` the last key): the
 * node part, then `"pods": [`, then pod objects whose first key is `"podRef"`, separated by commas,
 * then `]` and the document's closing `}`. A quote inside a JSON string is always escaped, so the bytes
 * `"podRef"` followed by a colon occur only as a key. Every pod start is checked (`{` before the key,
 * `[` or `,` before that, the `"pods"` key before the array); anything else — no pods, another layout, a
 * podRef that does not parse or has no string namespace — answers `undefined`, and the caller parses
 * the whole document as before (whose errors then name the problem). What is kept is parsed and
 * checked as a whole document would be (`projectSummary`); the left-out pods' text is not read.
 */

const POD_REF = Buffer.from('"podRef"')
const PODS = Buffer.from('"pods"')
const utf8 = new TextDecoder()

const isSpace = (b: number | undefined) => b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09

/** The index of the last non-space byte before `i` (−1 if none). */
const back = (buf: Uint8Array, i: number): number => {
  let j = i - 1
  while (j >= 0 && isSpace(buf[j])) j--
  return j
}

/** The index of the first non-space byte from `i` (`buf.length` if none). */
const forward = (buf: Uint8Array, i: number): number => {
  let j = i
  while (j < buf.length && isSpace(buf[j])) j++
  return j
}

const startsAt = (buf: Buffer, i: number, word: Buffer): boolean => i >= 0 && buf.compare(word, 0, word.length, i, i + word.length) === 0

/** The namespace of the podRef object starting at `i` (its `{`), or undefined when it does not parse. */
const namespaceAt = (buf: Buffer, i: number): string | undefined => {
  if (buf[i] !== 0x7b) return undefined
  // a podRef holds strings only, and a `}` inside a string leaves this slice unterminated (no parse)
  const end = buf.indexOf(0x7d, i)
  if (end < 0) return undefined
  try {
    const ref: unknown = JSON.parse(utf8.decode(buf.subarray(i, end + 1)))
    const ns = typeof ref === "object" && ref !== null ? (ref as { readonly namespace?: unknown }).namespace : undefined
    return typeof ns === "string" ? ns : undefined
  } catch {
    return undefined
  }
}

/**
 * The Summary document `body` with only the pods whose `podRef.namespace` is in `namespaces`, as text
 * for `JSON.parse`; `undefined` when the document is not laid out as the kubelet writes it (see the
 * module's comment): parse the whole of it then.
 */
export const summaryOfNamespaces = (body: Buffer, namespaces: ReadonlySet<string>): string | undefined => {
  const from = body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf ? 3 : 0
  let at = body.indexOf(POD_REF, from)
  if (at < 0) return undefined
  // the array: `"pods"`, `:`, `[` before the first pod's `{`
  const firstOpen = back(body, at)
  const arrayOpen = back(body, firstOpen)
  const colon = back(body, arrayOpen)
  if (body[firstOpen] !== 0x7b || body[arrayOpen] !== 0x5b || body[colon] !== 0x3a) return undefined
  if (!startsAt(body, back(body, colon) - PODS.length + 1, PODS)) return undefined
  // its end: `]` then the document's `}`, nothing after but spaces
  const docClose = back(body, body.length)
  const arrayClose = back(body, docClose)
  if (body[docClose] !== 0x7d || body[arrayClose] !== 0x5d) return undefined
  const parts: Array<string> = [utf8.decode(body.subarray(from, arrayOpen + 1))]
  let open = firstOpen
  while (at >= 0) {
    const next = body.indexOf(POD_REF, at + POD_REF.length)
    let end: number
    let nextOpen = -1
    if (next < 0 || next > arrayClose) {
      end = arrayClose
    } else {
      nextOpen = back(body, next)
      end = back(body, nextOpen)
      if (body[nextOpen] !== 0x7b || body[end] !== 0x2c) return undefined
    }
    const colonAt = forward(body, at + POD_REF.length)
    if (body[colonAt] !== 0x3a) return undefined
    const namespace = namespaceAt(body, forward(body, colonAt + 1))
    if (namespace === undefined) return undefined
    if (namespaces.has(namespace)) {
      if (parts.length > 1) parts.push(",")
      parts.push(utf8.decode(body.subarray(open, end)))
    }
    if (nextOpen < 0) break
    at = next
    open = nextOpen
  }
  parts.push("]}")
  return parts.join("")
}
