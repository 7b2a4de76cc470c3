#!/usr/bin/env bash
# Peer benchmark over TLS (issue 17): the product's main path, clients on sslmode=require (TLS 1.3 forced by the client:
# PGSSLMINPROTOCOLVERSION=TLSv1.3), backends plain, the same self-signed certificate (RSA 2048, made here with openssl)
# for all three proxies. Same secrets as bench/compare.sh (SCRAM-SHA-256 from pool_passwd/userlist).
#
# Targets:
#   poold-primary  Poold, ssl = on, load_balance_mode = off: everything to the primary, as PgBouncer
#   poold          Poold, ssl = on, load_balance_mode = on: reads over the three nodes (equal weights)
#   pgpool         pgpool-II 4.3, ssl = on, load balancing as poold
#   pgbouncer      PgBouncer, client_tls_sslmode = require, session mode to the primary
# Workloads: pgbench -S -M simple, -S -M extended, -S -M prepared (16 clients), TPC-B -M simple (8 clients), -S -C -M
# simple (8 clients, a new connection, so a full TLS handshake and a SCRAM login, per transaction: libpq never resumes
# a TLS session).
#
# As bench/compare.sh: after a warm-up (WARMUP s of each select workload through each target), targets interleaved
# round by round, each figure the median of the rounds; proxy CPU is the user + system time of all the proxy's
# processes (pgpool-II's children too) during the run, per transaction; RSS and PSS are summed over those processes
# right after each run (median). Before the runs, each proxy is asked with `openssl s_client -starttls postgres`
# (SSLRequest, then TLS 1.3) whether it issues session tickets and accepts a resumption (-sess_out, then -sess_in).
#
#   DURATION (10) seconds per pgbench run, ROUNDS (3), WARMUP (3), SCALE (10), BASE_PORT (30432) first PostgreSQL port;
#   the proxies use the ports after it. BENCH_NOTE: a sentence on the machine's state during the run, put in the report.
#
# Prints a markdown report and writes it to bench/results/. Everything it starts, it stops.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
. scripts/cluster.sh
. bench/lib.sh

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-3}
SCALE=${SCALE:-10}
BASE_PORT=${BASE_PORT:-30432}
DIRECT_PORT=$BASE_PORT
POOLD_PORT=$((BASE_PORT + 10))
PGPOOL_PORT=$((BASE_PORT + 11))
PGBOUNCER_PORT=$((BASE_PORT + 12))
POOLD_PRIMARY_PORT=$((BASE_PORT + 13))
USER_NAME=bench
USER_PASSWORD=bench
command_line="DURATION=$DURATION ROUNDS=$ROUNDS WARMUP=$WARMUP SCALE=$SCALE bench/compare-tls.sh"

ensure_dotnet
ensure_postgres
ensure_peers
[ -x /usr/sbin/pgpool ] || die "pgpool-II is required (apt-get install -y pgpool2)"
[ -x /usr/sbin/pgbouncer ] || die "PgBouncer is required (apt-get install -y pgbouncer)"
command -v openssl >/dev/null || die "openssl is required"

work=$(mktemp -d /tmp/poold-bench-tls.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() { bench_stop 2; }
trap cleanup EXIT
trap 'exit 130' INT TERM

build_release

export PG_MAX_CONNECTIONS=400
cluster_start "$work/pg" "$DIRECT_PORT" 2
cluster_sql "$work/pg" "$DIRECT_PORT" "CREATE ROLE $USER_NAME LOGIN PASSWORD '$USER_PASSWORD'"
cluster_sql "$work/pg" "$DIRECT_PORT" "CREATE DATABASE $USER_NAME OWNER $USER_NAME"
bench_data "$DIRECT_PORT" "$SCALE"
bench_secrets

# ---- the one certificate: self-signed, RSA 2048 (what most deployments still use), for all three proxies ----
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost -keyout "$work/server.key" -out "$work/server.crt" \
    >/dev/null 2>&1 || die "openssl req failed"
chmod 600 "$work/server.key"
chmod 644 "$work/server.crt"

# Every libpq client of this script: TLS required, nothing below TLS 1.3.
export PGSSLMODE=require PGSSLMINPROTOCOLVERSION=TLSv1.3

start_poold() { # NAME PORT LOAD_BALANCE
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
num_init_children = 64
max_pool = 4
enable_pool_hba = on
pool_passwd = '$work/pool_passwd'
ssl = on
ssl_cert = '$work/server.crt'
ssl_key = '$work/server.key'
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
    wait_ready Poold "$port" "$pid" require
    printf -v "${name//-/_}_pid" '%s' "$pid"
}

start_pgpool() {
    mkdir -p "$work/pgpool"
    cat >"$work/pgpool/pgpool.conf" <<CONF
backend_clustering_mode = 'streaming_replication'
listen_addresses = '127.0.0.1'
port = $PGPOOL_PORT
socket_dir = '$work/pgpool'
pcp_listen_addresses = ''
pcp_port = $((BASE_PORT + 21))
pcp_socket_dir = '$work/pgpool'
$(bench_backends "$DIRECT_PORT")
num_init_children = 32
max_pool = 4
load_balance_mode = on
enable_pool_hba = on
pool_passwd = '$work/pool_passwd'
ssl = on
ssl_cert = '$work/server.crt'
ssl_key = '$work/server.key'
pid_file_name = '$work/pgpool/pgpool.pid'
logdir = '$work/pgpool'
sr_check_period = 0
sr_check_user = 'postgres'
health_check_period = 0
log_min_messages = warning
CONF
    cp "$work/pool_hba.conf" "$work/pgpool/pool_hba.conf"
    printf 'admin:%s\n' "$(/usr/sbin/pg_md5 admin)" >"$work/pgpool/pcp.conf"
    /usr/sbin/pgpool -n -f "$work/pgpool/pgpool.conf" -F "$work/pgpool/pcp.conf" -a "$work/pgpool/pool_hba.conf" -k "$work/pgpoolkey" \
        >"$work/pgpool/out.log" 2>&1 &
    pgpool_pid=$!
    pids+=("$pgpool_pid")
    wait_ready pgpool-II "$PGPOOL_PORT" "$pgpool_pid" require
}

start_pgbouncer() {
    mkdir -p "$work/pgbouncer"
    # PgBouncer runs as postgres (it refuses root): its own copy of the key, readable by it alone.
    cp "$work/server.key" "$work/pgbouncer/server.key"
    cat >"$work/pgbouncer/pgbouncer.ini" <<CONF
[databases]
$USER_NAME = host=127.0.0.1 port=$DIRECT_PORT dbname=$USER_NAME

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGBOUNCER_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $work/userlist.txt
pool_mode = session
max_client_conn = 200
default_pool_size = 100
client_tls_sslmode = require
client_tls_cert_file = $work/server.crt
client_tls_key_file = $work/pgbouncer/server.key
logfile = $work/pgbouncer/pgbouncer.log
pidfile = $work/pgbouncer/pgbouncer.pid
CONF
    chown -R postgres:postgres "$work/pgbouncer" 2>/dev/null || true
    if [ "$(id -u)" -eq 0 ]; then
        setpriv --reuid=postgres --regid=postgres --init-groups /usr/sbin/pgbouncer "$work/pgbouncer/pgbouncer.ini" \
            >"$work/pgbouncer/out.log" 2>&1 &
    else
        /usr/sbin/pgbouncer "$work/pgbouncer/pgbouncer.ini" >"$work/pgbouncer/out.log" 2>&1 &
    fi
    pgbouncer_pid=$!
    pids+=("$pgbouncer_pid")
    wait_ready PgBouncer "$PGBOUNCER_PORT" "$pgbouncer_pid" require
}

log "starting the proxies (TLS)"
start_poold poold-primary "$POOLD_PRIMARY_PORT" off
start_poold poold "$POOLD_PORT" on
start_pgpool
start_pgbouncer

# A plain (non-TLS) login must be refused by PgBouncer (client_tls_sslmode = require); Poold and pgpool-II accept both,
# so what makes their runs TLS is the clients' sslmode=require (libpq fails rather than fall back).
if PGSSLMODE=disable PGPASSWORD=$USER_PASSWORD psql "host=127.0.0.1 port=$PGBOUNCER_PORT user=$USER_NAME dbname=$USER_NAME" \
    -qAtc "SELECT 1" >/dev/null 2>&1; then
    die "PgBouncer accepted a plaintext client: client_tls_sslmode is not in force"
fi

declare -A port_of=([poold]=$POOLD_PORT [poold-primary]=$POOLD_PRIMARY_PORT [pgpool]=$PGPOOL_PORT [pgbouncer]=$PGBOUNCER_PORT)
declare -A pid_of=([poold]=$poold_pid [poold-primary]=$poold_primary_pid [pgpool]=$pgpool_pid [pgbouncer]=$pgbouncer_pid)
targets=(poold-primary poold pgpool pgbouncer)
workloads=("select-simple:-S -M simple -c 16 -j 2" "select-extended:-S -M extended -c 16 -j 2" "select-prepared:-S -M prepared -c 16 -j 2"
           "tpcb-simple:-M simple -c 8 -j 2" "select-connect:-S -C -M simple -c 8 -j 2")
clock_ticks=$(getconf CLK_TCK)

tree_of() { # PID: the process and all its descendants
    local all=" $1 " frontier=$1 next pid child
    while [ -n "$frontier" ]; do
        next=""
        for pid in $frontier; do
            for child in $(pgrep -P "$pid" 2>/dev/null); do all+="$child "; next+="$child "; done
        done
        frontier=$next
    done
    echo "$all"
}
cpu_ticks_of_tree() { # PID: utime + stime (+ reaped children) of the process and its descendants; one gone meanwhile counts 0
    local pid ticks total=0
    for pid in $(tree_of "$1"); do
        ticks=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13 + $14 + $15}')
        total=$((total + ${ticks:-0}))
    done
    echo "$total"
}
mem_of_tree() { # PID: "RSS PSS" in KiB, summed over the process and its descendants
    local pid rss=0 pss=0 x
    for pid in $(tree_of "$1"); do
        x=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null); rss=$((rss + ${x:-0}))
        x=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null); pss=$((pss + ${x:-0}))
    done
    echo "$rss $pss"
}

# ---- TLS session resumption: a first handshake keeps the session (and any TLS 1.3 ticket) in a file, a second offers it ----
# s_client's stdin stays open a second after the handshake: TLS 1.3 tickets come after it, as post-handshake messages.
: >"$work/resumption.tsv"
for target in "${targets[@]}"; do
    sess=$work/session-$target.pem
    first=$( (sleep 1) | timeout 15 openssl s_client -starttls postgres -connect "127.0.0.1:${port_of[$target]}" -tls1_3 \
        -sess_out "$sess" 2>&1) || true
    tickets=$(grep -c 'Post-Handshake New Session Ticket arrived' <<<"$first" || true)
    negotiated=$(grep -m1 -E '^(New|Reused), ' <<<"$first" | sed 's/, Cipher is /\//' || true)
    reused="no session saved"
    if [ -s "$sess" ]; then
        second=$( (sleep 1) | timeout 15 openssl s_client -starttls postgres -connect "127.0.0.1:${port_of[$target]}" -tls1_3 \
            -sess_in "$sess" 2>&1) || true
        if grep -q '^Reused, ' <<<"$second"; then reused=yes; else reused=no; fi
    fi
    printf '%s\t%s\t%s\t%s\n' "$target" "${negotiated:-no handshake}" "$tickets" "$reused" >>"$work/resumption.tsv"
    log "resumption $target: ${negotiated:-no handshake}, $tickets session ticket(s), resumed: $reused"
done

# Not measured: every target serves the select workloads first, so Poold's JIT has produced its optimised code.
log "warm-up: $WARMUP s of each select workload through each target"
for target in "${targets[@]}"; do
    for mode in simple extended prepared; do
        PGPASSWORD=$USER_PASSWORD timeout 60 pgbench -h 127.0.0.1 -p "${port_of[$target]}" -U "$USER_NAME" -S -M "$mode" -c 16 -j 2 \
            -T "$WARMUP" -n "$USER_NAME" >/dev/null 2>&1 || true
    done
done

results=$work/results.tsv
: >"$results"
for round in $(seq 1 "$ROUNDS"); do
    for workload in "${workloads[@]}"; do
        name=${workload%%:*}
        args=${workload#*:}
        for target in "${targets[@]}"; do
            proxy=${pid_of[$target]}
            kill -0 "$proxy" 2>/dev/null || die "$target (pid $proxy) is gone: see $work/$target"
            before=$(cpu_ticks_of_tree "$proxy")
            out=$(PGPASSWORD=$USER_PASSWORD timeout $((DURATION * 3 + 60)) pgbench -h 127.0.0.1 -p "${port_of[$target]}" -U "$USER_NAME" \
                $args -T "$DURATION" -n "$USER_NAME" 2>&1) || true
            after=$(cpu_ticks_of_tree "$proxy")
            read -r rss pss < <(mem_of_tree "$proxy")
            tps=$(printf '%s\n' "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
            lat=$(printf '%s\n' "$out" | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' | head -1)
            failed=$(printf '%s\n' "$out" | sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' | head -1)
            done_tx=$(printf '%s\n' "$out" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' | head -1)
            aborted=$(printf '%s\n' "$out" | grep -c 'aborted in command' || true)
            cpu="-"
            [ "${done_tx:-0}" -gt 0 ] && cpu=$(( (after - before) * 1000000 / clock_ticks / done_tx ))
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$name" "$target" "${tps:-0}" "${lat:-0}" \
                "$(( ${failed:-0} + aborted ))" "$cpu" "$rss" "$pss" "${done_tx:-0}" >>"$results"
            log "round $round $name $target: tps=${tps:-FAILED} latency=${lat:-?} ms failed=${failed:-?} aborted=$aborted" \
                "proxy CPU/tx=$cpu us RSS=$((rss / 1024)) MiB PSS=$((pss / 1024)) MiB"
            if [ -z "$tps" ] || [ "$aborted" -gt 0 ] || [ "${failed:-0}" != 0 ]; then
                printf '%s\n' "$out" | grep -v '^progress' | grep -m5 -iE 'error|abort|fatal' >&2 || true
            fi
        done
    done
done

# ---- the report ----
cores=$(nproc)
mkdir -p bench/results
report=bench/results/$(date +%Y-%m-%d)-tls-${cores}cores.md
python3 - "$results" "$work/resumption.tsv" "$cores" "$ROUNDS" "$DURATION" "$command_line" "$(openssl version)" >"$report" <<'PY'
import os, sys, statistics, collections, datetime
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
resumption = [l.rstrip("\n").split("\t") for l in open(sys.argv[2]) if l.strip()]
cores, rounds, duration, cmd, openssl = sys.argv[3:8]
by = collections.defaultdict(list)
for r in rows:
    by[(r[1], r[2])].append(r)
def med(k, i):
    vals = [float(r[i]) for r in by[k] if r[i] not in ("-", "?", "")]
    return statistics.median(vals) if vals else None
workloads = list(dict.fromkeys(r[1] for r in rows))
targets = ["poold-primary", "poold", "pgpool", "pgbouncer"]
print(f"# Peer benchmark over TLS, {datetime.date.today()}, {cores} cores\n")
print(f"Command: `{cmd}`\n")
print(f"Median of {rounds} interleaved rounds, {duration} s per pgbench run after a warm-up; local PostgreSQL 15 primary + 2 "
      "streaming replicas, scale 10, backends plain (no TLS between proxy and server). Every client on `sslmode=require` "
      "with `ssl_min_protocol_version=TLSv1.3` (libpq 15); one self-signed RSA 2048 certificate for all three proxies; "
      "SCRAM-SHA-256 everywhere (libpq uses SCRAM-SHA-256-PLUS, channel binding, where the proxy offers it: Poold does, "
      "pgpool-II 4.3 and PgBouncer 1.18 do not). poold-primary (load_balance_mode = off) and pgbouncer (session mode, "
      "`client_tls_sslmode = require`) send everything to the primary; poold and pgpool (`ssl = on`) balance reads over "
      "the three nodes with equal weights. Select workloads at 16 clients, TPC-B and `-C` at 8; `-C` opens a new "
      "connection per transaction: a full TLS handshake and a SCRAM login each time (libpq never resumes a TLS session).\n")
print("pgbench, the proxies and the three PostgreSQL servers share this machine's cores: compare targets within one run "
      "(they are interleaved), not across runs or machines. " + os.environ.get("BENCH_NOTE", "") + "\n")
print("- proxy CPU: user + system time of all the proxy's processes (pgpool-II's children too) during the run, per transaction.\n"
      "- RSS / PSS: summed over the proxy's processes right after the run (median of the rounds).\n"
      "- failed: pgbench's failed transactions plus aborted clients, summed over the rounds.\n")
print("| workload | target | TPS | avg latency (ms) | failed | proxy CPU/tx (µs) | RSS (MiB) | PSS (MiB) | vs pgpool-II | vs PgBouncer | CPU vs PgBouncer |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for w in workloads:
    tps = {t: med((w, t), 3) for t in targets}
    cpu = {t: med((w, t), 6) for t in targets}
    for t in targets:
        if not by[(w, t)]: continue
        ratio = lambda o: f"{tps[t] / tps[o]:.2f}x" if tps.get(o) and tps[t] is not None else "-"
        cpu_ratio = f"{cpu[t] / cpu['pgbouncer']:.2f}x" if cpu[t] is not None and cpu.get("pgbouncer") else "-"
        failed = sum(int(r[5]) for r in by[(w, t)] if r[5].isdigit())
        fmt = lambda x, f: f.format(x) if x is not None else "-"
        rss, pss = med((w, t), 7), med((w, t), 8)
        print(f"| {w} | {t} | {fmt(tps[t], '{:.0f}')} | {fmt(med((w, t), 4), '{:.2f}')} | {failed} | {fmt(cpu[t], '{:.0f}')} | "
              f"{fmt(rss and rss / 1024, '{:.0f}')} | {fmt(pss and pss / 1024, '{:.0f}')} | {ratio('pgpool')} | {ratio('pgbouncer')} | {cpu_ratio} |")
print("\n## Issue 17's TLS goals (poold-primary vs pgbouncer)\n")
for w in ("select-simple", "select-extended", "select-prepared", "tpcb-simple"):
    a, b = med((w, "poold-primary"), 6), med((w, "pgbouncer"), 6)
    if a is not None and b:
        print(f"- {w}: proxy CPU/tx {a:.0f} vs {b:.0f} µs: {'met' if a <= b else 'NOT met'}")
a, b = med(("select-connect", "poold-primary"), 3), med(("select-connect", "pgbouncer"), 3)
if a and b:
    print(f"- select-connect (-C, full handshake per transaction): {a / b:.2f}x PgBouncer's TPS: {'met' if a >= b else 'NOT met'}")
print(f"\n## TLS session resumption ({openssl}, `s_client -starttls postgres -tls1_3`, `-sess_out` then `-sess_in`)\n")
print("| target | first handshake | session tickets received | second handshake resumed |")
print("|---|---|---:|---|")
for t, negotiated, tickets, reused in resumption:
    print(f"| {t} | {negotiated} | {tickets} | {reused} |")
PY
cat "$report"
log "written to $report"
