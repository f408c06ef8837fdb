#!/usr/bin/env bash
# `make run`: start the SMTP sink, every service and the gateway in the foreground group, wait until
# each answers /healthz, print where to go, and stop them all on Ctrl-C (or SIGTERM).
# Infrastructure (RabbitMQ, Mongo-wire server) is started by `make infra` beforehand.
#
# REPLICAS=N (default 1, at most 9) starts N processes of each service; the gateway (one, on 8080)
# spreads requests over them. Replica k (1..N) of a service listens on its base port + 10*(k-1):
#   catalog 8081, 8091, 8101, ...   orders 8082, 8092, ...   payments 8083, 8093, ...
#   notifications 8084, 8094, ...
# (a base port can be moved with CATALOG_HTTP_PORT etc.). Each replica is named <service>-<k>, which
# is also its log file: .state/logs/catalog-1.log, .state/logs/catalog-2.log, ...
#
# Exit status: 0 when stopped with Ctrl-C/SIGTERM; 1 when a service fails to import, does not become
# healthy, or dies while running (its name and last log lines are printed, the others stopped).
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

REPLICAS="${REPLICAS:-1}"
if ! [[ "$REPLICAS" =~ ^[1-9]$ ]]; then
    echo "REPLICAS must be a number from 1 to 9 (got '$REPLICAS')" >&2
    exit 2
fi
SERVICES=(catalog orders payments notifications)
declare -A BASE_PORT=(
    [catalog]="${CATALOG_HTTP_PORT:-8081}"
    [orders]="${ORDERS_HTTP_PORT:-8082}"
    [payments]="${PAYMENTS_HTTP_PORT:-8083}"
    [notifications]="${NOTIFICATIONS_HTTP_PORT:-8084}"
)
GATEWAY_PORT="${GATEWAY_HTTP_PORT:-8080}"
port_of() { # service replica(1-based)
    echo $(( ${BASE_PORT[$1]} + 10 * ($2 - 1) ))
}

pids=()
names=()
declare -A PID_OF=()   # name → pid
stop_all() {
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
    PID_OF[$name]=$!
    echo "  $name: pid $!, log .state/logs/$name.log"
}

wait_healthy() { # name url
    for _ in $(seq 1 150); do
        if "$BIN/python" - "$2" <<'PY' 2>/dev/null; then return 0; fi
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=1).read()
PY
        if ! kill -0 "${PID_OF[$1]}" 2>/dev/null; then   # died during start-up: no point waiting
            echo "  $1 exited during start-up; last log lines:" >&2
            tail -n 20 "$LOGS/$1.log" >&2
            return 1
        fi
        sleep 0.2
    done
    echo "  $1 did not become healthy at $2; last log lines:" >&2
    tail -n 20 "$LOGS/$1.log" >&2
    return 1
}

# Installed = has its entry point. One that is installed but does not import is a broken checkout,
# not an optional part: show Python's error and start nothing.
installed() { [[ -x "$BIN/bejo-$1" ]]; }
broken=""
for svc in "${SERVICES[@]}" gateway; do
    installed "$svc" || continue
    if ! err="$("$BIN/python" -c "import bejo_$svc.app" 2>&1)"; then
        echo "$svc: installed but fails to import:" >&2
        printf '%s\n' "$err" | tail -n 30 >&2
        broken=1
    fi
done
[[ -z "$broken" ]] || { trap - EXIT; exit 1; }   # nothing started yet

echo "starting bejo ($REPLICAS replica(s) of each service)"
if installed notifications; then
    start smtp-sink "$BIN/python" -m bejo_notifications.smtp_sink --host 127.0.0.1 --port "$NOTIFICATIONS_SMTP_PORT" --maildir "$MAIL"
fi
declare -A HEALTH=()     # name → /healthz URL, for every process started
declare -A URLS=()       # service → comma-separated base URLs of its replicas, for the gateway
declare -A LISTENING=()  # service → its ports, for the summary
for svc in "${SERVICES[@]}"; do
    if ! installed "$svc"; then
        echo "  $svc: not installed, skipped"
        continue
    fi
    env_port="${svc^^}_HTTP_PORT"
    for k in $(seq 1 "$REPLICAS"); do
        port="$(port_of "$svc" "$k")"
        start "$svc-$k" env "$env_port=$port" "$BIN/bejo-$svc"
        HEALTH["$svc-$k"]="http://127.0.0.1:$port/healthz"
        URLS[$svc]="${URLS[$svc]:+${URLS[$svc]},}http://127.0.0.1:$port"
        LISTENING[$svc]="${LISTENING[$svc]:+${LISTENING[$svc]}, }:$port"
    done
done
if installed gateway; then
    # Every replica of every upstream; a service that is not installed keeps the gateway's default.
    gateway_env=("GATEWAY_HTTP_PORT=$GATEWAY_PORT")
    for svc in "${SERVICES[@]}"; do
        [[ -n "${URLS[$svc]:-}" ]] && gateway_env+=("GATEWAY_${svc^^}_URLS=${URLS[$svc]}")
    done
    start gateway env "${gateway_env[@]}" "$BIN/bejo-gateway"
    HEALTH[gateway]="http://127.0.0.1:$GATEWAY_PORT/healthz"
else
    echo "  gateway: not installed, skipped"
fi
for name in "${names[@]}"; do
    [[ -n "${HEALTH[$name]:-}" ]] && wait_healthy "$name" "${HEALTH[$name]}"
done

echo
echo "bejo is running:"
echo "  API gateway     http://127.0.0.1:$GATEWAY_PORT/api/v1/   (docs: http://127.0.0.1:$GATEWAY_PORT/api/v1/docs)"
for svc in "${SERVICES[@]}"; do
    [[ -n "${LISTENING[$svc]:-}" ]] && printf '  %-15s %s\n' "$svc" "${LISTENING[$svc]}   (logs .state/logs/$svc-<k>.log)"
done
cat <<EOF2
  RabbitMQ UI     http://127.0.0.1:15672/ (guest/guest)
  mail received   .state/mail/
  a token         .venv/bin/bejo token --role pp --sub pp-1 --pemda 35.15 --satker dinkes-sidoarjo
Ctrl-C stops the services (make infra-down stops RabbitMQ and the Mongo-wire server).
EOF2
# Ctrl-C/SIGTERM interrupt this wait and run the trap (exit 0). Otherwise a child has exited, which
# is never expected: name it (the one whose pid is gone), show its log, stop the rest, exit 1.
status=0
wait -n "${pids[@]}" || status=$?
dead=""
for name in "${names[@]}"; do
    kill -0 "${PID_OF[$name]}" 2>/dev/null || dead="${dead:+$dead, }$name"
done
echo >&2
echo "${dead:-a process} exited unexpectedly (status $status); last log lines:" >&2
for name in ${dead//,/}; do
    echo "----- .state/logs/$name.log -----" >&2
    tail -n 20 "$LOGS/$name.log" >&2
done
stop_all
exit 1
