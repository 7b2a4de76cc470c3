#!/usr/bin/env bash
# What the Prometheus metrics cost on the hot path: two Poolds in front of one local PostgreSQL primary, identical but
# for metrics_port (off; on, with a scrape every second), pgbench -S through each, interleaved round by round. Prints
# the median TPS of each and their ratio (issue 18 asks for at most 2% fewer TPS with metrics on). Quicker than
# bench/compare.sh, which measures the same pair (poold, poold-metrics) among the peers.
#
#   DURATION (10) seconds per run, ROUNDS (3), CLIENTS (8), MODE (simple), BASE_PORT (26432).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
. scripts/cluster.sh
. bench/lib.sh

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-8}
MODE=${MODE:-simple}
BASE_PORT=${BASE_PORT:-26432}
ensure_dotnet
ensure_postgres

work=$(mktemp -d /tmp/poold-metrics-cost.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() { bench_stop 0; }
trap cleanup EXIT

dotnet build src/Poold -c Release -v q -nologo >/dev/null
cluster_start "$work/pg" "$BASE_PORT" 0
PGHOST=127.0.0.1 PGPORT=$BASE_PORT PGUSER=postgres pgbench -i -q -s 10 postgres >/dev/null 2>&1 || die "pgbench -i failed"

start() { # NAME PORT METRICS_PORT
    mkdir -p "$work/$1"
    cat >"$work/$1/poold.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $2
unix_socket_directories = '$work/$1'
pcp_listen_addresses = ''
pcp_socket_dir = '$work/$1'
pcp_port = $(($2 + 10))
backend_hostname0 = '127.0.0.1'
backend_port0 = $BASE_PORT
num_init_children = 64
ssl = off
pid_file_name = '$work/$1/poold.pid'
logdir = '$work/$1'
log_min_messages = warning
metrics_listen_addresses = '127.0.0.1'
metrics_port = $3
CONF
    dotnet src/Poold/bin/Release/net10.0/poold.dll -n -f "$work/$1/poold.conf" >"$work/$1/out.log" 2>&1 &
    pids+=("$!")
    for _ in $(seq 1 100); do
        pg_isready -q -h 127.0.0.1 -p "$2" && return 0
        sleep 0.2
    done
    die "$1 did not start (see $work/$1/out.log)"
}

start off $((BASE_PORT + 1)) 0
start on $((BASE_PORT + 2)) $((BASE_PORT + 30))
( while sleep 1; do curl -s -o /dev/null "http://127.0.0.1:$((BASE_PORT + 30))/metrics" || true; done ) &
pids+=("$!")

run() { # PORT SECONDS
    pgbench -h 127.0.0.1 -p "$1" -U postgres -S -M "$MODE" -c "$CLIENTS" -j 2 -T "$2" -n postgres 2>/dev/null \
        | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1
}

log "warm-up"
run $((BASE_PORT + 1)) 5 >/dev/null
run $((BASE_PORT + 2)) 5 >/dev/null
off=(); on=()
for round in $(seq 1 "$ROUNDS"); do
    off+=("$(run $((BASE_PORT + 1)) "$DURATION")")
    on+=("$(run $((BASE_PORT + 2)) "$DURATION")")
    log "round $round: metrics off ${off[-1]} TPS, on ${on[-1]} TPS"
done
curl -s "http://127.0.0.1:$((BASE_PORT + 30))/metrics" | grep -c '^poold_' | xargs -I{} echo "samples per scrape: {}"
python3 - "${off[*]}" "${on[*]}" <<'PY'
import statistics, sys
off = [float(x) for x in sys.argv[1].split()]; on = [float(x) for x in sys.argv[2].split()]
print(f"median TPS: metrics off {statistics.median(off):.0f}, on {statistics.median(on):.0f}, "
      f"ratio {statistics.median(on) / statistics.median(off):.3f}")
PY
