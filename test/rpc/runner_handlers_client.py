"""Manager-side end-to-end check of the runner-backed RPCs through the agent's aiozmq socket, the way
manager 19.06 calls them (aiozmq connect_rpc). Usage:
    runner_handlers_client.py ENDPOINT KID1 KID2 CONFIG_JSON
Creates both kernels with create_kernel, exercises execute (query/continue/input/batch/v1/interrupt,
FIFO across two clients, parallel across kernels), get_completions, start_service, get_logs,
upload_file/list_files/download_file, then destroys the kernels. Prints one JSON line of results;
exits 1 (traceback on stderr) on the first failed check."""
import asyncio
import io
import json
import sys
import tarfile
import time
import uuid

import aiozmq.rpc


LD_NOISE = "ERROR: ld.so: object "


def clean(value):
    """Tuples (aiozmq's msgpack) → lists; drops the testbed's LD_PRELOAD warnings from stderr items
    (the pod's LD_PRELOAD names /opt/kernel/libbaihook.so, which the simulated kubelet lacks)."""
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, dict):
        out = {k: clean(v) for k, v in value.items()}
        if isinstance(out.get("console"), list):
            items = []
            for kind, data in out["console"]:
                if kind == "stderr":
                    data = "".join(l for l in data.splitlines(True) if not l.startswith(LD_NOISE))
                    if data == "":
                        continue
                items.append([kind, data])
            out["console"] = items
        if isinstance(out.get("stderr"), str):
            out["stderr"] = "".join(l for l in out["stderr"].splitlines(True) if not l.startswith(LD_NOISE))
        return out
    return value


async def execute(client, *args):
    return clean(await client.call.execute(*args))


async def run_to_end(client, kid, run_id, mode, code, opts=None, flush=2.0, api=3):
    """execute, then `continue` until finished; returns the list of results."""
    results = [await execute(client, api, kid, run_id, mode, code, opts or {}, flush)]
    run_id = results[0]["runId"]
    while results[-1]["status"] not in ("finished", "exec-timeout"):
        assert len(results) < 200, results[-1]
        if results[-1]["status"] == "waiting-input":
            return results
        results.append(await execute(client, api, kid, run_id, "continue", "", {}, flush))
    return results


def stdout_of(results):
    return "".join(d for r in results for (t, d) in r.get("console", []) if t == "stdout")


async def main(endpoint, kid1, kid2, config):
    out = {}
    client = await aiozmq.rpc.connect_rpc(connect=endpoint, timeout=120)
    other = await aiozmq.rpc.connect_rpc(connect=endpoint, timeout=120)
    try:
        created = await asyncio.gather(client.call.create_kernel(kid1, config), client.call.create_kernel(kid2, config))
        out["created"] = [c["id"] for c in created]

        # query: print("hi")
        r = await execute(client, 3, kid1, None, "query", 'print("hi")', {}, 10.0)
        assert len(r["runId"]) == 32, r
        assert (r["status"], r["exitCode"], r["console"]) == ("finished", 0, [["stdout", "hi\n"]]), r
        assert r["options"] is None and r["files"] == [], r

        # a 5 s printing loop with flush_timeout 1 → several continued, then finished; output complete
        code = "import time\nfor i in range(25):\n    print(i, flush=True)\n    time.sleep(0.2)\n"
        rs = await run_to_end(client, kid1, "loop-1", "query", code, flush=1.0)
        statuses = [x["status"] for x in rs]
        assert statuses[-1] == "finished" and statuses.count("continued") >= 2, statuses
        assert stdout_of(rs) == "".join("%d\n" % i for i in range(25)), stdout_of(rs)
        out["loop_polls"] = statuses

        # input() → waiting-input → mode input → finished
        rs = await run_to_end(client, kid1, "in-1", "query", 'name = input("who? ")\nprint("hello", name)', flush=10.0)
        assert rs[-1]["status"] == "waiting-input" and rs[-1]["options"] == {"is_password": False}, rs[-1]
        r = await execute(client, 3, kid1, "in-1", "input", "bob", {}, 10.0)
        assert (r["status"], r["exitCode"]) == ("finished", 0), r
        assert stdout_of(rs + [r]) == "who? hello bob\n", stdout_of(rs + [r])

        # interrupt of time.sleep(60)
        # (interrupt once the code runs: an interrupt before the runner started the run is lost)
        r = await execute(client, 3, kid1, "sleep-1", "query", "import time\nprint('sleeping', flush=True)\ntime.sleep(60)", {}, 0.5)
        seen = [r]
        while r["status"] == "continued" and "sleeping" not in stdout_of(seen):
            r = await execute(client, 3, kid1, "sleep-1", "continue", "", {}, 0.5)
            seen.append(r)
        assert r["status"] == "continued", r
        t0 = time.monotonic()
        assert await client.call.interrupt_kernel(kid1) is None
        rs = await run_to_end(client, kid1, "sleep-1", "continue", "", flush=10.0)
        out["interrupt_seconds"] = round(time.monotonic() - t0, 3)
        assert rs[-1]["status"] == "finished" and rs[-1]["exitCode"] != 0, rs[-1]
        assert "KeyboardInterrupt" in "".join(d for x in rs for (t, d) in x["console"] if t == "stderr"), rs

        # batch with a failing build
        opts = {"clean": "", "build": "echo building; exit 2", "exec": "echo never"}
        rs = await run_to_end(client, kid1, "batch-1", "batch", "", opts, flush=10.0)
        seq = [(x["status"], x["exitCode"]) for x in rs if x["status"] != "continued"]
        assert seq == [("clean-finished", 0), ("build-finished", 2), ("finished", 127)], seq
        assert "building\n" in stdout_of(rs)

        # api v1 result shape
        r = await execute(client, 1, kid1, None, "query", 'import sys\nprint("o")\nprint("e", file=sys.stderr)', {}, 10.0)
        assert r["status"] == "finished" and r["stdout"] == "o\n" and r["stderr"] == "e\n", r
        assert r["media"] == [] and r["html"] == [] and "console" not in r, r

        # two runs on one kernel from two clients: one after the other
        prog = "import time\nprint('start', time.time())\ntime.sleep(1.5)\nprint('end', time.time())\n"
        def span(results):
            lines = stdout_of(results).split()
            return float(lines[1]), float(lines[3])
        a, b = await asyncio.gather(
            run_to_end(client, kid1, "fifo-a", "query", prog, flush=10.0),
            run_to_end(other, kid1, "fifo-b", "query", prog, flush=10.0))
        (sa, ea), (sb, eb) = span(a), span(b)
        assert ea <= sb or eb <= sa, ("overlap on one kernel", sa, ea, sb, eb)
        # runs on different kernels: in parallel
        a, b = await asyncio.gather(
            run_to_end(client, kid1, "par-a", "query", prog, flush=10.0),
            run_to_end(other, kid2, "par-b", "query", prog, flush=10.0))
        (sa, ea), (sb, eb) = span(a), span(b)
        assert sa < eb and sb < ea, ("different kernels ran one after the other", sa, ea, sb, eb)

        # completions, called the way manager 19.06 does (kid, mode, text, opts)
        c = clean(await client.call.get_completions(kid1, "query", "pri", {}))
        assert c == {"status": "finished", "completions": ["print("]}, c
        c3 = clean(await client.call.get_completions(kid1, "inp", {}))
        assert c3 == {"status": "finished", "completions": ["input("]}, c3

        # services
        assert await client.call.start_service(kid1, "jupyter", {}) == {"status": "started"}
        assert await client.call.start_service(kid1, "jupyter", {}) == {"status": "running"}
        bad = await client.call.start_service(kid1, "nope", {})
        assert bad["status"] == "failed" and bad["error"], bad

        # logs (the pod's container log)
        logs = await client.call.get_logs(kid1)
        assert "hi\n" in logs["logs"] and "bob" in logs["logs"], logs

        # files: upload → list → download
        assert await client.call.upload_file(kid1, "up/a.txt", b"data\x00\xff") is None
        listed = await client.call.list_files(kid1, "up")
        assert listed["abspath"] == "/home/work/up" and listed["errors"] == "", listed
        files = json.loads(listed["files"])
        assert [(f["filename"], f["size"], f["mode"]) for f in files] == [("a.txt", 6, "-rw-r--r--")], files
        assert all(isinstance(f[k], float) for f in files for k in ("ctime", "mtime", "atime")), files
        tar_bytes = await client.call.download_file(kid1, "up/a.txt")
        with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tf:
            assert tf.getnames() == ["a.txt"], tf.getnames()
            assert tf.extractfile("a.txt").read() == b"data\x00\xff"
        r = await execute(client, 3, kid1, None, "query", "print(open('up/a.txt','rb').read())", {}, 10.0)
        assert r["console"] == [["stdout", "b'data\\x00\\xff'\n"]], r
        try:
            await client.call.list_files(kid1, "../..")
            raise AssertionError("expected PathOutsideWorkDir")
        except aiozmq.rpc.GenericError as e:
            out["outside"] = e.args[0]
            assert e.args[0].endswith("PathOutsideWorkDir"), e.args
        try:
            await execute(client, 3, str(uuid.uuid4()), None, "query", "", {}, 1.0)
            raise AssertionError("expected KernelNotFound")
        except aiozmq.rpc.GenericError as e:
            assert e.args[0].endswith("KernelNotFound"), e.args

        await asyncio.gather(client.call.destroy_kernel(kid1), client.call.destroy_kernel(kid2))
        out["ok"] = True
    finally:
        client.close()
        other.close()
        await client.wait_closed()
        await other.wait_closed()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])))
