#!/usr/bin/env bash
# The Debian packages the testbed runs (etcd, Redis, the registry, python3 for the runner's `code`
# mode and the interop peers, openssl for its certificates). Installs what is missing when it can
# (root + apt), with a line per step; otherwise says exactly what to install. Fast when all is there.
#   prereqs.sh                 what every testbed needs
#   prereqs.sh --real-runner   also what the real 19.06 kernel runner needs (interop testbed): its Python
#                              packages for Debian's python3, and unshare/mount (util-linux, mount) for
#                              the per-pod network and mount namespaces (sandbox.py)
set -euo pipefail
declare -A pkg_of=([etcd]=etcd-server [redis-server]=redis-server [docker-registry]=docker-registry
  [python3]=python3 [openssl]=openssl [curl]=curl)
real_runner=0
[ "${1:-}" = "--real-runner" ] && real_runner=1
if [ "$real_runner" = 1 ]; then pkg_of[unshare]=util-linux; pkg_of[mount]=mount; fi
missing=()
for cmd in "${!pkg_of[@]}"; do command -v "$cmd" >/dev/null 2>&1 || missing+=("${pkg_of[$cmd]}"); done
# Debian's python3 (the tests use it, not a pyenv one that may come first on PATH)
py=${BAI_PYTHON:-/usr/bin/python3}
declare -A mod_pkg=([zmq]=python3-zmq [msgpack]=python3-msgpack [snappy]=python3-snappy [redis]=python3-redis
  [aiozmq]=python3-aiozmq [attr]=python3-attr) # attr: callosum 1.0.3 (manager-26 interop peers)
if [ "$real_runner" = 1 ]; then
  # backend.ai-kernel-runner-19.06/README.md: the runner on Debian 12 packages (+ async_timeout, which
  # its utils.py imports; jupyter_client pulls it in on Debian 12 but say so explicitly)
  mod_pkg+=([janus]=python3-janus [uvloop]=python3-uvloop [jupyter_client]=python3-jupyter-client
    [ipykernel]=python3-ipykernel [nest_asyncio]=python3-nest-asyncio [async_timeout]=python3-async-timeout)
fi
for mod in "${!mod_pkg[@]}"; do
  "$py" -c "import $mod" >/dev/null 2>&1 || missing+=("${mod_pkg[$mod]}")
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
