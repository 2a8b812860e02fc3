"""The container the simulated kubelet gives the REAL kernel runner (`kubelet.ts`, realRunner option).

Started as `unshare --net --mount --propagation private /usr/bin/python3 sandbox.py CONFIG_JSON`, i.e. as
root in a fresh network namespace (its own loopback: the runner binds the fixed ports 2000, 2001 and
127.0.0.1:65000, so two runners cannot share one) and a private mount namespace, where it:

1. brings the namespace's loopback up;
2. mounts a tmpfs on /home and bind-mounts the pod's work dir at /home/work, its ConfigMap files at
   /home/config (read-only) and every other volume the container mounts under /home/work (vfolders);
3. listens on a Unix socket (a filesystem path, reachable from the host's network namespace) and
   forwards each connection to 127.0.0.1:<port> inside the namespace, <port> being the first line
   the client sends ("2000\\n"): the kubelet's NodePort proxy reaches the pod's ports through it;
4. starts the runner as a container would: `<python> -m ai.backend.kernel <lang> <runtime path>`
   with cwd /home/work, the container's environment, PYTHONPATH = the runner's source tree, and
   stdout/stderr to the container log file;
5. prints one JSON line {"ready": true, "pid": <runner pid>} on stdout (the kubelet's control channel),
   then exits with the runner's exit code when it exits (128+N when killed by signal N), or kills the
   runner's process group and exits on SIGTERM/SIGINT or when its parent (the kubelet) dies.

CONFIG_JSON: {"workDir", "configDir", "socket", "runnerSrc", "python", "args": [...], "env": {...},
"log", "mounts": [{"host", "target", "readOnly"}], "nice"}. Only the Python standard library is used here.

"nice" (a niceness increment, e.g. -10) runs the runner and its children at a raised CPU priority: the
19.06 runner gives its ipykernel a hard-coded 10 s (`wait_for_ready(timeout=10)`) and otherwise runs
with query mode disabled (every query answers exit code 127); on a shared, overloaded test machine
(load 19 on 2 cores measured: importing ipykernel alone took 8 s) that start-up loses the race.
"""
import asyncio
import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys


def loopback_up():
    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s, SIOCGIFFLAGS, ifr))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


def mount(*args):
    subprocess.run(["mount", *args], check=True)


def setup_mounts(cfg):
    # the sources are opened first: a state dir under /home would be hidden by the tmpfs
    def src(p):
        return "/proc/%d/fd/%d" % (os.getpid(), os.open(p, os.O_PATH))
    work, config = src(cfg["workDir"]), src(cfg["configDir"])
    extra = []
    for m in cfg.get("mounts", []):
        target = os.path.normpath(m["target"])
        if target.startswith("/home/work/") and os.path.exists(m["host"]):
            extra.append((src(m["host"]), os.path.isdir(m["host"]), target, bool(m.get("readOnly"))))
    mount("-t", "tmpfs", "-o", "mode=755,size=16m", "tmpfs", "/home")
    for d in ("/home/work", "/home/config"):
        os.makedirs(d, exist_ok=True)
    mount("--bind", work, "/home/work")
    mount("--bind", config, "/home/config")
    mount("-o", "remount,bind,ro", "/home/config")
    for source, is_dir, target, read_only in extra:
        if is_dir:
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            open(target, "a").close()
        mount("--bind", source, target)
        if read_only:
            mount("-o", "remount,bind,ro", target)


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def forward(client_r, client_w):
    try:
        line = await asyncio.wait_for(client_r.readline(), 10)
        port = int(line.strip())
        if not 0 < port < 65536:
            raise ValueError(port)
        up_r, up_w = await asyncio.open_connection("127.0.0.1", port)
    except (ValueError, OSError, asyncio.TimeoutError):
        client_w.close()
        return
    await asyncio.gather(pipe(client_r, up_w), pipe(up_r, client_w))


async def main(cfg):
    loopback_up()
    try:
        os.unlink(cfg["socket"])
    except FileNotFoundError:
        pass
    server = await asyncio.start_unix_server(forward, path=cfg["socket"])
    log = open(cfg["log"], "ab", buffering=0)
    setup_mounts(cfg)
    env = dict(cfg["env"])
    env["PYTHONPATH"] = cfg["runnerSrc"]
    nice = int(cfg.get("nice", 0))

    def lift_priority():
        # runs in the child after setsid(): with sched_autogroup (Debian's default) the new session is
        # its own scheduling group, whose weight is the autogroup's nice, not the process's
        try:
            os.nice(nice)
            with open("/proc/self/autogroup", "w") as f:
                f.write(str(nice))
        except OSError:
            pass  # not permitted (e.g. root only in a user namespace) or no autogroup: default priority

    proc = subprocess.Popen([cfg["python"], *cfg["args"]], cwd="/home/work", env=env, stdin=subprocess.DEVNULL,
                            stdout=log, stderr=log, start_new_session=True,
                            preexec_fn=lift_priority if nice != 0 else None)
    print(json.dumps({"ready": True, "pid": proc.pid}), flush=True)
    parent = os.getppid()
    loop = asyncio.get_running_loop()
    done = loop.run_in_executor(None, proc.wait)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    while not done.done() and not stop.is_set():
        await asyncio.wait([done], timeout=1.0)
        if os.getppid() != parent:
            break
    if not done.done():
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    else:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the runner's leftovers (ipykernel, services)
        except ProcessLookupError:
            pass
    server.close()
    code = proc.returncode
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(asyncio.run(main(json.loads(sys.argv[1]))))
