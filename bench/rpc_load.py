"""aiozmq `ping` / `list_files` load generator for bench/rpc.ts: one pyzmq DEALER, raw aiozmq frames, a fixed
number of requests in flight. Independent of the TypeScript client and cheap per call (the
request frames are prebuilt; only the 16-byte header is packed per call), so several of these
processes can saturate a server.

    python3 bench/rpc_load.py ENDPOINT --inflight 64 --seconds 3 [--sequential N] [--method list_files]

Protocol with the parent (stdout/stdin, one line each):
  prints `ready` once connected and warmed up (500 round trips), waits for a line on stdin (`go`),
  then runs for --seconds and prints a JSON object:
  {"calls": n, "seconds": s, "errors": e, "latencies_us": [...]}  (latencies only with --sequential)

Every reply is checked: its req_id must be one we sent, the error flag clear, and its body msgpack
"hello" (`ping`) or, for `list_files`, the bytes of the first reply, which must unpack to the dict in
bench/list-files-reply.json (checked once during warm-up; servers may order or size-encode
differently, but each must answer the same bytes every time); anything else counts as an error.
"""
import argparse
import json
import os
import random
import struct
import sys
import time

import msgpack
import zmq

HEADER = struct.Struct("=HHLd")
REPLY = struct.Struct("=HHLd?")
METHOD = b"ping"
ARGS = b"\x91\xa5hello"  # msgpack ["hello"]
KWARGS = b"\x80"  # msgpack {}
BODY = b"\xa5hello"  # msgpack "hello"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("endpoint")
    p.add_argument("--inflight", type=int, default=64)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--sequential", type=int, default=0, help="N sequential calls with latencies instead")
    p.add_argument("--method", choices=["ping", "list_files"], default="ping")
    a = p.parse_args()
    method, args, body = METHOD, ARGS, BODY
    expected = None
    if a.method == "list_files":
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "list-files-reply.json")) as f:
            expected = json.load(f)
        method = b"list_files"
        args = msgpack.packb(["6f1f9d6e-58f4-4d3e-9a39-6f3b0e4f2a10", "."], use_bin_type=True)
        body = None  # learnt from the first reply

    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDHWM, 0)
    s.setsockopt(zmq.RCVHWM, 0)
    s.connect(a.endpoint)
    pid = os.getpid() & 0xFFFF
    rnd = random.randrange(0x10000)
    pack = HEADER.pack
    send = s.send_multipart
    recv = s.recv_multipart
    outstanding = set()
    req = 0
    errors = 0

    def call():
        nonlocal req
        req = req + 1 if req < 0xFFFFFFFF else 1
        outstanding.add(req)
        send([pack(pid, rnd, req, time.time()), method, args, KWARGS], copy=True)

    def answer():
        nonlocal errors, body
        frames = recv(copy=True)
        if len(frames) != 2 or len(frames[0]) != 17:
            errors += 1
            return
        _, _, rid, _, is_error = REPLY.unpack(frames[0])
        if body is None and not is_error and msgpack.unpackb(frames[1], raw=False) == expected:
            body = frames[1]
        if rid not in outstanding or is_error or frames[1] != body:
            errors += 1
        outstanding.discard(rid)

    for _ in range(500):  # warm-up: connection established, server JIT warm
        call()
        answer()
    print("ready", flush=True)
    sys.stdin.readline()

    latencies = []
    clock = time.perf_counter
    start = clock()
    calls = 0
    if a.sequential > 0:
        for _ in range(a.sequential):
            t0 = clock()
            call()
            answer()
            latencies.append((clock() - t0) * 1e6)
        calls = a.sequential
        end = clock()
    else:
        deadline = start + a.seconds
        for _ in range(a.inflight):
            call()
        # check the clock every 256 replies only
        while True:
            for _ in range(256):
                answer()
                call()
            calls += 256
            if clock() >= deadline:
                break
        end = clock()
        for _ in range(len(outstanding)):  # drain (not counted)
            if not s.poll(5000):
                errors += len(outstanding)
                break
            answer()
    print(json.dumps({"calls": calls, "seconds": end - start, "errors": errors, "latencies_us": latencies}), flush=True)
    s.close(0)
    ctx.term()


if __name__ == "__main__":
    main()
