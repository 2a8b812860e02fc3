#!/bin/sh
# Assembles the krunner volume content that kernel pods mount (deploy/README.md "Kernel-runner files"):
#
#   <out>/backendai-krunner.<distro>/   the 19.06 krunner env (Python 3.6 + its packages), whose
#                                       lib/python<X.Y>/site-packages/ai/backend/{kernel,helpers} are
#                                       EMPTY mount points
#   <out>/kernel/                       the runner package ai.backend.kernel  (mounted into the first)
#   <out>/helpers/                      ai.backend.helpers                     (mounted into the second)
#   <out>/entrypoint.sh, su-exec.<distro>.bin, libbaihook.<distro>.<arch>.so, jail.<distro>.bin, VERSION
#
# Usage: assemble.sh --agent-src DIR --krunner-env TARBALL [--distro ubuntu16.04] [--arch x86_64]
#                    [--python-version 3.6] --out DIR
#   --agent-src    the `src` directory of backend.ai-agent 19.06 (tag 19.06.0b2): it holds
#                  ai/backend/kernel, ai/backend/helpers and ai/backend/runner (entrypoint.sh, su-exec.*,
#                  libbaihook.*, jail.*). An unpacked wheel (`pip download backend.ai-agent==19.06.0b2
#                  --no-deps`, then unzip) has the same ai/ tree at its root: pass that directory.
#   --krunner-env  krunner-env.<distro>.<arch>.tar.xz of the 19.06 krunner (package backend.ai-krunner-<distro>
#                  of July 2019, or built from its krunner-env.<distro>.dockerfile): the env's files at the
#                  archive root (bin/python, lib/python3.6/...).
# It refuses to produce a layout that cannot run a kernel (missing runner package, entrypoint, su-exec).
set -eu

distro=ubuntu16.04 arch=x86_64 pyver=3.6 agent_src= env_tar= out=
while [ $# -gt 0 ]; do
  case "$1" in
    --agent-src) agent_src=$2; shift 2 ;;
    --krunner-env) env_tar=$2; shift 2 ;;
    --distro) distro=$2; shift 2 ;;
    --arch) arch=$2; shift 2 ;;
    --python-version) pyver=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "assemble.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
fail() { echo "assemble.sh: $*" >&2; exit 1; }
[ -n "$agent_src" ] && [ -n "$env_tar" ] && [ -n "$out" ] || fail "--agent-src, --krunner-env and --out are required"
case "$distro" in *[!A-Za-z0-9.]*|'') fail "bad --distro $distro" ;; esac
case "$arch" in *[!A-Za-z0-9_]*|'') fail "bad --arch $arch" ;; esac
echo "$pyver" | grep -Eq '^[0-9]+\.[0-9]+$' || fail "bad --python-version $pyver"
backend="$agent_src/ai/backend"
[ -f "$backend/kernel/__main__.py" ] || fail "$backend/kernel/__main__.py not found: --agent-src must hold ai/backend/kernel"
[ -d "$backend/helpers" ] || fail "$backend/helpers not found"
[ -f "$backend/runner/entrypoint.sh" ] || fail "$backend/runner/entrypoint.sh not found"
[ -f "$backend/runner/su-exec.$distro.bin" ] || fail "$backend/runner/su-exec.$distro.bin not found (distro $distro)"
[ -f "$env_tar" ] || fail "$env_tar not found"

mkdir -p "$out"
tmp=$(mktemp -d "$out/.assemble.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
env_dir="$tmp/backendai-krunner.$distro"
mkdir -p "$env_dir"
tar -xf "$env_tar" -C "$env_dir" --no-same-owner
[ -x "$env_dir/bin/python" ] || [ -L "$env_dir/bin/python" ] || fail "$env_tar has no bin/python at its root"
site="$env_dir/lib/python$pyver/site-packages"
[ -d "$site" ] || fail "$env_tar has no lib/python$pyver/site-packages (wrong --python-version?)"
# the mount points: empty directories (the 19.06 krunner ships them empty; a copy inside would be hidden)
for d in kernel helpers; do
  mkdir -p "$site/ai/backend/$d"
  [ -z "$(ls -A "$site/ai/backend/$d")" ] || fail "$site/ai/backend/$d is not empty: it must be an empty mount point"
done
cp -R "$backend/kernel" "$tmp/kernel"
cp -R "$backend/helpers" "$tmp/helpers"
find "$tmp/kernel" "$tmp/helpers" -name '__pycache__' -prune -exec rm -rf {} +
cp "$backend/runner/entrypoint.sh" "$tmp/entrypoint.sh"
cp "$backend/runner/su-exec.$distro.bin" "$tmp/su-exec.$distro.bin"
if [ -f "$backend/runner/libbaihook.$distro.$arch.so" ]; then
  cp "$backend/runner/libbaihook.$distro.$arch.so" "$tmp/"
else
  echo "assemble.sh: warning: no libbaihook.$distro.$arch.so (kernels run without the hook: LD_PRELOAD fails softly)" >&2
fi
[ -f "$backend/runner/jail.$distro.bin" ] && cp "$backend/runner/jail.$distro.bin" "$tmp/"
chmod 0755 "$tmp/su-exec.$distro.bin" "$tmp/entrypoint.sh"
chmod -R a+rX,go-w "$tmp"
printf 'krunner %s %s python%s\n' "$distro" "$arch" "$pyver" > "$tmp/VERSION"

# move into place entry by entry (another distro's entries stay)
for entry in "$tmp"/* "$tmp"/VERSION; do
  [ -e "$entry" ] || continue
  name=$(basename "$entry")
  rm -rf "${out:?}/$name"
  mv "$entry" "$out/$name"
done
echo "assembled $out: backendai-krunner.$distro, kernel, helpers, entrypoint.sh, su-exec.$distro.bin"
