#!/bin/sh
# Installs the Debian 12 packages cutover needs to build and test.
#   deps.sh              install (apt-get update first)
#   deps.sh --if-missing install only when a package is missing
set -eu

PKGS="build-essential pkg-config libevent-dev libssl-dev libjansson-dev libpq-dev
libxxhash-dev libcmocka-dev clang curl openssl groff-base systemd prometheus postgresql
chromium python3-websockets jq"

missing() {
    for p in $PKGS; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
    done
}

if [ "${1:-}" = "--if-missing" ] && [ -z "$(missing)" ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing packages: $(missing | tr '\n' ' ')" >&2
    echo "deps: run 'sudo make deps' (or install them with apt-get)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $PKGS
