#!/usr/bin/env bash
# Local infrastructure for bejo: RabbitMQ + a MongoDB-wire server (mongod or FerretDB/SQLite).
#
#   scripts/infra.sh up       start what is not already answering (idempotent)
#   scripts/infra.sh down     stop only what `up` started (by pid files in .state/)
#   scripts/infra.sh status   show each server: ours / external / stopped
#   scripts/infra.sh rabbitmqctl ARGS   run rabbitmqctl against our node (right cookie/nodename)
#
# All runtime data lives in <repo>/.state, built binaries in <repo>/.cache (both git-ignored).
# Env: AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/),
#      MONGODB_URL (default mongodb://127.0.0.1:27017/),
#      BEJO_STATE_DIR (default <repo>/.state): a second set of servers on other ports (the fault
#      suite's) keeps its data and pid files there, so its `down` never touches the first set.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${BEJO_STATE_DIR:-$REPO/.state}"
CACHE="$REPO/.cache"
RMQ="$STATE/rabbitmq"

AMQP_URL="${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/}"
MONGODB_URL="${MONGODB_URL:-mongodb://127.0.0.1:27017/}"

FERRET_VERSION="v1.24.2"
FERRET_BIN="$CACHE/bin/ferretdb"
FERRET_PATCHES="$REPO/scripts/ferretdb"   # *.patch applied in name order (see its README.md)
START_TIMEOUT="${INFRA_START_TIMEOUT:-90}"

log() { printf '%s\n' "$*"; }
die() { printf 'infra: ERROR: %s\n' "$*" >&2; exit 1; }

# host and port of the first host in a URL: scheme://[user:pass@]host[:port][,host2...][/...]
url_hostport() { # url default_port
    local hp="${1#*://}"
    hp="${hp%%/*}"; hp="${hp%%\?*}"; hp="${hp##*@}"; hp="${hp%%,*}"
    if [[ "$hp" == *:* ]]; then echo "${hp%:*} ${hp##*:}"; else echo "$hp $2"; fi
}
read -r AMQP_HOST AMQP_PORT < <(url_hostport "$AMQP_URL" 5672)
read -r MONGO_HOST MONGO_PORT < <(url_hostport "$MONGODB_URL" 27017)
[[ "$AMQP_HOST" == localhost ]] && AMQP_HOST=127.0.0.1   # we only ever listen on IPv4 loopback
[[ "$MONGO_HOST" == localhost ]] && MONGO_HOST=127.0.0.1
# Node names must be unique per host (one epmd): a second checkout on other ports gets its own.
if [[ "$AMQP_PORT" == 5672 ]]; then RMQ_NODENAME="bejo@localhost"; MGMT_PORT=15672
else RMQ_NODENAME="bejo-$AMQP_PORT@localhost"; MGMT_PORT=$((AMQP_PORT + 10000)); fi

# --- probes (pure bash, no venv needed) --------------------------------------------------

tcp_answers() { # host port
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null
}

# Real AMQP check: send the 0-9-1 protocol header, expect a method frame (type 1) back.
amqp_answers() { # host port
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1" || exit 1
        printf "AMQP\x00\x00\x09\x01" >&3
        [ "$(head -c1 <&3 | od -An -tx1 | tr -d " \n")" = 01 ]' "$1" "$2" 2>/dev/null
}

# Real Mongo-wire check: send an OP_MSG {hello: 1, $db: "admin"} (requestID 1) and expect a reply
# header answering it (responseTo 1) as OP_MSG (2013) or OP_REPLY (1). "$" is \x24 (double quotes).
mongo_answers() { # host port
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1" || exit 1
        printf "\x34\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\xdd\x07\x00\x00\x00\x00\x00\x00\x00" >&3
        printf "\x1f\x00\x00\x00\x10hello\x00\x01\x00\x00\x00\x02\x24db\x00\x06\x00\x00\x00admin\x00\x00" >&3
        h="$(head -c16 <&3 | od -An -tx1 | tr -d " \n")"
        [ "${h:16:8}" = 01000000 ] && { [ "${h:24:8}" = dd070000 ] || [ "${h:24:8}" = 01000000 ]; }' "$1" "$2" 2>/dev/null
}

# Is the pid in $1 alive AND still the program we started (guards against pid reuse)?
pid_alive() { # pidfile cmdline-substring
    [[ -s "$1" ]] || return 1
    local pid; pid="$(cat "$1")"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    local args; args="$(ps -o args= -p "$pid" 2>/dev/null)" && [[ "$args" == *"$2"* ]]
}

wait_until() { # seconds description cmd...   (fails fast if a watched pid dies: see $WATCH_PID)
    local secs="$1" what="$2"; shift 2
    local deadline=$((SECONDS + secs))
    until "$@"; do
        if [[ -n "${WATCH_PID:-}" ]] && ! kill -0 "$WATCH_PID" 2>/dev/null; then
            log "infra: $what: process $WATCH_PID exited during startup"; return 1
        fi
        (( SECONDS < deadline )) || { log "infra: $what: not ready after ${secs}s"; return 1; }
        sleep 0.5
    done
}

show_log_tail() { # file...
    local f; for f in "$@"; do
        [[ -f "$f" ]] || continue
        echo "----- last lines of $f -----" >&2; tail -n 40 "$f" >&2
    done
}

# Stop a pid we started: SIGTERM, wait up to 20s, then SIGKILL.
stop_pid() { # pid name
    local pid="$1" name="$2" i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 40; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
    log "$name: pid $pid ignored SIGTERM for 20s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}

# --- RabbitMQ ----------------------------------------------------------------------------

# Use the real scripts, not Debian's /usr/sbin wrappers: those `su rabbitmq` when run as root
# (dropping our env and needing rabbitmq-owned dirs). Running the node as the invoking user
# (root in CI) keeps everything in .state/ owned by that user.
rmq_bindir() {
    if [[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]]; then echo /usr/lib/rabbitmq/bin; return; fi
    local p; p="$(command -v rabbitmq-server 2>/dev/null)" || return 1
    dirname "$(readlink -f "$p")"
}

rmq_install() {
    rmq_bindir >/dev/null && return 0
    [[ "$(id -u)" == 0 ]] || die "rabbitmq-server is not installed. Install it (Debian/Ubuntu: sudo apt-get install rabbitmq-server; macOS: brew install rabbitmq) or point AMQP_URL at a running broker."
    log "RabbitMQ: installing rabbitmq-server via apt-get…"
    # Refresh package lists only if apt doesn't know the package yet.
    if ! apt-cache policy rabbitmq-server 2>/dev/null | grep 'Candidate: [0-9]' >/dev/null; then
        apt-get update -qq
    fi
    # Keep the package's init script from starting a system-wide broker on 5672 (Docker-style).
    local made_policy=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rabbitmq-server >"$STATE/apt-rabbitmq.log" 2>&1 \
        || { [[ -n "$made_policy" ]] && rm -f /usr/sbin/policy-rc.d; show_log_tail "$STATE/apt-rabbitmq.log"; die "apt-get install rabbitmq-server failed"; }
    [[ -n "$made_policy" ]] && rm -f /usr/sbin/policy-rc.d
    rmq_bindir >/dev/null || die "rabbitmq-server still not found after install"
}

# Everything the node and rabbitmqctl need to find OUR node and keep state in .state/rabbitmq.
# Called inside subshells only (it changes HOME).
rmq_env() {
    export RABBITMQ_NODENAME="$RMQ_NODENAME"
    export RABBITMQ_NODE_IP_ADDRESS="$AMQP_HOST" RABBITMQ_NODE_PORT="$AMQP_PORT"
    export RABBITMQ_DIST_PORT=$((AMQP_PORT + 20000))
    # Erlang distribution listens on 0.0.0.0 by default; keep it on loopback too.
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    export RABBITMQ_MNESIA_BASE="$RMQ/mnesia" RABBITMQ_LOG_BASE="$RMQ/log"
    export RABBITMQ_PID_FILE="$RMQ/beam.pid"
    export RABBITMQ_ENABLED_PLUGINS_FILE="$RMQ/enabled_plugins"
    export RABBITMQ_CONFIG_FILE="$RMQ/rabbitmq.conf"
    export RABBITMQ_ADVANCED_CONFIG_FILE="$RMQ/advanced.config"
    export RABBITMQ_CONF_ENV_FILE="$RMQ/rabbitmq-env.conf" # ignore /etc/rabbitmq/rabbitmq-env.conf
    # Erlang (server and rabbitmqctl) read the cookie from $HOME/.erlang.cookie.
    export HOME="$RMQ"
    export ERL_EPMD_ADDRESS=127.0.0.1
    unset RABBITMQ_ERLANG_COOKIE
}

rmq_prepare() {
    mkdir -p "$RMQ/mnesia" "$RMQ/log"
    : >"$RMQ/rabbitmq-env.conf"
    echo '[rabbitmq_management].' >"$RMQ/enabled_plugins"
    cat >"$RMQ/rabbitmq.conf" <<EOF
# generated by scripts/infra.sh
management.tcp.ip = 127.0.0.1
management.tcp.port = $MGMT_PORT
# guest/guest stays loopback-only (the default)
EOF
    if [[ ! -s "$RMQ/.erlang.cookie" ]]; then
        (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$RMQ/.erlang.cookie")
    fi
    chmod 400 "$RMQ/.erlang.cookie"
}

# epmd is spawned (daemonized) by the first Erlang node if none runs; its pid would be unknown.
# So if no epmd answers, we start one ourselves in the foreground-in-background and record it,
# letting `down` stop it. An epmd that was already there is external and left alone.
epmd_start() {
    tcp_answers 127.0.0.1 4369 && return 0
    local epmd; epmd="$(command -v epmd || ls /usr/lib/erlang/erts-*/bin/epmd 2>/dev/null | head -n1)"
    [[ -x "$epmd" ]] || return 0   # let erl start it; then it simply isn't tracked
    ERL_EPMD_ADDRESS=127.0.0.1 nohup setsid "$epmd" >"$RMQ/log/epmd.log" 2>&1 </dev/null &
    echo $! >"$STATE/epmd.pid"
    wait_until 10 "epmd" tcp_answers 127.0.0.1 4369 || true
}

RMQ_STARTED=""
rmq_launch() {
    # A node whose `up` was interrupted (e.g. the Mongo side failed) wrote beam.pid itself: adopt it.
    if ! pid_alive "$STATE/rabbitmq.pid" beam && pid_alive "$RMQ/beam.pid" beam; then
        cp "$RMQ/beam.pid" "$STATE/rabbitmq.pid"
    fi
    if pid_alive "$STATE/rabbitmq.pid" beam; then
        if amqp_answers "$AMQP_HOST" "$AMQP_PORT"; then
            log "RabbitMQ: already running (ours, pid $(cat "$STATE/rabbitmq.pid")) at $AMQP_HOST:$AMQP_PORT"
        else # ours but still booting: wait for it below
            log "RabbitMQ: our node (pid $(cat "$STATE/rabbitmq.pid")) is still starting…"
            RMQ_LAUNCHER_PID="$(cat "$STATE/rabbitmq.pid")"; RMQ_STARTED=1
        fi
        return 0
    fi
    if amqp_answers "$AMQP_HOST" "$AMQP_PORT"; then
        log "RabbitMQ: already running at $AMQP_HOST:$AMQP_PORT (external, not managed by infra.sh)"
        rm -f "$STATE/rabbitmq.pid"
        return 0
    fi
    [[ -f "$STATE/rabbitmq.pid" ]] && { log "RabbitMQ: removing stale pid file"; rm -f "$STATE/rabbitmq.pid"; }
    tcp_answers "$AMQP_HOST" "$AMQP_PORT" && die "port $AMQP_HOST:$AMQP_PORT is taken by something that does not speak AMQP"
    rmq_install
    rmq_prepare
    epmd_start
    local bindir; bindir="$(rmq_bindir)"
    rm -f "$RMQ/beam.pid"
    log "RabbitMQ: starting node $RMQ_NODENAME on $AMQP_HOST:$AMQP_PORT (state in ${RMQ#"$REPO/"})…"
    # setsid: detach from the caller's session so the broker outlives `make`/the terminal.
    (rmq_env; cd "$RMQ"; exec nohup setsid "$bindir/rabbitmq-server" >"$RMQ/log/startup.log" 2>&1 </dev/null) &
    RMQ_LAUNCHER_PID=$!
    RMQ_STARTED=1 RMQ_LAUNCHED_NOW=1
}

# If `up` fails after launching RabbitMQ (e.g. on the Mongo side), don't leave an untracked node
# booting. TERM to the sh launcher makes it stop beam gracefully; beam.pid may not exist yet.
up_failed_cleanup() {
    [[ -n "${RMQ_LAUNCHED_NOW:-}" ]] || return 0
    local pid="$RMQ_LAUNCHER_PID"
    pid_alive "$RMQ/beam.pid" beam && pid="$(cat "$RMQ/beam.pid")"
    log "infra: up failed: stopping the RabbitMQ node it launched (pid $pid)"
    stop_pid "$pid" RabbitMQ
    rm -f "$STATE/rabbitmq.pid" "$RMQ/beam.pid"
}

# The launcher is a sh wrapper; the real server (beam.smp) writes its own pid to RABBITMQ_PID_FILE.
rmq_wait() {
    [[ -n "$RMQ_STARTED" ]] || return 0
    local logs=("$RMQ/log/startup.log" "$RMQ/log/$RMQ_NODENAME.log")
    WATCH_PID="$RMQ_LAUNCHER_PID" wait_until "$START_TIMEOUT" "RabbitMQ" amqp_answers "$AMQP_HOST" "$AMQP_PORT" \
        || { show_log_tail "${logs[@]}"; die "RabbitMQ did not start (logs in ${RMQ#"$REPO/"}/log)"; }
    [[ -s "$RMQ/beam.pid" ]] || die "RabbitMQ answers but wrote no pid file $RMQ/beam.pid"
    cp "$RMQ/beam.pid" "$STATE/rabbitmq.pid"
    log "RabbitMQ: ready (pid $(cat "$STATE/rabbitmq.pid")), $((SECONDS - RMQ_T0))s after launch"
}

rmq_stop() {
    local pf="$STATE/rabbitmq.pid"
    [[ -f "$pf" ]] || pf="$RMQ/beam.pid"   # node launched by an `up` that failed before recording it
    if pid_alive "$pf" beam; then
        local pid; pid="$(cat "$pf")"
        # SIGTERM to beam.smp is RabbitMQ's own graceful shutdown (same as `rabbitmqctl stop`,
        # ~6s here vs ~10s, since the Elixir CLI doesn't have to boot); SIGKILL after 20s.
        stop_pid "$pid" RabbitMQ
        log "RabbitMQ: stopped (pid $pid)"
    elif [[ -f "$pf" ]]; then
        log "RabbitMQ: stale pid file removed (process $(cat "$pf") is gone)"
    elif amqp_answers "$AMQP_HOST" "$AMQP_PORT"; then
        log "RabbitMQ: running at $AMQP_HOST:$AMQP_PORT but not started by infra.sh — left alone"
    else
        log "RabbitMQ: not running"
    fi
    rm -f "$pf" "$RMQ/beam.pid"
    # Our epmd: stop it only once our node is gone (it may also serve other nodes started later;
    # those would re-spawn their own epmd on next start).
    if pid_alive "$STATE/epmd.pid" epmd; then
        local epid; epid="$(cat "$STATE/epmd.pid")"
        stop_pid "$epid" epmd; log "epmd: stopped (pid $epid)"
    fi
    rm -f "$STATE/epmd.pid"
}

# --- MongoDB wire (mongod or FerretDB) ---------------------------------------------------

# Hash of the patch files (names and contents), stored next to the binary as $FERRET_BIN.patches:
# the binary is rebuilt when the patches change, and only then.
ferret_patches_hash() {
    local f
    for f in "$FERRET_PATCHES"/*.patch; do
        [[ -e "$f" ]] || continue
        printf '%s\n' "${f##*/}"; cat "$f"
    done | sha256sum | cut -d' ' -f1
}

# (capture first: `| grep -q` + pipefail can fail on SIGPIPE when grep exits early)
ferret_ok() {
    [[ -x "$FERRET_BIN" ]] || return 1
    [[ "$(cat "$FERRET_BIN.patches" 2>/dev/null)" == "$(ferret_patches_hash)" ]] || return 1
    local v; v="$(cd /tmp && "$FERRET_BIN" --version 2>/dev/null)" || return 1
    [[ "$v" == *"version: $FERRET_VERSION"* ]]
}

# Apply scripts/ferretdb/*.patch to the source copy in $1 (fails on any rejected hunk, no fuzz).
# `patch` if installed, else `git apply` (a fresh Debian may lack `patch`; a clone has git).
# GIT_CEILING_DIRECTORIES keeps git from taking our own repo (above .cache/src) for the target.
ferret_patch() { # srcdir buildlog
    local f
    for f in "$FERRET_PATCHES"/*.patch; do
        [[ -e "$f" ]] || continue
        log "MongoDB: applying ${f#"$REPO/"}"
        if command -v patch >/dev/null; then
            patch -p1 --forward --batch --fuzz=0 -d "$1" <"$f" >>"$2" 2>&1
        elif command -v git >/dev/null; then
            (cd "$1" && GIT_CEILING_DIRECTORIES="$(dirname "$1")" git apply -p1 "$f") >>"$2" 2>&1
        else
            die "neither patch nor git found to apply ${f#"$REPO/"} (Debian: apt-get install patch)"
        fi || { show_log_tail "$2"; die "applying ${f#"$REPO/"} to FerretDB $FERRET_VERSION failed"; }
    done
}

# `go install github.com/FerretDB/FerretDB/cmd/ferretdb@v1.24.2` compiles, but the binary panics
# at startup: build/version/version.txt is generated from git and is absent from the module zip.
# So: fetch the module via the Go proxy, copy it somewhere writable, write version.txt, go build.
ferret_build() {
    ferret_ok && return 0
    local go; go="$(command -v go || echo /usr/local/go/bin/go)"
    [[ -x "$go" ]] || die "neither mongod nor Go found: install mongod, or Go >= 1.22 to build FerretDB"
    log "MongoDB: building FerretDB $FERRET_VERSION with ${FERRET_PATCHES#"$REPO/"}/*.patch (one-time, ~3 min cold, seconds with a warm Go cache; log ${STATE#"$REPO/"}/ferretdb-build.log)…"
    local t0=$SECONDS blog="$STATE/ferretdb-build.log" src="$CACHE/src/FerretDB-$FERRET_VERSION" dir
    export GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0   # pure-Go SQLite; ignore our repo's git
    dir="$("$go" mod download -json "github.com/FerretDB/FerretDB@$FERRET_VERSION" 2>>"$blog" \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')"
    [[ -d "$dir" ]] || { show_log_tail "$blog"; die "go mod download of FerretDB failed"; }
    rm -rf "$src"; mkdir -p "$(dirname "$src")" "$CACHE/bin"
    cp -r "$dir" "$src"; chmod -R u+w "$src"
    echo "$FERRET_VERSION" >"$src/build/version/version.txt"
    ferret_patch "$src" "$blog"
    (cd "$src" && "$go" build -trimpath -o "$FERRET_BIN.tmp" ./cmd/ferretdb) >>"$blog" 2>&1 \
        || { show_log_tail "$blog"; die "building FerretDB failed"; }
    mv "$FERRET_BIN.tmp" "$FERRET_BIN"
    ferret_patches_hash >"$FERRET_BIN.patches"
    rm -rf "$src"; rmdir "$CACHE/src" 2>/dev/null || true   # source copy only needed to build
    ferret_ok || die "built $FERRET_BIN but it does not report $FERRET_VERSION"
    log "MongoDB: FerretDB built in $((SECONDS - t0))s"
}

mongo_pidfile() { # the pid file of whichever server we started, if any
    local f; for f in "$STATE/mongod.pid" "$STATE/ferretdb.pid"; do [[ -f "$f" ]] && { echo "$f"; return; }; done
    echo ""
}

mongo_up() {
    local pf; pf="$(mongo_pidfile)"
    # Our FerretDB started from an older build (the patches changed since): restart it on the new one.
    if [[ "$pf" == "$STATE/ferretdb.pid" ]] && pid_alive "$pf" ferretdb && ! command -v mongod >/dev/null \
        && ! { ferret_ok && cmp -s "$FERRET_BIN.patches" "$STATE/ferretdb.patches"; }; then
        log "MongoDB: our FerretDB (pid $(cat "$pf")) runs an older build; restarting it on the patched one"
        stop_pid "$(cat "$pf")" ferretdb; rm -f "$pf"; pf=""
    fi
    if [[ -n "$pf" ]] && pid_alive "$pf" "$(basename "$pf" .pid)"; then
        log "MongoDB: already running (ours, $(basename "$pf" .pid) pid $(cat "$pf")) at $MONGO_HOST:$MONGO_PORT"
        MONGO_SERVER="$(basename "$pf" .pid)"; return 0
    fi
    if mongo_answers "$MONGO_HOST" "$MONGO_PORT"; then
        log "MongoDB: already running at $MONGO_HOST:$MONGO_PORT (external, not managed by infra.sh)"
        MONGO_SERVER="external"; rm -f "$STATE/mongod.pid" "$STATE/ferretdb.pid"; return 0
    fi
    tcp_answers "$MONGO_HOST" "$MONGO_PORT" && die "port $MONGO_HOST:$MONGO_PORT is taken by something that does not speak the MongoDB wire protocol"
    [[ -n "$pf" ]] && { log "MongoDB: removing stale pid file $(basename "$pf")"; rm -f "$pf"; }

    local t0=$SECONDS name logf
    if command -v mongod >/dev/null; then
        name=mongod; logf="$STATE/mongod.log"; mkdir -p "$STATE/mongod"
        log "MongoDB: starting mongod on $MONGO_HOST:$MONGO_PORT…"
        nohup setsid mongod --dbpath "$STATE/mongod" --bind_ip "$MONGO_HOST" --port "$MONGO_PORT" \
            >"$logf" 2>&1 </dev/null &
    else
        ferret_build
        t0=$SECONDS name=ferretdb logf="$STATE/ferretdb.log"; mkdir -p "$STATE/ferretdb"
        log "MongoDB: starting FerretDB $FERRET_VERSION (SQLite in ${STATE#"$REPO/"}/ferretdb) on $MONGO_HOST:$MONGO_PORT…"
        # --debug-addr=- : no metrics/pprof HTTP listener (default 127.0.0.1:8088 could clash).
        nohup setsid "$FERRET_BIN" --handler=sqlite --sqlite-url="file:$STATE/ferretdb/" \
            --listen-addr="$MONGO_HOST:$MONGO_PORT" --state-dir="$STATE/ferretdb" \
            --debug-addr=- --telemetry=disable --log-level=info >"$logf" 2>&1 </dev/null &
    fi
    WATCH_PID=$!; echo "$WATCH_PID" >"$STATE/$name.pid"
    [[ "$name" == ferretdb ]] && cp "$FERRET_BIN.patches" "$STATE/ferretdb.patches"   # the build it runs
    wait_until "$START_TIMEOUT" "$name" mongo_answers "$MONGO_HOST" "$MONGO_PORT" \
        || { show_log_tail "$logf"; stop_pid "$WATCH_PID" "$name"; rm -f "$STATE/$name.pid"; die "$name did not start (log: $logf)"; }
    MONGO_SERVER="$name"
    log "MongoDB: $name started (pid $WATCH_PID) in $((SECONDS - t0))s"; WATCH_PID=""
}

mongo_stop() {
    local pf name; pf="$(mongo_pidfile)"
    if [[ -z "$pf" ]]; then
        if mongo_answers "$MONGO_HOST" "$MONGO_PORT"; then
            log "MongoDB: running at $MONGO_HOST:$MONGO_PORT but not started by infra.sh — left alone"
        else log "MongoDB: not running"; fi
        return 0
    fi
    name="$(basename "$pf" .pid)"
    if pid_alive "$pf" "$name"; then
        local pid; pid="$(cat "$pf")"; stop_pid "$pid" "$name"; log "MongoDB: $name stopped (pid $pid)"
    else
        log "MongoDB: stale pid file $(basename "$pf") removed (process $(cat "$pf") is gone)"
    fi
    rm -f "$pf"
}

# Optional real-client check: only if the current python3 has pymongo (never required).
mongo_verify() {
    command -v python3 >/dev/null || return 0
    python3 - "$MONGODB_URL" <<'EOF' 2>/dev/null || true
import sys
try:
    import pymongo
except ImportError:
    sys.exit(0)
pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=5000).admin.command("ping")
print("MongoDB: ping via pymongo ok")
EOF
}

# --- commands ----------------------------------------------------------------------------

cmd_up() {
    mkdir -p "$STATE" "$CACHE"
    trap 'rc=$?; ((rc == 0)) || up_failed_cleanup; exit $rc' EXIT
    RMQ_T0=$SECONDS
    rmq_launch          # RabbitMQ boots in the background (~10s) while we deal with MongoDB
    mongo_up
    rmq_wait
    mongo_verify
    log ""
    log "infra is up:"
    log "  AMQP_URL=$AMQP_URL"
    log "  MONGODB_URL=$MONGODB_URL  (${MONGO_SERVER:-?})"
    log "  RabbitMQ management UI: http://127.0.0.1:$MGMT_PORT (guest/guest)"
}

cmd_down() {
    mongo_stop &   # both take a few seconds to shut down gracefully: do it in parallel
    rmq_stop
    wait
}

status_line() { # label pidfile pattern host port probe
    if pid_alive "$2" "$3"; then log "$1: running (ours, pid $(cat "$2"))"
    elif "$6" "$4" "$5"; then log "$1: running (external) at $4:$5"
    elif [[ -f "$2" ]]; then log "$1: stopped (stale pid file ${2#"$REPO/"})"
    else log "$1: stopped"; fi
}

cmd_status() {
    status_line "RabbitMQ" "$STATE/rabbitmq.pid" beam "$AMQP_HOST" "$AMQP_PORT" amqp_answers
    local pf; pf="$(mongo_pidfile)"; pf="${pf:-$STATE/ferretdb.pid}"
    status_line "MongoDB ($(basename "$pf" .pid))" "$pf" "$(basename "$pf" .pid)" "$MONGO_HOST" "$MONGO_PORT" mongo_answers
    pid_alive "$STATE/epmd.pid" epmd && log "epmd: running (ours, pid $(cat "$STATE/epmd.pid"))"
    return 0
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    # e.g. `scripts/infra.sh rabbitmqctl list_queues name type messages` against OUR node
    rabbitmqctl) shift; bindir="$(rmq_bindir)" || die "rabbitmq-server is not installed"
        (rmq_env; exec "$bindir/rabbitmqctl" -n "$RMQ_NODENAME" "$@") ;;
    *) echo "usage: $0 up|down|status|rabbitmqctl ARGS..." >&2; exit 2 ;;
esac
