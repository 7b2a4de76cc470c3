#!/usr/bin/env bash
# Peer benchmark: Poold vs pgpool-II vs PgBouncer vs PostgreSQL directly, in front of the same local primary and two
# streaming replicas, with equivalent settings (SCRAM-SHA-256 from pool_passwd/userlist, no TLS anywhere, same pool
# sizes; Poold and pgpool-II load-balance reads over the three nodes with equal weights, PgBouncer in session mode to
# the primary; poold-primary is Poold with load_balance_mode = off; poold-metrics is poold with metrics_port on, scraped
# every second, to measure what the metrics cost). After a warm-up, targets are interleaved round by round; each figure is
# the median of the rounds, with the proxy's CPU time per transaction (all its processes).
#
#   DURATION (10) seconds per pgbench run, ROUNDS (3), SCALE (10) pgbench scale, IDLE (1000) idle connections,
#   BASE_PORT (25432) first PostgreSQL port; the proxies use the ports after it.
#
# Prints a markdown table and writes it to bench/results/. Everything it starts, it stops.
#
# Then its three further sections, each a script of its own that also runs alone (with this run's DURATION and ROUNDS):
# transaction mode (pool_mode = transaction, 200 and 1,000 clients over default_pool_size = 20, Poold vs PgBouncer in
# transaction mode, p99 latency): bench/compare-tx.sh (TX_SECTION=0 skips it); read_your_writes on and off (TPC-B and
# write-then-read, share of reads on standbys): bench/ryw.sh (RYW_SECTION=0 skips it); the same peers over TLS
# (sslmode=require, TLS 1.3; proxy CPU and memory, TLS session resumption): bench/compare-tls.sh (TLS_SECTION=0 skips it).
# Idle clients' memory in transaction mode: bench/idle-clients.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
. scripts/cluster.sh
. bench/lib.sh

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
SCALE=${SCALE:-10}
IDLE=${IDLE:-1000}
BASE_PORT=${BASE_PORT:-25432}
DIRECT_PORT=$BASE_PORT
POOLD_PORT=$((BASE_PORT + 10))
PGPOOL_PORT=$((BASE_PORT + 11))
PGBOUNCER_PORT=$((BASE_PORT + 12))
POOLD_PRIMARY_PORT=$((BASE_PORT + 13))
POOLD_METRICS_PORT=$((BASE_PORT + 14))
METRICS_HTTP_PORT=$((BASE_PORT + 35))
USER_NAME=bench
USER_PASSWORD=bench

ensure_dotnet
ensure_postgres
ensure_peers
# pgbench and the proxies hold IDLE connections each: lift the open-file limit to what the system allows.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ -x /usr/sbin/pgpool ] || die "pgpool-II is required (apt-get install -y pgpool2)"
[ -x /usr/sbin/pgbouncer ] || die "PgBouncer is required (apt-get install -y pgbouncer)"

work=$(mktemp -d /tmp/poold-bench.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() { bench_stop 2; }
trap cleanup EXIT
trap 'exit 130' INT TERM

build_release

# pgpool-II opens a connection to every node per client: the idle test needs room for 3 x IDLE backends.
export PG_MAX_CONNECTIONS=$((IDLE * 3 + 200))
cluster_start "$work/pg" "$DIRECT_PORT" 2
cluster_sql "$work/pg" "$DIRECT_PORT" "CREATE ROLE $USER_NAME LOGIN PASSWORD '$USER_PASSWORD'"
cluster_sql "$work/pg" "$DIRECT_PORT" "CREATE DATABASE $USER_NAME OWNER $USER_NAME"
bench_data "$DIRECT_PORT" "$SCALE"

# ---- the shared secrets: an AES key file and pool_passwd (for Poold and pgpool-II), userlist (PgBouncer) ----
bench_secrets

start_poold() { # CHILDREN [NAME PORT LOAD_BALANCE METRICS_PORT]
    local name=${2:-poold} port=${3:-$POOLD_PORT} balance=${4:-on} metrics=${5:-0}
    mkdir -p "$work/$name"
    cat >"$work/$name/poold.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$work/$name'
pcp_listen_addresses = ''
pcp_socket_dir = '$work/$name'
pcp_port = $((port + 10))
load_balance_mode = $balance
metrics_listen_addresses = '127.0.0.1'
metrics_port = $metrics
$(bench_backends "$DIRECT_PORT")
num_init_children = $1
max_pool = 4
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

start_pgpool() { # CHILDREN
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
num_init_children = $1
max_pool = 4
load_balance_mode = on
enable_pool_hba = on
pool_passwd = '$work/pool_passwd'
ssl = off
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
    wait_ready pgpool-II "$PGPOOL_PORT" "$pgpool_pid"
}

start_pgbouncer() {
    mkdir -p "$work/pgbouncer"
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
max_client_conn = $((IDLE + 100))
default_pool_size = $((IDLE + 20))
logfile = $work/pgbouncer/pgbouncer.log
pidfile = $work/pgbouncer/pgbouncer.pid
CONF
    chown -R postgres:postgres "$work/pgbouncer" 2>/dev/null || true
    # PgBouncer refuses to run as root; setpriv execs it as postgres in place, so $! is PgBouncer itself.
    if [ "$(id -u)" -eq 0 ]; then
        setpriv --reuid=postgres --regid=postgres --init-groups /usr/sbin/pgbouncer "$work/pgbouncer/pgbouncer.ini" >"$work/pgbouncer/out.log" 2>&1 &
    else
        /usr/sbin/pgbouncer "$work/pgbouncer/pgbouncer.ini" >"$work/pgbouncer/out.log" 2>&1 &
    fi
    pgbouncer_pid=$!
    pids+=("$pgbouncer_pid")
    wait_ready PgBouncer "$PGBOUNCER_PORT" "$pgbouncer_pid"
}

stop_pid() { # PID
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null || true
}

declare -A port_of=([direct]=$DIRECT_PORT [poold]=$POOLD_PORT [poold-primary]=$POOLD_PRIMARY_PORT [pgpool]=$PGPOOL_PORT
                    [pgbouncer]=$PGBOUNCER_PORT [poold-metrics]=$POOLD_METRICS_PORT)
# poold-primary: Poold with load_balance_mode = off, every statement to the primary as PgBouncer sends them; on one
# machine, spreading reads over three PostgreSQL instances costs CPU (three sets of caches) that a real replica adds.
# poold-metrics: poold with the metrics endpoint on and a scrape every second (issue 18: at most 2% fewer TPS than poold).
# direct-balanced: no proxy, the clients split evenly over the three nodes (one pgbench per node, run at once): what a
# load-balancing proxy that cost nothing would reach on this machine, the ceiling for poold and pgpool. Select
# workloads only (a standby refuses TPC-B's writes).
targets=(direct direct-balanced poold poold-metrics poold-primary pgpool pgbouncer)
workloads=("select-simple:-S -M simple -c 16 -j 2" "select-extended:-S -M extended -c 16 -j 2" "select-connect:-S -C -c 8 -j 2"
           "read-write:-c 8 -j 2")

log "starting the proxies"
start_poold 64
start_poold 64 poold-primary "$POOLD_PRIMARY_PORT" off
start_poold 64 poold-metrics "$POOLD_METRICS_PORT" on "$METRICS_HTTP_PORT"
# A Prometheus stand-in: one scrape a second for the whole run (a real server scrapes every 15 to 60 s).
( while kill -0 "$poold_metrics_pid" 2>/dev/null; do
      python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=5).read()" \
          "http://127.0.0.1:$METRICS_HTTP_PORT/metrics" >/dev/null 2>&1 || true
      sleep 1
  done ) &
pids+=("$!")
start_pgpool 32
start_pgbouncer

# CPU time (clock ticks) of a process and all its descendants, with the children it has reaped.
cpu_ticks_of_tree() { # PID
    local pids=" $1 " frontier=$1 next pid child ticks total=0
    while [ -n "$frontier" ]; do
        next=""
        for pid in $frontier; do
            for child in $(pgrep -P "$pid" 2>/dev/null); do pids+="$child "; next+="$child "; done
        done
        frontier=$next
    done
    for pid in $pids; do
        # Fields 14-17 after the command name (which may hold spaces): utime stime cutime cstime. A process gone
        # meanwhile counts 0.
        ticks=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13 + $14 + $15}')
        total=$((total + ${ticks:-0}))
    done
    echo "$total"
}
declare -A pid_of=([direct]="" [direct-balanced]="" [poold]=$poold_pid [poold-primary]=$poold_primary_pid [pgpool]=$pgpool_pid [pgbouncer]=$pgbouncer_pid
                   [poold-metrics]=$poold_metrics_pid)
clock_ticks=$(getconf CLK_TCK)

# pgbench_balanced ARGS...: the clients of ARGS (-c N; its -j is dropped) split over the three nodes, one pgbench per
# node with one thread, all at once; prints what one pgbench would: the TPS and transactions summed, the latency
# averaged over the transactions, the failed summed.
pgbench_balanced() {
    local clients i share outs=() procs=()
    clients=$(sed -n 's/.*-c \([0-9]*\).*/\1/p' <<<"$*")
    local rest
    rest=$(sed 's/-c [0-9]*//; s/-j [0-9]*//' <<<"$*")
    for i in 0 1 2; do
        share=$((clients / 3 + (i < clients % 3 ? 1 : 0)))
        outs+=("$work/balanced-$i.out")
        # shellcheck disable=SC2086 # rest holds several options
        PGPASSWORD=$USER_PASSWORD timeout $((DURATION * 3 + 60)) pgbench -h 127.0.0.1 -p "$((DIRECT_PORT + i))" -U "$USER_NAME" \
            $rest -c "$share" -j 1 -n "$USER_NAME" >"${outs[$i]}" 2>&1 &
        procs+=("$!")
    done
    wait "${procs[@]}" || true
    python3 - "${outs[@]}" <<'PY'
import re, sys
tps = done = failed = 0; weighted = 0.0
for path in sys.argv[1:]:
    text = open(path).read()
    m = re.search(r"^tps = ([0-9.]+)", text, re.M)
    n = re.search(r"^number of transactions actually processed: ([0-9]+)", text, re.M)
    l = re.search(r"^latency average = ([0-9.]+) ms", text, re.M)
    f = re.search(r"^number of failed transactions: ([0-9]+)", text, re.M)
    if not (m and n and l):
        sys.exit(f"pgbench on one node failed: {text.strip().splitlines()[-1:] }")
    tps += float(m.group(1)); done += int(n.group(1)); weighted += float(l.group(1)) * int(n.group(1))
    failed += int(f.group(1)) if f else 0
print(f"number of transactions actually processed: {done}/{done}")
print(f"number of failed transactions: {failed} (0.000%)")
print(f"latency average = {weighted / max(done, 1):.3f} ms")
print(f"tps = {tps:.6f} (without initial connection time)")
PY
}

# Not measured: every target serves both select workloads for a few seconds first, so Poold's JIT has produced its
# optimised code (tiered compilation) before round 1, as it has in any long-running deployment.
log "warm-up: 3 s of each select workload through each target"
for target in "${targets[@]}"; do
    [ "$target" = direct-balanced ] && continue
    for mode in simple extended; do
        PGPASSWORD=$USER_PASSWORD timeout 60 pgbench -h 127.0.0.1 -p "${port_of[$target]}" -U "$USER_NAME" -S -M "$mode" -c 16 -j 2 \
            -T 3 -n "$USER_NAME" >/dev/null 2>&1 || true
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
            before=0
            [ -n "$proxy" ] && before=$(cpu_ticks_of_tree "$proxy")
            if [ "$target" = direct-balanced ]; then
                [[ $args == *-S* ]] || continue
                out=$(pgbench_balanced $args -T "$DURATION" 2>&1) || true
            else
                out=$(PGPASSWORD=$USER_PASSWORD timeout $((DURATION * 3 + 60)) pgbench -h 127.0.0.1 -p "${port_of[$target]}" -U "$USER_NAME" \
                    $args -T "$DURATION" -n "$USER_NAME" 2>&1) || true
            fi
            cpu="-"
            tps=$(printf '%s\n' "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
            lat=$(printf '%s\n' "$out" | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' | head -1)
            failed=$(printf '%s\n' "$out" | sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' | head -1)
            done_tx=$(printf '%s\n' "$out" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' | head -1)
            if [ -n "$proxy" ] && [ "${done_tx:-0}" -gt 0 ]; then
                # The proxy's CPU per transaction, in microseconds.
                cpu=$(( ($(cpu_ticks_of_tree "$proxy") - before) * 1000000 / clock_ticks / done_tx ))
            fi
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$name" "$target" "${tps:-0}" "${lat:-0}" "${failed:-?}" "$cpu" >>"$results"
            log "round $round $name $target: tps=${tps:-FAILED} latency=${lat:-?} ms failed=${failed:-?} proxy CPU/tx=${cpu} us"
        done
    done
done

# ---- idle scale: IDLE client connections that do nothing; proxy memory and backend connections opened ----
# pgpool-II needs a process per client (~9 MiB) plus three backends per client (~3 MiB each): stay within the memory
# this machine has, and say so in the report when the count had to come down.
available_mib=$(( $(awk '/^MemAvailable:/ {print $2}' /proc/meminfo) / 1024 ))
requested_idle=$IDLE
if [ $((IDLE * 24)) -gt "$available_mib" ]; then
    IDLE=$((available_mib / 24))
    log "idle scale: $requested_idle connections would need about $((requested_idle * 24)) MiB, $available_mib MiB available: using $IDLE"
fi
rss_of_tree() { # PID: summed RSS in MiB of the process and its descendants
    local total=0 pid rss
    for pid in $1 $(pgrep -P "$1" 2>/dev/null; for c in $(pgrep -P "$1" 2>/dev/null); do pgrep -P "$c" 2>/dev/null; done); do
        # A process gone meanwhile has no status, and a zombie (a pgpool-II child that just exited) no VmRSS line: 0.
        rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
        total=$((total + ${rss:-0}))
    done
    echo $((total / 1024))
}
backend_count() {
    local total=0 i
    for i in 0 1 2; do
        total=$((total + $(as_pg psql -h "$work/pg" -p "$((DIRECT_PORT + i))" -U postgres -qAt -c \
            "SELECT count(*) FROM pg_stat_activity WHERE usename = '$USER_NAME'")))
    done
    echo "$total"
}
idle_test() { # TARGET PID
    local baseline previous
    # The previous target's backends may still be going away (pgpool-II's, after it stopped): wait until the count
    # holds still for a second, or it is taken off this target's figure (a negative count in one run's report).
    baseline=$(backend_count)
    for _ in $(seq 1 30); do
        sleep 1
        previous=$baseline
        baseline=$(backend_count)
        [ "$baseline" -eq "$previous" ] && break
    done
    printf '\\sleep %s s\n' "$((DURATION + 10))" >"$work/idle.sql"
    PGPASSWORD=$USER_PASSWORD timeout $((DURATION + 120)) pgbench -h 127.0.0.1 -p "${port_of[$1]}" -U "$USER_NAME" -n -c "$IDLE" -j 4 \
        -t 1 -f "$work/idle.sql" "$USER_NAME" >"$work/idle-$1.log" 2>&1 &
    local bench=$!
    local connected=0
    for _ in $(seq 1 $(( (DURATION + 5) * 5 ))); do
        connected=$(( $(backend_count) - baseline ))
        [ "$connected" -ge "$IDLE" ] && break
        sleep 0.2
    done
    sleep 2
    local rss=0
    [ -n "$2" ] && rss=$(rss_of_tree "$2")
    connected=$(( $(backend_count) - baseline ))
    wait "$bench" || true
    printf '%s\t%s\t%s\n' "$1" "$rss" "$connected" >>"$work/idle.tsv"
    log "idle $1: ${rss} MiB, $connected backend connections for $IDLE clients"
    if [ "$connected" -lt "$IDLE" ]; then
        log "idle $1: not every client connected; pgbench said:"
        tail -5 "$work/idle-$1.log" >&2
        # Each an if: a missing log must not end the function with a failure status (set -e would stop the script).
        if [ -f "$work/$1/out.log" ]; then tail -5 "$work/$1/out.log" >&2; fi
        if [ -f "$work/$1/$1.log" ]; then tail -5 "$work/$1/$1.log" >&2; fi
    fi
}
: >"$work/idle.tsv"
log "idle scale: $IDLE connections (pgpool-II restarted with num_init_children = $IDLE, Poold with $IDLE)"
stop_pid "$poold_primary_pid"
stop_pid "$poold_metrics_pid"
stop_pid "$poold_pid"; start_poold "$((IDLE + 10))"
stop_pid "$pgpool_pid"; start_pgpool "$((IDLE + 10))"
idle_test direct ""
idle_test poold "$poold_pid"
idle_test pgpool "$pgpool_pid"
idle_test pgbouncer "$pgbouncer_pid"

# ---- the table ----
cores=$(nproc)
mkdir -p bench/results
report=bench/results/$(date +%Y-%m-%d)-${cores}cores.md
python3 - "$results" "$work/idle.tsv" "$cores" "$ROUNDS" "$DURATION" "$IDLE" "$requested_idle" >"$report" <<'PY'
import sys, statistics, collections, datetime
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
idle = [l.rstrip("\n").split("\t") for l in open(sys.argv[2]) if l.strip()]
cores, rounds, duration, idle_n, idle_requested = sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
tps = collections.defaultdict(list); lat = collections.defaultdict(list); failed = collections.defaultdict(int)
cpu = collections.defaultdict(list)
for _, w, t, x, l, f, c in rows:
    tps[(w, t)].append(float(x)); lat[(w, t)].append(float(l))
    failed[(w, t)] += int(f) if f.isdigit() else 0
    if c.isdigit(): cpu[(w, t)].append(int(c))
workloads = list(dict.fromkeys(r[1] for r in rows)); targets = ["direct", "direct-balanced", "poold", "poold-metrics", "poold-primary", "pgpool", "pgbouncer"]
print(f"# Peer benchmark, {datetime.date.today()}, {cores} cores\n")
print(f"Median of {rounds} interleaved rounds, {duration} s per pgbench run after a warm-up; local PostgreSQL 15 primary + 2 streaming replicas; "
      "no TLS; SCRAM-SHA-256 everywhere; Poold and pgpool-II balance reads over the three nodes with equal weights, "
      "poold-primary (load_balance_mode = off) and PgBouncer (session mode) send everything to the primary.\n")
print("Proxy CPU is the user + system time of the proxy's processes (all of pgpool-II's) during the run, per transaction. "
      "direct-balanced has no proxy: the clients split evenly over the three nodes, one pgbench per node (select workloads only).\n")
print("| workload | target | TPS | avg latency (ms) | failed | proxy CPU per tx (µs) | vs pgpool-II | vs PgBouncer | vs direct |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for w in workloads:
    med = {t: statistics.median(tps[(w, t)]) for t in targets if tps[(w, t)]}
    for t in targets:
        if t not in med: continue
        ratio = lambda o: f"{med[t] / med[o]:.2f}x" if med.get(o) else "-"
        c = f"{statistics.median(cpu[(w, t)]):.0f}" if cpu[(w, t)] else "-"
        print(f"| {w} | {t} | {med[t]:.0f} | {statistics.median(lat[(w, t)]):.2f} | {failed[(w, t)]} | {c} | {ratio('pgpool')} | {ratio('pgbouncer')} | {ratio('direct')} |")
print("\nMetrics cost (poold-metrics: metrics_port on, scraped every second, vs poold; issue 18 allows at most 2% fewer TPS):\n")
for w in workloads:
    a, b = tps[(w, "poold-metrics")], tps[(w, "poold")]
    if a and b:
        print(f"- {w}: {statistics.median(a) / statistics.median(b):.3f}x TPS")
median = lambda w, t: statistics.median(tps[(w, t)]) if tps[(w, t)] else None
print("\n## Issue 17's session-mode goals\n")
print("poold-primary against PgBouncer: TPS at least 1.0x and proxy CPU per transaction at most PgBouncer's.\n")
for w in workloads:
    a, b = median(w, "poold-primary"), median(w, "pgbouncer")
    if a and b and cpu[(w, "poold-primary")] and cpu[(w, "pgbouncer")]:
        ca, cb = statistics.median(cpu[(w, "poold-primary")]), statistics.median(cpu[(w, "pgbouncer")])
        print(f"- {w}: {a / b:.2f}x TPS ({'met' if a >= b else 'NOT met'}), CPU {ca:.0f} against {cb:.0f} µs "
              f"({'met' if ca <= cb else 'NOT met'})")
print("\nLoad balancing against pgpool-II (goals: 2x on select-simple, 4x on select-extended). On one machine the three "
      "nodes share its cores: direct-balanced / pgpool is as far as any balancing proxy could reach in this run, one that "
      "cost no CPU at all.\n")
for w, goal in (("select-simple", 2.0), ("select-extended", 4.0)):
    p, g, d = median(w, "poold"), median(w, "pgpool"), median(w, "direct-balanced")
    if p and g:
        ceiling = f"; ceiling {d / g:.2f}x, poold at {p / d:.2f}x of direct-balanced" if d else ""
        print(f"- {w}: poold {p / g:.2f}x pgpool-II ({'met' if p / g >= goal else 'NOT met'}, goal {goal:.0f}x){ceiling}")
print(f"\n## {idle_n} idle client connections\n")
if idle_n != idle_requested:
    print(f"({idle_requested} requested; reduced to fit this machine's memory with pgpool-II's process per client.)\n")
print("Clients connect and send nothing. Backend connections are those opened on the three nodes for these clients.\n")
print("| target | proxy memory (MiB, all processes) | backend connections opened |")
print("|---|---:|---:|")
for t, rss, conns in idle:
    print(f"| {t} | {rss if t != 'direct' else '-'} | {conns} |")
PY
cat "$report"
log "written to $report"

# ---- the further sections, after this run's servers are stopped ----
cleanup
trap - EXIT INT TERM
set -e
if [ "${TX_SECTION:-1}" = 1 ]; then
    log "section: transaction mode (bench/compare-tx.sh)"
    DURATION=$DURATION ROUNDS=$ROUNDS bash bench/compare-tx.sh
fi
if [ "${RYW_SECTION:-1}" = 1 ]; then
    log "section: read_your_writes (bench/ryw.sh)"
    DURATION=$DURATION ROUNDS=$ROUNDS bash bench/ryw.sh
fi
if [ "${TLS_SECTION:-1}" = 1 ]; then
    log "section: TLS (bench/compare-tls.sh)"
    DURATION=$DURATION ROUNDS=$ROUNDS bash bench/compare-tls.sh
fi
