"""callosum 1.0.3's client Peer with a CURVE authenticator, as the manager connects to an agent whose
heartbeat carried a public_key (contract §1.7: CURVE_SERVERKEY = agent key, the manager's keypair,
zap_domain "local"). argv[1]: tcp:// address; argv[2]: JSON {agentPublic, managerPublic,
managerSecret, intruderPublic, intruderSecret} (Z85). Prints one JSON line per attempt, then
{"done": true}.
"""
import asyncio
import json
import sys

from bai_common import packb, unpackb, use_callosum


def emit(obj):
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


async def main():
    use_callosum()
    from callosum.auth import AbstractClientAuthenticator, Identity
    from callosum.exceptions import AuthenticationError
    from callosum.lower.zeromq import ZeroMQAddress, ZeroMQRPCTransport
    from callosum.rpc import Peer

    keys = json.loads(sys.argv[2])

    class ManagerAuth(AbstractClientAuthenticator):
        def __init__(self, public, secret):
            self.public, self.secret = public.encode(), secret.encode()

        async def server_public_key(self):
            return keys["agentPublic"].encode()

        async def client_identity(self):
            return Identity(domain="local", private_key=self.secret)

        async def client_public_key(self):
            return self.public

    for who in ("manager", "intruder"):
        peer = Peer(
            connect=ZeroMQAddress(sys.argv[1]),
            transport=ZeroMQRPCTransport,
            authenticator=ManagerAuth(keys[who + "Public"], keys[who + "Secret"]),
            serializer=packb,
            deserializer=unpackb,
            invoke_timeout=30,
        )
        try:
            async with peer:
                r = await peer.invoke("ping", {"args": ("curve",), "kwargs": {}})
                emit({"who": who, "result": r})
        except AuthenticationError:
            emit({"who": who, "refused": True})
    emit({"done": True})


asyncio.run(main())
