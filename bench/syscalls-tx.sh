#!/usr/bin/env bash
# System calls per transaction through Poold in transaction mode, with Poold's own I/O layer (POOLD_IO_ENGINE=epoll,
# the default) and with .NET's (POOLD_IO_ENGINE=dotnet): `strace -c -f -p PID` over `pgbench -S -M simple -c CLIENTS
# -j 2 -t TX` after a warm-up, one local PostgreSQL 15 primary, SCRAM, no TLS. strace slows the proxy: only the counts
# are meant. Prints a markdown table per engine. Everything it starts, it stops.
# Then, without strace, DURATION seconds of the same pgbench: transactions per second and Poold's CPU time (user +
# system, /proc/PID/stat) per transaction.
#   CLIENTS (50), TX (200) transactions per client, POOL_SIZE (20), WARMUP (5) and DURATION (10) seconds, BASE_PORT (28432).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
. scripts/cluster.sh
. bench/lib.sh

CLIENTS=${CLIENTS:-50}
TX=${TX:-200}
POOL_SIZE=${POOL_SIZE:-20}
WARMUP=${WARMUP:-5}
DURATION=${DURATION:-10}
BASE_PORT=${BASE_PORT:-28432}
POOLD_PORT=$((BASE_PORT + 10))
USER_NAME=bench
USER_PASSWORD=bench

ensure_dotnet
ensure_postgres
command -v strace >/dev/null || die "strace is required"
work=$(mktemp -d /tmp/poold-syscalls.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() { bench_stop 0; }
trap cleanup EXIT
trap 'exit 130' INT TERM

build_release
cluster_start "$work/pg" "$BASE_PORT" 0
cluster_sql "$work/pg" "$BASE_PORT" "CREATE ROLE $USER_NAME LOGIN PASSWORD '$USER_PASSWORD'"
cluster_sql "$work/pg" "$BASE_PORT" "CREATE DATABASE $USER_NAME OWNER $USER_NAME"
bench_data "$BASE_PORT" 1
bench_secrets

cat >"$work/poold.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $POOLD_PORT
unix_socket_directories = '$work'
pcp_listen_addresses = ''
pcp_socket_dir = '$work'
pcp_port = $((POOLD_PORT + 10))
backend_hostname0 = '127.0.0.1'
backend_port0 = $BASE_PORT
pool_mode = transaction
default_pool_size = $POOL_SIZE
enable_pool_hba = on
pool_passwd = '$work/pool_passwd'
ssl = off
pid_file_name = '$work/poold.pid'
logdir = '$work'
log_min_messages = warning
sr_check_period = 0
health_check_period = 0
CONF

for engine in epoll dotnet; do
    POOLD_IO_ENGINE=$engine dotnet src/Poold/bin/Release/net10.0/poold.dll -n -f "$work/poold.conf" -a "$work/pool_hba.conf" \
        -k "$work/pgpoolkey" >"$work/out-$engine.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    wait_ready Poold "$POOLD_PORT" "$pid"
    PGPASSWORD=$USER_PASSWORD pgbench -h 127.0.0.1 -p "$POOLD_PORT" -U "$USER_NAME" -S -M simple -c "$CLIENTS" -j 2 -T "$WARMUP" \
        "$USER_NAME" >/dev/null 2>&1 || die "warm-up failed"
    strace -c -f -p "$pid" -o "$work/strace-$engine.txt" &
    strace_pid=$!
    sleep 1
    PGPASSWORD=$USER_PASSWORD pgbench -h 127.0.0.1 -p "$POOLD_PORT" -U "$USER_NAME" -S -M simple -c "$CLIENTS" -j 2 -t "$TX" \
        "$USER_NAME" >"$work/pgbench-$engine.txt" 2>&1 || die "pgbench failed (see $work/pgbench-$engine.txt)"
    kill -INT "$strace_pid"
    wait "$strace_pid" || true
    total=$((CLIENTS * TX))
    printf '\n### POOLD_IO_ENGINE=%s: calls per transaction (%s transactions; logins included)\n\n| syscall | calls | errors | per tx |\n|---|---:|---:|---:|\n' \
        "$engine" "$total"
    awk -v total="$total" '$1 ~ /^[0-9.]+$/ && NF >= 5 {
            name = $NF; calls = $4; errors = (NF == 6) ? $5 : 0;
            if (calls / total >= 0.01) printf "| %s | %d | %d | %.2f |\n", name, calls, errors, calls / total }
        $1 == "total" { printf "| total | %d | %d | %.2f |\n", $3, $4, $3 / total }' "$work/strace-$engine.txt"
    ticks() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
    before=$(ticks)
    PGPASSWORD=$USER_PASSWORD pgbench -h 127.0.0.1 -p "$POOLD_PORT" -U "$USER_NAME" -S -M simple -c "$CLIENTS" -j 2 -T "$DURATION" \
        "$USER_NAME" >"$work/pgbench-T-$engine.txt" 2>&1 || die "pgbench failed (see $work/pgbench-T-$engine.txt)"
    after=$(ticks)
    done_tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$work/pgbench-T-$engine.txt")
    tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$work/pgbench-T-$engine.txt")
    printf '\nWithout strace, %s s: %s tps, Poold CPU %s us per transaction\n' "$DURATION" "$tps" \
        "$(awk -v t="$((after - before))" -v hz="$(getconf CLK_TCK)" -v n="$done_tx" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')"
    kill -TERM "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
done
