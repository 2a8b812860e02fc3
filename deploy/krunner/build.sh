#!/bin/sh
# Builds the krunner files image and prints the DaemonSet that installs it, with ONE image name for
# both (so they cannot diverge):
#
#   deploy/krunner/build.sh --agent-src DIR --krunner-env TARBALL [--distro ubuntu16.04] [--arch x86_64]
#                           [--image NAME] [--no-push] > krunner-daemonset.yaml
#   kubectl apply -f krunner-daemonset.yaml
#
# --image (or $KRUNNER_IMAGE) defaults to $DEFAULT_IMAGE below, the name deploy/kubernetes/krunner-daemonset.yaml
# carries: a registry on localhost:5000 of every node (kind, k3s and kubeadm labs commonly run one). Set it
# to your private registry, e.g. --image registry.example:5000/backendai/krunner-files:19.06.0b2.
set -eu
DEFAULT_IMAGE=localhost:5000/backendai/krunner-files:19.06.0b2
here=$(cd "$(dirname "$0")" && pwd)
image=${KRUNNER_IMAGE:-$DEFAULT_IMAGE} push=yes
args=""
while [ $# -gt 0 ]; do
  case "$1" in
    --image) image=$2; shift 2 ;;
    --no-push) push=no; shift ;;
    *) args="$args $1"; shift ;;
  esac
done
docker_bin=${DOCKER:-docker}
# shellcheck disable=SC2086
"$here/assemble.sh" $args --out "$here/files" >&2
"$docker_bin" build -t "$image" "$here" >&2
[ "$push" = no ] || "$docker_bin" push "$image" >&2
sed "s|image: $DEFAULT_IMAGE|image: $image|" "$here/../kubernetes/krunner-daemonset.yaml"
