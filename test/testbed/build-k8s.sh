#!/usr/bin/env bash
# Build kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, and for the real-node mode
# kubelet and kube-proxy (v1.20.2) from Debian bookworm's `kubernetes` source package with Debian's Go,
# offline (the source vendors every module).
# The vendored github.com/modern-go/reflect2 v1.0.1 links runtime.mapiterinit with its pre-Go-1.18
# signature: built with Debian's Go 1.19 the apiserver faults on the first request that sorts map keys
# (curl's default User-Agent, ?pretty, YAML). We swap in Debian's reflect2 1.0.2 source before compiling.
# Cached outside the repository: a later run with the marker present does nothing.
# Env: K8S_CACHE (default /var/cache/k8s-testbed), WHAT (targets).
set -euo pipefail
W=${K8S_CACHE:-/var/cache/k8s-testbed}; OUTBIN=$W/bin
WHAT=${WHAT:-"cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler cmd/kubectl cmd/kubelet cmd/kube-proxy"}
DEBVER=1.20.5+really1.20.2-1.1+deb12u1
MARK="$OUTBIN/.done-$DEBVER-reflect2-$(echo "$WHAT" | md5sum | cut -c1-8)"
if [ -f "$MARK" ]; then echo "[k8s] binaries cached in $OUTBIN"; exit 0; fi
step() { echo "[k8s] $(date +%T) $*"; }
# one build at a time per cache dir: test runs started in parallel (several worktrees, vitest projects)
# would otherwise each `rm -rf` the tree the other one is compiling
mkdir -p "$W"; exec 9>"$W/.build.lock"
if ! flock -n 9; then step "another build-k8s.sh is running in $W; waiting for it"; flock 9; fi
if [ -f "$MARK" ]; then echo "[k8s] binaries cached in $OUTBIN (built by the other run)"; exit 0; fi
step "first run: building Kubernetes 1.20.2 from Debian source (about 7-10 minutes on 2 cores, once)"
REFLECT2=/usr/share/gocode/src/github.com/modern-go/reflect2
if ! command -v go >/dev/null || [ ! -d "$REFLECT2" ]; then
  step "installing golang-go, golang-github-modern-go-reflect2-dev"
  apt-get install -y --no-install-recommends golang-go golang-github-modern-go-reflect2-dev rsync make >/dev/null
fi
mkdir -p "$W/apt/lists/partial" && cd "$W"
echo 'deb-src http://deb.debian.org/debian bookworm main' > apt/sources.list   # private list; /etc/apt untouched
O="-o Dir::Etc::SourceList=$W/apt/sources.list -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists=$W/apt/lists"
step "fetching source package"
apt-get $O update >/dev/null
[ -f kubernetes_1.20.5+really1.20.2.orig.tar.gz ] || apt-get $O source --download-only "kubernetes=$DEBVER" >/dev/null 2>&1
step "unpacking"
rm -rf kubernetes-1.20.2 && tar xzf kubernetes_1.20.5+really1.20.2.orig.tar.gz && cd kubernetes-1.20.2
step "vendoring reflect2 1.0.2 from Debian (fixes the apiserver fault under Go >= 1.18)"
rm -rf vendor/github.com/modern-go/reflect2 && cp -a "$REFLECT2" vendor/github.com/modern-go/reflect2
rm -f vendor/github.com/modern-go/reflect2/go.mod vendor/github.com/modern-go/reflect2/go.sum
step "compiling: $WHAT"
HOME=${HOME:-/root} GOPROXY=off GOFLAGS= make WHAT="$WHAT" 2>&1 | sed 's/^/[k8s]   /'
mkdir -p "$OUTBIN"; for b in $WHAT; do cp "_output/bin/$(basename "$b")" "$OUTBIN/"; done
touch "$MARK"; step "done"; ls -la "$OUTBIN"
