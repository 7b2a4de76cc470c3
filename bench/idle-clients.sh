#!/usr/bin/env bash
# Memory of Poold (pool_mode = transaction) holding many idle clients: COUNT plain clients, then (a fresh Poold)
# COUNT TLS clients. Each client logs in fully (startup packet, trust authentication, ReadyForQuery) through
# bench/idle_clients.py and then sends nothing. In transaction mode an idle client holds no server connection, so the
# figure is Poold's own cost per client. Targets (issue): 10,000 plain clients in at most 150 MB, 10,000 TLS clients in
# at most 300 MB.
#
# Measured on Poold's process: VmRSS and PSS (/proc/PID/smaps_rollup) once it is up and has served one login ("0
# clients"), then with every client logged in and idle (after SETTLE seconds: the largest of the samples taken each
# second; and VmHWM, the peak RSS since start, which includes the login burst). Connected clients are counted with ss
# on Poold's port.
#
#   COUNT (10000) clients, CONCURRENCY (100) logins at once, POOL_SIZE (10) default_pool_size, SETTLE (5) seconds,
#   BASE_PORT (28432): PostgreSQL on it, Poold on the next two ports, PgBouncer on the two after; PHASES ("plain tls"):
#   which phases to run, among plain, tls, pgbouncer-plain and pgbouncer-tls (PgBouncer 1.18 in transaction mode with
#   the same clients, certificate and pool size, for scale; it has no target); HEAP_STATS (unset): a path prefix, to
#   write Poold's managed heap by type at idle (`dotnet-dump ... dumpheap -stat`, dotnet-dump on the PATH) to PREFIX.PHASE.
#   The log shows the resident memory of the largest mappings at 0 clients and at idle.
#
# Prints a markdown report and writes it to bench/results/. Everything it starts, it stops.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
. scripts/cluster.sh
. bench/lib.sh

COUNT=${COUNT:-10000}
CONCURRENCY=${CONCURRENCY:-100}
POOL_SIZE=${POOL_SIZE:-10}
SETTLE=${SETTLE:-5}
PHASES=${PHASES:-plain tls}
BASE_PORT=${BASE_PORT:-28432}
PG_PORT=$BASE_PORT
USER_NAME=idle
command_line="COUNT=$COUNT CONCURRENCY=$CONCURRENCY POOL_SIZE=$POOL_SIZE SETTLE=$SETTLE bench/idle-clients.sh"

ensure_dotnet
ensure_postgres
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -gt $((COUNT + 200)) ] || die "open-file limit $(ulimit -n) is too low for $COUNT clients (raise the hard limit)"
ports=$(awk '{print $2 - $1}' /proc/sys/net/ipv4/ip_local_port_range)
[ "$ports" -gt $((COUNT * 2)) ] || log "warning: only $ports ephemeral ports for $COUNT clients per phase"

work=$(mktemp -d /tmp/poold-idle.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() { bench_stop 0; }
trap cleanup EXIT
trap 'exit 130' INT TERM

build_release

export PG_MAX_CONNECTIONS=100
cluster_start "$work/pg" "$PG_PORT" 0
cluster_sql "$work/pg" "$PG_PORT" "CREATE ROLE $USER_NAME LOGIN"
# trust for this role, ahead of the cluster's scram-sha-256 line.
as_pg sh -c "{ printf 'host all $USER_NAME 127.0.0.1/32 trust\n'; cat '$work/pg/node0/pg_hba.conf'; } >'$work/pg/node0/pg_hba.new' \
    && mv '$work/pg/node0/pg_hba.new' '$work/pg/node0/pg_hba.conf'"
cluster_sql "$work/pg" "$PG_PORT" "SELECT pg_reload_conf()" >/dev/null

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost -keyout "$work/server.key" -out "$work/server.crt" \
    >/dev/null 2>&1 || die "openssl req failed"
chmod 600 "$work/server.key"

start_poold() { # NAME PORT
    local name=$1 port=$2
    mkdir -p "$work/$name"
    cat >"$work/$name/poold.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$work/$name'
pcp_listen_addresses = ''
pcp_socket_dir = '$work/$name'
pcp_port = $((port + 10))
backend_hostname0 = '127.0.0.1'
backend_port0 = $PG_PORT
backend_weight0 = 1
load_balance_mode = off
pool_mode = transaction
default_pool_size = $POOL_SIZE
max_client_conn = $((COUNT + 100))
max_unauthenticated_connections = $((CONCURRENCY * 2 + 100))
listen_backlog = 4096
enable_pool_hba = on
ssl = on
ssl_cert = '$work/server.crt'
ssl_key = '$work/server.key'
pid_file_name = '$work/$name/poold.pid'
logdir = '$work/$name'
log_min_messages = warning
sr_check_period = 0
health_check_period = 0
CONF
    printf 'host all all 127.0.0.1/32 trust\nhostssl all all 127.0.0.1/32 trust\nlocal all all trust\n' >"$work/$name/pool_hba.conf"
    dotnet src/Poold/bin/Release/net10.0/poold.dll -n -f "$work/$name/poold.conf" >"$work/$name/out.log" 2>&1 &
    poold_pid=$!
    pids+=("$poold_pid")
    wait_started Poold "$name" "$port"
}

# wait_started WHAT NAME PORT: until the process $poold_pid answers a login on PORT (its output in $work/NAME/out.log).
wait_started() {
    local what=$1 name=$2 port=$3
    for _ in $(seq 1 300); do
        psql "host=127.0.0.1 port=$port user=$USER_NAME dbname=postgres sslmode=disable" -qAtc "SELECT 1" >/dev/null 2>&1 && return 0
        kill -0 "$poold_pid" 2>/dev/null || { cat "$work/$name/out.log" >&2; die "$what exited at start"; }
        sleep 0.2
    done
    die "$what did not start on port $port"
}
kib() { # PID FIELD
    if [ "$2" = Pss ]; then awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup"; else awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; fi
}
# mappings PID: resident KiB per mapped file (anonymous mappings as [anon], plus [heap], [stack]...), largest first
mappings() {
    awk '/^[0-9a-f]+-[0-9a-f]+ / {name = NF >= 6 ? $6 : "[anon]"} /^Rss:/ {rss[name] += $2}
         END {for (n in rss) if (rss[n] > 0) printf "%d\t%s\n", rss[n], n}' "/proc/$1/smaps" | sort -rn
}
connected() { ss -Htn state established "( sport = :$1 )" | wc -l; }

: >"$work/results.tsv"
phase() { # NAME PORT [--tls]
    local name=$1 port=$2 tls=${3:-}
    log "$name: starting ${name%%-*} on port $port"
    case $name in pgbouncer-*) start_pgbouncer "$name" "$port" ;; *) start_poold "$name" "$port" ;; esac
    # One TLS login before the baseline too, so both phases start from a Poold that has served its kind of login.
    [ -n "$tls" ] && psql "host=127.0.0.1 port=$port user=$USER_NAME dbname=postgres sslmode=require" -qAtc "SELECT 1" >/dev/null
    sleep 2
    local rss0 pss0
    rss0=$(kib "$poold_pid" VmRSS); pss0=$(kib "$poold_pid" Pss)
    mappings "$poold_pid" >"$work/$name.mappings0"
    log "$name: 0 clients: RSS $((rss0 / 1024)) MiB, PSS $((pss0 / 1024)) MiB; opening $COUNT clients, $CONCURRENCY at a time"
    rm -f "$work/$name.ready" "$work/$name.release"
    python3 bench/idle_clients.py --port "$port" --user "$USER_NAME" --database postgres --count "$COUNT" \
        --concurrency "$CONCURRENCY" $tls --ready-file "$work/$name.ready" --release-file "$work/$name.release" \
        >"$work/$name.client.json" 2>"$work/$name.client.err" &
    local client=$!
    pids+=("$client")
    local deadline=$((SECONDS + 900))
    while [ ! -f "$work/$name.ready" ]; do
        kill -0 "$client" 2>/dev/null || { cat "$work/$name.client.err" >&2; die "$name: the client exited early"; }
        [ $SECONDS -lt $deadline ] || die "$name: logins did not finish in 900 s"
        sleep 1
    done
    log "$name: logins done: $(cat "$work/$name.ready")"
    local rss=0 pss=0 r p
    for _ in $(seq 1 "$SETTLE"); do
        sleep 1
        r=$(kib "$poold_pid" VmRSS); p=$(kib "$poold_pid" Pss)
        [ "$r" -gt "$rss" ] && rss=$r
        [ "$p" -gt "$pss" ] && pss=$p
    done
    local hwm conns
    hwm=$(kib "$poold_pid" VmHWM)
    mappings "$poold_pid" >"$work/$name.mappings1"
    if [ -n "${HEAP_STATS:-}" ] && [ "${name%%-*}" != pgbouncer ]; then
        # HEAP_STATS=FILE: the managed heap by type at idle (dotnet-dump; the dump itself is deleted)
        dotnet-dump collect -p "$poold_pid" --type Heap -o "$work/$name.dump" >/dev/null \
            && dotnet-dump analyze "$work/$name.dump" -c "dumpheap -stat -live" -c "dumpheap -type System.String -live -short" -c exit >"$HEAP_STATS.$name" \
            && log "$name: managed heap by type written to $HEAP_STATS.$name"
        rm -f "$work/$name.dump"
    fi
    log "$name: resident memory by mapping at 0 clients and idle (KiB; largest 8): $(awk -F'\t' 'NR == FNR {before[$2] = $1; next}
        FNR <= 8 {printf "%s%s %d -> %d", (FNR > 1 ? ", " : ""), $2, before[$2], $1}' "$work/$name.mappings0" "$work/$name.mappings1")"
    conns=$(connected "$port")
    log "$name: $conns connected: RSS $((rss / 1024)) MiB, PSS $((pss / 1024)) MiB, peak $((hwm / 1024)) MiB"
    touch "$work/$name.release"
    wait "$client" || log "$name: the client reported failures"
    local summary
    summary=$(cat "$work/$name.client.json")
    log "$name: client: $summary"
    local grep_log
    grep_log=$(cat "$work/$name"/*.log 2>/dev/null | tr -d '\0' | grep -aiE 'warn|error|fatal|exception' | tail -5 | tr '\t' ' ' | tr '\n' '|' || true)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$rss0" "$pss0" "$rss" "$pss" "$hwm" "$conns" "$summary" "$grep_log" \
        >>"$work/results.tsv"
    stop_poold "$poold_pid"
}
# PgBouncer in transaction mode, trust, the same certificate; started as postgres when run as root. Sets poold_pid (the
# process measured) to PgBouncer's pid.
start_pgbouncer() { # NAME PORT
    local name=$1 port=$2
    command -v /usr/sbin/pgbouncer >/dev/null || die "$name: PgBouncer is not installed (apt-get install -y pgbouncer)"
    mkdir -p "$work/$name"
    cp "$work/server.key" "$work/server.crt" "$work/$name/"
    printf '"%s" ""\n' "$USER_NAME" >"$work/$name/users.txt"
    cat >"$work/$name/pgbouncer.ini" <<CONF
[databases]
postgres = host=127.0.0.1 port=$PG_PORT dbname=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $work/$name/users.txt
pool_mode = transaction
default_pool_size = $POOL_SIZE
max_client_conn = $((COUNT + 100))
client_tls_sslmode = allow
client_tls_key_file = $work/$name/server.key
client_tls_cert_file = $work/$name/server.crt
logfile = $work/$name/pgbouncer.log
pidfile = $work/$name/pgbouncer.pid
CONF
    chmod 600 "$work/$name/server.key"
    local run=(bash -c "ulimit -n $(ulimit -n); exec /usr/sbin/pgbouncer '$work/$name/pgbouncer.ini'")
    if [ "$(id -u)" -eq 0 ]; then
        chown -R postgres:postgres "$work/$name"
        run=(setpriv --reuid=postgres --regid=postgres --init-groups "${run[@]}")
    fi
    "${run[@]}" >"$work/$name/out.log" 2>&1 &
    poold_pid=$!
    pids+=("$poold_pid")
    wait_started PgBouncer "$name" "$port"
}

stop_poold() {
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null || true
}

for kind in $PHASES; do
    case $kind in
        plain) phase plain $((BASE_PORT + 1)) ;;
        tls) phase tls $((BASE_PORT + 2)) --tls ;;
        pgbouncer-plain) phase pgbouncer-plain $((BASE_PORT + 3)) ;;
        pgbouncer-tls) phase pgbouncer-tls $((BASE_PORT + 4)) --tls ;;
        *) die "PHASES: unknown phase '$kind' (plain, tls, pgbouncer-plain, pgbouncer-tls)" ;;
    esac
done

cores=$(nproc)
mkdir -p bench/results
report=bench/results/$(date +%Y-%m-%d)-idle-clients-${cores}cores.md
python3 - "$work/results.tsv" "$COUNT" "$command_line" "$cores" "$POOL_SIZE" "$CONCURRENCY" >"$report" <<'PY'
import sys, json, datetime
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
count, cmd, cores, pool, conc = int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
targets = {"plain": 150, "tls": 300}  # Poold's; PgBouncer's rows are there for scale
print(f"# Idle clients in transaction mode, {datetime.date.today()}, {cores} cores (shared machine)\n")
print(f"Command: `{cmd}`\n")
print(f"Poold (Release, workstation non-concurrent GC as shipped), `pool_mode = transaction`, `default_pool_size = {pool}`, "
      f"one local PostgreSQL 15 node, trust authentication. {count} clients log in ({conc} at a time) with "
      "bench/idle_clients.py (Python asyncio; TLS: SSLRequest then TLS, self-signed RSA 2048 certificate) and stay idle. "
      "A fresh Poold for each phase. PostgreSQL and the clients share the machine with Poold.\n")
print("RSS/PSS at 0 clients: after start-up and one login of the phase's kind. With clients: the largest of the samples "
      "taken each second for a few seconds after the last login. Peak: VmHWM (includes the login burst). "
      "MB = 10^6 bytes for the targets; MiB elsewhere.\n")
print("| clients | connected | RSS at 0 (MiB) | RSS idle (MiB) | RSS idle (MB) | PSS idle (MiB) | peak RSS (MiB) | per client (KiB RSS) | target | logins failed | closed while idle | login time (s) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for name, rss0, pss0, rss, pss, hwm, conns, summary, log in rows:
    s = json.loads(summary) if summary.strip().startswith("{") else {}
    rss0, rss, pss, hwm = int(rss0), int(rss), int(pss), int(hwm)
    mb = rss * 1024 / 1e6
    per = (rss - rss0) / max(1, s.get("logged_in", count))
    if name in targets:
        verdict = "met" if mb <= targets[name] and s.get("failed", 1) == 0 else "NOT met"
        target = f"≤ {targets[name]} MB: {verdict}"
    else:
        target = "(for scale)"
    print(f"| {count} {name} | {conns} | {rss0 / 1024:.0f} | {rss / 1024:.0f} | {mb:.0f} | {pss / 1024:.0f} | {hwm / 1024:.0f} | "
          f"{per:.1f} | {target} | {s.get('failed', '?')} | {s.get('closed_by_server_while_idle', '?')} | "
          f"{s.get('login_seconds', '?')} |")
for name, *_, summary, log in rows:
    s = json.loads(summary) if summary.strip().startswith("{") else {}
    if s.get("errors"):
        print(f"\n{name}: login errors: " + "; ".join(f"{k} (x{v})" for k, v in s["errors"].items()))
    if log.strip("|"):
        print(f"\n{name}: log (warnings/errors, last 5): `{log}`")
PY
cat "$report"
log "written to $report"
