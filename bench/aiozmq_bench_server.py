"""The Python aiozmq baseline of bench/rpc.ts: `ping` (echo) and `list_files` answering the fixed
10-entry listing in bench/list-files-reply.json (the reply size of a typical `list_files`; the
bench measures the RPC layer, not the file system). Prints the bound endpoint on stdout, serves
until stdin closes."""
import asyncio
import json
import os
import sys

import aiozmq.rpc

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "list-files-reply.json")) as f:
    LIST_FILES_REPLY = json.load(f)


class Handler(aiozmq.rpc.AttrHandler):
    @aiozmq.rpc.method
    def ping(self, msg: str) -> str:
        return msg

    @aiozmq.rpc.method
    def list_files(self, kernel_id: str, path: str) -> dict:
        return LIST_FILES_REPLY


async def main(bind):
    server = await aiozmq.rpc.serve_rpc(Handler(), bind=bind)
    print(list(server.transport.bindings())[0], flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()
    await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:*"))
