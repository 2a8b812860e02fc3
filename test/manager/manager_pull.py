"""Manager 19.06 event receiver for the heartbeat tests (M1906 gateway/events.py): a pyzmq PULL socket
bound on a random loopback port (or on the endpoint given as argv[1]); prints the address on the first line, then one JSON line per event
[name, agent_id, args, received_at]. In `instance_heartbeat` the `images` bin is decoded the way the
manager does it (`msgpack.unpackb(snappy.decompress(...))`) and replaced by the list of pairs.
Runs until killed."""
import json
import sys
import time

import msgpack
import snappy
import zmq


def jsonable(v):
    if isinstance(v, bytes):
        return {"bin": v.hex()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    return v


def main():
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    sock.setsockopt(zmq.LINGER, 0)
    if len(sys.argv) > 1:
        sock.bind(sys.argv[1])
        print(sys.argv[1].replace("tcp://", ""), flush=True)
    else:
        port = sock.bind_to_random_port("tcp://127.0.0.1")
        print("127.0.0.1:%d" % port, flush=True)
    while True:
        name, agent_id, body = sock.recv_multipart()
        args = msgpack.unpackb(body, raw=False, use_list=False)
        assert isinstance(args, tuple), type(args)
        if name == b"instance_heartbeat":
            info = dict(args[0])
            assert isinstance(info["images"], bytes), type(info["images"])
            info["images"] = [list(p) for p in msgpack.unpackb(snappy.decompress(info["images"]), raw=False)]
            args = (info,)
        print(json.dumps([name.decode("ascii"), agent_id.decode("utf-8"), jsonable(args), time.time()]), flush=True)


if __name__ == "__main__":
    main()
