"""An independent manager 19.06 (M1906) driving the real agent process over the wire (spec §1.1, §1.2,
§2.1-2.3, §3.1, §5, §6, §9, Appendix C). Written from the spec, sharing no code with the agent:

- events: an aiozmq PULL stream bound on a free port, published as etcd `nodes/manager/event_addr`
  (as M1906 `gateway/etcd.py` `register_myself` does); frames decoded like M1906 `gateway/events.py`
  (name ascii, agent id utf-8, msgpack args with use_list=False, raw=False);
- RPC: `aiozmq.rpc.connect_rpc(connect=<addr of the heartbeat>, error_table=...)` (M1906
  registry.py `RPCContext`), one peer per agent address, closed on `instance_terminated`;
- etcd through its v3 JSON gateway, Redis DB 0 with python3-redis, the registry over HTTP (basic
  auth), and kubectl as the observer of the cluster.

argv[1]: JSON {agentId, rpcAddr, etcd, etcdNs, redis, registry: {url, host, username, password},
kubectl, kubeconfig, kubeNs, nodeSelector}.

Protocol with the test (stdout/stdin, one JSON object per line):
- `{"step": name, "ok": true, ...details}` or `{"step": name, "ok": false, "error": ...}`; the first
  failing step ends the run (kernels made so far are destroyed, best effort);
- `{"need": "start"}` / `{"need": "sigterm"}`: the test starts the agent process / sends it SIGTERM
  and answers one line (`{"started": true}` / `{"exitCode": n, "signal": s}`);
- `{"done": true, "ok": bool}` last.
"""
import asyncio
import base64
import io
import json
import re
import socket
import sys
import tarfile
import time
import traceback
import urllib.parse
import urllib.request
import uuid
from decimal import Decimal

import aiozmq
import aiozmq.rpc
import msgpack
import redis
import snappy
import zmq

CFG = json.loads(sys.argv[1])
AGENT_ID = CFG["agentId"]
PYTHON_IMAGE = "lablup/python:3.6-ubuntu18.04"
# M1906 registry.py RPCContext
ERROR_TABLE = {"concurrent.futures._base.TimeoutError": asyncio.TimeoutError}
# generous: 2 cores shared with other test runs (M1906 uses 30 s for most calls, none for create)
CALL_TIMEOUT = 120.0
EVENT_TIMEOUT = 180.0


def emit(obj):
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


def check(cond, message):
    if not cond:
        raise AssertionError(message)


class Abort(Exception):
    pass


def plain(v):
    """Tuples (use_list=False) to lists, bytes to a short description, for JSON reports."""
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, bytes):
        return "<%d bytes>" % len(v)
    return v


# ------------------------------------------------------------------------------------------------
# etcd (v3 JSON gateway), kubectl, registry


def _b64(s):
    return base64.b64encode(s.encode()).decode()


def etcd_call(path, body):
    req = urllib.request.Request("http://%s%s" % (CFG["etcd"], path), data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def etcd_get(key):
    out = etcd_call("/v3/kv/range", {"key": _b64("/sorna/%s/%s" % (CFG["etcdNs"], key))})
    kvs = out.get("kvs") or []
    return base64.b64decode(kvs[0].get("value", "")).decode() if kvs else None


def etcd_put(key, value):
    etcd_call("/v3/kv/put", {"key": _b64("/sorna/%s/%s" % (CFG["etcdNs"], key)), "value": _b64(value)})


async def kubectl_json(*args):
    proc = await asyncio.create_subprocess_exec(
        CFG["kubectl"], "--kubeconfig", CFG["kubeconfig"], *args, "-o", "json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    check(proc.returncode == 0, "kubectl %s: %s" % (" ".join(args), err.decode()))
    return json.loads(out)


def registry_request(path, method="GET", accept=None):
    reg = CFG["registry"]
    req = urllib.request.Request(reg["url"].rstrip("/") + path, method=method)
    token = base64.b64encode(("%s:%s" % (reg["username"], reg["password"])).encode()).decode()
    req.add_header("Authorization", "Basic " + token)
    if accept:
        req.add_header("Accept", accept)
    return urllib.request.urlopen(req, timeout=10)


SCHEMA2 = "application/vnd.docker.distribution.manifest.v2+json"
# the keypair resource policy's idle_timeout for the created kernels (kept across restart_kernel)
IDLE_TIMEOUT = 3600
QUANTUM = Decimal("0.000")


def slots_to_json(slots):
    """backend.ai-common 19.06 ResourceSlot.to_json() after from_user_input()."""
    out = {}
    for k, v in slots.items():
        v = Decimal(int(v)) if k == "mem" else Decimal(v).quantize(QUANTUM).normalize()
        out[k] = str(Decimal(v))
    return out


# backend.ai-common 19.06 docker.py ImageRef: a tag outside this pattern raises ValueError('Invalid
# image tag') inside M1906 handle_heartbeat (no try/except), aborting the whole image update
IMAGE_TAG = re.compile(r'^[A-Za-z0-9](?:[A-Za-z0-9-._]*[A-Za-z0-9])?$')


def registry_images():
    """{"<host>/<repo>:<tag>": digest} of every tag the manager can take: an ImageRef-valid tag and the
    `ai.backend.kernelspec` label (the 19.06 Docker agent reports only kernelspec images)."""
    out = {}
    with registry_request("/v2/_catalog?n=1000") as r:
        repos = json.loads(r.read()).get("repositories") or []
    for repo in repos:
        with registry_request("/v2/%s/tags/list?n=1000" % repo) as r:
            tags = json.loads(r.read()).get("tags") or []
        for tag in tags:
            if not IMAGE_TAG.search(tag):
                continue
            digest, labels = image_info(repo, tag)
            if "ai.backend.kernelspec" in labels:
                out["%s/%s:%s" % (CFG["registry"]["host"], repo, tag)] = digest
    return out


def image_info(repo, tag):
    """(digest, labels) from the manifest and its config blob (what M1906 keeps under etcd images/...)."""
    with registry_request("/v2/%s/manifests/%s" % (repo, tag), accept=SCHEMA2) as r:
        digest = r.headers["Docker-Content-Digest"]
        manifest = json.loads(r.read())
    with registry_request("/v2/%s/blobs/%s" % (repo, manifest["config"]["digest"])) as r:
        blob = json.loads(r.read())
    return digest, (blob.get("config") or {}).get("Labels") or {}


# ------------------------------------------------------------------------------------------------
# Kubernetes quantities and the expected resource slots (spec §3.1, §7.5)

_BIN = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DEC = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def quantity(s):
    s = str(s)
    for suffix, exp in _BIN.items():
        if s.endswith(suffix):
            return Decimal(s[: -len(suffix)]) * (2 ** exp)
    if "e" in s.lower() and not s[-1:].isalpha():
        return Decimal(s)
    i = len(s)
    while i > 0 and s[i - 1].isalpha():
        i -= 1
    return Decimal(s[:i]) * (Decimal(10) ** _DEC[s[i:]])


SLOTS = {"cpu": ("cpu", "count"), "mem": ("memory", "bytes"), "cuda.device": ("nvidia.com/gpu", "count")}


async def expected_slots():
    """Σ allocatable of the worker nodes − requests of the pods this agent does not manage."""
    sel = ["-l", CFG["nodeSelector"]] if CFG.get("nodeSelector") else []
    nodes = (await kubectl_json("get", "nodes", *sel))["items"]
    pods = (await kubectl_json("get", "pods", "-A", "--field-selector",
                               "spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed"))["items"]
    workers = {}
    for n in nodes:
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))
        tainted = any(t.get("effect") in ("NoSchedule", "NoExecute") for t in n["spec"].get("taints") or [])
        if ready and not n["spec"].get("unschedulable") and not tainted:
            workers[n["metadata"]["name"]] = n["status"].get("allocatable") or n["status"]["capacity"]
    allocatable = {slot: sum((quantity(a.get(res, "0")) for a in workers.values()), Decimal(0))
                   for slot, (res, _) in SLOTS.items()}
    foreign = {slot: Decimal(0) for slot in SLOTS}
    for p in pods:
        labels = p["metadata"].get("labels") or {}
        if labels.get("app.kubernetes.io/managed-by") == "bai-k8s-agent" and labels.get("backend.ai/agent-id") == AGENT_ID:
            continue
        if p["spec"].get("nodeName") not in workers:
            continue
        for slot, (res, _) in SLOTS.items():
            req = sum((quantity(((c.get("resources") or {}).get("requests") or {}).get(res, "0"))
                       for c in p["spec"].get("containers", [])), Decimal(0))
            for c in p["spec"].get("initContainers") or []:
                req = max(req, quantity(((c.get("resources") or {}).get("requests") or {}).get(res, "0")))
            req += quantity((p["spec"].get("overhead") or {}).get(res, "0"))
            foreign[slot] += req
    ips = set()
    for n in nodes:
        for a in n["status"].get("addresses", []):
            if a["type"] == "InternalIP":
                ips.add(a["address"])
    return allocatable, foreign, ips


# ------------------------------------------------------------------------------------------------
# Events (spec §1.2, §3.1)


class Events:
    def __init__(self):
        self.log = []
        self.foreign = []
        self.wait_index = 0
        self.cond = asyncio.Condition()

    async def run(self, stream):
        while True:
            frames = await stream.read()
            name = frames[0].decode("ascii")
            agent_id = frames[1].decode("utf8")
            args = msgpack.unpackb(frames[2], use_list=False, raw=False)
            if agent_id != AGENT_ID:
                self.foreign.append((name, agent_id))
            async with self.cond:
                self.log.append((name, args))
                self.cond.notify_all()

    async def wait(self, pred, since=0, timeout=EVENT_TIMEOUT, what="event"):
        """Index of the first event at or after `since` matching pred(name, args)."""
        deadline = time.monotonic() + timeout
        async with self.cond:
            while True:
                for i in range(since, len(self.log)):
                    if pred(*self.log[i]):
                        return i
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no %s within %.0f s (seen: %s)" % (
                        what, timeout, [n for n, _ in self.log[since:]][-20:]))
                try:
                    await asyncio.wait_for(self.cond.wait(), left)
                except asyncio.TimeoutError:
                    pass

    def kernel_event(self, name, kid):
        return lambda n, a: n == name and len(a) > 0 and a[0] == kid


# ------------------------------------------------------------------------------------------------
# The manager


class Manager:
    def __init__(self):
        self.events = Events()
        self.peer = None
        self.peer_addr = None
        self.kernels = set()
        self.redis = redis.Redis(host=CFG["redis"].rsplit(":", 1)[0], port=int(CFG["redis"].rsplit(":", 1)[1]), db=0,
                                 socket_timeout=10)

    async def rpc(self, method, *args, timeout=CALL_TIMEOUT):
        if self.peer is None:
            # M1906 RPCContext: connect_rpc to the heartbeat's addr, LINGER 1000, cached per address
            self.peer = await aiozmq.rpc.connect_rpc(connect=self.peer_addr, error_table=ERROR_TABLE)
            self.peer.transport.setsockopt(zmq.LINGER, 1000)
        return await asyncio.wait_for(getattr(self.peer.call, method)(*args), timeout)

    async def close_peer(self):
        if self.peer is not None:
            self.peer.close()
            await self.peer.wait_closed()
            self.peer = None

    async def ask(self, need):
        emit({"need": need})
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        check(line != "", "the test closed stdin")
        return json.loads(line)

    # -- steps ------------------------------------------------------------------------------------

    async def step(self, name, fn):
        t0 = time.monotonic()
        try:
            detail = await fn() or {}
        except Exception as e:
            emit({"step": name, "ok": False, "error": "%s: %s" % (type(e).__name__, e),
                  "trace": traceback.format_exc()[-3000:], "seconds": round(time.monotonic() - t0, 1)})
            raise Abort(name) from e
        emit(dict({"step": name, "ok": True, "seconds": round(time.monotonic() - t0, 1)}, **plain(detail)))
        return detail

    async def manager_up(self):
        stream = await aiozmq.create_zmq_stream(zmq.PULL, bind="tcp://127.0.0.1:*")
        endpoint = stream.transport.getsockopt(zmq.LAST_ENDPOINT)
        endpoint = endpoint.decode() if isinstance(endpoint, bytes) else endpoint
        self.stream = stream
        self.reader = asyncio.ensure_future(self.events.run(stream))
        event_addr = endpoint[len("tcp://"):]
        # M1906 gateway/etcd.py register_myself
        etcd_put("nodes/manager", "e2e-manager1906")
        etcd_put("nodes/manager/event_addr", event_addr)
        check(etcd_get("nodes/manager/event_addr") == event_addr, "event_addr not readable back from etcd")
        return {"eventAddr": event_addr}

    async def agent_up(self, since):
        """Waits for a heartbeat after `since`, takes its addr; returns (index, agent_info)."""
        i = await self.events.wait(lambda n, a: n == "instance_heartbeat", since, what="instance_heartbeat")
        info = self.events.log[i][1][0]
        self.peer_addr = info["addr"]
        return i, info

    async def heartbeat(self, since):
        i, info = await self.agent_up(since)
        check(isinstance(info, dict), "agent_info is not a dict: %r" % (info,))
        for key in ("ip", "region", "addr", "resource_slots", "version", "images"):
            check(key in info, "agent_info lacks %r: %s" % (key, sorted(info)))
        check(info["ip"] == CFG["rpcAddr"].rsplit(":", 1)[0], "ip %r" % info["ip"])
        check(info["addr"] == "tcp://" + CFG["rpcAddr"], "addr %r != tcp://%s" % (info["addr"], CFG["rpcAddr"]))
        check(isinstance(info["region"], str) and info["region"], "region %r" % info["region"])
        # M1906 handle_heartbeat: scaling_group defaults to 'default'
        check(info.get("scaling_group", "default") == "default", "scaling_group %r" % info.get("scaling_group"))
        check(isinstance(info["version"], str) and info["version"], "version %r" % info["version"])
        check(isinstance(info.get("compute_plugins", {}), dict), "compute_plugins %r" % info.get("compute_plugins"))
        slots = info["resource_slots"]
        # M1906: ResourceSlot({k: Decimal(v[1])}), slot_key_and_units = {k: v[0]}
        for k, v in slots.items():
            check(isinstance(v, tuple) and len(v) == 2, "slot %s = %r: not a 2-tuple" % (k, v))
            check(isinstance(v[1], str), "slot %s amount %r is not a decimal string" % (k, v[1]))
            Decimal(v[1])
        check(slots.get("cpu", ("",))[0] == "count", "cpu unit %r" % (slots.get("cpu"),))
        check(slots.get("mem", ("",))[0] == "bytes", "mem unit %r" % (slots.get("mem"),))
        check(isinstance(info["images"], bytes), "images is %s, not bytes" % type(info["images"]).__name__)
        return i, info

    async def heartbeat_slots(self, since):
        """The reported slots equal Σ allocatable − foreign requests (kubectl), at some heartbeat
        bracketed by two identical kubectl readings (other tests may be creating pods meanwhile)."""
        attempts = []
        for _ in range(30):
            since = max(since, len(self.events.log))
            alloc1, foreign1, _ = await expected_slots()
            i = await self.events.wait(lambda n, a: n == "instance_heartbeat", since, what="instance_heartbeat")
            since = i + 1
            alloc2, foreign2, _ = await expected_slots()
            slots = self.events.log[i][1][0]["resource_slots"]
            got = {k: Decimal(v[1]) for k, v in slots.items()}
            want = {k: alloc1[k] - foreign1[k] for k in SLOTS}
            attempts.append({"got": {k: str(v) for k, v in got.items()}, "want": {k: str(v) for k, v in want.items()}})
            if alloc1 == alloc2 and foreign1 == foreign2 and got == want:
                return {"slots": {k: [slots[k][0], slots[k][1]] for k in slots},
                        "allocatable": {k: str(v) for k, v in alloc1.items()},
                        "foreignRequests": {k: str(v) for k, v in foreign1.items()},
                        "attempts": len(attempts)}
            await asyncio.sleep(1)
        raise AssertionError("resource_slots never matched the cluster: %s" % attempts[-3:])

    async def heartbeat_images(self, since):
        last = None
        for _ in range(12):
            i = await self.events.wait(lambda n, a: n == "instance_heartbeat", since, what="instance_heartbeat")
            since = i + 1
            # M1906 handle_heartbeat
            images = msgpack.unpackb(snappy.decompress(self.events.log[i][1][0]["images"]), use_list=False, raw=False)
            got = {name: digest for name, digest in images}
            want = registry_images()
            if got == want:
                return {"images": sorted(got)}
            last = {"got": got, "want": want}
            await asyncio.sleep(5)
        raise AssertionError("images never matched the registry: %s" % (last,))

    async def instance_started(self, since):
        i = await self.events.wait(lambda n, a: n == "instance_started", since, what="instance_started")
        check(self.events.log[i][1] == (), "instance_started args %r" % (self.events.log[i][1],))
        # M1906 refreshes addr/region/version/compute_plugins and config/resource_slots only on a
        # heartbeat from an agent it does not hold ALIVE; instance_started makes it ALIVE: the first
        # heartbeat must come first (19.06 Docker agent order), on every start
        first_hb = next((j for j in range(since, len(self.events.log)) if self.events.log[j][0] == "instance_heartbeat"), None)
        check(first_hb is not None and first_hb < i, "instance_started (#%d) before any instance_heartbeat (%r)" % (i, first_hb))
        check(not self.events.foreign, "events with another agent id: %s" % self.events.foreign[:5])
        return {"index": i}

    async def etcd_registration(self):
        status = etcd_get("nodes/agents/%s/" % AGENT_ID)
        ip = etcd_get("nodes/agents/%s/ip" % AGENT_ID)
        check(status == "running", "nodes/agents/<id>/ = %r" % status)
        check(ip == CFG["rpcAddr"].rsplit(":", 1)[0], "nodes/agents/<id>/ip = %r" % ip)
        return {"status": status, "ip": ip}

    async def rpc_basics(self):
        pong = await self.rpc("ping", "hello")
        check(pong == "hello", "ping -> %r" % (pong,))
        return {"ping": pong}

    async def rpc_not_found(self):
        try:
            await self.rpc("no_such_method", "x")
        except aiozmq.rpc.NotFoundError as e:
            return {"error": type(e).__name__, "args": e.args}
        raise AssertionError("no NotFoundError")

    async def rpc_parameters_error(self):
        seen = []
        for bad in ((), ("a", "b")):
            try:
                await self.rpc("ping", *bad)
            except aiozmq.rpc.ParametersError as e:
                seen.append(type(e).__name__)
                continue
            raise AssertionError("ping%r: no ParametersError" % (bad,))
        return {"errors": seen}

    async def rpc_domain_error(self):
        """A failure of the agent's own arrives as GenericError (M1906 wraps it into AgentError)."""
        kid = str(uuid.uuid4())
        try:
            await self.rpc("interrupt_kernel", kid)
        except aiozmq.rpc.GenericError as e:
            exc_type, args, exc_repr = e.args
            # the agent's own exception, by its 19.06 name, about this kernel: any other exception
            # (a crash, a TypeError, a generic failure) is not the domain error the manager maps
            check(exc_type == "ai.backend.agent.exception.KernelNotFound", "exception type %r" % (exc_type,))
            check(list(args) == [kid], "exception args %r" % (args,))
            check(exc_repr == "KernelNotFound('%s')" % kid, "exception repr %r" % (exc_repr,))
            return {"excType": exc_type, "args": args, "repr": exc_repr}
        raise AssertionError("interrupt_kernel of an unknown kernel did not fail")

    def kernel_config(self):
        """What M1906 registry.py _create_kernel sends (spec §2.2)."""
        host = CFG["registry"]["host"]
        repo, tag = PYTHON_IMAGE.split(":")
        digest, labels = image_info(repo, tag)
        check("ai.backend.service-ports" in labels, "image labels lack service-ports: %s" % labels)
        registry_creds = {}
        quoted = urllib.parse.quote(host, safe="")
        for k in ("username", "password"):
            v = etcd_get("config/docker/registry/%s/%s" % (quoted, k))
            if v is not None:
                registry_creds[k] = v
        url = etcd_get("config/docker/registry/%s" % quoted) or CFG["registry"]["url"]
        return {
            "image": {
                "registry": dict({"name": host, "url": url}, **registry_creds),
                "digest": digest,
                "canonical": "%s/%s" % (host, PYTHON_IMAGE),
                "labels": labels,
            },
            # ResourceSlot.to_json() of from_user_input(): count slots quantize(0.000).normalize(),
            # bytes slots int() (backend.ai-common 19.06 types.py 314-323, 404)
            # 10 CPUs: the manager sends "1E+1" (the form wave 1 refused as InvalidKernelConfig)
            "resource_slots": slots_to_json({"cpu": Decimal("10"), "mem": Decimal(1073741824)}),
            "idle_timeout": IDLE_TIMEOUT,
            "mounts": [],
            "environ": {},
        }

    @staticmethod
    def check_exponent_form(config):
        check(config["resource_slots"]["cpu"] == "1E+1", "cpu slot %r is not in exponent form" % config["resource_slots"]["cpu"])

    def restart_config(self):
        """M1906 registry.py 819-834 restart_session: no idle_timeout, `'mounts': [],  # recovered from container config`."""
        c = self.kernel_config()
        del c["idle_timeout"]
        c["mounts"] = []
        return c

    async def create_kernel(self, since):
        kid = str(uuid.uuid4())
        config = self.kernel_config()
        self.check_exponent_form(config)
        self.kernels.add(kid)
        # M1906: no timeout on create_kernel (a bound here only so the test cannot hang forever)
        res = await self.rpc("create_kernel", kid, config, timeout=600)
        check(isinstance(res, dict), "create_kernel -> %r" % (res,))
        keys = {"id", "kernel_host", "repl_in_port", "repl_out_port", "stdin_port", "stdout_port",
                "service_ports", "container_id", "resource_spec"}
        check(keys <= set(res), "missing keys %s" % (keys - set(res)))
        check(res["id"] == kid, "id %r" % res["id"])
        _, _, ips = await expected_slots()
        check(res["kernel_host"] in ips, "kernel_host %r not a node InternalIP %s" % (res["kernel_host"], ips))
        for p in ("repl_in_port", "repl_out_port"):
            check(isinstance(res[p], int) and 0 < res[p] < 65536, "%s %r" % (p, res[p]))
        for p in ("stdin_port", "stdout_port"):
            check(isinstance(res[p], int), "%s %r" % (p, res[p]))
        check(isinstance(res["container_id"], str), "container_id %r" % (res["container_id"],))
        check(isinstance(res["resource_spec"], str), "resource_spec %r" % (res["resource_spec"],))
        json.loads(res["resource_spec"])
        ports = {sp["name"]: sp for sp in res["service_ports"]}
        want = {}
        for item in config["image"]["labels"]["ai.backend.service-ports"].split(","):
            name, proto, port = item.split(":")
            want[name] = (proto, int(port))
        check(set(ports) == set(want), "service_ports %s != %s" % (sorted(ports), sorted(want)))
        for name, (proto, port) in want.items():
            sp = ports[name]
            check(sp["protocol"] == proto and sp["container_port"] == port, "service port %r" % (sp,))
            check(isinstance(sp["host_port"], int) and 0 < sp["host_port"] < 65536, "host_port %r" % (sp,))
        return kid, res

    async def kernel_events(self, kid, since):
        ev = self.events
        i1 = await ev.wait(ev.kernel_event("kernel_preparing", kid), since, what="kernel_preparing")
        i2 = await ev.wait(ev.kernel_event("kernel_creating", kid), i1 + 1, what="kernel_creating after kernel_preparing")
        i3 = await ev.wait(ev.kernel_event("kernel_started", kid), i2 + 1, what="kernel_started after kernel_creating")
        for i in (i1, i2, i3):
            check(ev.log[i][1] == (kid,), "%s args %r" % (ev.log[i][0], ev.log[i][1]))
        return {"order": [ev.log[i][0] for i in (i1, i2, i3)]}

    async def execute(self, kid, code, flush_timeout=2.0):
        """M1906 execute: 'query' with the code, then 'continue' until not 'continued'."""
        run_id = uuid.uuid4().hex
        mode, calls, console, statuses = "query", 0, [], []
        while True:
            res = await self.rpc("execute", 3, kid, run_id, mode, code, {}, flush_timeout)
            calls += 1
            check(isinstance(res, dict), "execute -> %r" % (res,))
            check(res["runId"] == run_id, "runId %r != %r" % (res["runId"], run_id))
            statuses.append(res["status"])
            console.extend([list(c) for c in res.get("console") or ()])
            if res["status"] != "continued":
                break
            check(calls < 200, "execute never finished: %s" % statuses[-5:])
            mode, code = "continue", ""
        stdout = [c for c in console if c[0] == "stdout"]
        stderr = "".join(c[1] for c in console if c[0] == "stderr")
        # the simulated kubelet has no /opt/kernel/libbaihook.so for the image's LD_PRELOAD
        noise = [ln for ln in stderr.splitlines() if "LD_PRELOAD cannot be preloaded" in ln]
        stderr = "".join(ln for ln in stderr.splitlines(True) if "LD_PRELOAD cannot be preloaded" not in ln)
        others = [c[0] for c in console if c[0] not in ("stdout", "stderr")]
        return {"status": res["status"], "exitCode": res["exitCode"], "stdout": stdout, "stderr": stderr,
                "noiseLines": len(noise), "otherRecords": others, "calls": calls, "statuses": statuses}

    async def execute_hi(self, kid):
        r = await self.execute(kid, 'print("hi")')
        check(r["status"] == "finished", "status %r" % r["status"])
        check(r["exitCode"] == 0, "exitCode %r" % r["exitCode"])
        check(r["stdout"] == [["stdout", "hi\n"]], "console stdout %r" % r["stdout"])
        check(r["stderr"] == "", "stderr %r" % r["stderr"])
        return r

    async def execute_continue(self, kid):
        code = "import time\nfor i in range(3):\n    print('tick', i, flush=True)\n    time.sleep(3)\nprint('end')\n"
        r = await self.execute(kid, code)
        check(r["status"] == "finished" and r["exitCode"] == 0, "status %r exit %r" % (r["status"], r["exitCode"]))
        text = "".join(c[1] for c in r["stdout"])
        check(text == "tick 0\ntick 1\ntick 2\nend\n", "stdout %r" % text)
        check(r["stderr"] == "", "stderr %r" % r["stderr"])
        # the program sleeps 9 s, longer than the 2 s flush timeout: at least one 'continued'
        check("continued" in r["statuses"], "no 'continued' reply: %s" % r["statuses"])
        return r

    async def start_service(self, kid, created):
        res = await self.rpc("start_service", kid, "jupyter", {}, timeout=300)
        check(isinstance(res, dict) and res.get("status") in ("started", "running"), "start_service -> %r" % (res,))
        bad = await self.rpc("start_service", kid, "no-such-service", {}, timeout=300)
        check(bad.get("status") == "failed", "unknown service -> %r" % (bad,))
        return {"result": res, "unknown": bad}

    async def service_connect(self, created):
        port = [sp for sp in created["service_ports"] if sp["name"] == "jupyter"][0]["host_port"]
        host = created["kernel_host"]
        last = None
        for _ in range(60):
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
                writer.write(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
                await writer.drain()
                line = await asyncio.wait_for(reader.readline(), 10)
                writer.close()
                if line.startswith(b"HTTP/"):
                    return {"addr": "%s:%d" % (host, port), "statusLine": line.decode().strip()}
                last = line
            except (OSError, asyncio.TimeoutError) as e:
                last = repr(e)
            await asyncio.sleep(1)
        raise AssertionError("no HTTP answer from %s:%d: %r" % (host, port, last))

    async def get_logs(self, kid):
        res = await self.rpc("get_logs", kid)
        check(isinstance(res, dict) and isinstance(res.get("logs"), str), "get_logs -> %r" % (res,))
        check("tick 2" in res["logs"], "logs lack the output of the earlier runs: %r" % res["logs"][-500:])
        return {"chars": len(res["logs"])}

    async def files(self, kid):
        data = b"uploaded by manager 19.06\n\x00\xff binary tail"
        res = await self.rpc("upload_file", kid, "e2e-upload.bin", data)
        check(res is None, "upload_file -> %r" % (res,))
        listed = await self.rpc("list_files", kid, ".")
        check(set(listed) >= {"files", "errors", "abspath"}, "list_files -> %r" % (listed,))
        entries = json.loads(listed["files"])
        mine = [e for e in entries if e["filename"] == "e2e-upload.bin"]
        check(mine and mine[0]["size"] == len(data), "list_files entries %r" % entries)
        check(listed["abspath"] == "/home/work", "abspath %r" % listed["abspath"])
        tar = await self.rpc("download_file", kid, "e2e-upload.bin")
        check(isinstance(tar, bytes), "download_file -> %s" % type(tar).__name__)
        with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
            names = tf.getnames()
            got = tf.extractfile("e2e-upload.bin").read()
        check(got == data, "downloaded %r" % got)
        return {"listed": [e["filename"] for e in entries], "tarMembers": names}

    async def completions(self, kid):
        # M1906 calls it with 4 arguments (kid, mode, text, opts), spec §2.1
        res = await self.rpc("get_completions", kid, "query", "pri", {}, timeout=60)
        check(isinstance(res, dict), "get_completions -> %r" % (res,))
        # rlcompleter style: callables end with '('
        check(any(str(c).startswith("print") for c in res.get("completions", ())), "completions %r" % (res,))
        return {"result": res}

    async def stats_agent(self):
        """M1906 models/agent.py: live_stat = msgpack.unpackb(get(agent_id)); node.cpu_util.pct, node.mem.current."""
        last = None
        for _ in range(90):
            raw = self.redis.get(AGENT_ID)
            if raw is not None:
                stat = msgpack.unpackb(raw, raw=False)
                last = stat
                node = stat.get("node", {})
                if node.get("cpu_util", {}).get("pct") is not None and node.get("mem", {}).get("current") is not None:
                    cpu_cur_pct = Decimal(node["cpu_util"]["pct"])
                    mem_cur_bytes = Decimal(node["mem"]["current"])
                    check(mem_cur_bytes > 0, "node.mem.current %r" % mem_cur_bytes)
                    return {"cpu_cur_pct": str(cpu_cur_pct), "mem_cur_bytes": str(mem_cur_bytes),
                            "nodeMetrics": sorted(node), "ttl": self.redis.ttl(AGENT_ID)}
            await asyncio.sleep(1)
        raise AssertionError("no decodable agent stat with node.cpu_util.pct and node.mem.current: %r" % (last,))

    async def stats_kernel(self, kid):
        """M1906 models/kernel.py 143-202 (live_stat) and gateway/resource.py 208-214, with their own
        int()/float() conversions: any None or fraction there raises, as in the manager."""
        last = None
        for _ in range(90):
            raw = self.redis.get(kid)
            if raw is not None:
                stat = msgpack.unpackb(raw, raw=False)
                last = stat
                if stat.get("cpu_used", {}).get("current") is not None and stat.get("mem", {}).get("stats.max") is not None:
                    read = kernel_stat_fields(stat)
                    check(read["mem_capacity"] > 0, "mem.capacity %r" % (read["mem_capacity"],))
                    return dict(read, metrics=sorted(stat))
            await asyncio.sleep(1)
        raise AssertionError("no decodable kernel stat with cpu_used.current and mem.stats.max: %r" % (last,))

    async def destroy(self, kid, since, want_stat=False):
        res = await self.rpc("destroy_kernel", kid)
        check(res is None or isinstance(res, dict), "destroy_kernel -> %r" % (res,))
        if want_stat:
            # the 19.06 Docker agent returns last_stat with version 2 (REST DELETE answers {"stats": ...})
            check(isinstance(res, dict) and res.get("version") == 2, "destroy_kernel -> %r: no last stat" % (res,))
            kernel_stat_fields(res)
        i = await self.events.wait(self.events.kernel_event("kernel_terminated", kid), since, what="kernel_terminated")
        self.kernels.discard(kid)
        args = self.events.log[i][1]
        check(len(args) == 3, "kernel_terminated args %r" % (args,))
        reason, exit_code = args[1], args[2]
        check(isinstance(reason, str) and reason and reason != "self-terminated", "reason %r" % (reason,))
        check(exit_code is None or isinstance(exit_code, int), "exit code %r" % (exit_code,))
        return {"reason": reason, "exitCode": exit_code, "result": res}

    async def last_stat(self, kid):
        """M1906 registry.py mark_kernel_terminated: TYPE <kid> == string → msgpack last_stat."""
        kind = self.redis.type(kid)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        check(kind == "string", "TYPE %s = %r" % (kid, kind))
        stat = msgpack.unpackb(self.redis.get(kid), raw=False)
        check(isinstance(stat, dict) and "cpu_used" in stat and "mem" in stat, "last_stat %r" % (stat,))
        # gateway/resource.py 208-214 (/resource/usage/*) on the JSONB last_stat
        usage = {
            'cpu_used': float(stat['cpu_used']['current']),
            'mem_used': int(stat['mem']['capacity']) if stat else 0,
            'shared_memory': 0,
            'disk_used': int(stat['io_scratch_size']['stats.max']) if stat else 0,
            'io_read': int(stat['io_read']['current']) if stat else 0,
            'io_write': int(stat['io_write']['current']) if stat else 0,
        }
        return {"metrics": sorted(stat), "usage": usage}

    async def unknown_kernel(self, since):
        """19.06 Docker agent, unknown kernel id: destroy_kernel emits kernel_terminated(kid,
        'self-terminated', None) and returns None; execute emits it and raises."""
        kid = str(uuid.uuid4())
        res = await self.rpc("destroy_kernel", kid)
        check(res is None, "destroy_kernel(unknown) -> %r" % (res,))
        i = await self.events.wait(self.events.kernel_event("kernel_terminated", kid), since, what="kernel_terminated(unknown)")
        check(self.events.log[i][1] == (kid, "self-terminated", None), "kernel_terminated args %r" % (self.events.log[i][1],))
        kid2 = str(uuid.uuid4())
        try:
            await self.rpc("execute", 3, kid2, "r1", "query", "print(1)", {}, 2.0)
        except aiozmq.rpc.GenericError as e:
            exc_type, args, exc_repr = e.args
            check(isinstance(exc_type, str) and isinstance(exc_repr, str), "error %r" % (e.args,))
            j = await self.events.wait(self.events.kernel_event("kernel_terminated", kid2), since, what="kernel_terminated(unknown execute)")
            check(self.events.log[j][1] == (kid2, "self-terminated", None), "kernel_terminated args %r" % (self.events.log[j][1],))
            return {"excType": exc_type, "args": args, "repr": exc_repr}
        raise AssertionError("execute on an unknown kernel did not fail")

    async def restart_kernel(self, kid, created):
        """M1906 restart_session: restart_kernel(kid, config without idle_timeout, mounts []) under a 30 s
        timeout; the result's ports are read; the old kernel's idle timeout must survive."""
        t0 = time.monotonic()
        res = await self.rpc("restart_kernel", kid, self.restart_config(), timeout=30.0)
        took = time.monotonic() - t0
        for key in ("container_id", "repl_in_port", "repl_out_port", "stdin_port", "stdout_port"):
            check(key in res, "restart_kernel result lacks %r: %r" % (key, res))
        check(isinstance(res.get("service_ports", []), (list, tuple)), "service_ports %r" % (res.get("service_ports"),))
        check(res["container_id"] != created["container_id"], "same container after restart")
        cm = await kubectl_json("-n", CFG["kubeNs"], "get", "configmap", "kernel-%s" % kid)
        check("\nIDLE_TIMEOUT=%d\n" % IDLE_TIMEOUT in cm["data"]["resource"], "idle timeout lost: %r" % cm["data"]["resource"])
        created.update(res)
        return {"result": res, "seconds": round(took, 1)}

    async def objects_of(self, kid):
        out = await kubectl_json("-n", CFG["kubeNs"], "get", "all,cm", "-l", "backend.ai/kernel-id=%s" % kid)
        return ["%s/%s" % (o["kind"], o["metadata"]["name"]) for o in out["items"]]

    async def objects_gone(self, kid):
        left = None
        for _ in range(120):
            left = await self.objects_of(kid)
            if not left:
                return {}
            await asyncio.sleep(1)
        raise AssertionError("objects left: %s" % left)

    async def detached(self, kid):
        pods = (await kubectl_json("-n", CFG["kubeNs"], "get", "pods", "-l", "backend.ai/kernel-id=%s" % kid))["items"]
        check(len(pods) == 1, "pods %s" % [p["metadata"]["name"] for p in pods])
        p = pods[0]
        check(p["status"].get("phase") == "Running", "phase %r" % p["status"].get("phase"))
        check(not p["metadata"].get("deletionTimestamp"), "pod is being deleted")
        return {"pod": p["metadata"]["name"], "objects": await self.objects_of(kid)}

    async def instance_terminated(self, since):
        answer = await self.ask("sigterm")
        i = await self.events.wait(lambda n, a: n == "instance_terminated", since, what="instance_terminated")
        self.events.wait_index = i + 1
        args = self.events.log[i][1]
        check(args == ("shutdown",), "instance_terminated args %r" % (args,))
        # M1906 mark_agent_terminated closes the cached RPC peer
        await self.close_peer()
        check(answer.get("exitCode") == 0, "the agent exited with %r" % (answer,))
        return {"exit": answer}

    async def adopted_ping(self, kid):
        res = await self.rpc("ping_kernel", kid)
        check(res is None, "ping_kernel -> %r" % (res,))
        return {}

    async def cleanup(self):
        for kid in list(self.kernels):
            try:
                await self.rpc("destroy_kernel", kid, timeout=60)
            except Exception:
                pass


def kernel_stat_fields(stat):
    """The kernel stat fields M1906 converts (models/kernel.py 143-202, gateway/resource.py 208-214)."""
    return {
        "cpu_used": float(stat["cpu_used"]["current"]),
        "cpu_pct": float(stat["cpu_util"]["pct"]),
        "mem_max": int(stat["mem"]["stats.max"]),
        "mem_cur": int(stat["mem"]["current"]),
        "mem_capacity": int(stat["mem"]["capacity"]),
        "net_rx": int(stat["net_rx"]["stats.rate"]),
        "net_tx": int(stat["net_tx"]["stats.rate"]),
        "io_read": int(stat["io_read"]["current"]),
        "io_write": int(stat["io_write"]["current"]),
        "scratch_max": int(stat["io_scratch_size"]["stats.max"]),
        "scratch_cur": int(stat["io_scratch_size"]["current"]),
    }


async def main():
    m = Manager()
    ok = False
    try:
        await m.step("manager-up", m.manager_up)
        await m.step("agent-start", lambda: m.ask("start"))
        async def heartbeat():
            i, info = await m.heartbeat(0)
            return {"agent_info": info}
        await m.step("heartbeat", heartbeat)
        await m.step("heartbeat-slots", lambda: m.heartbeat_slots(0))
        await m.step("heartbeat-images", lambda: m.heartbeat_images(0))
        await m.step("instance-started", lambda: m.instance_started(0))
        await m.step("etcd-registration", m.etcd_registration)
        await m.step("ping", m.rpc_basics)
        await m.step("not-found-error", m.rpc_not_found)
        await m.step("parameters-error", m.rpc_parameters_error)
        await m.step("domain-error", m.rpc_domain_error)
        await m.step("unknown-kernel", lambda: m.unknown_kernel(len(m.events.log)))

        mark = len(m.events.log)
        holder = {}

        async def create():
            kid, res = await m.create_kernel(mark)
            holder["kid"], holder["created"] = kid, res
            return {"kernelId": kid, "result": res}
        await m.step("create-kernel", create)
        kid = holder["kid"]
        await m.step("kernel-events", lambda: m.kernel_events(kid, mark))
        await m.step("execute", lambda: m.execute_hi(kid))
        await m.step("execute-continue", lambda: m.execute_continue(kid))
        await m.step("start-service", lambda: m.start_service(kid, holder["created"]))
        await m.step("service-connect", lambda: m.service_connect(holder["created"]))
        await m.step("get-logs", lambda: m.get_logs(kid))
        await m.step("files", lambda: m.files(kid))
        await m.step("get-completions", lambda: m.completions(kid))
        await m.step("stats-agent", m.stats_agent)
        await m.step("stats-kernel", lambda: m.stats_kernel(kid))
        await m.step("restart-kernel", lambda: m.restart_kernel(kid, holder["created"]))
        await m.step("execute-after-restart", lambda: m.execute_hi(kid))
        await m.step("stats-kernel-after-restart", lambda: m.stats_kernel(kid))
        mark = len(m.events.log)
        await m.step("destroy-kernel", lambda: m.destroy(kid, mark, want_stat=True))
        await m.step("last-stat", lambda: m.last_stat(kid))
        await m.step("objects-gone", lambda: m.objects_gone(kid))

        # detach on shutdown, adoption on restart
        mark = len(m.events.log)

        async def create2():
            kid2, res = await m.create_kernel(mark)
            holder["kid2"] = kid2
            r = await m.execute(kid2, 'print("hi")')
            check(r["stdout"] == [["stdout", "hi\n"]], "execute %r" % (r,))
            return {"kernelId": kid2}
        await m.step("create-before-shutdown", create2)
        kid2 = holder["kid2"]
        mark = len(m.events.log)
        await m.step("instance-terminated", lambda: m.instance_terminated(mark))
        terminated = m.events.wait_index
        await m.step("detached", lambda: m.detached(kid2))
        mark = len(m.events.log)

        async def restart():
            # M1906 would revive a terminated agent on a heartbeat: none may follow instance_terminated
            late = [n for n, _ in m.events.log[terminated:] if n == "instance_heartbeat"]
            check(not late, "%d heartbeat(s) after instance_terminated" % len(late))
            await m.ask("start")
            i, info = await m.heartbeat(mark)
            await m.instance_started(mark)
            reg = await m.etcd_registration()
            return {"addr": info["addr"], "etcd": reg}
        await m.step("restart", restart)
        await m.step("adopted-ping-kernel", lambda: m.adopted_ping(kid2))
        await m.step("adopted-execute", lambda: m.execute_hi(kid2))
        mark = len(m.events.log)
        await m.step("adopted-destroy", lambda: m.destroy(kid2, mark))
        await m.step("adopted-objects-gone", lambda: m.objects_gone(kid2))
        ok = True
    except Abort:
        await m.cleanup()
    except Exception:
        emit({"step": "manager1906.py", "ok": False, "error": traceback.format_exc()[-3000:]})
        await m.cleanup()
    finally:
        await m.close_peer()
        emit({"done": True, "ok": ok, "events": [n for n, _ in m.events.log if n != "instance_heartbeat"]})


if __name__ == "__main__":
    asyncio.run(main())
