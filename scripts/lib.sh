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

ensure_dotnet() {
    command -v dotnet >/dev/null 2>&1 || die "the .NET SDK (dotnet, 10.0) is not on PATH"
    export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
}
