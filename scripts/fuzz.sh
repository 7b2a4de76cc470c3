#!/usr/bin/env bash
# Fuzzes one of Poold's parsers with AFL++ and SharpFuzz.
#   scripts/fuzz.sh list                 names the targets (one corpus folder each in tests/Poold.Fuzz/corpus)
#   scripts/fuzz.sh TARGET SECONDS       builds tests/Poold.Fuzz (Release), instruments poold.dll, runs afl-fuzz on
#                                        TARGET for SECONDS, prints executions and crashes, and copies each new
#                                        crashing input into tests/Poold.Fuzz/corpus/TARGET (crash-<sha256 prefix>)
#   scripts/fuzz.sh all SECONDS          every target in turn, SECONDS each
# Installs afl++ (Debian) and the sharpfuzz dotnet tool when missing and run as root. Work files (build, findings)
# go to $FUZZ_WORK (default /tmp/poold-fuzz). The unit tests replay the corpus, so a crash copied here is checked
# by CI from then on.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

corpus_root=tests/Poold.Fuzz/corpus
work=${FUZZ_WORK:-/tmp/poold-fuzz}
sharpfuzz_version=2.3.0

targets() { ls "$corpus_root"; }

usage() { die "usage: scripts/fuzz.sh list | TARGET SECONDS | all SECONDS   (targets: $(targets | tr '\n' ' '))"; }

ensure_fuzz_tools() {
    ensure_packages /usr/bin/afl-fuzz afl++
    export PATH="$PATH:$HOME/.dotnet/tools"
    if ! command -v sharpfuzz >/dev/null 2>&1; then
        [ "$(id -u)" -eq 0 ] || die "the sharpfuzz tool is missing (dotnet tool install --global SharpFuzz.CommandLine --version $sharpfuzz_version)"
        log "installing the sharpfuzz tool $sharpfuzz_version"
        dotnet tool install --global SharpFuzz.CommandLine --version "$sharpfuzz_version" >/dev/null || die "dotnet tool install failed"
    fi
}

# Builds the harness program once per run of this script and instruments poold.dll in the copy it runs.
build_instrumented() {
    [ -n "${built:-}" ] && return 0
    log "building tests/Poold.Fuzz (Release) into $work/out"
    rm -rf "$work/out"
    mkdir -p "$work"
    dotnet build tests/Poold.Fuzz -c Release -o "$work/out" --nologo --verbosity quiet -clp:ErrorsOnly >"$work/build.log" 2>&1 \
        || { cat "$work/build.log" >&2; die "build failed"; }
    log "instrumenting poold.dll"
    sharpfuzz "$work/out/poold.dll" >/dev/null || die "sharpfuzz failed to instrument poold.dll"
    built=1
}

stat_of() { sed -n "s/^$1 *: *//p" "$2" 2>/dev/null | head -n 1; }

fuzz_one() {
    local target=$1 seconds=$2
    [ -d "$corpus_root/$target" ] || usage
    build_instrumented
    local findings="$work/findings/$target"
    rm -rf "$findings"
    mkdir -p "$findings"
    log "fuzzing $target for ${seconds}s"
    # The container has no CPU frequency control, crash reporting may go to a core handler, and dotnet is not an
    # AFL-instrumented binary (SharpFuzz reports coverage from inside poold.dll). An allocation above 1 GiB fails
    # with OutOfMemoryException, so an input that makes a parser allocate a huge buffer counts as a crash.
    AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_SKIP_BIN_CHECK=1 AFL_NO_AFFINITY=1 AFL_NO_UI=1 \
        AFL_SKIP_CRASHES=1 AFL_FORKSRV_INIT_TMOUT=60000 DOTNET_GCHeapHardLimit=0x40000000 DOTNET_TieredPGO=0 \
        timeout $((seconds + 120)) afl-fuzz -i "$corpus_root/$target" -o "$findings" -V "$seconds" -t 5000 -m none \
        -- dotnet "$work/out/Poold.Fuzz.dll" "$target" >"$findings/afl.log" 2>&1
    local rc=$? stats="$findings/default/fuzzer_stats"
    if [ ! -f "$stats" ]; then
        tail -n 30 "$findings/afl.log" >&2
        die "afl-fuzz did not start for $target (exit $rc; log in $findings/afl.log)"
    fi

    local added=0 file sum
    for file in "$findings"/default/crashes/id:*; do
        [ -f "$file" ] || continue
        sum=$(sha256sum "$file" | cut -c1-16)
        if [ ! -e "$corpus_root/$target/crash-$sum" ]; then
            cp "$file" "$corpus_root/$target/crash-$sum"
            added=$((added + 1))
        fi
    done
    printf '%s: %s execs (%s/s), %s crashes (%s new in %s), %s hangs, %s paths\n' "$target" \
        "$(stat_of execs_done "$stats")" "$(stat_of execs_per_sec "$stats")" "$(stat_of saved_crashes "$stats")" "$added" \
        "$corpus_root/$target" "$(stat_of saved_hangs "$stats")" "$(stat_of corpus_count "$stats")"
}

case "${1:-}" in
    list)
        targets
        ;;
    all)
        [ $# -eq 2 ] || usage
        ensure_dotnet
        ensure_fuzz_tools
        for t in $(targets); do
            fuzz_one "$t" "$2"
        done
        ;;
    "")
        usage
        ;;
    *)
        [ $# -eq 2 ] && [[ $2 =~ ^[0-9]+$ ]] || usage
        ensure_dotnet
        ensure_fuzz_tools
        fuzz_one "$1" "$2"
        ;;
esac
