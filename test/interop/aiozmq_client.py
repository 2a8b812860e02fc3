"""Manager-side interop check: an unmodified aiozmq 'connect_rpc' client (what manager 19.06 uses)
drives the agent's RPC server. Usage: aiozmq_client.py tcp://host:port
Expects the test handler set of test/rpc/Interop.test.ts (slow execute, KernelNotFound on destroy,
bytes from download_file). Prints one JSON line with the results; exits 1 on the first failure."""
import asyncio
import json
import sys

import aiozmq.rpc

KID = "0b7a5b2c-5d0e-4bd4-a4d5-6a3f1a7f8a11"  # kernel ids are UUIDs (str(uuid.uuid4())) at the agent's edge


async def main(endpoint):
    results = {}
    client = await aiozmq.rpc.connect_rpc(connect=endpoint, timeout=10)
    try:
        results["ping"] = await client.call.ping("hello")
        assert results["ping"] == "hello", results
        results["ping_kw"] = await client.call.ping(msg="kw")
        assert results["ping_kw"] == "kw", results

        try:
            await client.call.no_such_method()
            raise AssertionError("expected NotFoundError")
        except aiozmq.rpc.NotFoundError as e:
            results["not_found"] = list(e.args)

        for bad in ((), ("a", "b")):
            try:
                await client.call.ping(*bad)
                raise AssertionError("expected ParametersError")
            except aiozmq.rpc.ParametersError as e:
                results.setdefault("parameters_error", []).append(type(e).__name__)

        try:
            await client.call.destroy_kernel(KID)
            raise AssertionError("expected GenericError")
        except aiozmq.rpc.GenericError as e:
            exc_type, args, repr_ = e.args
            results["domain_error"] = [exc_type, list(args), repr_]

        data = await client.call.download_file(KID, "a.txt")
        assert isinstance(data, bytes), type(data)
        results["download_file_type"] = type(data).__name__

        # a pending execute must not block pings: the test's execute for run id "gated" only returns
        # after refresh_idle is called, so the pings can only be answered while it is still pending
        # if the server serves requests concurrently (a serial server leaves them to time out)
        slow = asyncio.ensure_future(client.call.execute(3, KID, "gated", "query", "print(1)", {}, 2.0))
        await asyncio.sleep(0)  # the execute request is written before the pings
        pings = await asyncio.gather(*[client.call.ping("p%d" % i) for i in range(50)])
        pending_after_pings = not slow.done()
        await client.call.refresh_idle(KID)
        res = await slow
        results["concurrent"] = {
            "pings": len(pings),
            "execute_pending_after_pings": pending_after_pings,
            "execute_status": res["status"],
            "execute_run_id": res["runId"],
            "flush_timeout_seen": res["files"][0] if res["files"] else None,
        }
        assert pings == ["p%d" % i for i in range(50)]
    finally:
        client.close()
        await client.wait_closed()
    print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
