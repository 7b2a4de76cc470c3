#!/usr/bin/env bash
# Where a transaction's CPU goes, Poold against PgBouncer, with everything else held still: one local PostgreSQL
# primary (no replicas), Poold with load_balance_mode = off and PgBouncer, both in POOL_MODE, SCRAM, no TLS; pgbench
# -S (or TPC-B: WORKLOAD) -M MODE -c CLIENTS -j 2. For each of Poold's event-thread counts in IO_THREADS (POOLD_IO_THREADS; a fresh Poold
# each), ROUNDS rounds of RUN seconds through Poold then PgBouncer, after WARMUP seconds through each.
#
# Per transaction (a run's CPU divided by the transactions pgbench made, logins included): the proxy's CPU (user +
# system, all threads), its voluntary and involuntary context switches (per 100), pgbench's own CPU, and the whole
# machine's busy time (every process: proxy, pgbench, PostgreSQL). PERF=record adds `perf record -g` of 8 s of the
# last round of each proxy (/tmp/poold-perf-*.data, JIT symbols from /tmp/perf-PID.map); PERF=stat counts system
# calls instead, PERF=pgbench pgbench's own (its waits, reads and writes per transaction), PERF=pgbench-record a profile of pgbench,
# PERF=system a profile of the whole machine (/tmp/poold-perf-system-*.data: `perf report --sort comm` splits it by process).
#
#   POOL_MODE (session), WORKLOAD (select: pgbench -S; tpcb: its built-in TPC-B-like script), MODE (simple), CLIENTS (16), IO_THREADS ("1 2"), ROUNDS (2), RUN (15), WARMUP (10),
#   POOL_SIZE (20, transaction mode), BASE_PORT (28432), PERF (off), PERF_FREQ (999 Hz, PERF=record),
#   TLS (0): 1 puts every client on sslmode=require with TLS 1.3 (Poold ssl = on, PgBouncer client_tls_sslmode =
#   require, the same self-signed RSA 2048 certificate; backends stay plain), as bench/compare-tls.sh,
#   BASELINE (unset): another build's poold.dll (e.g. from `git worktree add /tmp/base REV` and a Release build there),
#   run as target baseline-Nt in every round, between Poold and PgBouncer: an A/B of two versions within one run;
#   BASELINE_IO_THREADS (unset: as Poold) gives it its own event-thread count (the same dll twice: an A/B of counts);
#   STEADY (unset): FROM:SPAN measures only SPAN seconds from FROM seconds after pgbench starts, once every client has
#   logged in (pgbench -P 1: its rate is the mean of the per-second progress lines that arrive in the window): without it,
#   the CPU figures include the logins, which with 1,000 clients weigh more than the transactions on some proxies.
#   RUN must be at least FROM + SPAN + 2; PERF=record and PERF=stat then cover the window too. Server transactions per
#   transaction are then only as exact as PostgreSQL's statistics, flushed about once a second, allow (up to 2/SPAN off).
#
# Prints a markdown table and writes it to bench/results/. Everything it starts, it stops.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
. scripts/cluster.sh
. bench/lib.sh

POOL_MODE=${POOL_MODE:-session}
MODE=${MODE:-simple}
WORKLOAD=${WORKLOAD:-select}
CLIENTS=${CLIENTS:-16}
IO_THREADS=${IO_THREADS:-"1 2"}
ROUNDS=${ROUNDS:-2}
RUN=${RUN:-15}
WARMUP=${WARMUP:-10}
POOL_SIZE=${POOL_SIZE:-20}
BASE_PORT=${BASE_PORT:-28432}
PERF=${PERF:-off}
PERF_FREQ=${PERF_FREQ:-999}
BASELINE=${BASELINE:-}
BASELINE_IO_THREADS=${BASELINE_IO_THREADS:-}
TLS=${TLS:-0}
STEADY=${STEADY:-}
POOLD_PORT=$((BASE_PORT + 10))
BASELINE_PORT=$((BASE_PORT + 12))
PGBOUNCER_PORT=$((BASE_PORT + 11))
USER_NAME=bench
USER_PASSWORD=bench
command_line="$([ "$TLS" != 1 ] || echo "TLS=1 ")${STEADY:+STEADY=$STEADY }POOL_MODE=$POOL_MODE WORKLOAD=$WORKLOAD MODE=$MODE CLIENTS=$CLIENTS IO_THREADS=\"$IO_THREADS\" ROUNDS=$ROUNDS RUN=$RUN${BASELINE:+ BASELINE=$BASELINE}${BASELINE_IO_THREADS:+ BASELINE_IO_THREADS=$BASELINE_IO_THREADS} bench/hot-path.sh"

case $WORKLOAD in
    select) workload_flag=-S ;;
    tpcb) workload_flag="" ;;
    *) die "WORKLOAD: select or tpcb, not '$WORKLOAD'" ;;
esac
ensure_dotnet
ensure_postgres
ensure_peers
[ -x /usr/sbin/pgbouncer ] || die "PgBouncer is required (apt-get install -y pgbouncer)"
[ "$PERF" = off ] || command -v perf >/dev/null || die "PERF=$PERF needs perf (apt-get install -y linux-perf)"
[ -z "$BASELINE" ] || [ -f "$BASELINE" ] || die "BASELINE: no such file: $BASELINE"
steady_from=3 steady_span=8
if [ -n "$STEADY" ]; then
    [[ $STEADY =~ ^([0-9]+):([0-9]+)$ ]] || die "STEADY: FROM:SPAN in seconds, not '$STEADY'"
    steady_from=${BASH_REMATCH[1]} steady_span=${BASH_REMATCH[2]}
    [ "$RUN" -ge $((steady_from + steady_span + 2)) ] || die "STEADY=$STEADY needs RUN of at least $((steady_from + steady_span + 2)) s"
    [[ $PERF != pgbench* ]] || die "STEADY and PERF=$PERF: pgbench's own counts cover its whole run, not the window"
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

work=$(mktemp -d /tmp/poold-bench-hot.XXXXXX)
chmod 755 "$work"
pids=()
trap 'bench_stop 0' EXIT
trap 'exit 130' INT TERM

build_release
cluster_start "$work/pg" "$BASE_PORT" 0
cluster_sql "$work/pg" "$BASE_PORT" "CREATE ROLE $USER_NAME LOGIN PASSWORD '$USER_PASSWORD'"
cluster_sql "$work/pg" "$BASE_PORT" "CREATE DATABASE $USER_NAME OWNER $USER_NAME"
bench_data "$BASE_PORT" 10
bench_secrets
tls_poold="ssl = off"
tls_pgbouncer=""
if [ "$TLS" = 1 ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost -keyout "$work/server.key" -out "$work/server.crt" \
        >/dev/null 2>&1 || die "openssl req failed"
    chmod 600 "$work/server.key"
    chmod 644 "$work/server.crt"
    tls_poold="ssl = on
ssl_cert = '$work/server.crt'
ssl_key = '$work/server.key'"
    tls_pgbouncer="client_tls_sslmode = require
client_tls_cert_file = $work/server.crt
client_tls_key_file = $work/pgbouncer/server.key"
    export PGSSLMODE=require PGSSLMINPROTOCOLVERSION=TLSv1.3
fi

server_pool=$([ "$POOL_MODE" = transaction ] && echo "$POOL_SIZE" || echo $((CLIENTS + 10)))
mkdir -p "$work/pgbouncer"
[ "$TLS" != 1 ] || cp "$work/server.key" "$work/pgbouncer/server.key"
cat >"$work/pgbouncer/pgbouncer.ini" <<CONF
[databases]
$USER_NAME = host=127.0.0.1 port=$BASE_PORT dbname=$USER_NAME

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGBOUNCER_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $work/userlist.txt
pool_mode = $POOL_MODE
max_client_conn = $((CLIENTS + 100))
default_pool_size = $server_pool
$tls_pgbouncer
logfile = $work/pgbouncer/pgbouncer.log
pidfile = $work/pgbouncer/pgbouncer.pid
CONF
chown -R postgres:postgres "$work/pgbouncer" 2>/dev/null || true
if [ "$(id -u)" -eq 0 ]; then
    setpriv --reuid=postgres --regid=postgres --init-groups /usr/sbin/pgbouncer "$work/pgbouncer/pgbouncer.ini" >"$work/pgbouncer/out.log" 2>&1 &
else
    /usr/sbin/pgbouncer "$work/pgbouncer/pgbouncer.ini" >"$work/pgbouncer/out.log" 2>&1 &
fi
pgbouncer_pid=$!
pids+=("$pgbouncer_pid")
wait_ready PgBouncer "$PGBOUNCER_PORT" "$pgbouncer_pid" "$([ "$TLS" = 1 ] && echo require || echo disable)"

start_poold() { # THREADS [NAME DLL PORT]: a fresh Poold (this tree's build, or DLL) with POOLD_IO_THREADS=THREADS; sets poold_pid
    local dir="$work/${2:-poold}-$1" dll=${3:-src/Poold/bin/Release/net10.0/poold.dll} port=${4:-$POOLD_PORT}
    mkdir -p "$dir"
    cat >"$dir/poold.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
pcp_listen_addresses = ''
pcp_socket_dir = '$dir'
pcp_port = $((port + 10))
load_balance_mode = off
backend_hostname0 = '127.0.0.1'
backend_port0 = $BASE_PORT
backend_weight0 = 1
num_init_children = $((CLIENTS + 10))
pool_mode = $POOL_MODE
default_pool_size = $POOL_SIZE
max_client_conn = $((CLIENTS + 100))
max_unauthenticated_connections = $((CLIENTS + 100))
enable_pool_hba = on
pool_passwd = '$work/pool_passwd'
$tls_poold
pid_file_name = '$dir/poold.pid'
logdir = '$dir'
log_min_messages = warning
sr_check_period = 0
health_check_period = 0
CONF
    # perf finds JIT-compiled code's symbols in /tmp/perf-PID.map only where the code is not double-mapped (W^X off).
    POOLD_IO_THREADS=$1 DOTNET_PerfMapEnabled=$([ "$PERF" = record ] && echo 1 || echo 0) \
        DOTNET_EnableWriteXorExecute=$([ "$PERF" = record ] && echo 0 || echo 1) \
        dotnet "$dll" -n -f "$dir/poold.conf" -a "$work/pool_hba.conf" \
        -k "$work/pgpoolkey" >"$dir/out.log" 2>&1 &
    poold_pid=$!
    pids+=("$poold_pid")
    wait_ready Poold "$port" "$poold_pid"
}

stop_poold() {
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null || true
}

cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^voluntary_ctxt/{v+=$2} /^nonvoluntary_ctxt/{n+=$2} END{print v + 0, n + 0}'; }
# thread_switches PID: one line per thread, "tid<TAB>name<TAB>voluntary<TAB>involuntary"
thread_switches() {
    local task
    for task in /proc/"$1"/task/*; do
        awk -F'\t' -v tid="${task##*/}" '/^Name:/{n=$2} /^voluntary_ctxt/{v=$2} /^nonvoluntary_ctxt/{i=$2} END{printf "%s\t%s\t%s\t%s\n", tid, n, v, i}' "$task/status" 2>/dev/null || true
    done
}
server_xacts() { cluster_sql "$work/pg" "$BASE_PORT" "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '$USER_NAME'"; }
machine_busy() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; }
hz=$(getconf CLK_TCK)

# run NAME PORT PID SECONDS [LAST]: one pgbench run; appends a row to $work/rows.tsv
run() {
    local name=$1 port=$2 pid=$3 seconds=$4 last=${5:-} watcher="" out
    local b0 t0 v0 n0 b1 t1 v1 n1 x0 x1 steady=""
    # STEADY: the samples are taken at the window's two ends, below; else around the whole run.
    [ -z "$STEADY" ] || [ "$name" = warm ] || steady=1
    if [ -z "$steady" ]; then
        x0=$(server_xacts); b0=$(machine_busy); t0=$(cpu_ticks "$pid"); read -r v0 n0 <<<"$(switches "$pid")"
        [ -z "$last" ] || thread_switches "$pid" >"$work/$name.threads0"
    fi
    if [ -n "$last" ] && [ "$PERF" = record ]; then
        (sleep "$steady_from"; perf record -F "$PERF_FREQ" -g -p "$pid" -o "/tmp/poold-perf-$name.data" -- sleep "$steady_span" >"$work/$name.perf.log" 2>&1) &
        watcher=$!
    elif [ -n "$last" ] && [ "$PERF" = system ]; then
        (sleep "$steady_from"; perf record -F "$PERF_FREQ" -g -a -o "/tmp/poold-perf-system-$name.data" -- sleep "$steady_span" >"$work/$name.perf.log" 2>&1) &
        watcher=$!
    elif [ -n "$last" ] && [ "$PERF" = stat ]; then
        (sleep "$steady_from"; perf stat -x, -e raw_syscalls:sys_enter,syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_ctl,syscalls:sys_enter_futex,syscalls:sys_enter_poll,syscalls:sys_enter_read,syscalls:sys_enter_write \
            -p "$pid" -o "$work/$name.stat" -- sleep "$steady_span" >/dev/null 2>&1) &
        watcher=$!
    fi
    local wrap=()
    if [ -n "$last" ] && [ "$PERF" = pgbench ]; then
        wrap=(perf stat -x, -o "$work/$name.pgbench.stat" -e syscalls:sys_enter_ppoll,syscalls:sys_enter_poll,syscalls:sys_enter_select,syscalls:sys_enter_pselect6,syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,syscalls:sys_enter_epoll_wait --)
    elif [ -n "$last" ] && [ "$PERF" = pgbench-record ]; then
        wrap=(perf record -F 999 -g -o "/tmp/poold-perf-pgbench-$name.data" --)
    fi
    if [ -z "$steady" ]; then
        out=$(PGPASSWORD=$USER_PASSWORD /usr/bin/time -f "pgbench-cpu %U %S" "${wrap[@]}" pgbench -h 127.0.0.1 -p "$port" -U "$USER_NAME" -n $workload_flag -M "$MODE" \
            -c "$CLIENTS" -j 2 -T "$seconds" "$USER_NAME" 2>&1) || log "$name: pgbench failed: $(tail -2 <<<"$out")"
        b1=$(machine_busy); t1=$(cpu_ticks "$pid"); read -r v1 n1 <<<"$(switches "$pid")"
        [ -z "$last" ] || thread_switches "$pid" >"$work/$name.threads1"
        sleep 1.2  # PostgreSQL flushes a backend's statistics at most once a second
        x1=$(server_xacts)
    else
        # The window: every output line of pgbench stamped with the time it arrived; the samples taken at its two ends.
        local progress=$work/$name.progress bench p0 p1 s0 s1 window
        : >"$progress"
        PGPASSWORD=$USER_PASSWORD "${wrap[@]}" pgbench -h 127.0.0.1 -p "$port" -U "$USER_NAME" -n $workload_flag -M "$MODE" \
            -c "$CLIENTS" -j 2 -T "$seconds" -P 1 "$USER_NAME" \
            > >(while IFS= read -r line; do printf '%s %s\n' "$(date +%s.%N)" "$line"; done >>"$progress") 2>&1 &
        bench=$!
        pids+=("$bench")
        sleep "$steady_from"
        # The per-thread counts (last round) outside the window: they take a while, more for Poold's many threads.
        [ -z "$last" ] || thread_switches "$pid" >"$work/$name.threads0"
        x0=$(server_xacts); b0=$(machine_busy); t0=$(cpu_ticks "$pid"); read -r v0 n0 <<<"$(switches "$pid")"
        p0=$(cpu_ticks "$bench" 2>/dev/null) || p0=0
        s0=$(date +%s.%N)
        sleep "$steady_span"
        s1=$(date +%s.%N)
        b1=$(machine_busy); t1=$(cpu_ticks "$pid"); read -r v1 n1 <<<"$(switches "$pid")"
        p1=$(cpu_ticks "$bench" 2>/dev/null) || p1=$p0
        [ -z "$last" ] || thread_switches "$pid" >"$work/$name.threads1"
        x1=$(server_xacts)
        wait "$bench" || log "$name: pgbench failed: $(tail -2 "$progress")"
        for _ in $(seq 1 50); do grep -q '^[0-9.]* tps = ' "$progress" && break; sleep 0.1; done
        # pgbench prints each second's TPS: their mean over the lines that arrived in the window is its rate there, and
        # the rate times the window's length its transactions (a count of whole lines would be off by up to one).
        window=$(awk -v a="$s0" -v b="$s1" '$2 == "progress:" && $1 > a && $1 <= b {sum += $5; lines++}
            END {if (lines) printf "%d %.3f", sum / lines * (b - a), b - a; else print "0", b - a}' "$progress")
        grep -q "^[0-9.]* progress: " <(awk -v a="$s0" '$1 <= a' "$progress") \
            || log "$name: no progress line before the window: logins may not be over at ${steady_from} s (raise FROM)"
        out="$(cut -d' ' -f2- "$progress")
pgbench-cpu $(awk -v d="$((p1 - p0))" -v hz="$hz" 'BEGIN{print d / hz, 0}')
window $window"
    fi
    [ -z "$watcher" ] || wait "$watcher" || log "$name: perf failed: $(tail -2 "$work/$name.perf.log" 2>/dev/null)"
    local tps tx pgbench_cpu connect_ms seconds_in_window
    tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")
    connect_ms=$(sed -n 's/^initial connection time = \([0-9.]*\) ms.*/\1/p' <<<"$out")
    tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
    if [ -n "$steady" ]; then
        # The window's transactions and rate; pgbench's own TPS covers the whole run.
        read -r _ tx seconds_in_window <<<"$(grep '^window ' <<<"$out")"
        tps=$(awk -v t="$tx" -v s="$seconds_in_window" 'BEGIN{printf "%.1f", t / s}')
    fi
    pgbench_cpu=$(awk '/^pgbench-cpu/{print $2 + $3}' <<<"$out")
    [ -n "$tx" ] && [ "$tx" -gt 0 ] || { log "$name: no transactions"; return 0; }
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$tps" "$tx" "$(( (t1 - t0) * 1000000 / hz ))" "$((v1 - v0))" "$((n1 - n0))" \
        "$(awk -v s="$pgbench_cpu" 'BEGIN{printf "%d", s * 1000000}')" "$(( (b1 - b0) * 1000000 / hz ))" "$((x1 - x0))" "${connect_ms:-0}" >>"$work/rows.tsv"
    [ -z "$last" ] || [ "$PERF" != pgbench ] || awk -F, -v n="$name" -v tx="$tx" '$1 > 0 {printf "%s: pgbench %s %.2f per tx\n", n, $3, $1 / tx}' "$work/$name.pgbench.stat" >>"$work/syscalls.txt"
    [ -z "$last" ] || awk -F'\t' -v n="$name" -v tx="$tx" 'NR == FNR {v0[$1] = $3; i0[$1] = $4; next}
        {v[$2] += $3 - v0[$1]; i[$2] += $4 - i0[$1]}
        END {for (t in v) if (v[t] + i[t] > 0) printf "%s: thread \"%s\" %.1f / %.1f context switches per 100 tx\n", n, t, 100 * v[t] / tx, 100 * i[t] / tx}' \
        "$work/$name.threads0" "$work/$name.threads1" | sort -t/ -k1,1 >>"$work/syscalls.txt"
    [ -z "$last" ] || [ "$PERF" != stat ] || awk -F, -v n="$name" '$1 > 0 {printf "%s %s %s\n", n, $3, $1}' "$work/$name.stat" >>"$work/syscalls.txt"
    log "$name: $tps TPS, proxy $(( (t1 - t0) * 1000000 / hz / tx )) us/tx, pgbench's initial connection time ${connect_ms:-?} ms"
}

for threads in $IO_THREADS; do
    base_pid=""
    base_threads=${BASELINE_IO_THREADS:-$threads}
    if [ -n "$BASELINE" ]; then
        start_poold "$base_threads" baseline "$BASELINE" "$BASELINE_PORT"
        base_pid=$poold_pid
    fi
    start_poold "$threads"
    log "warm-up, Poold with $threads event thread(s)"
    run warm "$POOLD_PORT" "$poold_pid" "$WARMUP" >/dev/null
    [ -z "$base_pid" ] || run warm "$BASELINE_PORT" "$base_pid" "$WARMUP" >/dev/null
    run warm "$PGBOUNCER_PORT" "$pgbouncer_pid" "$WARMUP" >/dev/null
    for round in $(seq 1 "$ROUNDS"); do
        last=$([ "$round" = "$ROUNDS" ] && echo last || true)
        run "poold-${threads}t" "$POOLD_PORT" "$poold_pid" "$RUN" "$last"
        [ -z "$base_pid" ] || run "baseline-${base_threads}t" "$BASELINE_PORT" "$base_pid" "$RUN" "$last"
        run "pgbouncer-vs-${threads}t" "$PGBOUNCER_PORT" "$pgbouncer_pid" "$RUN" "$last"
    done
    stop_poold "$poold_pid"
    [ -z "$base_pid" ] || stop_poold "$base_pid"
done

cores=$(nproc)
report=bench/results/$(date +%Y-%m-%d)-hot-path-$([ "$TLS" != 1 ] || echo tls-)$POOL_MODE-$([ "$WORKLOAD" = select ] || echo "$WORKLOAD-")$CLIENTS-${cores}cores.md
python3 - "$work/rows.tsv" "$command_line" "$POOL_MODE" "$MODE" "$CLIENTS" "$cores" "$work/syscalls.txt" "$workload_flag" "$TLS" "$STEADY" >"$report" <<'PY'
import os, statistics, sys
rows_file, command, pool_mode, mode, clients, cores, syscalls, workload_flag, tls, steady = sys.argv[1:]
workload = workload_flag + " " if workload_flag else ""
rows = {}
for line in open(rows_file):
    name, tps, tx, proxy, vol, invol, pgbench, machine, xacts, connect = line.rstrip("\n").split("\t")
    if name == "warm":
        continue
    tx = int(tx)
    rows.setdefault(name, []).append((float(tps), int(proxy) / tx, 100 * int(vol) / tx, 100 * int(invol) / tx, int(pgbench) / tx, int(machine) / tx, int(xacts) / tx, float(connect)))
print(f"# Hot path: Poold against PgBouncer, {pool_mode} mode, {clients} clients, {cores} cores\n")
print(f"Command: `{command}`\n")
print(f"One local PostgreSQL 15 primary (no replicas), pgbench `{workload}-M {mode} -c {clients} -j 2`, SCRAM, " + ("every client on TLS 1.3 (sslmode=require; backends plain)" if tls == "1" else "no TLS") + "; Poold with "
      "`load_balance_mode = off` and PgBouncer in the same pool mode. Per transaction, "
      + (f"in a window of {steady.split(':')[1]} s from {steady.split(':')[0]} s after pgbench's start, once every client has logged in (TPS: the mean of pgbench's per-second progress lines that came in the window): " if steady else "logins included: ")
      + "the proxy's CPU, "
      "its context switches (voluntary / involuntary, per 100 transactions), pgbench's CPU and the machine's busy time "
      "(all processes); server transactions: what PostgreSQL counted (pg_stat_database) per pgbench transaction (1.00: the proxy added none); pgbench connect: its `initial connection time` (logins; not in its TPS, but one thread may start its transactions while the other still logs in). Medians of the rounds; pgbench, the proxy and PostgreSQL share the cores, so compare rows of one "
      "run only.\n")
print("| target | TPS | proxy CPU/tx (µs) | cs/100 tx (vol / invol) | pgbench CPU/tx (µs) | machine CPU/tx (µs) | server transactions/tx | pgbench connect (ms) | TPS vs PgBouncer |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
med = lambda values: statistics.median(values)
for name, values in rows.items():
    cols = [med([v[i] for v in values]) for i in range(8)]
    ratio = ""
    if name.startswith(("poold-", "baseline-")):
        # A baseline with its own thread count (BASELINE_IO_THREADS) ran beside the one PgBouncer of its loop.
        bouncers = [n for n in rows if n.startswith("pgbouncer-vs-")]
        other = rows.get("pgbouncer-vs-" + name.split("-", 1)[1]) or (rows[bouncers[0]] if len(bouncers) == 1 else None)
        if other:
            ratio = f"{cols[0] / med([v[0] for v in other]):.2f}x"
    print(f"| {name} | {cols[0]:.0f} | {cols[1]:.0f} | {cols[2]:.0f} / {cols[3]:.0f} | {cols[4]:.0f} | {cols[5]:.0f} | {cols[6]:.2f} | {cols[7]:.0f} | {ratio} |")
if os.path.exists(syscalls) and os.path.getsize(syscalls):
    print(f"\nOver the last round, per target: context switches per thread name (voluntary / involuntary), and with PERF=stat the system calls of {steady.split(':')[1] if steady else 8} s (`perf stat`):\n")
    for line in open(syscalls):
        print(f"- {line.strip()}")
PY
cat "$report"
log "written to $report"
