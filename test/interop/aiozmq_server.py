"""A reference aiozmq RPC server (ping echo), the baseline of bench/rpc.ts.
Prints the bound endpoint on stdout, serves until stdin closes."""
import asyncio
import sys

import aiozmq.rpc


class Handler(aiozmq.rpc.AttrHandler):
    @aiozmq.rpc.method
    def ping(self, msg: str) -> str:
        return msg


async def main(bind):
    server = await aiozmq.rpc.serve_rpc(Handler(), bind=bind)
    print(list(server.transport.bindings())[0], flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()
    await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:*"))
