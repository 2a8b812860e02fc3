"""The manager's side of the statistics (M1906 agent `live_stat`/`cpu_cur_pct`/`mem_cur_bytes`, kernel
`live_stat`/`last_stat`): reads Redis DB 0 with python3-redis and decodes with
`msgpack.unpackb(raw=False)` (strings must be str, map keys str).

argv: host:port agent_id kernel_id...
Polls every 50 ms; every time the agent key was rewritten (its PTTL went up) prints one JSON line
{"t": unix time, "agent": {...}, "agent_type": "string", "agent_ttl": s,
 "kernels": {kid: {...} | null}, "kernel_ttls": {kid: s}, "cpu_cur_pct": str, "mem_cur_bytes": str}.
Exits after 300 s or when stdin closes."""
import json
import select
import sys
import time

import msgpack
import redis


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    agent_id = sys.argv[2]
    kernel_ids = sys.argv[3:]
    r = redis.Redis(host=host, port=int(port), db=0, socket_timeout=2)
    last_ttl = None
    deadline = time.time() + 300
    while time.time() < deadline:
        ready, _, _ = select.select([sys.stdin], [], [], 0.05)
        if ready and sys.stdin.readline() == "":
            return
        try:
            ttl = r.pttl(agent_id)
        except redis.exceptions.ConnectionError:
            last_ttl = None
            continue
        if ttl is None or ttl < 0:
            last_ttl = None
            continue
        if last_ttl is not None and ttl <= last_ttl:
            last_ttl = ttl
            continue
        last_ttl = ttl
        try:
            pipe = r.pipeline(transaction=False)
            pipe.type(agent_id)
            pipe.get(agent_id)
            for kid in kernel_ids:
                pipe.get(kid)
                pipe.ttl(kid)
            replies = pipe.execute()
        except redis.exceptions.ConnectionError:
            continue
        agent = msgpack.unpackb(replies[1], raw=False)
        kernels = {}
        kernel_ttls = {}
        for i, kid in enumerate(kernel_ids):
            raw, kttl = replies[2 + 2 * i], replies[3 + 2 * i]
            kernels[kid] = msgpack.unpackb(raw, raw=False) if raw is not None else None
            kernel_ttls[kid] = kttl
        print(json.dumps({
            "t": time.time(),
            "agent_type": replies[0].decode(),
            "agent": agent,
            "agent_ttl": ttl / 1000.0,
            "kernels": kernels,
            "kernel_ttls": kernel_ttls,
            # what M1906 models/agent.py derives (no null check there)
            "cpu_cur_pct": agent["node"]["cpu_util"]["pct"],
            "mem_cur_bytes": agent["node"]["mem"]["current"],
        }), flush=True)


if __name__ == "__main__":
    main()
