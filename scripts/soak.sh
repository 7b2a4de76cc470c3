#!/usr/bin/env bash
# Soak: Poold (Release) in front of a local primary + 2 streaming replicas under mixed load with connection churn for
# MINUTES (default 30): one pgbench opening a new connection per transaction (-C) with a mixed read/write script, and
# one steady pgbench on long-lived connections. Every SAMPLE_SECONDS (default 60) it samples Poold's RSS, its open
# fds and the backend connections on all nodes, then prints a markdown table and a verdict: flat, or growing (the
# mean of the last third of the samples against the first third). Exits 1 when something grows. Not run by CI.
#   scripts/soak.sh [MINUTES]    PG_PORT (default 25432, replicas on the next two), POOLD_PORT (default 19999)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
. scripts/cluster.sh

MINUTES=${1:-30}
SAMPLE_SECONDS=${SAMPLE_SECONDS:-60}
PG_PORT=${PG_PORT:-25432}
POOLD_PORT=${POOLD_PORT:-19999}
case $MINUTES$SAMPLE_SECONDS in *[!0-9]*) die "MINUTES and SAMPLE_SECONDS must be whole numbers" ;; esac
[ "$MINUTES" -ge 1 ] || die "MINUTES must be at least 1"
duration=$((MINUTES * 60))

ensure_dotnet
ensure_postgres
command -v pgbench >/dev/null 2>&1 || die "pgbench is missing (Debian's postgresql-client-15)"

work=$(mktemp -d /tmp/poold-soak.XXXXXX)
chmod 755 "$work"
poold_pid= load_pids=()
cleanup() {
    set +e
    trap '' INT TERM
    for pid in "${load_pids[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${load_pids[@]}"; do wait "$pid" 2>/dev/null; done
    if [ -n "$poold_pid" ] && kill -INT "$poold_pid" 2>/dev/null; then
        wait "$poold_pid" 2>/dev/null
    fi
    cluster_stop "$work/pg" 2
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

build_release >&2
PG_MAX_CONNECTIONS=200 cluster_start "$work/pg" "$PG_PORT" 2
log "pgbench -i (scale 5) on the primary"
as_pg pgbench -i -q -s 5 -h "$work/pg" -p "$PG_PORT" -U postgres postgres >"$work/init.log" 2>&1 || die "pgbench -i failed: $(tail -n 5 "$work/init.log")"

cat >"$work/poold.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $POOLD_PORT
unix_socket_directories = '$work'
pcp_socket_dir = '$work'
pcp_port = $((POOLD_PORT + 1))
pcp_listen_addresses = '127.0.0.1'
backend_hostname0 = '127.0.0.1'
backend_port0 = $PG_PORT
backend_weight0 = 1
backend_application_name0 = 'replica0'
backend_hostname1 = '127.0.0.1'
backend_port1 = $((PG_PORT + 1))
backend_weight1 = 1
backend_application_name1 = 'replica1'
backend_hostname2 = '127.0.0.1'
backend_port2 = $((PG_PORT + 2))
backend_weight2 = 1
backend_application_name2 = 'replica2'
num_init_children = 64
max_pool = 4
health_check_period = 5
health_check_user = 'postgres'
sr_check_period = 5
sr_check_user = 'postgres'
ssl = off
pid_file_name = '$work/poold.pid'
logdir = '$work'
log_min_messages = warning
CONF

log "starting Poold on port $POOLD_PORT"
dotnet src/Poold/bin/Release/net10.0/poold.dll -n -f "$work/poold.conf" >"$work/poold.log" 2>&1 &
poold_pid=$!
poold_url="host=127.0.0.1 port=$POOLD_PORT user=postgres dbname=postgres sslmode=disable"
for _ in $(seq 1 150); do
    psql "$poold_url" -qAtc "SELECT 1" >/dev/null 2>&1 && break
    kill -0 "$poold_pid" 2>/dev/null || die "Poold exited: $(tail -n 20 "$work/poold.log")"
    sleep 0.2
done

# The mixed script: a TPC-B-like write transaction, then a read outside it (load-balanced to a replica).
cat >"$work/mixed.sql" <<'SQL'
\set aid random(1, 100000 * :scale)
\set bid random(1, 1 * :scale)
\set tid random(1, 10 * :scale)
\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
END;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
SQL

log "load for $MINUTES min: pgbench -C (churn, mixed + select-only) and a steady pgbench (tpcb-like + select-only, prepared)"
timeout $((duration + 60)) pgbench -n -C -c 4 -j 2 -T "$duration" -f "$work/mixed.sql@1" -b select-only@2 -s 5 \
    "$poold_url" >"$work/churn.log" 2>&1 &
load_pids+=($!)
timeout $((duration + 60)) pgbench -n -c 8 -j 2 -T "$duration" -M prepared -b tpcb-like@1 -b select-only@3 -s 5 \
    "$poold_url" >"$work/steady.log" 2>&1 &
load_pids+=($!)

# One sample: Poold's RSS (MiB), its open fds, and client backends connected over TCP (that is, from Poold) on all nodes.
sample() {
    local rss fds backends=0 i n
    rss=$(awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$poold_pid/status")
    fds=$(find "/proc/$poold_pid/fd" -mindepth 1 -maxdepth 1 | wc -l)
    for i in 0 1 2; do
        n=$(as_pg psql -h "$work/pg" -p $((PG_PORT + i)) -U postgres -d postgres -qAtc \
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND client_addr IS NOT NULL") || n=0
        backends=$((backends + n))
    done
    echo "$rss $fds $backends"
}

samples=()
start=$(date +%s)
elapsed=0
while [ $elapsed -lt $duration ]; do
    # The sampling cadence of the soak, not synchronisation.
    sleep "$SAMPLE_SECONDS"
    kill -0 "$poold_pid" 2>/dev/null || die "Poold died during the soak: $(tail -n 20 "$work/poold.log")"
    elapsed=$(( $(date +%s) - start ))
    s=$(sample)
    samples+=("$elapsed $s")
    log "t=${elapsed}s rss/fds/backends: $s"
done
for pid in "${load_pids[@]}"; do wait "$pid" || log "a pgbench exited with $?"; done
load_pids=()

echo
echo "| t (s) | Poold RSS (MiB) | Poold fds | backend connections |"
echo "|---|---|---|---|"
for row in "${samples[@]}"; do
    set -- $row
    echo "| $1 | $2 | $3 | $4 |"
done
echo
for f in churn steady; do
    printf '%s: %s; %s\n' "$f" "$(grep -E '^tps' "$work/$f.log" | head -n 1)" \
        "$(grep -m 2 -E 'number of (failed|transactions actually processed)' "$work/$f.log" | tr '\n' ' ')"
done

# Verdict: a metric grows when the mean of the last third of the samples exceeds the first third's by more than 10 %
# and by more than an absolute floor (RSS 16 MiB, 8 fds, 8 backends: the noise of a busy pool).
printf '%s\n' "${samples[@]}" | awk '
    { t[NR] = $1; rss[NR] = $2; fds[NR] = $3; be[NR] = $4 }
    function mean(a, from, to,   s, i) { s = 0; for (i = from; i <= to; i++) s += a[i]; return s / (to - from + 1) }
    function judge(name, a, floor,   f, l) {
        f = mean(a, 1, third); l = mean(a, NR - third + 1, NR)
        verdict = (l - f > floor && l > f * 1.10) ? "GROWS" : "flat"
        if (verdict == "GROWS") bad = 1
        printf "%s: first third %.1f, last third %.1f: %s\n", name, f, l, verdict
    }
    END {
        if (NR < 3) { print "verdict: too few samples (" NR ") to judge growth; run longer"; exit 0 }
        third = int(NR / 3)
        judge("RSS (MiB)", rss, 16); judge("fds", fds, 8); judge("backend connections", be, 8)
        print (bad ? "verdict: GROWTH" : "verdict: flat")
        exit bad
    }'
