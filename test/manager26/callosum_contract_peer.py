"""callosum 1.0.3's client Peer against the agent's Callosum server serving the 26.x contract
(src/manager26/Contract26.ts) with handlers that answer their decoded arguments: calls as the manager
makes them (uuid.UUID or str ids, keywords, agent_id=), and the refusals a Python caller sees
(RPCUserError name and repr). argv[1]: the server's tcp:// address; argv[2]: the agent id.
Prints one JSON line per check, then {"done": true}.
"""
import asyncio
import sys
import uuid

from bai_common import emit, manager_peer, use_callosum


async def main():
    use_callosum()
    from callosum.rpc.exceptions import RPCUserError

    agent_id = sys.argv[2]
    peer = manager_peer(sys.argv[1])

    async def call(check, method, *args, **kwargs):
        try:
            r = await peer.invoke(method, {"args": args, "kwargs": kwargs})
            emit({"check": check, "result": r})
        except RPCUserError as e:
            emit({"check": check, "error": [e.name, e.repr]})

    kid = uuid.UUID("3f1e6f0e-8a4b-4f5e-9c1d-2b7a6c5d4e3f")
    sid = uuid.UUID("0b9f8e7d-6c5b-4a39-8281-706f5e4d3c2b")
    async with peer:
        await call("uuid", "check_running", kid, agent_id=agent_id)
        await call("str", "check_running", str(kid), agent_id=agent_id)
        await call("keywords", "destroy_kernel", str(kid), sid, reason="user-requested", suppress_events=False, agent_id=agent_id)
        await call("execute", "execute", str(sid), str(kid), 3, uuid.uuid4().hex, "query", "print(1)", {}, None, agent_id=agent_id)
        await call("wrong-type", "check_running", 42, agent_id=agent_id)
        await call("bad-id", "get_logs", "../etc", agent_id=agent_id)
        await call("missing", "execute", str(sid), str(kid), agent_id=agent_id)
        await call("other-agent", "check_running", str(kid), agent_id="i-someone-else")
        await call("no-agent-id", "ping", "r2515")
    emit({"done": True})


asyncio.run(main())
