#!/bin/sh
# Installs the Debian packages the tests use for real: prometheus (and promtool),
# alertmanager (amtool), chromium and docker-compose. Needs root; without root it
# only reports what is missing (tests then skip locally, but fail under CI=true).
set -eu
missing=""
command -v promtool   >/dev/null 2>&1 || missing="$missing prometheus"
command -v prometheus >/dev/null 2>&1 || missing="$missing prometheus"
command -v amtool     >/dev/null 2>&1 || missing="$missing prometheus-alertmanager"
command -v chromium   >/dev/null 2>&1 || missing="$missing chromium"
command -v docker-compose >/dev/null 2>&1 || missing="$missing docker-compose"
command -v openssl    >/dev/null 2>&1 || missing="$missing openssl"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
    echo "installing system packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq $missing >/dev/null
elif [ "${CI:-}" = "true" ]; then
    echo "missing system packages:$missing (run as root to install them)" >&2
    exit 1
else
    echo "note: missing system packages:$missing; the tests that need them will skip" >&2
fi
