#!/usr/bin/env bash
# The demo: a local PostgreSQL 15 primary + 2 streaming replicas, and Poold in front of them on
# port 9999 with TLS (self-signed certificate) in dual-auth mode: clients log in to Poold with
# SCRAM-SHA-256 (SCRAM-SHA-256-PLUS over TLS) against an AES-encrypted pool_passwd made by pg_enc,
# and Poold logs in to the backends (SCRAM) itself. Its PCP port (9898) has a pcpadmin user in pcp.conf and a
# .pcppass, with pcp_node_info / pcp_node_count launchers in the demo folder. Prints how to connect, stays up
# until Ctrl-C, then stops everything it started.
#   PG_PORT (default 15432): primary port, replicas on the next two.  POOLD_PORT (default 9999).
#   PCP_PORT (default 9898).  METRICS_PORT (default 9187, when Poold has the metrics_port parameter).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
. scripts/cluster.sh

PG_PORT=${PG_PORT:-15432}
POOLD_PORT=${POOLD_PORT:-9999}
DEMO_USER=demo
DEMO_PASSWORD=demo
PCP_PORT=${PCP_PORT:-9898}
PCP_USER=pcpadmin
PCP_PASSWORD=demo
METRICS_PORT=${METRICS_PORT:-9187}

ensure_dotnet
ensure_postgres

work=$(mktemp -d /tmp/poold-demo.XXXXXX)
chmod 755 "$work"
poold_pid=
cleanup() {
    # Whatever fails here, the rest still runs: no errexit, and a second signal (timeout and Ctrl-C signal the whole
    # process group, so the script can get one twice) must not cut the cleanup short.
    set +e
    trap '' INT TERM
    if [ -n "$poold_pid" ] && kill -INT "$poold_pid" 2>/dev/null; then
        wait "$poold_pid" 2>/dev/null
    fi
    cluster_stop "$work/pg" 2
    rm -rf "$work"
    log "stopped"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

build_release
dotnet build src/PcpTools -c Release --nologo --verbosity quiet -clp:ErrorsOnly || die "build of src/PcpTools failed"
# The metrics endpoint, where this Poold has one.
metrics=
grep -q '"metrics_port"' src/Poold/Config/Params.cs && grep -q '"metrics_listen_addresses"' src/Poold/Config/Params.cs && metrics=1

cluster_start "$work/pg" "$PG_PORT" 2
cluster_sql "$work/pg" "$PG_PORT" "CREATE ROLE $DEMO_USER LOGIN PASSWORD '$DEMO_PASSWORD'"
cluster_sql "$work/pg" "$PG_PORT" "CREATE DATABASE $DEMO_USER OWNER $DEMO_USER"

log "creating a self-signed certificate"
openssl req -x509 -newkey rsa:2048 -nodes -subj "/CN=localhost" -days 7 \
    -keyout "$work/server.key" -out "$work/server.crt" >/dev/null 2>&1 || die "openssl failed"
chmod 600 "$work/server.key"

cat >"$work/poold.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $POOLD_PORT
unix_socket_directories = '$work'
pcp_socket_dir = '$work'
pcp_listen_addresses = '127.0.0.1'
pcp_port = $PCP_PORT
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
health_check_period = 5
health_check_user = 'postgres'
sr_check_period = 5
sr_check_user = 'postgres'
auto_failback = on
ssl = on
ssl_cert = 'server.crt'
ssl_key = 'server.key'
enable_pool_hba = on
pool_passwd = 'pool_passwd'
allow_clear_text_frontend_auth = off
pid_file_name = '$work/poold.pid'
logdir = '$work'
log_connections = on
log_disconnections = on
log_min_messages = info
CONF
if [ -n "$metrics" ]; then
    printf "metrics_listen_addresses = '127.0.0.1'\nmetrics_port = %s\n" "$METRICS_PORT" >>"$work/poold.conf"
fi

log "writing pcp.conf ($PCP_USER), .pcppass and the pcp_* launchers"
# pcp.conf holds the hex md5 of the password alone, as pgpool-II's pg_md5 PASSWORD prints it.
printf '%s:%s\n' "$PCP_USER" "$(printf '%s' "$PCP_PASSWORD" | md5sum | cut -d' ' -f1)" >"$work/pcp.conf"
(umask 077; printf '127.0.0.1:%s:%s:%s\n' "$PCP_PORT" "$PCP_USER" "$PCP_PASSWORD" >"$work/.pcppass")
mkdir -p "$work/bin"
for verb in node-info node-count; do
    printf '#!/bin/sh\nexec dotnet "%s" %s "$@"\n' "$PWD/src/PcpTools/bin/Release/net10.0/pcp.dll" "$verb" >"$work/bin/pcp_${verb//-/_}"
    chmod 755 "$work/bin/pcp_${verb//-/_}"
done

log "writing pool_hba.conf, the AES key file and pool_passwd (with pg_enc -m)"
cat >"$work/pool_hba.conf" <<HBA
local all all scram-sha-256
host  all all 127.0.0.1/32 scram-sha-256
host  all all ::1/128      scram-sha-256
HBA
(umask 077; head -c 24 /dev/urandom | base64 >"$work/pgpoolkey")
dotnet src/PgEnc/bin/Release/net10.0/pg_enc.dll -k "$work/pgpoolkey" -m -f "$work/poold.conf" -u "$DEMO_USER" "$DEMO_PASSWORD" >/dev/null \
    || die "pg_enc failed"

log "starting Poold on port $POOLD_PORT"
dotnet src/Poold/bin/Release/net10.0/poold.dll -n -f "$work/poold.conf" -k "$work/pgpoolkey" &
poold_pid=$!
for _ in $(seq 1 100); do
    PGPASSWORD=$DEMO_PASSWORD psql "host=127.0.0.1 port=$POOLD_PORT user=$DEMO_USER dbname=$DEMO_USER sslmode=require" \
        -qAtc "SELECT 1" >/dev/null 2>&1 && break
    kill -0 "$poold_pid" 2>/dev/null || die "Poold exited; see the messages above"
    sleep 0.2
done

cat <<MSG

Poold is running in front of a primary (port $PG_PORT) and two replicas, in $work.
Connect with TLS and SCRAM-SHA-256-PLUS (password: $DEMO_PASSWORD):

    psql "host=127.0.0.1 port=$POOLD_PORT user=$DEMO_USER dbname=$DEMO_USER sslmode=require channel_binding=require"

Ask Poold about its nodes over PCP (user $PCP_USER, password $PCP_PASSWORD, read from .pcppass by -w):

    export PATH="$work/bin:\$PATH" PCPPASSFILE="$work/.pcppass"
    pcp_node_info -h 127.0.0.1 -p $PCP_PORT -U $PCP_USER -w
    pcp_node_count -h 127.0.0.1 -p $PCP_PORT -U $PCP_USER -w
${metrics:+
Prometheus metrics: http://127.0.0.1:$METRICS_PORT/metrics
}
Press Ctrl-C to stop Poold and the PostgreSQL servers.
MSG
wait "$poold_pid"
