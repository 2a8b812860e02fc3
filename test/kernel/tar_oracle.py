"""Oracle for test/kernel/Files.mutation.test.ts: CPython's tarfile reads the agent's archive.
Reads a tar on stdin; prints JSON: every member as tarfile sees it (name, type, mode, size, mtime,
linkname, uname, gname, data hex, pax headers), or {"error": ...} when tarfile refuses the archive."""
import io
import json
import sys
import tarfile

raw = sys.stdin.buffer.read()
try:
    members = []
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tf:
        for m in tf.getmembers():
            data = tf.extractfile(m).read().hex() if m.isfile() else None
            members.append({
                "name": m.name, "type": m.type.decode(), "mode": m.mode, "size": m.size, "mtime": m.mtime,
                "linkname": m.linkname, "uname": m.uname, "gname": m.gname, "uid": m.uid, "gid": m.gid,
                "data": data, "pax": m.pax_headers,
            })
    print(json.dumps({"members": members, "format": tf.format if members else None}))
except Exception as e:  # noqa: BLE001 - the refusal is the answer
    print(json.dumps({"error": "%s: %s" % (type(e).__name__, e)}))
