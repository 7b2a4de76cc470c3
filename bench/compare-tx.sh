#!/usr/bin/env bash
# Transaction pooling benchmark: Poold (pool_mode = transaction) vs PgBouncer (pool_mode = transaction), both with
# default_pool_size = POOL_SIZE server connections, many more clients than that (CLIENTS), in front of the same local
# primary and two streaming replicas. Same secrets as bench/compare.sh (SCRAM-SHA-256 from pool_passwd/userlist, no TLS).
#
# Targets:
#   poold-tx-primary  Poold, pool_mode = transaction, load_balance_mode = off: everything to the primary, as PgBouncer
#   poold-tx-lb       Poold, pool_mode = transaction, load_balance_mode = on: reads over the three nodes (equal weights)
#   pgbouncer-tx      PgBouncer, pool_mode = transaction, to the primary
# Workloads (each at every CLIENTS count): pgbench -S -M simple, -S -M extended, -S -M prepared (Poold only: PgBouncer
# 1.18 cannot run -M prepared in transaction mode; a short probe records its error), TPC-B (-M simple, all targets;
# -M prepared, Poold only).
#
# Each figure is the median of the rounds (targets interleaved round by round, after a warm-up). p99 latency comes from
# pgbench's per-transaction log (-l: every transaction's latency, no sampling), computed here. Proxy CPU is the user +
# system time of the proxy process during the run divided by the transactions done; proxy memory is VmRSS and PSS
# (/proc/PID/smaps_rollup) right after each run, and VmHWM (peak RSS since start) at the end. Failed = pgbench's
# "number of failed transactions" plus clients that aborted (an error outside serialization/deadlock aborts a client).
#
#   DURATION (10) seconds per pgbench run, ROUNDS (3), WARMUP (10) seconds of each workload (but TPC-B -M prepared) per target first,
#   SCALE (10), CLIENTS ("200 1000"), POOL_SIZE (20), THREADS (2) pgbench -j, CONNECTS_PER_SECOND (100): pgbench's -T
#   includes the clients' logins (SCRAM), so each run gets DURATION + clients / CONNECTS_PER_SECOND seconds
#   (pgbench's TPS leaves the connection time out), BASE_PORT (27432) first PostgreSQL port; the proxies use the ports after it;
#   BENCH_NOTE: a sentence on the machine's state during the run, put in the report; WORKLOADS (all): the workloads
#   to run, by name (select-simple select-extended select-prepared tpcb-simple tpcb-prepared); POOLD_IO_THREADS (unset:
#   Poold's default, one event thread per core up to four) is passed on to both Poold targets.
#
# Prints a markdown report and writes it to bench/results/. Everything it starts, it stops.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
. scripts/cluster.sh
. bench/lib.sh

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
# Poold's JIT (tiered, with PGO) needs tens of thousands of transactions to reach its final code; on a loaded 2-core
# machine 3 s were not enough (the proxy CPU per transaction kept falling over the first three 8-s runs).
WARMUP=${WARMUP:-10}
SCALE=${SCALE:-10}
CLIENTS=${CLIENTS:-"200 1000"}
POOL_SIZE=${POOL_SIZE:-20}
THREADS=${THREADS:-2}
CONNECTS_PER_SECOND=${CONNECTS_PER_SECOND:-100}
BASE_PORT=${BASE_PORT:-27432}
DIRECT_PORT=$BASE_PORT
POOLD_PRIMARY_PORT=$((BASE_PORT + 10))
POOLD_LB_PORT=$((BASE_PORT + 11))
PGBOUNCER_PORT=$((BASE_PORT + 12))
USER_NAME=bench
USER_PASSWORD=bench
command_line="${POOLD_IO_THREADS:+POOLD_IO_THREADS=$POOLD_IO_THREADS }DURATION=$DURATION ROUNDS=$ROUNDS SCALE=$SCALE CLIENTS=\"$CLIENTS\" POOL_SIZE=$POOL_SIZE THREADS=$THREADS${WORKLOADS:+ WORKLOADS=\"$WORKLOADS\"} bench/compare-tx.sh"

max_clients=0
for c in $CLIENTS; do [ "$c" -gt "$max_clients" ] && max_clients=$c; done

ensure_dotnet
ensure_postgres
ensure_peers
# 1,000 clients: pgbench holds one socket per client, each proxy one per client plus its pools.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -gt $((max_clients * 2 + 200)) ] || die "open-file limit $(ulimit -n) is too low for $max_clients clients"
[ -x /usr/sbin/pgbouncer ] || die "PgBouncer is required (apt-get install -y pgbouncer)"

work=$(mktemp -d /tmp/poold-bench-tx.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() { bench_stop 2; }
trap cleanup EXIT
trap 'exit 130' INT TERM

build_release

# The pools are small (POOL_SIZE per node per proxy); the default max_connections is plenty.
export PG_MAX_CONNECTIONS=300
cluster_start "$work/pg" "$DIRECT_PORT" 2
cluster_sql "$work/pg" "$DIRECT_PORT" "CREATE ROLE $USER_NAME LOGIN PASSWORD '$USER_PASSWORD'"
cluster_sql "$work/pg" "$DIRECT_PORT" "CREATE DATABASE $USER_NAME OWNER $USER_NAME"
bench_data "$DIRECT_PORT" "$SCALE"

# ---- the shared secrets, as bench/compare.sh ----
bench_secrets

start_poold_tx() { # NAME PORT LOAD_BALANCE
    local name=$1 port=$2 balance=$3
    mkdir -p "$work/$name"
    cat >"$work/$name/poold.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$work/$name'
pcp_listen_addresses = ''
pcp_socket_dir = '$work/$name'
pcp_port = $((port + 10))
load_balance_mode = $balance
$(bench_backends "$DIRECT_PORT")
pool_mode = transaction
default_pool_size = $POOL_SIZE
max_client_conn = $((max_clients + 100))
max_unauthenticated_connections = $((max_clients + 100))
enable_pool_hba = on
pool_passwd = '$work/pool_passwd'
ssl = off
pid_file_name = '$work/$name/poold.pid'
logdir = '$work/$name'
log_min_messages = warning
sr_check_period = 0
health_check_period = 0
CONF
    cp "$work/pool_hba.conf" "$work/$name/pool_hba.conf"
    dotnet src/Poold/bin/Release/net10.0/poold.dll -n -f "$work/$name/poold.conf" -k "$work/pgpoolkey" >"$work/$name/out.log" 2>&1 &
    local pid=$!
    pids+=("$pid")
    wait_ready Poold "$port" "$pid"
    printf -v "${name//-/_}_pid" '%s' "$pid"
}

start_pgbouncer_tx() {
    mkdir -p "$work/pgbouncer-tx"
    cat >"$work/pgbouncer-tx/pgbouncer.ini" <<CONF
[databases]
$USER_NAME = host=127.0.0.1 port=$DIRECT_PORT dbname=$USER_NAME

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGBOUNCER_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $work/userlist.txt
pool_mode = transaction
max_client_conn = $((max_clients + 100))
default_pool_size = $POOL_SIZE
logfile = $work/pgbouncer-tx/pgbouncer.log
pidfile = $work/pgbouncer-tx/pgbouncer.pid
CONF
    chown -R postgres:postgres "$work/pgbouncer-tx" 2>/dev/null || true
    if [ "$(id -u)" -eq 0 ]; then
        setpriv --reuid=postgres --regid=postgres --init-groups /usr/sbin/pgbouncer "$work/pgbouncer-tx/pgbouncer.ini" \
            >"$work/pgbouncer-tx/out.log" 2>&1 &
    else
        /usr/sbin/pgbouncer "$work/pgbouncer-tx/pgbouncer.ini" >"$work/pgbouncer-tx/out.log" 2>&1 &
    fi
    pgbouncer_tx_pid=$!
    pids+=("$pgbouncer_tx_pid")
    wait_ready PgBouncer "$PGBOUNCER_PORT" "$pgbouncer_tx_pid"
}

log "starting the proxies"
start_poold_tx poold-tx-primary "$POOLD_PRIMARY_PORT" off
start_poold_tx poold-tx-lb "$POOLD_LB_PORT" on
start_pgbouncer_tx

declare -A port_of=([poold-tx-primary]=$POOLD_PRIMARY_PORT [poold-tx-lb]=$POOLD_LB_PORT [pgbouncer-tx]=$PGBOUNCER_PORT)
declare -A pid_of=([poold-tx-primary]=$poold_tx_primary_pid [poold-tx-lb]=$poold_tx_lb_pid [pgbouncer-tx]=$pgbouncer_tx_pid)
declare -A log_of=([poold-tx-primary]="$work/poold-tx-primary" [poold-tx-lb]="$work/poold-tx-lb" [pgbouncer-tx]="$work/pgbouncer-tx")
all_targets="poold-tx-primary poold-tx-lb pgbouncer-tx"
poold_targets="poold-tx-primary poold-tx-lb"
# NAME:PGBENCH ARGS:TARGETS
workloads=("select-simple:-S -M simple:$all_targets" "select-extended:-S -M extended:$all_targets"
           "select-prepared:-S -M prepared:$poold_targets" "tpcb-simple:-M simple:$all_targets"
           "tpcb-prepared:-M prepared:$poold_targets")
if [ -n "${WORKLOADS:-}" ]; then
    # Only the workloads named (a profiling run): WORKLOADS="select-simple tpcb-simple".
    kept=()
    for workload in "${workloads[@]}"; do
        [[ " $WORKLOADS " == *" ${workload%%:*} "* ]] && kept+=("$workload")
    done
    [ ${#kept[@]} -gt 0 ] || die "WORKLOADS=\"$WORKLOADS\" names none of: select-simple select-extended select-prepared tpcb-simple tpcb-prepared"
    workloads=("${kept[@]}")
fi
clock_ticks=$(getconf CLK_TCK)

cpu_ticks() { # PID: utime + stime (+ reaped children) of one process
    sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13 + $14 + $15}'
}
mem_kib() { # PID FIELD: VmRSS / VmHWM from status, Pss from smaps_rollup (kB)
    if [ "$2" = Pss ]; then awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0
    else awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; fi
}

# p99, p50 and the count of numeric latencies (µs) in pgbench's per-transaction logs: field 3 is the latency, or
# "failed" / "skipped" for transactions that did not complete.
percentiles() { # LOG_PREFIX
    python3 - "$1" <<'PY'
import glob, sys
lat = []
for path in glob.glob(sys.argv[1] + ".*"):
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) > 2 and parts[2].isdigit():
                lat.append(int(parts[2]))
lat.sort()
if not lat:
    print("- - 0")
else:
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] / 1000
    print(f"{pick(0.50):.2f} {pick(0.99):.2f} {len(lat)}")
PY
}

# Not measured: every target serves each workload (but TPC-B -M prepared, see its note) at the first client count for
# a few seconds first, so Poold's JIT has produced its optimised code (tiered compilation) before round 1. (A run of
# TPC-B alone used to get no warm-up at all.)
first_clients=${CLIENTS%% *}
log "warm-up: $WARMUP s of each workload through each target at $first_clients clients"
for workload in "${workloads[@]}"; do
    name=${workload%%:*}; rest=${workload#*:}; args=${rest%%:*}; targets=${rest#*:}
    [ "$name" != tpcb-prepared ] || continue
    for target in $targets; do
        PGPASSWORD=$USER_PASSWORD timeout 120 pgbench -h 127.0.0.1 -p "${port_of[$target]}" -U "$USER_NAME" $args \
            -c "$first_clients" -j "$THREADS" -T "$WARMUP" -n "$USER_NAME" >/dev/null 2>&1 || true
    done
done

# PgBouncer 1.18 in transaction mode and -M prepared: record what happens (a short run, few clients).
probe=$(PGPASSWORD=$USER_PASSWORD timeout 60 pgbench -h 127.0.0.1 -p "$PGBOUNCER_PORT" -U "$USER_NAME" -S -M prepared -c 4 -j 1 \
    -T 2 -n "$USER_NAME" 2>&1 || true)
pgbouncer_prepared=$(printf '%s\n' "$probe" | grep -m1 -E 'ERROR|error|aborted' || true)
pgbouncer_prepared_tps=$(printf '%s\n' "$probe" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
pgbouncer_prepared_failed=$(printf '%s\n' "$probe" | sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' | head -1)
pgbouncer_prepared_aborted=$(printf '%s\n' "$probe" | grep -c 'aborted in command' || true)
printf '%s\t%s\t%s\t%s\n' "${pgbouncer_prepared:-no error}" "${pgbouncer_prepared_tps:-0}" "${pgbouncer_prepared_failed:-?}" \
    "$pgbouncer_prepared_aborted" >"$work/probe.tsv"
log "PgBouncer -M prepared probe: ${pgbouncer_prepared:-no error} (tps ${pgbouncer_prepared_tps:-0}, $pgbouncer_prepared_aborted clients aborted)"

results=$work/results.tsv
: >"$results"
mkdir -p "$work/runs"
for round in $(seq 1 "$ROUNDS"); do
    for clients in $CLIENTS; do
        for workload in "${workloads[@]}"; do
            name=${workload%%:*}; rest=${workload#*:}; args=${rest%%:*}; targets=${rest#*:}
            for target in $targets; do
                proxy=${pid_of[$target]}
                kill -0 "$proxy" 2>/dev/null || die "$target (pid $proxy) is gone: see ${log_of[$target]}"
                tag="$work/runs/r$round-$clients-$name-$target"
                # pgbench prepares each statement with a blocking PQprepare the first time a client runs it: inside
                # TPC-B's transaction, a client of a thread waiting there for a free server connection stops every
                # other client of its thread, including those holding the server connections in their transaction
                # (a client-side deadlock as soon as a thread has more clients than the pool has connections). Each
                # client gets its own thread for TPC-B -M prepared.
                # One thread per client also makes the logins slower: twice the time for them.
                threads=$THREADS slack=$((clients / CONNECTS_PER_SECOND))
                [ "$name" = tpcb-prepared ] && threads=$clients slack=$((clients * 2 / CONNECTS_PER_SECOND))
                before=$(cpu_ticks "$proxy")
                set +e
                PGPASSWORD=$USER_PASSWORD timeout $((DURATION * 3 + 180)) pgbench -h 127.0.0.1 -p "${port_of[$target]}" -U "$USER_NAME" \
                    $args -c "$clients" -j "$threads" -T "$((DURATION + slack))" -n -l --log-prefix="$tag.log" \
                    "$USER_NAME" >"$tag.out" 2>&1
                rc=$?
                set -e
                after=$(cpu_ticks "$proxy")
                rss=$(mem_kib "$proxy" VmRSS); pss=$(mem_kib "$proxy" Pss); hwm=$(mem_kib "$proxy" VmHWM)
                out=$(cat "$tag.out")
                tps=$(printf '%s\n' "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
                lat=$(printf '%s\n' "$out" | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' | head -1)
                failed=$(printf '%s\n' "$out" | sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' | head -1)
                done_tx=$(printf '%s\n' "$out" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' | head -1)
                connect_ms=$(printf '%s\n' "$out" | sed -n 's/^initial connection time = \([0-9.]*\) ms/\1/p' | head -1)
                aborted=$(printf '%s\n' "$out" | grep -c 'aborted in command' || true)
                read -r p50 p99 logged < <(percentiles "$tag.log")
                rm -f "$tag.log".*
                cpu="-"
                [ "${done_tx:-0}" -gt 0 ] && cpu=$(( (after - before) * 1000000 / clock_ticks / done_tx ))
                printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$clients" "$name" "$target" "${tps:-0}" \
                    "${lat:-0}" "$p99" "${failed:-?}" "$aborted" "$cpu" "$rss" "$pss" "$hwm" "$rc" "${done_tx:-0}" "${connect_ms:-?}" >>"$results"
                log "round $round c=$clients $name $target: tps=${tps:-FAILED} avg=${lat:-?} ms p99=$p99 ms failed=${failed:-?}" \
                    "aborted=$aborted proxy CPU/tx=$cpu us RSS=$((rss / 1024)) MiB connect=${connect_ms:-?} ms rc=$rc"
                if [ "$rc" -ne 0 ] || [ "$aborted" -gt 0 ] || [ "${failed:-0}" != 0 ]; then
                    grep -v '^progress' "$tag.out" | grep -m5 -iE 'error|abort|fatal' >&2 || true
                    cp "$tag.out" "$work/failed-r$round-$clients-$name-$target.out"
                fi
            done
        done
    done
done

# ---- the report ----
cores=$(nproc)
mkdir -p bench/results
report=bench/results/$(date +%Y-%m-%d)-tx-${cores}cores.md
{
    python3 - "$results" "$work/probe.tsv" "$cores" "$ROUNDS" "$DURATION" "$POOL_SIZE" "$command_line" "$THREADS" <<'PY'
import os, sys, statistics, collections, datetime
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
probe = open(sys.argv[2]).read().rstrip("\n").split("\t")
cores, rounds, duration, pool, cmd, threads = sys.argv[3:9]
by = collections.defaultdict(list)
for r in rows:
    by[(int(r[1]), r[2], r[3])].append(r)
def med(key, i):
    vals = [float(r[i]) for r in by[key] if r[i] not in ("-", "?", "")]
    return statistics.median(vals) if vals else None
def total(key, i):
    return sum(int(r[i]) for r in by[key] if r[i].isdigit())
clients = sorted({k[0] for k in by}); workloads = list(dict.fromkeys(r[2] for r in rows))
targets = ["poold-tx-primary", "poold-tx-lb", "pgbouncer-tx"]
print(f"# Transaction pooling benchmark, {datetime.date.today()}, {cores} cores\n")
print(f"Command: `{cmd}`\n")
print(f"Median of {rounds} interleaved rounds after a warm-up; pgbench `-j {threads}` (TPC-B -M prepared: one thread per client, see "
      f"below), `-n`, `-T` = {duration} s + clients / 100 s (TPC-B -M prepared: clients / 50 s; pgbench's -T includes the logins, its TPS leaves them out); "
      "local PostgreSQL 15 primary + 2 streaming replicas, scale 10; SCRAM-SHA-256, no TLS. "
      f"Poold and PgBouncer 1.18 in `pool_mode = transaction` with `default_pool_size = {pool}`. "
      "poold-tx-primary (load_balance_mode = off) and pgbouncer-tx send everything to the primary; poold-tx-lb balances "
      "reads over the three nodes (20 server connections per node).\n")
print("pgbench, the proxies and the three PostgreSQL servers share this machine's cores: compare targets within one run "
      "(they are interleaved), not across runs or machines. " + os.environ.get("BENCH_NOTE", "") + "\n")
print("- p99: 99th percentile of every transaction's latency from pgbench's per-transaction log (`-l`, no sampling).\n"
      "- failed: pgbench's failed transactions plus aborted clients (summed over the rounds).\n"
      "- proxy CPU: user + system time of the proxy process during the run, per transaction.\n"
      "- RSS / PSS: the proxy right after the run (median); peak: VmHWM at the end of the last round.\n"
      "- connect: pgbench's initial connection time (all clients' SCRAM logins through the proxy, median).\n"
      "- TPC-B -M prepared runs with one pgbench thread per client: pgbench prepares each statement with a blocking "
      "PQprepare the first time a client runs it, so inside TPC-B's transaction a client waiting there for a free server "
      "connection stops every other client of its thread, including those holding the pool's connections in their "
      "transaction: with more clients per thread than server connections, pgbench deadlocks itself (seen in a validation "
      "run with -j 2: clients aborted by query_wait_timeout; reproduced with 4 clients, -j 1, default_pool_size = 2; "
      "-j 4 runs). Not a proxy defect, but the TPC-B -M prepared figures are not directly comparable to the -j 2 rows.\n")
print("| clients | workload | target | TPS | avg lat (ms) | p99 (ms) | failed | proxy CPU/tx (µs) | RSS (MiB) | PSS (MiB) | peak RSS (MiB) | connect (ms) | vs PgBouncer |")
print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for c in clients:
    for w in workloads:
        for t in targets:
            k = (c, w, t)
            if not by[k]: continue
            tps = med(k, 4)
            base = None
            if w.startswith("select"):
                # PgBouncer's best select mode (simple or extended) at this client count.
                cand = [med((c, m, "pgbouncer-tx"), 4) for m in ("select-simple", "select-extended")]
                cand = [x for x in cand if x]
                same = med((c, w, "pgbouncer-tx"), 4)
                base = same if same else (max(cand) if cand else None)
            else:
                base = med((c, w, "pgbouncer-tx"), 4) or med((c, "tpcb-simple", "pgbouncer-tx"), 4)
            ratio = f"{tps / base:.2f}x" if base and tps is not None else "-"
            failed = total(k, 7) + total(k, 8)
            cpu = med(k, 9); rss = med(k, 10); pss = med(k, 11)
            hwm = int(by[k][-1][12]) if by[k][-1][12].isdigit() else 0
            fmt = lambda x, f: f.format(x) if x is not None else "-"
            print(f"| {c} | {w} | {t} | {fmt(tps, '{:.0f}')} | {fmt(med(k, 5), '{:.2f}')} | {fmt(med(k, 6), '{:.2f}')} | {failed} | "
                  f"{fmt(cpu, '{:.0f}')} | {fmt(rss and rss / 1024, '{:.0f}')} | {fmt(pss and pss / 1024, '{:.0f}')} | {hwm // 1024} | "
                  f"{fmt(med(k, 15), '{:.0f}')} | {ratio} |")
print("\nvs PgBouncer: the same workload through pgbouncer-tx; for -S -M prepared, PgBouncer's best select mode (simple or "
      "extended) at that client count; for TPC-B -M prepared, PgBouncer's TPC-B -M simple.\n")
print("## Goal: at least 1.0x PgBouncer's TPS at equal pool size (poold-tx-primary vs pgbouncer-tx), 0 failed\n")
for c in clients:
    for w in ("select-simple", "select-extended", "tpcb-simple"):
        a, b = med((c, w, "poold-tx-primary"), 4), med((c, w, "pgbouncer-tx"), 4)
        if a and b:
            f = total((c, w, "poold-tx-primary"), 7) + total((c, w, "poold-tx-primary"), 8)
            verdict = "met" if a >= b and f == 0 else "NOT met"
            print(f"- {c} clients, {w}: {a / b:.2f}x, {f} failed: {verdict}")
print(f"\nPgBouncer 1.18 with `-S -M prepared` (probe, 4 clients, 2 s): first error: `{probe[0]}`; "
      f"tps {probe[1]}, {probe[3]} clients aborted.")
PY
    if ls "$work"/failed-*.out >/dev/null 2>&1; then
        printf '\n## Runs with errors\n\n'
        for f in "$work"/failed-*.out; do
            printf '### %s\n\n```\n' "$(basename "$f" .out)"
            grep -v '^progress' "$f" | grep -iE 'error|abort|fatal|failed' | sort | uniq -c | sort -rn | head -10
            printf '```\n\n'
        done
        for t in poold-tx-primary poold-tx-lb; do
            printf '### %s log (warnings and errors, last 30)\n\n```\n' "$t"
            cat "${log_of[$t]}"/*.log 2>/dev/null | tr -d '\0' | grep -aiE 'warn|error|fatal|exception' | tail -30
            printf '```\n\n'
        done
    fi
} >"$report"
cat "$report"
log "written to $report"
