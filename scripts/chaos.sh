#!/usr/bin/env bash
# Runs only the chaos-with-a-ledger integration test (tests/Poold.IntegrationTests/Chaos): a TPC-B-like load through
# the Poold daemon while a replica is killed -9, a replica is frozen (SIGSTOP), the primary is killed and a standby
# promoted, and Poold is stopped -m fast and restarted; then every acknowledged commit must be on the new primary.
#   scripts/chaos.sh [PHASE_SECONDS]   seconds of load per fault phase (default 4, as in CI; e.g. 60 for a long run)
#   POOLD_CHAOS_LOG=FILE               also keep Poold's own output there
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

export POOLD_CHAOS_PHASE_SECONDS=${1:-${POOLD_CHAOS_PHASE_SECONDS:-4}}
case $POOLD_CHAOS_PHASE_SECONDS in '' | *[!0-9]*) die "PHASE_SECONDS must be a whole number of seconds" ;; esac

ensure_dotnet
ensure_postgres

log "building the integration tests (Release)"
dotnet build tests/Poold.IntegrationTests -c Release --nologo --verbosity quiet -clp:ErrorsOnly || die "build failed"
log "running the chaos test, $POOLD_CHAOS_PHASE_SECONDS s per phase"
# The whole run stays bounded: five phases plus the waits between them, each with its own deadline.
timeout $((600 + 10 * POOLD_CHAOS_PHASE_SECONDS)) \
    dotnet test tests/Poold.IntegrationTests -c Release --no-build --nologo --filter "FullyQualifiedName~Poold.IntegrationTests.Chaos" \
    --logger "console;verbosity=detailed"
