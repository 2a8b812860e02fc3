"""What the 26.x manager side of the interop tests shares: the manager's classes under their real
module names (`ai.backend.common.types`, `ai.backend.common.docker`) so that pickles carry the
manager's globals, `ai.backend.common.msgpack` packb/unpackb with the ext types (contract §1.6), and
callosum 1.0.3 from ../shared/upstream (a source tree: its `__init__` asks importlib.metadata for its
version, so a 3-line dist-info is made in a temp dir; `BAI_CALLOSUM_SRC` overrides the path).
"""
import dataclasses
import decimal
import enum
import json
import os
import pickle
import sys
import tempfile
import types
import uuid
from collections import UserDict

import msgpack

# ------------------------------------------------------------------------------------------------
# The manager's classes (R268 common/types.py, common/docker.py), under their real module names


def _module(name):
    mod = types.ModuleType(name)
    sys.modules[name] = mod
    return mod


for _name in ("ai", "ai.backend", "ai.backend.common"):
    _module(_name)
_types = _module("ai.backend.common.types")
_docker = _module("ai.backend.common.docker")


class AutoPullBehavior(str, enum.Enum):
    DIGEST = "digest"
    TAG = "tag"
    NONE = "none"


class SessionTypes(str, enum.Enum):
    INTERACTIVE = "interactive"
    BATCH = "batch"
    INFERENCE = "inference"
    SYSTEM = "system"


class ClusterMode(str, enum.Enum):
    SINGLE_NODE = "single-node"
    MULTI_NODE = "multi-node"


class ResourceSlot(UserDict):
    __slots__ = ("data",)


@dataclasses.dataclass
class ImageRef:
    name: str
    project: str
    tag: str
    registry: str
    architecture: str
    is_local: bool


for _cls in (AutoPullBehavior, SessionTypes, ClusterMode, ResourceSlot):
    _cls.__module__ = "ai.backend.common.types"
    setattr(_types, _cls.__name__, _cls)
ImageRef.__module__ = "ai.backend.common.docker"
_docker.ImageRef = ImageRef


# ai.backend.common.msgpack (identical R2515..MAIN): use_bin_type, strict_types, ext types
def _default(obj):
    if isinstance(obj, tuple):
        return list(obj)
    if isinstance(obj, uuid.UUID):
        return msgpack.ExtType(1, obj.bytes)
    if isinstance(obj, decimal.Decimal):
        return msgpack.ExtType(3, pickle.dumps(obj, protocol=5))
    if isinstance(obj, enum.Enum):
        return msgpack.ExtType(6, pickle.dumps(obj, protocol=5))
    if isinstance(obj, ImageRef):
        return msgpack.ExtType(7, pickle.dumps(obj, protocol=5))
    if isinstance(obj, ResourceSlot):
        return msgpack.ExtType(8, pickle.dumps(obj, protocol=5))
    raise TypeError("cannot pack %r" % type(obj))


def _ext_hook(code, data):
    if code == 1:
        return uuid.UUID(bytes=data)
    if code in (3, 6, 7, 8, 9, 16):
        return pickle.loads(data)
    return msgpack.ExtType(code, data)


def packb(obj):
    return msgpack.packb(obj, use_bin_type=True, strict_types=True, default=_default)


def unpackb(data):
    return msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=False, ext_hook=_ext_hook)




def use_callosum():
    """Makes `import callosum` work from the upstream source tree."""
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    src = os.environ.get("BAI_CALLOSUM_SRC") or os.path.join(root, "..", "shared", "upstream", "callosum-1.0.3", "src")
    if not os.path.isdir(os.path.join(src, "callosum")):
        raise RuntimeError("callosum 1.0.3 source not found at %s (set BAI_CALLOSUM_SRC)" % src)
    meta = tempfile.mkdtemp(prefix="callosum-meta-")
    os.makedirs(os.path.join(meta, "callosum-1.0.3.dist-info"))
    with open(os.path.join(meta, "callosum-1.0.3.dist-info", "METADATA"), "w") as f:
        f.write("Metadata-Version: 2.1\nName: callosum\nVersion: 1.0.3\n")
    sys.path[:0] = [src, meta]


def emit(obj):
    """One JSON line to stdout, flushed (what the test reads)."""
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


def manager_peer(address, invoke_timeout=30):
    """callosum's client Peer to `address` as the manager makes it: the manager's codec and the
    keep-alive options of R268 manager/clients/agent/pool.py (after use_callosum())."""
    import zmq
    from callosum.lower.zeromq import ZeroMQAddress, ZeroMQRPCTransport
    from callosum.rpc import Peer

    return Peer(
        connect=ZeroMQAddress(address),
        transport=ZeroMQRPCTransport,
        transport_opts={"zsock_opts": {zmq.TCP_KEEPALIVE: 1, zmq.TCP_KEEPALIVE_IDLE: 60, zmq.TCP_KEEPALIVE_INTVL: 20, zmq.TCP_KEEPALIVE_CNT: 3}},
        serializer=packb,
        deserializer=unpackb,
        invoke_timeout=invoke_timeout,
    )

