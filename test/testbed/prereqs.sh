#!/usr/bin/env bash
# The Debian packages the tests need, by group (default: testbed):
#   testbed      etcd, Redis, the registry, python3 for the runner's `code` mode and the interop peers
#                (attr: callosum 1.0.3, manager-26 interop), openssl for certificates, jwt + cryptography
#                for the registry token server (test/images/token_server.py)
#   --real-runner  also what the real 19.06 kernel runner needs (interop testbed): its Python packages
#                for Debian's python3, and unshare/mount (util-linux, mount) for the per-pod network and
#                mount namespaces (sandbox.py)
#   unit         nix-instantiate / nix for test/deploy (flake and NixOS module checks)
#   realnode     containerd, runc, CNI plugins, umoci, skopeo, iptables/nftables, conntrack, gcc (static
#                pause and helper binaries), and the Python packages copied into the real kernel image
#                (the 19.06 runner's imports)
# Installs what is missing when it can (root + apt), with a line per step; otherwise says exactly what
# to install. Fast when all is there.
set -euo pipefail
missing=()
need_cmd() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
# Debian's python3 (the tests use it, not a pyenv one that may come first on PATH)
py=${BAI_PYTHON:-/usr/bin/python3}
need_py() { "$py" -c "import $1" >/dev/null 2>&1 || missing+=("$2"); }
need_pkg() { dpkg -s "$1" >/dev/null 2>&1 || missing+=("$1"); }
runner_py() {
  need_py janus python3-janus; need_py uvloop python3-uvloop; need_py jupyter_client python3-jupyter-client
  need_py ipykernel python3-ipykernel; need_py nest_asyncio python3-nest-asyncio
  need_py async_timeout python3-async-timeout; need_py zmq python3-zmq; need_py msgpack python3-msgpack
}
groups=("$@")
[ "${#groups[@]}" -eq 0 ] && groups=(testbed)
for group in "${groups[@]}"; do
  case "$group" in
    testbed)
      need_cmd etcd etcd-server; need_cmd redis-server redis-server; need_cmd docker-registry docker-registry
      need_cmd python3 python3; need_cmd openssl openssl; need_cmd curl curl
      for mod in zmq msgpack snappy redis aiozmq attr jwt cryptography; do need_py "$mod" "python3-$mod"; done ;;
    --real-runner|real-runner)
      need_cmd etcd etcd-server; need_cmd redis-server redis-server; need_cmd docker-registry docker-registry
      need_cmd python3 python3; need_cmd openssl openssl; need_cmd curl curl
      for mod in zmq msgpack snappy redis aiozmq attr; do need_py "$mod" "python3-$mod"; done
      need_cmd unshare util-linux; need_cmd mount mount; runner_py ;;
    unit)
      need_cmd nix-instantiate nix-bin ;;
    realnode)
      need_cmd containerd containerd; need_cmd runc runc; need_cmd umoci umoci; need_cmd skopeo skopeo
      need_cmd iptables iptables; need_cmd nft nftables; need_cmd conntrack conntrack; need_cmd socat socat
      need_cmd gcc gcc; need_cmd ip iproute2
      [ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
      need_pkg libc6-dev
      # what the real python kernel image copies from the host: the 19.06 runner's imports
      runner_py; need_pkg passwd; need_pkg util-linux; need_pkg login ;;
    *) echo "[prereqs] unknown group $group" >&2; exit 2 ;;
  esac
done
[ "${#missing[@]}" -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "[prereqs] installing Debian packages: ${missing[*]}"
  apt-get update >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}" >/dev/null
  echo "[prereqs] installed"
else
  echo "[prereqs] missing: ${missing[*]} — install them with: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
