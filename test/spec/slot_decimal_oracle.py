"""Oracle for test/spec/SlotDecimal.test.ts: CPython's decimal.Decimal decides.
Reads a JSON list of strings on stdin; prints a JSON list of [accepted, plain value or None]:
accepted = Decimal(s) succeeds, is finite, not below zero and has at most MAX digits on either side
of the point; the value is the normalized decimal in plain notation ("1E+1" -> "10")."""
import decimal
import json
import sys

MAX = int(sys.argv[1])


def verdict(s):
    try:
        d = decimal.Decimal(s)
    except (decimal.InvalidOperation, ValueError):
        return [False, None]
    if not d.is_finite():
        return [False, None]
    if d == 0:
        return [True, "0"]
    if d < 0:
        return [False, None]
    # normalize() rounds to the context precision: widen it so that nothing is rounded
    with decimal.localcontext() as ctx:
        ctx.prec = 10000
        ctx.Emax = decimal.MAX_EMAX
        ctx.Emin = decimal.MIN_EMIN
        n = d.normalize()
    sign, digits, exp = n.as_tuple()
    if len(digits) + exp > MAX or -exp > MAX:
        return [False, None]
    return [True, format(n, "f")]


print(json.dumps([verdict(s) for s in json.load(sys.stdin)]))
