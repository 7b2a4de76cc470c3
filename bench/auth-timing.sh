#!/usr/bin/env bash
# Non-enumeration timing (issue 19): the time to the 28P01 for an unknown user and for a known user with a wrong
# password, through Poold, for dual-auth with pool_passwd (SCRAM and md5 in pool_hba) and for auth_query (verifier
# cache off, the default, and on). One local PostgreSQL primary; a raw-protocol client (bench/auth_timing.py) times
# each leg of the exchange; N attempts of each kind, alternated, after a warm-up; then COLD first attempts of names never
# tried before (before any cache holds them). Prints Markdown tables (median and p90, ms).
#
#   N (200) attempts per kind, COLD (100) first attempts per kind, BASE_PORT (26532).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
. scripts/cluster.sh
. bench/lib.sh

N=${N:-200}
COLD=${COLD:-100}
BASE_PORT=${BASE_PORT:-26532}
ensure_dotnet
ensure_postgres

work=$(mktemp -d /tmp/poold-auth-timing.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() { bench_stop 0; }
trap cleanup EXIT

dotnet build src/Poold -c Release -v q -nologo >/dev/null
cluster_start "$work/pg" "$BASE_PORT" 0
cluster_sql "$work/pg" "$BASE_PORT" "
CREATE ROLE alice LOGIN PASSWORD 'alice_pw';
CREATE ROLE bob LOGIN PASSWORD 'bob_pw';
DO \$\$ BEGIN FOR i IN 1..$COLD LOOP EXECUTE format('CREATE ROLE bob%s LOGIN PASSWORD %L', i, 'bob_pw' || i); END LOOP; END \$\$;
CREATE ROLE poold_auth LOGIN PASSWORD 'auth_pw';
CREATE FUNCTION public.poold_lookup(i_username text) RETURNS TABLE (usename name, passwd text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS \$\$
    SELECT rolname, rolpassword FROM pg_catalog.pg_authid
     WHERE rolname = i_username AND rolcanlogin AND (rolvaliduntil IS NULL OR rolvaliduntil > now())
  \$\$;
REVOKE ALL ON FUNCTION public.poold_lookup(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.poold_lookup(text) TO poold_auth;" >/dev/null

start() { # NAME PORT HBA_METHOD EXTRA
    mkdir -p "$work/$1"
    printf 'host all all 127.0.0.1/32 %s\n' "$3" >"$work/$1/pool_hba.conf"
    { printf 'alice:TEXTalice_pw\npoold_auth:TEXTauth_pw\n'; for i in $(seq 1 "$COLD"); do printf 'alice%s:TEXTalice_pw%s\n' "$i" "$i"; done; } \
        >"$work/$1/pool_passwd"
    chmod 600 "$work/$1/pool_passwd"
    cat >"$work/$1/poold.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $2
unix_socket_directories = '$work/$1'
pcp_listen_addresses = ''
pcp_socket_dir = '$work/$1'
pcp_port = $(($2 + 10))
backend_hostname0 = '127.0.0.1'
backend_port0 = $BASE_PORT
num_init_children = 32
ssl = off
enable_pool_hba = on
pool_passwd = 'pool_passwd'
allow_clear_text_frontend_auth = off
pid_file_name = '$work/$1/poold.pid'
logdir = '$work/$1'
log_min_messages = warning
$4
CONF
    dotnet src/Poold/bin/Release/net10.0/poold.dll -n -f "$work/$1/poold.conf" >"$work/$1/out.log" 2>&1 &
    pids+=("$!")
    for _ in $(seq 1 100); do
        pg_isready -q -h 127.0.0.1 -p "$2" && return 0
        sleep 0.2
    done
    die "$1 did not start (see $work/$1/out.log)"
}

auth_query="auth_user = 'poold_auth'
auth_query = 'SELECT usename, passwd FROM public.poold_lookup(\$1)'"
start passwd-scram $((BASE_PORT + 1)) scram-sha-256 ""
start passwd-md5 $((BASE_PORT + 2)) md5 ""
start aq-nocache $((BASE_PORT + 3)) scram-sha-256 "$auth_query"
start aq-cache $((BASE_PORT + 4)) scram-sha-256 "$auth_query
auth_query_cache_time = 60"

measure() { # TITLE PORT METHOD KNOWN [cold]
    printf '\n### %s\n\n' "$1"
    printf '| leg | known, wrong password: median | p90 | unknown user: median | p90 | known - unknown (median) |\n'
    printf '|---|---|---|---|---|---|\n'
    /usr/bin/python3 bench/auth_timing.py 127.0.0.1 "$2" postgres "$3" "$([ "${5:-}" = cold ] && echo "$COLD" || echo "$N")" "$4" nobody_here ${5:-}
}

printf '# auth timing: %s, N=%s per kind, alternated; ms\n' "$(git rev-parse --short HEAD)" "$N"
measure "pool_passwd (TEXT entry), pool_hba scram-sha-256" $((BASE_PORT + 1)) scram alice
measure "pool_passwd (TEXT entry), pool_hba md5" $((BASE_PORT + 2)) md5 alice
measure "auth_query (SCRAM verifier), auth_query_cache_time = 0 (default)" $((BASE_PORT + 3)) scram bob
measure "auth_query (SCRAM verifier), auth_query_cache_time = 60" $((BASE_PORT + 4)) scram bob
printf '\n## First attempts (each name tried once, %s per kind)\n' "$COLD"
measure "cold: pool_passwd (TEXT entry), pool_hba scram-sha-256" $((BASE_PORT + 1)) scram alice cold
measure "cold: auth_query, auth_query_cache_time = 60" $((BASE_PORT + 4)) scram bob cold
