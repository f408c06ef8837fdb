#!/usr/bin/env bash
# `make run`: start the SMTP sink, every service and the gateway in the foreground group, wait until
# each answers /healthz, print where to go, and stop them all on Ctrl-C (or SIGTERM).
# Infrastructure (RabbitMQ, Mongo-wire server) is started by `make infra` beforehand.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$REPO/.venv/bin"
LOGS="$REPO/.state/logs"
MAIL="$REPO/.state/mail"
mkdir -p "$LOGS" "$MAIL"

export BEJO_ENV="${BEJO_ENV:-local}"
export LOG_JSON="${LOG_JSON:-true}"
# The sandbox bank and its pay endpoint exist only when asked for; local runs want them.
export PAYMENTS_SANDBOX_ENABLED="${PAYMENTS_SANDBOX_ENABLED:-true}"
export NOTIFICATIONS_SMTP_HOST="${NOTIFICATIONS_SMTP_HOST:-127.0.0.1}"
export NOTIFICATIONS_SMTP_PORT="${NOTIFICATIONS_SMTP_PORT:-1025}"

pids=()
names=()
stopping=""
stop_all() {
    stopping=1
    trap - INT TERM EXIT
    echo
    echo "stopping ${names[*]:-nothing}"
    for pid in "${pids[@]:-}"; do [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]:-}"; do [[ -n "$pid" ]] && wait "$pid" 2>/dev/null || true; done
    echo "stopped"
}
trap 'stop_all; exit 0' INT TERM
trap stop_all EXIT

start() { # name command...
    local name="$1"; shift
    "$@" >>"$LOGS/$name.log" 2>&1 &
    pids+=($!)
    names+=("$name")
    echo "  $name: pid $!, log .state/logs/$name.log"
}

wait_healthy() { # name url
    for _ in $(seq 1 150); do
        if "$BIN/python" - "$2" <<'PY' 2>/dev/null; then return 0; fi
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=1).read()
PY
        sleep 0.2
    done
    echo "  $1 did not become healthy at $2; last log lines:" >&2
    tail -n 20 "$LOGS/$1.log" >&2
    return 1
}

echo "starting bejo"
if "$BIN/python" -c "import bejo_notifications.smtp_sink" 2>/dev/null; then
    start smtp-sink "$BIN/python" -m bejo_notifications.smtp_sink --host 127.0.0.1 --port "$NOTIFICATIONS_SMTP_PORT" --maildir "$MAIL"
fi
declare -A PORTS=([catalog]=8081 [orders]=8082 [payments]=8083 [notifications]=8084 [gateway]=8080)
for svc in catalog orders payments notifications gateway; do
    if [[ -x "$BIN/bejo-$svc" ]] && "$BIN/python" -c "import bejo_$svc.app" 2>/dev/null; then
        start "$svc" "$BIN/bejo-$svc"
    else
        echo "  $svc: not installed, skipped"
    fi
done
for i in "${!names[@]}"; do
    name="${names[$i]}"
    [[ -n "${PORTS[$name]:-}" ]] && wait_healthy "$name" "http://127.0.0.1:${PORTS[$name]}/healthz"
done

cat <<EOF2

bejo is running:
  API gateway     http://127.0.0.1:8080/api/v1/   (docs: http://127.0.0.1:8080/api/v1/docs)
  services        catalog :8081, orders :8082, payments :8083, notifications :8084
  RabbitMQ UI     http://127.0.0.1:15672/ (guest/guest)
  mail received   .state/mail/
  a token         .venv/bin/bejo token --role pp --sub pp-1 --pemda 35.15 --satker dinkes-sidoarjo
Ctrl-C stops the services (make infra-down stops RabbitMQ and the Mongo-wire server).
EOF2
wait -n "${pids[@]}" || true
[[ -z "$stopping" ]] && echo "a process exited; see .state/logs/ (stopping the others)" >&2
