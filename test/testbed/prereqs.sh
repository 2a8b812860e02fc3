#!/usr/bin/env bash
# The Debian packages the testbed runs (etcd, Redis, the registry, python3 for the runner's `code`
# mode and the interop peers, openssl for its certificates). Installs what is missing when it can
# (root + apt), with a line per step; otherwise says exactly what to install. Fast when all is there.
set -euo pipefail
declare -A pkg_of=([etcd]=etcd-server [redis-server]=redis-server [docker-registry]=docker-registry
  [python3]=python3 [openssl]=openssl [curl]=curl)
missing=()
for cmd in "${!pkg_of[@]}"; do command -v "$cmd" >/dev/null 2>&1 || missing+=("${pkg_of[$cmd]}"); done
# Debian's python3 (the tests use it, not a pyenv one that may come first on PATH)
py=${BAI_PYTHON:-/usr/bin/python3}
# attr: callosum 1.0.3 (the manager-26 interop peers)
for mod in zmq msgpack snappy redis aiozmq attr; do
  "$py" -c "import $mod" >/dev/null 2>&1 || missing+=("python3-$mod")
done
[ "${#missing[@]}" -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "[prereqs] installing Debian packages: ${missing[*]}"
  apt-get update >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
  echo "[prereqs] installed"
else
  echo "[prereqs] missing: ${missing[*]} — install them with: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
