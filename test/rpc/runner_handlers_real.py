"""Manager-side check of the runner-backed RPCs through the agent's aiozmq socket, the way manager 19.06
calls them (aiozmq connect_rpc), against the REAL 19.06 kernel runner in the testbed's kernel pods.
Usage:
    runner_handlers_real.py ENDPOINT KID1 KID2 CONFIG_JSON
The expectations are the real runner's behaviour (backend.ai-kernel-runner-19.06/README.md): state is
kept between queries, an exception finishes with exitCode 0 and a traceback on stderr, a bare expression
prints its value, rich output arrives as `media`, interrupt finishes with exitCode 0 and a
KeyboardInterrupt traceback, `complete` is never answered, input() in batch mode goes through the
runner's port 65000 (one per pod: both kernels wait for input at once), unknown services fail.
Prints one JSON line of results; exits 1 (traceback on stderr) on the first failed check."""
import asyncio
import io
import json
import re
import socket
import sys
import tarfile
import time
import urllib.request

import aiozmq.rpc

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def clean(value):
    """Tuples (aiozmq's msgpack) → lists."""
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    return value


async def execute(client, *args):
    return clean(await client.call.execute(*args))


async def run_to_end(client, kid, run_id, mode, code, opts=None, flush=2.0, api=3):
    """execute, then `continue` until finished (or waiting-input); returns the list of results."""
    results = [await execute(client, api, kid, run_id, mode, code, opts or {}, flush)]
    run_id = results[0]["runId"]
    while results[-1]["status"] not in ("finished", "exec-timeout"):
        assert len(results) < 200, results[-1]
        if results[-1]["status"] == "waiting-input":
            return results
        results.append(await execute(client, api, kid, run_id, "continue", "", {}, flush))
    return results


def of(results, kind):
    return "".join(d for r in results for (t, d) in r.get("console", []) if t == kind)


def stdout_of(results):
    return of(results, "stdout")


async def query(client, kid, code, flush=15.0):
    rs = await run_to_end(client, kid, None, "query", code, flush=flush)
    assert rs[-1]["status"] == "finished", rs
    return rs


async def main(endpoint, kid1, kid2, config):
    out = {}
    client = await aiozmq.rpc.connect_rpc(connect=endpoint, timeout=120)
    other = await aiozmq.rpc.connect_rpc(connect=endpoint, timeout=120)
    try:
        created = await asyncio.gather(client.call.create_kernel(kid1, config), client.call.create_kernel(kid2, config))
        out["created"] = [c["id"] for c in created]

        # query: print("hi")
        r = await execute(client, 3, kid1, None, "query", 'print("hi")', {}, 15.0)
        assert len(r["runId"]) == 32, r
        assert (r["status"], r["exitCode"], r["console"]) == ("finished", 0, [["stdout", "hi\n"]]), r
        assert r["options"] is None and r["files"] == [], r

        # state is kept between queries (one ipykernel per kernel); a bare expression prints its value
        await query(client, kid1, "x = 41")
        rs = await query(client, kid1, "x + 1")
        assert stdout_of(rs) == "42" and rs[-1]["exitCode"] == 0, rs
        # ... per kernel: kid2 has its own interpreter
        rs = await query(client, kid2, "'x' in globals()")
        assert stdout_of(rs) == "False", rs

        # an exception: finished with exitCode 0, a (coloured) traceback on stderr
        rs = await query(client, kid1, "1/0")
        assert rs[-1]["exitCode"] == 0, rs
        tb = ANSI.sub("", of(rs, "stderr"))
        assert "ZeroDivisionError" in tb and "Traceback" in tb, rs

        # rich output: raw HTML and SVG arrive as media records
        rs = await query(client, kid1, "from IPython.display import HTML, SVG, display\n"
                                       "display(HTML('<b>bold</b>'))\n"
                                       "display(SVG('<svg xmlns=\"http://www.w3.org/2000/svg\"/>'))")
        media = [d for r in rs for (t, d) in r["console"] if t == "media"]
        assert media == [["text/html", "<b>bold</b>"], ["image/svg+xml", '<svg xmlns="http://www.w3.org/2000/svg"/>']], rs

        # a 5 s printing loop with flush_timeout 1 → several continued, then finished; output complete
        code = "import time\nfor i in range(25):\n    print(i, flush=True)\n    time.sleep(0.2)\n"
        rs = await run_to_end(client, kid1, "loop-1", "query", code, flush=1.0)
        statuses = [x["status"] for x in rs]
        assert statuses[-1] == "finished" and statuses.count("continued") >= 2, statuses
        assert stdout_of(rs) == "".join("%d\n" % i for i in range(25)), stdout_of(rs)
        out["loop_polls"] = statuses

        # input() in query mode (Jupyter stdin) → prompt on stdout, waiting-input → mode input → finished
        rs = await run_to_end(client, kid1, "in-1", "query", 'name = input("who? ")\nprint("hello", name)', flush=15.0)
        assert rs[-1]["status"] == "waiting-input" and rs[-1]["options"] == {"is_password": False}, rs[-1]
        r = await execute(client, 3, kid1, "in-1", "input", "bob", {}, 15.0)
        assert (r["status"], r["exitCode"]) == ("finished", 0), r
        assert stdout_of(rs + [r]) == "who? hello bob\n", stdout_of(rs + [r])
        rs = await run_to_end(client, kid1, "pw-1", "query", 'import getpass\nsecret = getpass.getpass("pw: ")', flush=15.0)
        assert rs[-1]["status"] == "waiting-input" and rs[-1]["options"] == {"is_password": True}, rs[-1]
        r = await execute(client, 3, kid1, "pw-1", "input", "s3cret", {}, 15.0)
        assert (r["status"], r["exitCode"]) == ("finished", 0), r
        rs = await query(client, kid1, "print(name, len(secret))")
        assert stdout_of(rs) == "bob 6\n", rs

        # interrupt of time.sleep(60): finished with exitCode 0 and a KeyboardInterrupt traceback; the
        # kernel's state survives
        r = await execute(client, 3, kid1, "sleep-1", "query", "import time\ntime.sleep(60)", {}, 0.5)
        assert r["status"] == "continued", r
        t0 = time.monotonic()
        assert await client.call.interrupt_kernel(kid1) is None
        rs = await run_to_end(client, kid1, "sleep-1", "continue", "", flush=15.0)
        out["interrupt_seconds"] = round(time.monotonic() - t0, 3)
        assert rs[-1]["status"] == "finished" and rs[-1]["exitCode"] == 0, rs[-1]
        assert "KeyboardInterrupt" in ANSI.sub("", of([r] + rs, "stderr")), rs
        rs = await query(client, kid1, "x")
        assert stdout_of(rs) == "41", rs

        # batch with a failing build: the skipped exec answers 127
        opts = {"clean": "", "build": "echo building; exit 2", "exec": "echo never"}
        rs = await run_to_end(client, kid1, "batch-1", "batch", "", opts, flush=15.0)
        seq = [(x["status"], x["exitCode"]) for x in rs if x["status"] != "continued"]
        assert seq == [("clean-finished", 0), ("build-finished", 2), ("finished", 127)], seq
        assert "building\n" in stdout_of(rs) and "never" not in stdout_of(rs), rs

        # input() in batch mode goes through the runner's helper port 65000 (sitecustomize.py): both
        # kernels wait for input at the same time, each on its own port 65000
        prog = {"clean": "", "build": "", "exec": "/usr/bin/python3 -c 'print(\"got\", input(\"q? \"))'"}
        a, b = await asyncio.gather(
            run_to_end(client, kid1, "bin-1", "batch", "", prog, flush=15.0),
            run_to_end(other, kid2, "bin-2", "batch", "", prog, flush=15.0))
        for rs in (a, b):
            assert rs[-1]["status"] == "waiting-input" and rs[-1]["options"] == {"is_password": False}, rs
            assert stdout_of(rs) == "q? ", rs
        ra, rb = await asyncio.gather(
            run_to_end(client, kid1, "bin-1", "input", "one", flush=15.0),
            run_to_end(other, kid2, "bin-2", "input", "two", flush=15.0))
        assert (ra[-1]["status"], ra[-1]["exitCode"], stdout_of(ra)) == ("finished", 0, "got one\n"), ra
        assert (rb[-1]["status"], rb[-1]["exitCode"], stdout_of(rb)) == ("finished", 0, "got two\n"), rb

        # api v1 result shape
        r = await execute(client, 1, kid1, None, "query", 'import sys\nprint("o")\nprint("e", file=sys.stderr)', {}, 15.0)
        assert r["status"] == "finished" and r["stdout"] == "o\n" and r["stderr"] == "e\n", r
        assert r["media"] == [] and r["html"] == [] and "console" not in r, r

        # two runs on one kernel from two clients: one after the other
        prog = "import time\nprint('start', time.time())\ntime.sleep(1.5)\nprint('end', time.time())\n"

        def span(results):
            lines = stdout_of(results).split()
            return float(lines[1]), float(lines[3])
        a, b = await asyncio.gather(
            run_to_end(client, kid1, "fifo-a", "query", prog, flush=15.0),
            run_to_end(other, kid1, "fifo-b", "query", prog, flush=15.0))
        (sa, ea), (sb, eb) = span(a), span(b)
        assert ea <= sb or eb <= sa, ("overlap on one kernel", sa, ea, sb, eb)
        # runs on different kernels: in parallel
        a, b = await asyncio.gather(
            run_to_end(client, kid1, "par-a", "query", prog, flush=15.0),
            run_to_end(other, kid2, "par-b", "query", prog, flush=15.0))
        (sa, ea), (sb, eb) = span(a), span(b)
        assert sa < eb and sb < ea, ("different kernels ran one after the other", sa, ea, sb, eb)

        # completions: the real runner never answers `complete`; the agent still answers within the
        # manager's 10 s RPC timeout (an empty list), and the runner keeps serving afterwards
        t0 = time.monotonic()
        c = clean(await asyncio.wait_for(client.call.get_completions(kid1, "query", "pri", {}), 10))
        out["completion_seconds"] = round(time.monotonic() - t0, 3)
        assert c == {"status": "finished", "completions": []}, c
        rs = await query(client, kid1, "print('still here')")
        assert stdout_of(rs) == "still here\n", rs

        # services: a name the python runner does not know fails in the runner (19.06: its
        # start_service returns None → TypeError → failed with repr(e)); the runner keeps serving
        bad = await client.call.start_service(kid1, "myapp", {})
        assert bad["status"] == "failed" and "TypeError" in bad["error"], bad
        bad = await client.call.start_service(kid1, "nope", {})
        assert bad["status"] == "failed" and bad["error"], bad
        # "jupyter" runs `<python> -m notebook` in /home/work: the user's own notebook.py here, an
        # HTTP server on the port the runner wrote into its config file
        notebook = (
            "import http.server, re, sys\n"
            "conf = open(sys.argv[sys.argv.index('--config') + 1]).read()\n"
            "port = int(re.search(r'c.NotebookApp.port = (\\d+)', conf).group(1))\n"
            "class H(http.server.BaseHTTPRequestHandler):\n"
            "    def do_GET(self):\n"
            "        body = b'notebook in the kernel pod\\n'\n"
            "        self.send_response(200); self.send_header('content-length', str(len(body))); self.end_headers()\n"
            "        self.wfile.write(body)\n"
            "http.server.HTTPServer(('0.0.0.0', port), H).serve_forever()\n")
        assert await client.call.upload_file(kid1, "notebook.py", notebook.encode()) is None
        assert await client.call.start_service(kid1, "jupyter", {}) == {"status": "started"}
        assert await client.call.start_service(kid1, "jupyter", {}) == {"status": "running"}
        info = created[0]
        host_port = [p["host_port"] for p in info["service_ports"] if p["name"] == "jupyter"][0]

        def get():
            with urllib.request.urlopen("http://%s:%d/" % (info["kernel_host"], host_port), timeout=10) as resp:
                return resp.read().decode()
        body = await asyncio.get_running_loop().run_in_executor(None, get)
        assert body == "notebook in the kernel pod\n", body
        rs = await query(client, kid1, "print(x)")
        assert stdout_of(rs) == "41\n", rs

        # logs (the pod's container log = the runner's stdout/stderr: batch output, which the runner
        # copies to its own stdout; query output goes to the agent only)
        logs = await client.call.get_logs(kid1)
        assert "building\n" in logs["logs"], logs

        # files: upload → list → download; the runner sees them in /home/work
        assert await client.call.upload_file(kid1, "up/a.txt", b"data\x00\xff") is None
        listed = await client.call.list_files(kid1, "up")
        assert listed["abspath"] == "/home/work/up" and listed["errors"] == "", listed
        files = json.loads(listed["files"])
        assert [(f["filename"], f["size"], f["mode"]) for f in files] == [("a.txt", 6, "-rw-r--r--")], files
        tar_bytes = await client.call.download_file(kid1, "up/a.txt")
        with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tf:
            assert tf.getnames() == ["a.txt"], tf.getnames()
            assert tf.extractfile("a.txt").read() == b"data\x00\xff"
        rs = await query(client, kid1, "import os\nprint(os.getcwd(), open('up/a.txt','rb').read())")
        assert stdout_of(rs) == "/home/work b'data\\x00\\xff'\n", rs
        # /home/config/environ.txt from the ConfigMap: the runner exported FOO=bar to the kernel
        rs = await query(client, kid1, "import os\nprint(os.environ.get('FOO'), os.path.exists('/home/config/resource.txt'))")
        assert stdout_of(rs) == "bar True\n", rs

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
