#!/usr/bin/env bash
# Installs what `make bench` compares against: nginx (reverse-proxy baseline) and wrk (load
# generator), from Debian's packages, when they are missing and we are root. Without root it says
# what is missing and exits 0: the benchmark then reports those rows as not measured.
set -euo pipefail

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
{ command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx; } || missing+=(nginx-light)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "bench-tools: missing ${missing[*]}; install them (apt-get install ${missing[*]}) to measure every row" >&2
    exit 0
fi
echo "bench-tools: installing ${missing[*]} from Debian" >&2
# The package's own nginx service must not start (it would take port 80): the benchmark runs its
# own nginx on a free port. policy-rc.d refuses service starts during the install.
policy=/usr/sbin/policy-rc.d
created=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod +x "$policy"
    created=1
fi
trap '[ "$created" = 1 ] && rm -f "$policy"' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "bench-tools: $(wrk --version 2>&1 | head -1 | cut -c1-40); $(/usr/sbin/nginx -v 2>&1)" >&2
