# Shared helpers for scripts/*.sh: sourced, not run.

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Installs Debian packages that are missing, when running as root; otherwise says what to install.
# Usage: ensure_packages CHECK_PATH PACKAGE [CHECK_PATH PACKAGE ...]
ensure_packages() {
    local missing=()
    while [ $# -ge 2 ]; do
        [ -e "$1" ] || missing+=("$2")
        shift 2
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        die "missing packages: ${missing[*]} (install them: sudo apt-get install -y ${missing[*]})"
    fi
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || die "apt-get update failed"
    apt-get install -y -qq "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
}

# The PostgreSQL 15 server binaries, openssl (test certificates), psql/pgbench clients.
ensure_postgres() {
    ensure_packages "$PG_BIN/postgres" postgresql-15 "$PG_BIN/pg_basebackup" postgresql-15 \
        /usr/bin/psql postgresql-client-15 /usr/bin/openssl openssl
    # Debian starts a default cluster on install; the tests use their own, on their own ports.
    if [ "$(id -u)" -eq 0 ] && command -v pg_ctlcluster >/dev/null 2>&1; then
        pg_ctlcluster 15 main stop >/dev/null 2>&1 || true
    fi
}

# pgpool-II and PgBouncer from Debian, for the compatibility tests and the peer benchmark. Debian may start
# their services on install; nothing here needs them running.
ensure_peers() {
    local had_pgpool=1 had_pgbouncer=1
    [ -e /usr/sbin/pgpool ] || had_pgpool=0
    [ -e /usr/sbin/pgbouncer ] || had_pgbouncer=0
    if [ "$(id -u)" -ne 0 ] && [ $had_pgpool -eq 0 -o $had_pgbouncer -eq 0 ]; then
        log "pgpool2/pgbouncer are not installed (apt-get install -y pgpool2 pgbouncer): their compatibility tests are skipped"
        return 0
    fi
    ensure_packages /usr/sbin/pgpool pgpool2 /usr/sbin/pg_enc pgpool2 /usr/sbin/pgbouncer pgbouncer
    if [ "$(id -u)" -eq 0 ]; then
        [ $had_pgpool -eq 0 ] && { service pgpool2 stop >/dev/null 2>&1 || true; }
        [ $had_pgbouncer -eq 0 ] && { service pgbouncer stop >/dev/null 2>&1 || true; }
    fi
    return 0
}

# Other drivers for the client tests: PgJDBC (run by java as a single-file program) and psycopg2 under Debian's
# /usr/bin/python3, installed when root; node-postgres (the npm package pg, NODE_PG_VERSION) into NODE_PG_DIR when node
# and npm are there. Whatever is missing, its tests are skipped with the reason.
NODE_PG_DIR=${NODE_PG_DIR:-/usr/local/lib/poold-test-node}
NODE_PG_VERSION=8.23.1
ensure_client_drivers() {
    ensure_node_pg
    if [ "$(id -u)" -ne 0 ]; then
        [ -e /usr/share/java/postgresql.jar ] && command -v java >/dev/null 2>&1 \
            || log "java or PgJDBC missing (apt-get install -y default-jre-headless libpostgresql-jdbc-java): the JDBC test is skipped"
        return 0
    fi
    local java=/usr/bin/java
    command -v java >/dev/null 2>&1 && java=$(command -v java)
    ensure_packages "$java" default-jre-headless /usr/share/java/postgresql.jar libpostgresql-jdbc-java \
        /usr/lib/python3/dist-packages/psycopg2 python3-psycopg2
}

ensure_node_pg() {
    export POOLD_TEST_NODE_MODULES="$NODE_PG_DIR/node_modules"
    [ -e "$NODE_PG_DIR/node_modules/pg/package.json" ] && return 0
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        log "node or npm missing: the node-postgres test is skipped"
        return 0
    fi
    mkdir -p "$NODE_PG_DIR" 2>/dev/null && [ -w "$NODE_PG_DIR" ] \
        || { log "cannot write $NODE_PG_DIR (set NODE_PG_DIR): the node-postgres test is skipped"; return 0; }
    timeout 300 npm install --prefix "$NODE_PG_DIR" --no-audit --no-fund --silent "pg@$NODE_PG_VERSION" >/dev/null 2>&1 \
        || log "npm install pg@$NODE_PG_VERSION failed: the node-postgres test is skipped"
    return 0
}

ensure_dotnet() {
    command -v dotnet >/dev/null 2>&1 || die "the .NET SDK (dotnet, 10.0) is not on PATH"
    export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
}

# build_release: Poold and pg_enc in Release, for the demo and the benchmark (they run the built dlls).
build_release() {
    log "building Poold and pg_enc (Release)"
    local project
    for project in src/Poold src/PgEnc; do
        dotnet build "$project" -c Release --nologo --verbosity quiet -clp:ErrorsOnly || die "build of $project failed"
    done
}

# Patroni, etcd and HAProxy from Debian, for the tests that follow a Patroni cluster (backend_discovery = patroni)
# behind HAProxy. Debian may start etcd and haproxy on install; the tests run their own on free ports.
ensure_patroni() {
    if [ "$(id -u)" -ne 0 ] && { [ ! -e /usr/bin/patroni ] || [ ! -e /usr/bin/etcd ] || [ ! -e /usr/sbin/haproxy ]; }; then
        log "patroni/etcd/haproxy are not installed (apt-get install -y patroni etcd-server haproxy): the Patroni tests are skipped"
        return 0
    fi
    local had_etcd=1 had_haproxy=1
    [ -e /usr/bin/etcd ] || had_etcd=0
    [ -e /usr/sbin/haproxy ] || had_haproxy=0
    if ! (ensure_packages /usr/bin/patroni patroni /usr/bin/etcd etcd-server /usr/sbin/haproxy haproxy); then
        log "patroni/etcd/haproxy could not be installed: the Patroni tests are skipped"
        return 0
    fi
    if [ "$(id -u)" -eq 0 ]; then
        [ $had_etcd -eq 0 ] && { service etcd stop >/dev/null 2>&1 || true; }
        [ $had_haproxy -eq 0 ] && { service haproxy stop >/dev/null 2>&1 || true; }
    fi
}
