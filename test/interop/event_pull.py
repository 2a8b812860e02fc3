"""Manager-side event receiver (M1906 gateway/events.py): a pyzmq PULL socket bound on a free port.
Prints the endpoint on the first line, then one JSON line per received event
[name, agent_id, args] (bytes as {"bin": hex}); exits after N events (argv[1]) or 10 s."""
import json
import sys

import msgpack
import zmq


def jsonable(v):
    if isinstance(v, bytes):
        return {"bin": v.hex()}
    if isinstance(v, float):
        return {"float": v}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    return v


def main(count):
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 10000)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    print("127.0.0.1:%d" % port, flush=True)
    for _ in range(count):
        name, agent_id, body = sock.recv_multipart()
        args = msgpack.unpackb(body, raw=False, use_list=False)
        assert isinstance(args, tuple), type(args)
        print(json.dumps([name.decode("ascii"), agent_id.decode("utf-8"), jsonable(args)]), flush=True)
    sock.close()
    ctx.term()


if __name__ == "__main__":
    main(int(sys.argv[1]))
