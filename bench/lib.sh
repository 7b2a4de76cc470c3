# What the benchmark scripts share. Sourced after scripts/lib.sh and scripts/cluster.sh; uses the caller's globals
# `work` (its temporary directory), `pids` (what it started), and USER_NAME / USER_PASSWORD (the bench role).

# bench_stop REPLICAS: the cleanup: every process in pids (TERM, then KILL after 10 s), the cluster in $work/pg, then
# $work. A second signal (the whole process group gets one) must not cut it short.
bench_stop() {
    set +e
    trap '' INT TERM
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
    done
    cluster_stop "$work/pg" "$1"
    rm -rf "$work"
    log "stopped"
}

# bench_data PORT SCALE: pgbench's tables at SCALE in the bench role's database on the primary at PORT, replayed by every
# replica before the first run reads them.
bench_data() {
    log "pgbench -i -s $2"
    PGPASSWORD=$USER_PASSWORD pgbench -h 127.0.0.1 -p "$1" -U "$USER_NAME" -i -q -s "$2" "$USER_NAME" >/dev/null 2>&1 \
        || die "pgbench -i failed"
    local lag
    for _ in $(seq 1 100); do
        lag=$(as_pg psql -h "$work/pg" -p "$1" -U postgres -qAt -c \
            "SELECT count(*) FROM pg_stat_replication WHERE replay_lsn < pg_current_wal_insert_lsn()")
        [ "$lag" = 0 ] && break
        sleep 0.2
    done
}

# bench_secrets: the shared secrets in $work: an AES key file and pool_passwd made with pg_enc (Poold, pgpool-II),
# pool_hba.conf (SCRAM-SHA-256 everywhere) and PgBouncer's userlist.txt.
bench_secrets() {
    (umask 077; printf 'bench-key-%s\n' "$RANDOM$RANDOM" >"$work/pgpoolkey")
    local aes
    aes=$(dotnet src/PgEnc/bin/Release/net10.0/pg_enc.dll -k "$work/pgpoolkey" "$USER_PASSWORD" | sed -n 's/^pool_passwd string: //p')
    printf '%s:%s\n' "$USER_NAME" "$aes" >"$work/pool_passwd"
    printf 'host all all 127.0.0.1/32 scram-sha-256\nlocal all all scram-sha-256\n' >"$work/pool_hba.conf"
    printf '"%s" "%s"\n' "$USER_NAME" "$USER_PASSWORD" >"$work/userlist.txt"
    chmod 644 "$work/pool_passwd" "$work/pool_hba.conf" "$work/userlist.txt"
}

# bench_backends PORT: pgpool.conf lines for the primary on PORT and the replicas on PORT+1 and PORT+2, weight 1 each.
bench_backends() {
    for i in 0 1 2; do
        printf "backend_hostname%s = '127.0.0.1'\nbackend_port%s = %s\nbackend_weight%s = 1\nbackend_application_name%s = 'replica%s'\n" \
            "$i" "$i" "$(($1 + i))" "$i" "$i" "$i"
    done
}

# wait_ready NAME PORT PID [SSLMODE]: until a query through the proxy on PORT answers (sslmode SSLMODE, default
# disable); dies when PID exits or after 60 s.
wait_ready() {
    for _ in $(seq 1 300); do
        PGPASSWORD=$USER_PASSWORD psql "host=127.0.0.1 port=$2 user=$USER_NAME dbname=$USER_NAME sslmode=${4:-disable}" -qAtc "SELECT 1" \
            >/dev/null 2>&1 && return 0
        kill -0 "$3" 2>/dev/null || die "$1 exited at start (see $work)"
        sleep 0.2
    done
    die "$1 did not start on port $2"
}
