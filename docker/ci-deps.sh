#!/usr/bin/env bash
# Installs the Debian packages the deployment tests need, so `.ci/run` can call one line:
#   nginx                              tests/deploy/test_nginx_lb.py runs the shipped docker/nginx.conf in front of replicas
#   podman buildah runc debootstrap    tests/deploy/test_container.py builds and runs the Dockerfile through
#                                      ../shared/tools/container-build.sh (no Docker engine, no registry here)
# Idempotent and quiet: does nothing when every tool is already there, prints apt's output only on failure.
# nginx's packaged service is never started (a temporary policy-rc.d refuses it): the test starts its own
# nginx on a free loopback port, and a system one would hold port 80 for nothing.
set -euo pipefail

missing=0
for tool in nginx podman buildah runc debootstrap; do
    PATH="$PATH:/usr/sbin" command -v "$tool" >/dev/null 2>&1 || missing=1
done
[ "$missing" -eq 0 ] && exit 0

sudo_cmd=""
if [ "$(id -u)" -ne 0 ]; then
    sudo_cmd="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
policy=/usr/sbin/policy-rc.d
added_policy=0
cleanup() {
    rm -f "$log"
    if [ "$added_policy" -eq 1 ]; then $sudo_cmd rm -f "$policy"; fi
}
trap cleanup EXIT
if [ ! -e "$policy" ]; then
    # Exit code 101 tells invoke-rc.d "action forbidden", so the package installs without starting nginx.
    printf '#!/bin/sh\nexit 101\n' | $sudo_cmd tee "$policy" >/dev/null
    $sudo_cmd chmod +x "$policy"
    added_policy=1
fi
# podman with its recommends (conmon, netavark, slirp4netns), as container-build.sh itself installs it.
if ! { $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq nginx podman buildah runc debootstrap; } \
    >"$log" 2>&1; then
    cat "$log" >&2
    exit 1
fi
