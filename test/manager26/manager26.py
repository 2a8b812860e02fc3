"""A 26.8.1-shaped manager side driving the real agent process over the wire (contract
../shared/reference/manager-26-contract.md §1-§4, §6.3), sharing no code with the agent:

- RPC: callosum 1.0.3's own client `Peer` + `ZeroMQRPCTransport` (PYTHONPATH=../shared/upstream/
  callosum-1.0.3/src), the way R268 `PeerInvoker` uses it: serializer/deserializer =
  `ai.backend.common.msgpack` packb/unpackb, body `{"args", "kwargs"}`, `agent_id=` on every call;
- the manager's ext types: classes with the manager's module and qualname (`ai.backend.common.types`,
  `ai.backend.common.docker`) registered in sys.modules, pickled by this interpreter (Debian's
  3.11.2 pickles enums BY NAME; the agent must read that form too);
- events: Redis DB 4 stream `events`, read with XREADGROUP as the manager's consumer group does,
  `args` decoded with the same ext codec (the heartbeat's ResourceSlot must unpickle to the class);
- kernel presence in Redis DB 2.

argv[1]: JSON {agentId, rpcAddr, redis, registry: {url, host, username, password}, image}.
stdout: one JSON object per line: {"step", "ok", ...} (the first failing step ends the run),
{"need": "sigterm"} (answered on stdin by one line), then {"done": true, "ok": bool}.
"""
import asyncio
import base64
import decimal
import json
import sys
import time
import traceback
import urllib.request
import uuid

import redis
import zmq

from bai_common import AutoPullBehavior, ClusterMode, ImageRef, ResourceSlot, SessionTypes, packb, unpackb, use_callosum

CFG = json.loads(sys.argv[1])
AGENT_ID = CFG["agentId"]
EVENT_TIMEOUT = 300.0
CALL_TIMEOUT = 120.0


def emit(obj):
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


def check(cond, message):
    if not cond:
        raise AssertionError(message)


# ------------------------------------------------------------------------------------------------
# Redis: the events stream (DB 4) as the manager consumes it, presence (DB 2)

host, port = CFG["redis"].split(":")
STREAM = redis.Redis(host=host, port=int(port), db=4)
LIVE = redis.Redis(host=host, port=int(port), db=2)
GROUP = "manager-%s" % AGENT_ID
try:
    STREAM.xgroup_create("events", GROUP, id="0", mkstream=True)
except redis.ResponseError:
    pass


class Events:
    def __init__(self):
        self.log = []  # (name, args) of this agent, in stream order

    def pump(self, block_ms=500):
        got = STREAM.xreadgroup(GROUP, "m1", {"events": ">"}, count=100, block=block_ms)
        for _stream, entries in got or []:
            for entry_id, fields in entries:
                STREAM.xack("events", GROUP, entry_id)
                if fields.get(b"source", b"").decode() != AGENT_ID:
                    continue
                name = fields[b"name"].decode()
                args = unpackb(fields[b"args"])
                check(isinstance(args, tuple), "%s args %r is not a tuple" % (name, args))
                self.log.append((name, args))

    async def wait(self, pred, what, since=0):
        deadline = time.monotonic() + EVENT_TIMEOUT
        while time.monotonic() < deadline:
            for i in range(since, len(self.log)):
                if pred(*self.log[i]):
                    return i, self.log[i][1]
            await asyncio.get_running_loop().run_in_executor(None, self.pump)
        raise AssertionError("no %s within %s s (seen: %s)" % (what, EVENT_TIMEOUT, [n for n, _ in self.log][-20:]))


# ------------------------------------------------------------------------------------------------
# The registry (image digest and labels, what the manager keeps in its image table)

SCHEMA2 = "application/vnd.docker.distribution.manifest.v2+json"


def registry_request(path, accept=None):
    reg = CFG["registry"]
    req = urllib.request.Request(reg["url"].rstrip("/") + path)
    token = base64.b64encode(("%s:%s" % (reg["username"], reg["password"])).encode()).decode()
    req.add_header("Authorization", "Basic " + token)
    if accept:
        req.add_header("Accept", accept)
    return urllib.request.urlopen(req, timeout=10)


def image_info(repo, tag):
    with registry_request("/v2/%s/manifests/%s" % (repo, tag), accept=SCHEMA2) as r:
        digest = r.headers["Docker-Content-Digest"]
        manifest = json.loads(r.read())
    with registry_request("/v2/%s/blobs/%s" % (repo, manifest["config"]["digest"])) as r:
        blob = json.loads(r.read())
    return digest, (blob.get("config") or {}).get("Labels") or {}


# ------------------------------------------------------------------------------------------------


async def main():
    use_callosum()
    from callosum.lower.zeromq import ZeroMQAddress, ZeroMQRPCTransport
    from callosum.rpc import Peer
    from callosum.rpc.exceptions import RPCUserError

    events = Events()
    ok = True

    async def step(name, coro):
        t0 = time.monotonic()
        try:
            detail = await coro
            emit(dict({"step": name, "ok": True, "seconds": round(time.monotonic() - t0, 2)}, **(detail or {})))
        except Exception as e:
            emit({"step": name, "ok": False, "error": "%s: %s" % (type(e).__name__, e), "trace": traceback.format_exc()})
            raise

    state = {}

    async def heartbeat():
        i, args = await events.wait(lambda n, a: n == "agent_heartbeat", "agent_heartbeat")
        info = args[0]
        for key in ("ip", "region", "scaling_group", "addr", "public_key", "public_host", "available_resource_slots",
                    "slot_key_and_units", "version", "compute_plugins", "images", "images_opts", "architecture",
                    "auto_terminate_abusing_kernel"):
            check(key in info, "AgentInfo lacks %s" % key)
        slots = info["available_resource_slots"]
        check(type(slots) is ResourceSlot, "available_resource_slots is %r, not a ResourceSlot" % type(slots))
        check(isinstance(slots["cpu"], decimal.Decimal) and slots["cpu"] > 0, "cpu %r" % (slots.get("cpu"),))
        check(isinstance(slots["mem"], decimal.Decimal) and slots["mem"] > 0, "mem %r" % (slots.get("mem"),))
        check(info["addr"] == "tcp://%s" % CFG["rpcAddr"], "addr %r" % info["addr"])
        check(info["architecture"] in ("x86_64", "aarch64"), "architecture %r" % info["architecture"])
        check(isinstance(info["images"], bytes), "images is not bytes")
        state["addr"] = info["addr"]
        j, started = await events.wait(lambda n, a: n == "agent_started", "agent_started", since=i)
        check(started == ("self-started",), "agent_started%r" % (started,))
        return {"slots": {k: str(v) for k, v in slots.items()}, "agentStartedAfterHeartbeat": j > i}

    await step("heartbeat", heartbeat())

    peer = Peer(
        connect=ZeroMQAddress(state["addr"]),
        transport=ZeroMQRPCTransport,
        # the keep-alive options of R268 manager/clients/agent/pool.py
        transport_opts={"zsock_opts": {zmq.TCP_KEEPALIVE: 1, zmq.TCP_KEEPALIVE_IDLE: 60, zmq.TCP_KEEPALIVE_INTVL: 20, zmq.TCP_KEEPALIVE_CNT: 3}},
        serializer=packb,
        deserializer=unpackb,
        invoke_timeout=CALL_TIMEOUT,
    )

    async def call(method, *args, order_key=None, **kwargs):
        kwargs.setdefault("agent_id", AGENT_ID)
        return await peer.invoke(method, {"args": args, "kwargs": kwargs}, order_key=order_key)

    try:
        async def connect():
            await asyncio.wait_for(peer.__aenter__(), 10)  # the PING/PONG handshake

        await step("connect", connect())

        async def ping():
            r = await call("ping", "ping")
            check(r == "ping", "ping -> %r" % (r,))
            r2 = await call("ping", "str-okey", order_key="")
            check(r2 == "str-okey", "ping (str okey) -> %r" % (r2,))
            return {"result": r}

        await step("ping", ping())

        repo, tag = CFG["image"].split(":")
        digest, labels = image_info(repo, tag)
        canonical = "%s/%s" % (CFG["registry"]["host"], CFG["image"])
        reg = CFG["registry"]
        image_config = {
            "canonical": canonical,
            "project": None,
            "architecture": "x86_64",
            "digest": digest,
            "repo_digest": None,
            "registry": {"name": reg["host"], "url": reg["url"], "username": reg["username"], "password": reg["password"]},
            "labels": labels,
            "is_local": False,
            "auto_pull": AutoPullBehavior.DIGEST,
        }

        async def check_and_pull():
            since = len(events.log)
            r = await call("check_and_pull", {canonical: image_config})
            check(isinstance(r, dict) and canonical in r, "check_and_pull -> %r" % (r,))
            _, args = await events.wait(lambda n, a: n == "image_pull_finished" and a[0] == canonical, "image_pull_finished", since)
            check(len(args) == 4 and args[1] == AGENT_ID and isinstance(args[2], float), "image_pull_finished%r" % (args,))
            # again: the manager re-runs check_and_pull when it may have missed the event
            since = len(events.log)
            await call("check_and_pull", {canonical: image_config})
            await events.wait(lambda n, a: n == "image_pull_finished" and a[0] == canonical, "image_pull_finished again", since)
            return {"event": list(args[:2])}

        await step("check-and-pull", check_and_pull())

        sid = uuid.uuid4()
        kid = uuid.uuid4()
        state["kid"], state["sid"] = kid, sid
        name, project = repo.rsplit("/", 1)[-1], (repo.rsplit("/", 1)[0] if "/" in repo else "")
        image_ref = ImageRef(name=name, project=project, tag=tag, registry=reg["host"], architecture="x86_64", is_local=False)

        async def create_kernels():
            # built as sokovan's launcher.py builds it (contract §2.3)
            cfg = {
                "image": dict(image_config),
                "kernel_id": str(kid),
                "session_id": str(sid),
                "owner_user_id": str(uuid.uuid4()),
                "owner_project_id": None,
                "network_id": str(uuid.uuid4()),
                "session_type": SessionTypes.INTERACTIVE,
                "cluster_mode": ClusterMode.SINGLE_NODE,
                "cluster_role": "main",
                "cluster_idx": 1,
                "cluster_hostname": "main1",
                "local_rank": 0,
                "uid": None,
                "main_gid": None,
                "supplementary_gids": [],
                "resource_slots": {"cpu": "1", "mem": "1073741824"},
                "resource_opts": {},
                "environ": {"BACKENDAI_KERNEL_ID": str(kid), "BACKENDAI_SESSION_ID": str(sid)},
                "mounts": [],
                "package_directory": [],
                "idle_timeout": 600,
                "bootstrap_script": None,
                "startup_command": None,
                "internal_data": None,
                "auto_pull": AutoPullBehavior.DIGEST,
                "preopen_ports": [],
                "allocated_host_ports": [],
                "agent_addr": state["addr"],
                "scaling_group": "default",
                "endpoint_id": None,
            }
            cinfo = {
                "mode": ClusterMode.SINGLE_NODE,
                "size": 1,
                "replicas": {"main": 1},
                "network_config": {},
                "ssh_keypair": {"public_key": "", "private_key": ""},
                "cluster_ssh_port_mapping": None,
            }
            since = len(events.log)
            r = await asyncio.wait_for(call("create_kernels", str(sid), [str(kid)], [cfg], cinfo, {kid: image_ref}), 900)
            check(isinstance(r, (list, tuple)) and len(r) == 1, "create_kernels -> %r" % (r,))
            _, args = await events.wait(lambda n, a: n == "kernel_started" and a[0] == str(kid), "kernel_started", since)
            check(args[1] == str(sid) and args[2] == "", "kernel_started%r" % (args[:3],))
            ci = args[3]
            for key in ("kernel_host", "repl_in_port", "repl_out_port", "service_ports", "container_id", "resource_spec"):
                check(key in ci, "creation info lacks %s" % key)
            check(ci["container_id"], "empty container_id")
            check(isinstance(ci["repl_in_port"], int) and isinstance(ci["repl_out_port"], int), "repl ports %r" % (ci,))
            alloc = ci["resource_spec"]["allocations"]
            used = {}
            for dev in alloc.values():
                for slot, per_dev in dev.items():
                    used[slot] = sum((decimal.Decimal(str(v)) for v in per_dev.values()), decimal.Decimal(0))
            check(used == {"cpu": decimal.Decimal(1), "mem": decimal.Decimal(1073741824)}, "allocations %r" % (alloc,))
            return {"kernelHost": ci["kernel_host"], "containerId": ci["container_id"], "allocations": used}

        await step("create-kernels", create_kernels())

        async def execute():
            run_id = uuid.uuid4().hex
            r = await call("execute", str(sid), str(kid), 3, run_id, "query", "print(1+1)", {}, None)
            console = list(r.get("console") or [])
            for _ in range(60):
                if r["status"] != "continued":
                    break
                r = await call("execute", str(sid), str(kid), 3, run_id, "continue", "", {}, None)
                console += list(r.get("console") or [])
            check(r["status"] == "finished", "execute status %r" % (r["status"],))
            out = "".join(c[1] for c in console if c[0] == "stdout")
            check(out == "2\n", "stdout %r (console %r)" % (out, console))
            check("files" in r, "no files key")
            return {"stdout": out, "exitCode": r.get("exitCode")}

        await step("execute", execute())

        async def check_running():
            r = await call("check_running", str(kid))
            check(r is True, "check_running -> %r" % (r,))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                h = LIVE.hgetall("kernel:presence:%s" % kid)
                if h:
                    check(h.get(b"presence") == b"1" and int(h[b"last_presence"]) > 0, "presence %r" % (h,))
                    return {"presence": {k.decode(): v.decode() for k, v in h.items()}}
                await asyncio.sleep(0.5)
            raise AssertionError("no kernel:presence:%s in DB 2" % kid)

        await step("check-running", check_running())

        async def unknown_method():
            try:
                await call("nosuch_method", 1)
            except RPCUserError as e:
                check(e.name == "NotImplementedError", "FAILURE %r" % (e.name,))
                r = await call("ping", "after")
                check(r == "after", "ping after an unknown method -> %r" % (r,))
                return {"failure": [e.name, e.repr]}
            raise AssertionError("an unknown method did not fail")

        await step("unknown-method", unknown_method())

        async def destroy():
            since = len(events.log)
            r = await call("destroy_kernel", str(kid), str(sid), "user-requested", suppress_events=False)
            check(r is None, "destroy_kernel -> %r" % (r,))
            _, args = await events.wait(lambda n, a: n == "kernel_terminated" and a[0] == str(kid), "kernel_terminated", since)
            check(args[1] == str(sid) and args[2] == "user-requested", "kernel_terminated%r" % (args,))
            r2 = await call("check_running", str(kid))
            check(r2 is False, "check_running after destroy -> %r" % (r2,))
            return {"event": list(args)}

        await step("destroy-kernel", destroy())
    except Exception:
        ok = False
    finally:
        try:
            await asyncio.wait_for(peer.__aexit__(None, None, None), 5)
        except Exception:
            pass

    if ok:
        async def terminated():
            emit({"need": "sigterm"})
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            _, args = await events.wait(lambda n, a: n == "agent_terminated", "agent_terminated")
            check(args == ("shutdown",), "agent_terminated%r" % (args,))
            return {"order": [n for n, _ in events.log if n.startswith(("agent_", "kernel_", "image_"))][-12:]}

        try:
            await step("agent-terminated", terminated())
        except Exception:
            ok = False
    emit({"done": True, "ok": ok})


asyncio.run(main())
