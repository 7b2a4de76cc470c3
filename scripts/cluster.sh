# Starts and stops a local PostgreSQL primary + streaming replicas for the demo and the benchmarks.
# Sourced after lib.sh. Servers listen on 127.0.0.1 only; as root they run as the postgres user.

# as_pg CMD...: run a command as the server's owner.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# cluster_start DIR PORT REPLICAS: primary on PORT, replica i on PORT+i, in DIR/node0..N.
cluster_start() {
    local dir=$1 port=$2 replicas=$3 i
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$dir"
    log "initdb primary on port $port"
    as_pg "$PG_BIN/initdb" -D "$dir/node0" -U postgres --auth=trust -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 \
        || die "initdb failed: see $dir/initdb.log"
    cat >>"$dir/node0/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = ${PG_MAX_CONNECTIONS:-300}
wal_level = replica
max_wal_senders = 10
hot_standby = on
password_encryption = 'scram-sha-256'
logging_collector = off
CONF
    cat >"$dir/node0/pg_hba.conf" <<HBA
local all all trust
host replication all 127.0.0.1/32 trust
host all postgres 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
HBA
    as_pg "$PG_BIN/pg_ctl" -D "$dir/node0" -l "$dir/node0.log" -w start >/dev/null || die "primary did not start: see $dir/node0.log"
    for i in $(seq 1 "$replicas"); do
        log "pg_basebackup replica $i on port $((port + i))"
        as_pg "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$port" -U postgres -D "$dir/node$i" -R -X stream >/dev/null 2>&1 \
            || die "pg_basebackup for replica $i failed"
        as_pg sh -c "printf \"port = %s\nprimary_conninfo = 'host=127.0.0.1 port=%s user=postgres application_name=replica%s'\n\" \
            $((port + i)) $port $i >> '$dir/node$i/postgresql.auto.conf'"
        as_pg "$PG_BIN/pg_ctl" -D "$dir/node$i" -l "$dir/node$i.log" -w start >/dev/null || die "replica $i did not start: see $dir/node$i.log"
    done
}

# cluster_sql DIR PORT SQL: run SQL on a node as postgres through its socket.
cluster_sql() {
    as_pg psql -h "$1" -p "$2" -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt -c "$3"
}

# cluster_stop DIR REPLICAS
cluster_stop() {
    local dir=$1 replicas=$2 i
    for i in $(seq "$replicas" -1 0); do
        [ -f "$dir/node$i/postmaster.pid" ] && as_pg "$PG_BIN/pg_ctl" -D "$dir/node$i" -m fast -w stop >/dev/null 2>&1
    done
    return 0
}
