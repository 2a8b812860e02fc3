"""callosum 1.0.3's client Peer against the agent's Callosum server (no Kubernetes needed): the
manager's ext-typed arguments (pickled by this interpreter: Debian's 3.11.2 pickles enums by name),
str and bin order keys, concurrent calls, an unknown method. argv[1]: the server's tcp:// address.
Prints one JSON line per check, then {"done": true}.
"""
import asyncio
import sys
import uuid

from bai_common import AutoPullBehavior, ClusterMode, ImageRef, emit, manager_peer, use_callosum


async def main():
    use_callosum()
    from callosum.rpc.exceptions import RPCUserError

    peer = manager_peer(sys.argv[1])

    async def call(method, *args, order_key=None, **kwargs):
        return await peer.invoke(method, {"args": args, "kwargs": kwargs}, order_key=order_key)

    async with peer:
        emit({"check": "connect", "ok": True})
        emit({"check": "ping", "result": await call("ping", "ping", agent_id="i-peer")})
        emit({"check": "ping-str-okey", "result": await call("ping", "s", order_key="")})
        kid = uuid.UUID("3f1e6f0e-8a4b-4f5e-9c1d-2b7a6c5d4e3f")
        ref = ImageRef(name="python", project="stable", tag="3.9-ubuntu20.04", registry="cr.backend.ai", architecture="x86_64", is_local=False)
        echoed = await call(
            "echo",
            {"canonical": {"auto_pull": AutoPullBehavior.DIGEST}},
            {kid: ref},
            ClusterMode.SINGLE_NODE,
            kid,
            agent_id="i-peer",
        )
        emit({"check": "echo", "result": echoed})
        # a slow call does not hold back a ping on the same connection
        slow = asyncio.create_task(call("slow"))
        await asyncio.sleep(0)
        pinged = await call("ping", "during slow")
        emit({"check": "concurrent", "ping": pinged, "slowDoneFirst": slow.done()})
        await call("release")
        emit({"check": "slow", "result": await slow})
        try:
            await call("nosuch_method", 1)
            emit({"check": "unknown", "failed": False})
        except RPCUserError as e:
            emit({"check": "unknown", "failed": True, "name": e.name, "repr": e.repr})
        emit({"check": "after-unknown", "result": await call("ping", "still")})
    emit({"done": True})


asyncio.run(main())
