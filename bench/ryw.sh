#!/usr/bin/env bash
# read_your_writes (issue 20): what the option costs, and where reads go with it. A local PostgreSQL 15 primary and two
# streaming replicas (synchronous_commit on, the default; LAG_MS > 0 makes replica 2 apply WAL that late with
# recovery_min_apply_delay); two Poolds in front, identical but for read_your_writes (off / session), backend weights
# 0/1/1 so every balanced read goes to a standby; pgbench through each, rounds interleaved, median of the rounds.
#
#   workloads: tpcb (pgbench's TPC-B, 8 clients), write-read (UPDATE a row, then SELECT it at once, autocommit,
#   8 clients, simple and extended protocol), select (-S, sessions that never write).
#   direct and direct+lsn: TPC-B against the primary, without and with the extra SELECT pg_current_wal_insert_lsn() per
#   transaction that the option sends: the server's share of the option's cost, Poold aside.
#
#   DURATION (10) seconds per run, ROUNDS (3), SCALE (10), LAG_MS (0), BASE_PORT (26432).
#
# "reads on standbys" is the share of the workload's reads that Poold routed to nodes 1 and 2, from
# poold_routing_decisions_total (the write-read script has one read per transaction; TPC-B's read follows a write in its
# transaction, so it goes to the primary either way). Writes a markdown table to bench/results/. Stops what it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
. scripts/cluster.sh
. bench/lib.sh

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
SCALE=${SCALE:-10}
LAG_MS=${LAG_MS:-0}
BASE_PORT=${BASE_PORT:-26432}
DIRECT_PORT=$BASE_PORT
OFF_PORT=$((BASE_PORT + 10))
ON_PORT=$((BASE_PORT + 11))
USER_NAME=bench
USER_PASSWORD=bench

ensure_dotnet
ensure_postgres
work=$(mktemp -d /tmp/poold-ryw.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() { bench_stop 2; }
trap cleanup EXIT
trap 'exit 130' INT TERM

build_release
cluster_start "$work/pg" "$DIRECT_PORT" 2
cluster_sql "$work/pg" "$DIRECT_PORT" "CREATE ROLE $USER_NAME LOGIN SUPERUSER PASSWORD '$USER_PASSWORD'"
cluster_sql "$work/pg" "$DIRECT_PORT" "CREATE DATABASE $USER_NAME OWNER $USER_NAME"
if [ "$LAG_MS" -gt 0 ]; then
    cluster_sql "$work/pg" "$((DIRECT_PORT + 2))" "ALTER SYSTEM SET recovery_min_apply_delay = '${LAG_MS}ms'"
    cluster_sql "$work/pg" "$((DIRECT_PORT + 2))" "SELECT pg_reload_conf()"
fi
bench_data "$DIRECT_PORT" "$SCALE"

bench_secrets

declare -A pid_of=()
start_poold() { # NAME PORT READ_YOUR_WRITES
    local name=$1 port=$2
    mkdir -p "$work/$name"
    cat >"$work/$name/poold.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$work/$name'
pcp_listen_addresses = ''
pcp_socket_dir = '$work/$name'
pcp_port = $((port + 10))
metrics_listen_addresses = '127.0.0.1'
metrics_port = $((port + 20))
$(for i in 0 1 2; do w=1; [ "$i" = 0 ] && w=0
  printf "backend_hostname%s = '127.0.0.1'\nbackend_port%s = %s\nbackend_weight%s = %s\n" "$i" "$i" "$((DIRECT_PORT + i))" "$i" "$w"; done)
num_init_children = 64
max_pool = 4
enable_pool_hba = on
pool_passwd = '$work/pool_passwd'
ssl = off
pid_file_name = '$work/$name/poold.pid'
logdir = '$work/$name'
log_min_messages = warning
health_check_period = 0
sr_check_period = 0
sr_check_user = '$USER_NAME'
sr_check_password = ''
sr_check_database = '$USER_NAME'
read_your_writes = $3
CONF
    cp "$work/pool_hba.conf" "$work/$name/pool_hba.conf"
    dotnet src/Poold/bin/Release/net10.0/poold.dll -n -f "$work/$name/poold.conf" -k "$work/pgpoolkey" >"$work/$name/out.log" 2>&1 &
    local pid=$!
    pids+=("$pid")
    wait_ready "$name" "$port" "$pid"
    pid_of[$name]=$pid
}

start_poold poold-off "$OFF_PORT" off
start_poold poold-ryw "$ON_PORT" session

cat >"$work/write-read.sql" <<'SQL'
\set aid random(1, 100000 * :scale)
\set delta random(-5000, 5000)
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
SQL
cat >"$work/tpcb-lsn.sql" <<'SQL'
\set aid random(1, 100000 * :scale)
\set bid random(1, 1 * :scale)
\set tid random(1, 10 * :scale)
\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
END;
SELECT pg_current_wal_insert_lsn();
SQL

# CPU time (clock ticks) of a process and all its descendants, with the children it has reaped (as compare.sh).
cpu_ticks_of_tree() { # PID...
    local pids=" $* " frontier="$*" next pid child ticks total=0
    while [ -n "$frontier" ]; do
        next=""
        for pid in $frontier; do
            for child in $(pgrep -P "$pid" 2>/dev/null); do pids+="$child "; next+="$child "; done
        done
        frontier=$next
    done
    for pid in $pids; do
        ticks=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13 + $14 + $15}')
        total=$((total + ${ticks:-0}))
    done
    echo "$total"
}
clock_ticks=$(getconf CLK_TCK)
postmasters="$(for i in 0 1 2; do head -1 "$work/pg/node$i/postmaster.pid"; done | tr '\n' ' ')"

# Statements Poold routed to the standbys (nodes 1 and 2) so far.
standby_decisions() { # METRICS_PORT
    python3 - "http://127.0.0.1:$1/metrics" <<'PY'
import re, sys, urllib.request
text = urllib.request.urlopen(sys.argv[1], timeout=5).read().decode()
total = 0.0
for m in re.finditer(r'^poold_routing_decisions_total\{([^}]*)\} ([0-9.e+]+)$', text, re.M):
    if re.search(r'node="[12]"', m.group(1)):
        total += float(m.group(2))
print(int(total))
PY
}

declare -A port_of=([direct]=$DIRECT_PORT [direct+lsn]=$DIRECT_PORT [poold-off]=$OFF_PORT [poold-ryw]=$ON_PORT)
declare -A metrics_of=([poold-off]=$((OFF_PORT + 20)) [poold-ryw]=$((ON_PORT + 20)))
runs=("tpcb:direct:-c 8 -j 2" "tpcb:direct+lsn:-c 8 -j 2 -f $work/tpcb-lsn.sql"
      "tpcb:poold-off:-c 8 -j 2" "tpcb:poold-ryw:-c 8 -j 2"
      "write-read-simple:poold-off:-c 8 -j 2 -M simple -f $work/write-read.sql" "write-read-simple:poold-ryw:-c 8 -j 2 -M simple -f $work/write-read.sql"
      "write-read-extended:poold-off:-c 8 -j 2 -M extended -f $work/write-read.sql" "write-read-extended:poold-ryw:-c 8 -j 2 -M extended -f $work/write-read.sql"
      "select:poold-off:-S -c 8 -j 2" "select:poold-ryw:-S -c 8 -j 2")

log "warm-up: 3 s of each run"
for run in "${runs[@]}"; do
    IFS=: read -r _ target args <<<"$run"
    PGPASSWORD=$USER_PASSWORD timeout 60 pgbench -h 127.0.0.1 -p "${port_of[$target]}" -U "$USER_NAME" $args -T 3 -n "$USER_NAME" \
        >/dev/null 2>&1 || true
done

results=$work/results.tsv
: >"$results"
for round in $(seq 1 "$ROUNDS"); do
    for run in "${runs[@]}"; do
        IFS=: read -r workload target args <<<"$run"
        before=0
        [ -n "${metrics_of[$target]:-}" ] && before=$(standby_decisions "${metrics_of[$target]}")
        pg_before=$(cpu_ticks_of_tree $postmasters)
        proxy_before=0
        [ -n "${pid_of[$target]:-}" ] && proxy_before=$(cpu_ticks_of_tree "${pid_of[$target]}")
        out=$(PGPASSWORD=$USER_PASSWORD timeout $((DURATION * 3 + 60)) pgbench -h 127.0.0.1 -p "${port_of[$target]}" -U "$USER_NAME" \
            $args -T "$DURATION" -n "$USER_NAME" 2>&1) || true
        tps=$(printf '%s\n' "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
        lat=$(printf '%s\n' "$out" | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' | head -1)
        done_tx=$(printf '%s\n' "$out" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' | head -1)
        share="-" pg_cpu="-" proxy_cpu="-"
        if [ "${done_tx:-0}" -gt 0 ]; then
            # CPU per transaction, in microseconds: all PostgreSQL processes of the three nodes, and the Poold process.
            pg_cpu=$(( ($(cpu_ticks_of_tree $postmasters) - pg_before) * 1000000 / clock_ticks / done_tx ))
            [ -n "${pid_of[$target]:-}" ] && proxy_cpu=$(( ($(cpu_ticks_of_tree "${pid_of[$target]}") - proxy_before) * 1000000 / clock_ticks / done_tx ))
        fi
        if [ -n "${metrics_of[$target]:-}" ] && [ "${done_tx:-0}" -gt 0 ]; then
            after=$(standby_decisions "${metrics_of[$target]}")
            # One read per transaction in write-read and select; TPC-B's read is in its writing transaction.
            share=$(python3 -c "print(f'{100 * ($after - $before) / $done_tx:.1f}')")
        fi
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$workload" "$target" "${tps:-0}" "${lat:-0}" "$share" "$pg_cpu" "$proxy_cpu" >>"$results"
        log "round $round $workload $target: tps=${tps:-FAILED} latency=${lat:-?} ms reads on standbys=${share}% PostgreSQL CPU/tx=${pg_cpu} us Poold CPU/tx=${proxy_cpu} us"
    done
done

cores=$(nproc)
load=$(cut -d' ' -f1-3 /proc/loadavg)
mkdir -p bench/results
report=bench/results/$(date +%Y-%m-%d)-ryw-${cores}cores.md
python3 - "$results" "$cores" "$ROUNDS" "$DURATION" "$LAG_MS" "$load" >"$report" <<'PY'
import sys, statistics, collections, datetime
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
cores, rounds, duration, lag, load = sys.argv[2:7]
tps = collections.defaultdict(list); lat = collections.defaultdict(list); share = collections.defaultdict(list)
pg = collections.defaultdict(list); proxy = collections.defaultdict(list)
for _, w, t, x, l, s, c, p in rows:
    tps[(w, t)].append(float(x)); lat[(w, t)].append(float(l))
    if s != "-": share[(w, t)].append(float(s))
    if c != "-": pg[(w, t)].append(int(c))
    if p != "-": proxy[(w, t)].append(int(p))
med = lambda xs: f"{statistics.median(xs):.0f}" if xs else "-"
print(f"# read_your_writes benchmark, {datetime.date.today()}, {cores} cores (load average at the end: {load})\n")
print(f"Median of {rounds} interleaved rounds, {duration} s per pgbench run after a warm-up; local PostgreSQL 15 primary + 2 streaming "
      f"replicas, synchronous_commit on; replica 2 recovery_min_apply_delay = {lag} ms; Poold weights 0/1/1 (reads to standbys only), "
      "read_your_writes off (poold-off) or session (poold-ryw), read_your_writes_wait = 0, poll interval 20 ms; 8 clients.\n")
print("CPU per transaction is user + system time during the run divided by the transactions: all PostgreSQL processes of the "
      "three nodes, and the Poold process; it depends far less than TPS on what else the machine runs.\n")
print("| workload | target | TPS | avg latency (ms) | reads on standbys | TPS vs off | PostgreSQL CPU/tx (µs) | Poold CPU/tx (µs) |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for w in dict.fromkeys(r[1] for r in rows):
    for t in dict.fromkeys(r[2] for r in rows if r[1] == w):
        m = statistics.median(tps[(w, t)])
        base = "poold-off" if t.startswith("poold") else "direct"
        ratio = f"{m / statistics.median(tps[(w, base)]):.3f}x" if tps[(w, base)] and t != base else "-"
        s = f"{statistics.median(share[(w, t)]):.1f}%" if share[(w, t)] else "-"
        print(f"| {w} | {t} | {m:.0f} | {statistics.median(lat[(w, t)]):.2f} | {s} | {ratio} | {med(pg[(w, t)])} | {med(proxy[(w, t)])} |")
PY
cat "$report"
log "written to $report"
