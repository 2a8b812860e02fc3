"""Manager-side check of the RPC server's limits with an unmodified aiozmq 'connect_rpc' client (what
manager 19.06 uses). Usage: aiozmq_limits.py tcp://host:port KERNEL_ID
Expects the server of test/rpc/Interop.test.ts "limits": rpc max frame 1 MiB, 4 requests in flight per
peer, a slow (300 ms) execute. Prints one JSON line with the results; exits 1 on the first failure."""
import asyncio
import json
import sys

import aiozmq.rpc


async def main(endpoint, kid):
    results = {}
    client = await aiozmq.rpc.connect_rpc(connect=endpoint, timeout=10)
    try:
        slow = asyncio.ensure_future(client.call.execute(3, kid, "run-1", "query", "x", {}, 2.0))
        await asyncio.sleep(0.02)
        try:
            await client.call.upload_file(kid, "big.bin", b"\0" * (1536 * 1024))
            raise AssertionError("expected ParametersError")
        except aiozmq.rpc.ParametersError as e:
            results["oversize"] = str(e.args[0])
        res = await slow
        results["slow_after_oversize"] = res["runId"]
        results["ping_after_oversize"] = await client.call.ping("same connection")

        # 10 at once: 4 are served, 6 refused at once with RuntimeError
        outcomes = await asyncio.gather(
            *[client.call.execute(3, kid, "r%d" % i, "query", "x", {}, 2.0) for i in range(10)],
            return_exceptions=True)
        results["served"] = sum(1 for o in outcomes if isinstance(o, dict))
        results["refused"] = sorted({type(o).__name__ for o in outcomes if isinstance(o, Exception)})
        results["ping_after_burst"] = await client.call.ping("still")
        try:
            await client.call.ping_kernel("../../etc")
            raise AssertionError("expected ParametersError")
        except aiozmq.rpc.ParametersError as e:
            results["bad_kernel_id"] = str(e.args[0])
    finally:
        client.close()
        await client.wait_closed()
    print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
