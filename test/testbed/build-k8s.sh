#!/usr/bin/env bash
# Build kube-apiserver, kube-controller-manager, kube-scheduler and kubectl (v1.20.2) from Debian
# bookworm's `kubernetes` source package with Debian's Go, offline (the source vendors every module).
# Cached outside the repository: a later run with the marker present does nothing.
# Env: K8S_CACHE (default /var/cache/k8s-testbed), WHAT (targets).
set -euo pipefail
W=${K8S_CACHE:-/var/cache/k8s-testbed}; OUTBIN=$W/bin
WHAT=${WHAT:-"cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler cmd/kubectl"}
DEBVER=1.20.5+really1.20.2-1.1+deb12u1
MARK="$OUTBIN/.done-$DEBVER-$(echo "$WHAT" | md5sum | cut -c1-8)"
if [ -f "$MARK" ]; then echo "[k8s] binaries cached in $OUTBIN"; exit 0; fi
step() { echo "[k8s] $(date +%T) $*"; }
step "first run: building Kubernetes 1.20.2 from Debian source (about 7-10 minutes on 2 cores, once)"
if ! command -v go >/dev/null; then step "installing golang-go"; apt-get install -y --no-install-recommends golang-go rsync make >/dev/null; fi
mkdir -p "$W/apt/lists/partial" && cd "$W"
echo 'deb-src http://deb.debian.org/debian bookworm main' > apt/sources.list   # private list; /etc/apt untouched
O="-o Dir::Etc::SourceList=$W/apt/sources.list -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists=$W/apt/lists"
step "fetching source package"
apt-get $O update >/dev/null
[ -f kubernetes_1.20.5+really1.20.2.orig.tar.gz ] || apt-get $O source --download-only "kubernetes=$DEBVER" >/dev/null 2>&1
step "unpacking"
rm -rf kubernetes-1.20.2 && tar xzf kubernetes_1.20.5+really1.20.2.orig.tar.gz && cd kubernetes-1.20.2
step "compiling: $WHAT"
HOME=${HOME:-/root} GOPROXY=off GOFLAGS= make WHAT="$WHAT" 2>&1 | sed 's/^/[k8s]   /'
mkdir -p "$OUTBIN"; for b in $WHAT; do cp "_output/bin/$(basename "$b")" "$OUTBIN/"; done
touch "$MARK"; step "done"; ls -la "$OUTBIN"
