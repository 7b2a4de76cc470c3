#!/usr/bin/env bash
# Builds Poold and runs every test: unit tests, then integration tests against a real PostgreSQL
# primary + 2 streaming replicas that the tests start themselves, then the container tests (replicas in
# Docker containers, cut off or frozen; Docker is installed and started here, the image built by
# scripts/pg-image.sh; skipped with the reason where no engine can start). Installs what is missing when
# run as root. The last line is "N passed, M failed" (", K skipped" when some were).
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
. scripts/docker.sh

ensure_dotnet
ensure_postgres
ensure_peers
ensure_patroni
ensure_client_drivers

results=$(mktemp -d)
trap 'rm -rf "$results"; stop_docker' EXIT

export TESTCONTAINERS_RYUK_DISABLED=true TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1
containers_started=$(date +%s)
if ensure_docker && bash scripts/pg-image.sh; then
    log "Docker ready and image built in $(( $(date +%s) - containers_started )) s"
else
    [ -n "$DOCKER_UNAVAILABLE" ] || DOCKER_UNAVAILABLE="the PostgreSQL image could not be built (scripts/pg-image.sh)"
    log "container tests will be skipped: $DOCKER_UNAVAILABLE"
fi

log "restoring"
dotnet restore Poold.sln --verbosity quiet || die "dotnet restore failed"
log "checking whitespace formatting"
dotnet format whitespace . --folder --verify-no-changes --verbosity quiet \
    || die "formatting differs from .editorconfig: run 'dotnet format whitespace . --folder'"
log "building (Release, warnings are errors)"
dotnet build Poold.sln -c Release --no-restore --nologo --verbosity quiet -clp:ErrorsOnly || die "build failed"

passed=0 failed=0 skipped=0 status=0
for project in tests/Poold.Tests tests/Poold.IntegrationTests tests/Poold.ContainerTests; do
    name=$(basename "$project")
    log "running $name"
    out="$results/$name.log"
    started=$(date +%s)
    dotnet test "$project" -c Release --no-build --nologo 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    log "$name took $(( $(date +%s) - started )) s"
    summary=$(grep -E '(Passed|Failed|Skipped)! +- Failed: +[0-9]+, Passed: +[0-9]+, Skipped: +[0-9]+' "$out" | tail -n 1)
    if [ -z "$summary" ]; then
        log "$name produced no test summary (exit code $rc): counting it as one failure"
        failed=$((failed + 1)); status=1
        continue
    fi
    f=$(sed -E 's/.*Failed: +([0-9]+),.*/\1/' <<<"$summary")
    p=$(sed -E 's/.*Passed: +([0-9]+),.*/\1/' <<<"$summary")
    s=$(sed -E 's/.*Skipped: +([0-9]+),.*/\1/' <<<"$summary")
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
    [ "$rc" -eq 0 ] && [ "$f" -eq 0 ] || status=1
    if [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then
        if [ "$name" = Poold.ContainerTests ] && [ -n "$DOCKER_UNAVAILABLE" ]; then
            log "$name skipped: $DOCKER_UNAVAILABLE"
        else
            log "$name ran no test"; status=1
        fi
    fi
done

line="$passed passed, $failed failed"
[ "$skipped" -gt 0 ] && line="$line, $skipped skipped"
echo "$line"
exit $status
