/**
 * Resource slot values as manager 19.06 sends them: Python `Decimal` strings
 * (`ResourceSlot.to_json()` = `str(d.quantize().normalize())`, so 10 CPUs arrive as `"1E+1"` and
 * 10^9 bytes as `"1E+9"`).
 *
 * {@link parsePyDecimal} accepts exactly what CPython 3.11's `decimal.Decimal(str)` accepts (the C
 * implementation, `_decimal`): surrounding whitespace in the sense of `str.isspace()`, `_` anywhere
 * after that strip (CPython drops every underscore), any Unicode decimal digit (`١٢` is 12), a sign,
 * `1.`, `.5`, an exponent `e`/`E` with a sign, and the specials `Inf`/`Infinity`/`NaN`/`sNaN` in any
 * case. {@link slotValue} then keeps what a slot may be: finite and not below zero, as an exact
 * plain decimal string (`"1E+9"` → `"1000000000"`): no float rounding anywhere, byte counts stay exact.
 */

/** A parsed Python decimal. `coefficient` is the digits without leading zeros ("" for zero). */
export type PyDecimal =
  | { readonly _tag: "Finite"; readonly negative: boolean; readonly coefficient: string; readonly exponent: bigint }
  | { readonly _tag: "Infinity"; readonly negative: boolean }
  | { readonly _tag: "NaN"; readonly signaling: boolean }

// str.isspace() in CPython 3.11 (the characters with bidi class WS/B/S or category Zs)
const PY_SPACE = new Set([
  0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680,
  0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a,
  0x2028, 0x2029, 0x202f, 0x205f, 0x3000
])

const DECIMAL_DIGIT = /^\p{Nd}$/u

/**
 * The value of a Unicode decimal digit: Unicode encodes every `Nd` digit in contiguous runs of ten,
 * 0 to 9, so the value is the number of `Nd` code points right before it, modulo 10.
 */
const digitValue = (cp: number): number | undefined => {
  if (cp >= 0x30 && cp <= 0x39) return cp - 0x30
  if (!DECIMAL_DIGIT.test(String.fromCodePoint(cp))) return undefined
  let before = 0
  while (before < 100 && DECIMAL_DIGIT.test(String.fromCodePoint(cp - before - 1))) before++
  return before % 10
}

const FINITE = /^([+-])?(?:(\d+)(?:\.(\d*))?|\.(\d+))(?:[eE]([+-]?\d+))?$/
const INFINITE = /^([+-])?(?:inf|infinity)$/i
const NAN = /^[+-]?(s)?nan\d*$/i

/** `decimal.Decimal(s)` of CPython 3.11, or `undefined` where it raises `InvalidOperation`. */
const parsePyDecimal = (input: string): PyDecimal | undefined => {
  const cps = Array.from(input, (c) => c.codePointAt(0)!)
  let start = 0
  let end = cps.length
  while (start < end && PY_SPACE.has(cps[start]!)) start++
  while (end > start && PY_SPACE.has(cps[end - 1]!)) end--
  let ascii = ""
  for (let i = start; i < end; i++) {
    const cp = cps[i]!
    if (cp === 0x5f) continue // '_'
    if (cp === 0) return undefined
    if (cp < 0x80) {
      ascii += String.fromCharCode(cp)
      continue
    }
    const d = digitValue(cp)
    if (d === undefined) return undefined
    ascii += String.fromCharCode(0x30 + d)
  }
  const finite = FINITE.exec(ascii)
  if (finite !== null) {
    const [, sign, intPart, fracAfterInt, fracOnly, exp] = finite
    const frac = fracAfterInt ?? fracOnly ?? ""
    const digits = ((intPart ?? "") + frac).replace(/^0+/, "")
    return {
      _tag: "Finite",
      negative: sign === "-",
      coefficient: digits,
      exponent: BigInt(exp ?? "0") - BigInt(frac.length)
    }
  }
  const inf = INFINITE.exec(ascii)
  if (inf !== null) return { _tag: "Infinity", negative: inf[1] === "-" }
  const nan = NAN.exec(ascii)
  if (nan !== null) return { _tag: "NaN", signaling: nan[1] !== undefined }
  return undefined
}

/** Largest number of digits kept on either side of the point (10^40 bytes is far past any cluster). */
export const SLOT_MAX_DIGITS = 40

/**
 * A slot value: `Decimal(s)` finite and not below zero, as a plain decimal string without exponent,
 * sign, leading zeros or trailing fractional zeros (`"1E+1"` → `"10"`, `" 0.50 "` → `"0.5"`,
 * `"-0"` → `"0"`), or the reason it is refused.
 */
export const slotValue = (input: string): { readonly ok: true; readonly value: string } | { readonly ok: false; readonly message: string } => {
  const d = parsePyDecimal(input)
  if (d === undefined) return { ok: false, message: "expected a decimal number (Python Decimal syntax)" }
  if (d._tag !== "Finite") return { ok: false, message: "expected a finite decimal, got NaN or Infinity" }
  // normalize: drop trailing zeros of the coefficient into the exponent
  let coefficient = d.coefficient
  let exponent = d.exponent
  if (coefficient === "") return { ok: true, value: "0" }
  if (d.negative) return { ok: false, message: "expected a non-negative decimal" }
  const trailing = coefficient.length - coefficient.replace(/0+$/, "").length
  coefficient = coefficient.slice(0, coefficient.length - trailing)
  exponent += BigInt(trailing)
  const n = BigInt(coefficient.length)
  // integer digits = n + exponent (when positive); fractional digits = -exponent (when positive)
  if (n + exponent > SLOT_MAX_DIGITS || -exponent > SLOT_MAX_DIGITS) {
    return { ok: false, message: `expected a decimal with at most ${SLOT_MAX_DIGITS} digits on either side of the point` }
  }
  const e = Number(exponent)
  if (e >= 0) return { ok: true, value: coefficient + "0".repeat(e) }
  const point = coefficient.length + e
  return {
    ok: true,
    value: point > 0 ? `${coefficient.slice(0, point)}.${coefficient.slice(point)}` : `0.${"0".repeat(-point)}${coefficient}`
  }
}

/** The integer part of a slot value, exactly (`"1073741824.9"` → 1073741824n, `"1E+9"` → 10^9); 0 when it is not one. */
export const slotIntegerPart = (value: string): bigint => {
  const r = slotValue(value)
  return r.ok ? BigInt(r.value.split(".")[0] || "0") : 0n
}
