"""Golden msgpack vectors from msgpack-python (the manager's and aiozmq's codec).

Regenerate: /usr/bin/python3 test/codec/msgpack_golden.py > test/codec/msgpack_golden.json
(Debian python3-msgpack). Each case is a typed description of a Python value (so the TypeScript test
builds the same value) and the bytes `msgpack.packb(value, use_bin_type=True)` produced. Long outputs
are stored as length + head + sha256.
"""
import hashlib
import json
import sys

import msgpack


def build(d):
    t = d["t"]
    if t == "nil":
        return None
    if t == "bool":
        return d["v"]
    if t == "int":
        return int(d["v"])
    if t == "float":
        return float(d["v"])
    if t == "str":
        return d["v"] * d.get("rep", 1)
    if t == "bin":
        return bytes.fromhex(d["v"]) * d.get("rep", 1)
    if t == "arr":
        return [build(x) for x in d["v"]] * d.get("rep", 1)
    if t == "map":
        if "rep" in d:
            return {"k%d" % i: i for i in range(d["rep"])}
        return {k: build(v) for k, v in d["v"]}
    raise ValueError(t)


def I(v):
    return {"t": "int", "v": str(v)}


cases = []
for n in [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**53 - 1, 2**53, 2**53 + 1, 2**63, 2**64 - 1,
          -1, -32, -33, -128, -129, -32768, -32769, -2**31, -2**31 - 1, -2**53 + 1, -2**53, -2**53 - 1, -2**63]:
    cases.append(I(n))
for f in ["1.5", "-2.25", "0.1", "1e300", "9007199254740993.0", "1.0", "0.0", "inf", "-inf"]:
    cases.append({"t": "float", "v": f})
cases += [{"t": "nil"}, {"t": "bool", "v": True}, {"t": "bool", "v": False}]
for s, rep in [("", 1), ("a", 31), ("a", 32), ("b", 255), ("c", 256), ("d", 65535), ("e", 65536),
               ("\u00e9", 15), ("\u00e9", 16), ("\u00e9", 200), ("\u20ac", 30), ("\U0001f600", 7), ("x\u00e9", 1)]:
    cases.append({"t": "str", "v": s, "rep": rep})
for b, rep in [("", 1), ("00ff", 1), ("ab", 255), ("ab", 256), ("cd", 65535), ("ef", 65536)]:
    cases.append({"t": "bin", "v": b, "rep": rep})
for rep in [0, 15, 16, 65535, 65536]:
    cases.append({"t": "arr", "v": [{"t": "nil"}], "rep": rep})
for rep in [0, 15, 16, 65535, 65536]:
    cases.append({"t": "map", "rep": rep})
cases.append({"t": "arr", "v": [I(1), {"t": "str", "v": "two"}, {"t": "arr", "v": [{"t": "bool", "v": False}]},
                                 {"t": "map", "v": [["a", {"t": "bin", "v": "01"}], ["b", {"t": "nil"}]]}]})
cases.append({"t": "map", "v": [["exitCode", I(-1)], ["\u00fcber", {"t": "float", "v": "2.5"}]]})

def stored(packed):
    """The bytes as the golden file keeps them: whole when short, else length + head + sha256."""
    if len(packed) <= 64:
        return {"len": len(packed), "hex": packed.hex()}
    return {"len": len(packed), "head": packed[:8].hex(), "sha256": hashlib.sha256(packed).hexdigest()}


out = []
for c in cases:
    packed = msgpack.packb(build(c), use_bin_type=True)
    assert msgpack.unpackb(packed, raw=False, strict_map_key=True) == build(c) or c.get("v") in ("nan",)
    out.append(dict({"value": c}, **stored(packed)))

# decode-only vectors: encodings Python reads but the encoder never picks (float32, non-minimal ints)
dec = []
for value, packed in [
    (1.5, msgpack.packb(1.5, use_single_float=True)),
    (-0.25, msgpack.packb(-0.25, use_single_float=True)),
]:
    dec.append({"hex": packed.hex(), "value": {"t": "float", "v": repr(value)}})
for h in ["cc05", "cd0005", "ce00000005", "cf0000000000000005", "d0fb", "d1fffb", "d2fffffffb", "d3fffffffffffffffb",
          "d0 05", "d9 03 616263", "da 0003 616263", "db 00000003 616263", "dc 0001 c0", "dd 00000001 c0",
          "de 0001 a161 01", "df 00000001 a161 01", "c4 01 ff", "c5 0001 ff", "c6 00000001 ff"]:
    b = bytes.fromhex(h.replace(" ", ""))
    v = msgpack.unpackb(b, raw=False, strict_map_key=True)
    if isinstance(v, bool) or v is None:
        raise ValueError(h)
    if isinstance(v, int):
        d = I(v)
    elif isinstance(v, str):
        d = {"t": "str", "v": v}
    elif isinstance(v, bytes):
        d = {"t": "bin", "v": v.hex()}
    elif isinstance(v, list):
        d = {"t": "arr", "v": [{"t": "nil"}] * len(v)}
    else:
        d = {"t": "map", "v": [[k, I(x)] for k, x in v.items()]}
    dec.append({"hex": b.hex(), "value": d})

# inputs msgpack-python rejects (unpackb raises): the TS decoder must reject them too
bad = []
for h in ["", "c1", "81 01 01", "81 c0 01",
          "a2 ff fe", "a1", "92 01", "c4 02 00", "cd 00", "cb 000000", "0101", "dc ffff", "df ffffffff",
          "d9 02 c328", "81 a1 61"]:
    b = bytes.fromhex(h.replace(" ", ""))
    try:
        msgpack.unpackb(b, raw=False, strict_map_key=True)
    except Exception as e:  # noqa: BLE001 - any rejection counts
        bad.append({"hex": b.hex(), "python": type(e).__name__})
    else:
        raise SystemExit("python accepted %s" % h)

# ext types: Python returns ExtType objects (aiozmq reserves 123-127 for pickled datetimes); the agent
# rejects every ext type by design, so these are listed with what Python made of them
ext = []
for h in ["c7 01 05 00", "d4 05 00", "d5 05 0000", "d6 05 00000000", "d7 05 0000000000000000",
          "d8 05 00000000000000000000000000000000", "c8 0001 05 00", "c9 00000001 05 00"]:
    b = bytes.fromhex(h.replace(" ", ""))
    v = msgpack.unpackb(b, raw=False, strict_map_key=True)
    assert isinstance(v, msgpack.ExtType)
    ext.append({"hex": b.hex(), "python": repr(v)})

# ext values as a dialect with ext types (manager 26's ai.backend.common.msgpack) writes and reads them:
# packb(ExtType(code, data)) at every size boundary of fixext 1/2/4/8/16 and ext 8/16/32. The payload is
# `v` (hex) repeated `rep` times; short outputs keep their bytes, long ones length + head + sha256.
extpack = []
for code, v, rep in [(5, "", 0), (5, "a1", 1), (5, "a1a2", 1), (5, "a1a2a3", 1), (5, "a1a2a3a4", 1), (5, "a1", 5),
                     (5, "a1", 7), (5, "0102030405060708", 1), (5, "a1", 9), (5, "a1", 15),
                     (5, "000102030405060708090a0b0c0d0e0f", 1), (5, "a1", 17), (127, "5a", 255), (0, "5a", 256),
                     (1, "5a", 65535), (8, "5a", 65536)]:
    packed = msgpack.packb(msgpack.ExtType(code, bytes.fromhex(v) * rep), use_bin_type=True)
    back = msgpack.unpackb(packed, raw=False)
    assert back == msgpack.ExtType(code, bytes.fromhex(v) * rep)
    extpack.append(dict({"code": code, "v": v, "rep": rep}, **stored(packed)))

# an ext value inside a container, followed by more values; and one whose payload is itself msgpack
# (a dialect's ext writer that encodes while the outer value is being encoded)
nested = {
    "ext_in_array": msgpack.packb([msgpack.ExtType(3, b"xyz"), 1, msgpack.ExtType(4, b"\x01"), "z"], use_bin_type=True).hex(),
    "ext_of_msgpack": msgpack.packb([1, msgpack.ExtType(9, msgpack.packb({"a": "x" * 200}, use_bin_type=True)), 2],
                                    use_bin_type=True).hex(),
}

# non-str map keys as unpackb(strict_map_key=False) reads them (ints; a dialect with a map-key rule
# stringifies them: str(k) here), and a repeated key, which Python's dict resolves as "the last one wins"
mapkeys = []
for h in ["81 01 02", "82 00 c0 ff a1 61", "81 cd 0100 c3", "81 d3 ffffff0000000000 01", "83 7f 01 e0 02 a1 61 03"]:
    b = bytes.fromhex(h.replace(" ", ""))
    v = msgpack.unpackb(b, raw=False, strict_map_key=False)
    assert all(isinstance(k, (int, str)) for k in v)
    assert all(x is None or isinstance(x, (bool, int, str)) for x in v.values())
    mapkeys.append({"hex": b.hex(), "value": [[str(k), x] for k, x in v.items()]})
dup = bytes.fromhex("82a16101a16102")
repeated = {"hex": dup.hex(), "python": msgpack.unpackb(dup, raw=False, strict_map_key=True)}

json.dump({"generator": "msgpack-python %s, packb(use_bin_type=True)" % ".".join(map(str, msgpack.version)),
           "encode": out, "decode": dec, "reject": bad, "ext": ext, "extpack": extpack, "nested": nested,
           "mapkeys": mapkeys, "repeated": repeated}, sys.stdout, indent=1)
sys.stdout.write("\n")
