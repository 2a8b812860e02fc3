// size: a strict, read-only pickle subset: one stack machine over a fixed opcode list and its whitelist of globals, audited together
/**
 * The few Python pickles the 26.x manager puts inside its msgpack ext types (contract §1.6), read
 * by a small, strict, read-only pickle subset — and the one pickle the agent writes (the heartbeat's
 * `ResourceSlot`, ext 8).
 *
 * This is untrusted input, so it is NOT an unpickler: nothing is ever called or looked up by name.
 * The reader runs a stack machine over a fixed opcode list (framing, short/long unicode, memo,
 * STACK_GLOBAL/GLOBAL, tuples, MARK, REDUCE, NEWOBJ, dict/list building, BUILD, None/bools/small
 * ints, STOP) and accepts only these globals, each with one fixed construction shape:
 *
 * - an enum class of the whitelist (AutoPullBehavior, SessionTypes, ClusterMode, SlotTypes,
 *   ServicePortProtocols, KernelLifecycleEventReason): `Cls(value)` (CPython ≥ 3.11.3 pickles by
 *   value) or `builtins.getattr(Cls, "NAME")` (3.11.2 and older, by name) — both checked against the
 *   member table;
 * - `decimal.Decimal("…")` with a decimal literal;
 * - `ai.backend.common.docker.ImageRef` and `PlatformTagSet`, and `ai.backend.common.types.ResourceSlot`:
 *   `cls.__new__(cls)` (NEWOBJ with no arguments) then `BUILD` with plain state.
 *
 * Anything else (another global, opcode, shape, or a size beyond the limits) is a {@link PickleError}.
 */

/** Why a pickle was refused. Thrown only inside this module and the codec; callers get it as a value. */
export class PickleError extends Error {
  override readonly name = "PickleError"
}

/** A Python `enum.Enum` member: its class (`module.QualName`), member name and value. */
export class PyEnum {
  readonly cls: string
  readonly member: string
  readonly value: string
  constructor(cls: string, member: string, value: string) {
    this.cls = cls
    this.member = member
    this.value = value
  }
  toString(): string {
    return this.value
  }
}

/** A Python `decimal.Decimal`, kept as its literal text. */
export class PyDecimal {
  readonly text: string
  constructor(text: string) {
    this.text = text
  }
  toString(): string {
    return this.text
  }
}

/** An object built by `cls.__new__(cls)` + `BUILD`: its class and its attributes (`__dict__` and slots). */
export class PyObject {
  readonly cls: string
  readonly attrs: Readonly<Record<string, unknown>>
  constructor(cls: string, attrs: Readonly<Record<string, unknown>>) {
    this.cls = cls
    this.attrs = attrs
  }
}

const TYPES = "ai.backend.common.types"
const DOCKER = "ai.backend.common.docker"
const KERNEL_EVENTS = "ai.backend.common.events.event_types.kernel.types"

/** Member name → value of the enums the manager sends (R268 `common/types.py`, `events/…/kernel/types.py`). */
const nameIsValue = (values: ReadonlyArray<string>): ReadonlyMap<string, string> =>
  new Map(values.map((v) => [v.toUpperCase().replace(/-/g, "_"), v]))

const ENUMS: ReadonlyMap<string, ReadonlyMap<string, string>> = new Map([
  [`${TYPES}.AutoPullBehavior`, nameIsValue(["digest", "tag", "none"])],
  [`${TYPES}.SessionTypes`, nameIsValue(["interactive", "batch", "inference", "system"])],
  [`${TYPES}.ClusterMode`, nameIsValue(["single-node", "multi-node"])],
  [`${TYPES}.SlotTypes`, nameIsValue(["count", "bytes", "unique"])],
  [`${TYPES}.ServicePortProtocols`, nameIsValue(["http", "tcp", "preopen", "internal", "vnc", "rdp"])],
  [`${KERNEL_EVENTS}.KernelLifecycleEventReason`, nameIsValue([
    "agent-termination",
    "already-terminated",
    "container-not-found",
    "failed-to-create",
    "failed-to-start",
    "force-terminated",
    "hang-timeout",
    "idle-timeout",
    "not-found-in-manager",
    "pending-timeout",
    "restarting",
    "restart-timeout",
    "self-terminated",
    "task-cancelled",
    "task-done",
    "task-failed",
    "task-timeout",
    "termination-timeout",
    "unknown",
    "user-requested",
    "missing-in-agent",
    "stale-kernel",
    "exec-timeout",
    "session-terminated"
  ])]
])

/** Classes built with `__new__` + `BUILD`. */
const OBJECT_CLASSES: ReadonlySet<string> = new Set([`${DOCKER}.ImageRef`, `${DOCKER}.PlatformTagSet`, `${TYPES}.ResourceSlot`])

/** Limits: a pickle larger than this, or deeper / with more memo entries, is refused. */
const MAX_PICKLE_BYTES = 64 * 1024
const MAX_STACK = 4096
const MAX_MEMO = 4096

// Stack items that are not Python values
class Global {
  readonly name: string
  constructor(name: string) {
    this.name = name
  }
}
const MARK = Symbol("mark")
class Tuple {
  readonly items: ReadonlyArray<unknown>
  constructor(items: ReadonlyArray<unknown>) {
    this.items = items
  }
}
/** An object under construction (NEWOBJ done, BUILD pending). */
class Building {
  readonly cls: string
  attrs: Record<string, unknown> | undefined
  constructor(cls: string) {
    this.cls = cls
  }
}

const latin1 = new TextDecoder("latin1")
const utf8 = new TextDecoder("utf-8", { fatal: true })

const isDecimalLiteral = (s: string): boolean => /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/.test(s)

/** A plain dict of the pickle (our `Map` with str keys) as a record. */
const dictRecord = (v: unknown, what: string): Record<string, unknown> => {
  if (!(v instanceof Map)) throw new PickleError(`${what}: expected a dict`)
  const out: Record<string, unknown> = {}
  for (const [k, x] of v) {
    if (typeof k !== "string") throw new PickleError(`${what}: a key is not a str`)
    if (k === "__proto__") throw new PickleError(`${what}: forbidden key`)
    out[k] = x
  }
  return out
}

/** Python values of a finished pickle: dicts become records, tuples and lists arrays. */
const finish = (v: unknown, depth: number): unknown => {
  if (depth > 64) throw new PickleError("value nested too deeply")
  if (v instanceof Tuple) return v.items.map((x) => finish(x, depth + 1))
  if (Array.isArray(v)) return v.map((x) => finish(x, depth + 1))
  if (v instanceof Map) {
    const rec = dictRecord(v, "dict")
    for (const k of Object.keys(rec)) rec[k] = finish(rec[k], depth + 1)
    return rec
  }
  if (v instanceof Building) {
    if (v.attrs === undefined) throw new PickleError(`${v.cls}: object never built`)
    const attrs: Record<string, unknown> = {}
    for (const [k, x] of Object.entries(v.attrs)) attrs[k] = finish(x, depth + 1)
    return new PyObject(v.cls, attrs)
  }
  if (v instanceof Global) throw new PickleError(`a bare global (${v.name}) is not a value`)
  return v
}

/**
 * Reads one pickle of the accepted subset. Returns the value: a {@link PyEnum}, {@link PyDecimal},
 * {@link PyObject}, or a plain value (string, number, boolean, null, array, record).
 * Throws {@link PickleError} on anything outside the subset.
 */
export const readPickle = (bytes: Uint8Array): unknown => {
  if (bytes.length > MAX_PICKLE_BYTES) throw new PickleError(`pickle of ${bytes.length} bytes is over the limit`)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let pos = 0
  const stack: Array<unknown> = []
  const marks: Array<number> = []
  const memo: Array<unknown> = []
  const need = (n: number) => {
    if (pos + n > bytes.length) throw new PickleError("truncated pickle")
  }
  const push = (v: unknown) => {
    if (stack.length >= MAX_STACK) throw new PickleError("pickle stack too deep")
    stack.push(v)
  }
  const pop = (): unknown => {
    if (stack.length === 0 || (marks.length > 0 && stack.length <= marks[marks.length - 1]!)) {
      throw new PickleError("pickle stack underflow")
    }
    return stack.pop()
  }
  const top = (): unknown => {
    if (stack.length === 0) throw new PickleError("pickle stack underflow")
    return stack[stack.length - 1]
  }
  const popMark = (): Array<unknown> => {
    const m = marks.pop()
    if (m === undefined) throw new PickleError("no MARK")
    return stack.splice(m)
  }
  const str = (n: number): string => {
    need(n)
    const s = bytes.subarray(pos, pos + n)
    pos += n
    try {
      return utf8.decode(s)
    } catch {
      throw new PickleError("invalid UTF-8 in a pickled str")
    }
  }
  const getMemo = (i: number) => {
    if (i >= memo.length) throw new PickleError(`memo ${i} not set`)
    return memo[i]
  }
  const global = (module: string, name: string): Global => {
    const full = `${module}.${name}`
    if (full === "builtins.getattr" || full === "decimal.Decimal" || ENUMS.has(full) || OBJECT_CLASSES.has(full)) {
      return new Global(full)
    }
    throw new PickleError(`global ${full} is not allowed`)
  }
  const reduce = (fn: unknown, args: unknown): unknown => {
    if (!(fn instanceof Global) || !(args instanceof Tuple)) throw new PickleError("REDUCE needs a global and a tuple")
    const a = args.items
    if (fn.name === "builtins.getattr") {
      const [cls, member] = a
      if (a.length !== 2 || !(cls instanceof Global) || typeof member !== "string") throw new PickleError("getattr(cls, name) only")
      const table = ENUMS.get(cls.name)
      const value = table?.get(member)
      if (table === undefined || value === undefined) throw new PickleError(`${cls.name}.${member} is not a known enum member`)
      return new PyEnum(cls.name, member, value)
    }
    if (fn.name === "decimal.Decimal") {
      const [text] = a
      if (a.length !== 1 || typeof text !== "string" || !(isDecimalLiteral(text) || /^[+-]?(Infinity|NaN)$/.test(text))) {
        throw new PickleError("Decimal(str) with a decimal literal only")
      }
      return new PyDecimal(text)
    }
    const table = ENUMS.get(fn.name)
    if (table !== undefined) {
      const [value] = a
      if (a.length !== 1 || typeof value !== "string") throw new PickleError(`${fn.name}(value) with a str only`)
      for (const [member, v] of table) if (v === value) return new PyEnum(fn.name, member, v)
      throw new PickleError(`${JSON.stringify(value)} is not a value of ${fn.name}`)
    }
    throw new PickleError(`${fn.name} cannot be called`)
  }
  const build = (obj: unknown, state: unknown): void => {
    if (!(obj instanceof Building) || obj.attrs !== undefined) throw new PickleError("BUILD on something not under construction")
    let dict: unknown = state
    let slots: unknown = null
    if (state instanceof Tuple) {
      if (state.items.length !== 2) throw new PickleError("BUILD state tuple must be (dict, slots)")
      dict = state.items[0]
      slots = state.items[1]
    }
    obj.attrs = {
      ...(dict === null ? {} : dictRecord(dict, `${obj.cls} state`)),
      ...(slots === null ? {} : dictRecord(slots, `${obj.cls} slots`))
    }
  }

  for (;;) {
    need(1)
    const op = bytes[pos++]!
    switch (op) {
      case 0x80: // PROTO
        need(1)
        if (bytes[pos]! < 2 || bytes[pos]! > 5) throw new PickleError(`pickle protocol ${bytes[pos]} not accepted`)
        pos += 1
        break
      case 0x95: // FRAME (length is informative)
        need(8)
        pos += 8
        break
      case 0x2e: { // STOP
        if (stack.length !== 1 || marks.length > 0) throw new PickleError("pickle does not end with exactly one value")
        if (pos !== bytes.length) throw new PickleError("data after STOP")
        return finish(stack[0], 0)
      }
      case 0x8c: // SHORT_BINUNICODE
        need(1)
        push(str(bytes[pos++]!))
        break
      case 0x58: { // BINUNICODE
        need(4)
        const n = view.getUint32(pos, true)
        pos += 4
        push(str(n))
        break
      }
      case 0x8d: { // BINUNICODE8
        need(8)
        const n = view.getBigUint64(pos, true)
        pos += 8
        if (n > BigInt(bytes.length)) throw new PickleError("truncated pickle")
        push(str(Number(n)))
        break
      }
      case 0x94: // MEMOIZE
        if (memo.length >= MAX_MEMO) throw new PickleError("too many memo entries")
        memo.push(top())
        break
      case 0x71: { // BINPUT
        need(1)
        const i = bytes[pos++]!
        if (i > memo.length || i >= MAX_MEMO) throw new PickleError("sparse memo")
        memo[i] = top()
        break
      }
      case 0x68: // BINGET
        need(1)
        push(getMemo(bytes[pos++]!))
        break
      case 0x6a: // LONG_BINGET
        need(4)
        push(getMemo(view.getUint32(pos, true)))
        pos += 4
        break
      case 0x93: { // STACK_GLOBAL
        const name = pop()
        const module = pop()
        if (typeof module !== "string" || typeof name !== "string") throw new PickleError("STACK_GLOBAL needs two str")
        push(global(module, name))
        break
      }
      case 0x63: { // GLOBAL "module\nname\n"
        const nl1 = bytes.indexOf(0x0a, pos)
        const nl2 = nl1 < 0 ? -1 : bytes.indexOf(0x0a, nl1 + 1)
        if (nl2 < 0 || nl2 - pos > 256) throw new PickleError("bad GLOBAL")
        const module = latin1.decode(bytes.subarray(pos, nl1))
        const name = latin1.decode(bytes.subarray(nl1 + 1, nl2))
        pos = nl2 + 1
        push(global(module, name))
        break
      }
      case 0x29: // EMPTY_TUPLE
        push(new Tuple([]))
        break
      case 0x85: // TUPLE1
        push(new Tuple([pop()]))
        break
      case 0x86: { // TUPLE2
        const b = pop()
        const a = pop()
        push(new Tuple([a, b]))
        break
      }
      case 0x87: { // TUPLE3
        const c = pop()
        const b = pop()
        const a = pop()
        push(new Tuple([a, b, c]))
        break
      }
      case 0x28: // MARK
        if (marks.length >= 64) throw new PickleError("too many MARKs")
        marks.push(stack.length)
        break
      case 0x74: // TUPLE
        push(new Tuple(popMark()))
        break
      case 0x52: { // REDUCE
        const args = pop()
        const fn = pop()
        push(reduce(fn, args))
        break
      }
      case 0x81: { // NEWOBJ
        const args = pop()
        const cls = pop()
        if (!(cls instanceof Global) || !OBJECT_CLASSES.has(cls.name)) throw new PickleError("NEWOBJ of a class that is not allowed")
        if (!(args instanceof Tuple) || args.items.length !== 0) throw new PickleError(`${cls.name}.__new__ takes no arguments here`)
        push(new Building(cls.name))
        break
      }
      case 0x62: { // BUILD
        const state = pop()
        build(top(), state)
        break
      }
      case 0x7d: // EMPTY_DICT
        push(new Map<unknown, unknown>())
        break
      case 0x73: { // SETITEM
        const v = pop()
        const k = pop()
        const d = top()
        if (!(d instanceof Map) || typeof k !== "string") throw new PickleError("SETITEM needs a dict and a str key")
        d.set(k, v)
        break
      }
      case 0x75: { // SETITEMS
        const items = popMark()
        const d = top()
        if (!(d instanceof Map) || items.length % 2 !== 0) throw new PickleError("SETITEMS needs a dict and key/value pairs")
        for (let i = 0; i < items.length; i += 2) {
          if (typeof items[i] !== "string") throw new PickleError("dict keys must be str")
          d.set(items[i], items[i + 1])
        }
        break
      }
      case 0x5d: // EMPTY_LIST
        push([])
        break
      case 0x61: { // APPEND
        const v = pop()
        const l = top()
        if (!Array.isArray(l)) throw new PickleError("APPEND needs a list")
        l.push(v)
        break
      }
      case 0x65: { // APPENDS
        const items = popMark()
        const l = top()
        if (!Array.isArray(l)) throw new PickleError("APPENDS needs a list")
        l.push(...items)
        break
      }
      case 0x4e: // NONE
        push(null)
        break
      case 0x88: // NEWTRUE
        push(true)
        break
      case 0x89: // NEWFALSE
        push(false)
        break
      case 0x4a: // BININT
        need(4)
        push(view.getInt32(pos, true))
        pos += 4
        break
      case 0x4b: // BININT1
        need(1)
        push(bytes[pos++]!)
        break
      case 0x4d: // BININT2
        need(2)
        push(view.getUint16(pos, true))
        pos += 2
        break
      default:
        throw new PickleError(`pickle opcode 0x${op.toString(16).padStart(2, "0")} is not accepted`)
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The one pickle the agent writes

const shortStr = (out: Array<number>, s: string) => {
  const b = Buffer.from(s, "utf8")
  if (b.length < 256) out.push(0x8c, b.length, ...b)
  else {
    out.push(0x58, b.length & 0xff, (b.length >>> 8) & 0xff, (b.length >>> 16) & 0xff, b.length >>> 24)
    out.push(...b)
  }
}

/**
 * `ResourceSlot({slot: Decimal(text)})` pickled with protocol 4 and no memo (contract §1.6, verified
 * to `pickle.loads` into the manager's class): `cls.__new__(cls)`, then `BUILD (None, {"data": {…}})`
 * (the class has `__slots__ = ("data",)`). Values must be decimal literals.
 */
export const writeResourceSlot = (slots: Readonly<Record<string, string>>): Buffer => {
  const out: Array<number> = [0x80, 0x04]
  shortStr(out, TYPES)
  shortStr(out, "ResourceSlot")
  out.push(0x93, 0x29, 0x81, 0x4e, 0x7d)
  shortStr(out, "data")
  out.push(0x7d, 0x28)
  for (const [slot, text] of Object.entries(slots)) {
    if (!isDecimalLiteral(text)) throw new PickleError(`slot ${slot}: ${JSON.stringify(text)} is not a decimal`)
    shortStr(out, slot)
    shortStr(out, "decimal")
    shortStr(out, "Decimal")
    out.push(0x93)
    shortStr(out, text)
    out.push(0x85, 0x52)
  }
  out.push(0x75, 0x73, 0x86, 0x62, 0x2e)
  return Buffer.from(out)
}
