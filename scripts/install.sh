#!/usr/bin/env bash
# Publishes poold, pg_enc and the pcp_* commands into PREFIX (default ./dist):
#   PREFIX/lib/poold/   the published .NET application (one folder, shared by all commands)
#   PREFIX/bin/         poold, pg_enc and every pcp_* name, as small launchers
#   PREFIX/etc/         sample configuration (not overwritten if present)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_dotnet

prefix=${1:-./dist}
mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd)
lib="$prefix/lib/poold"
bin="$prefix/bin"
mkdir -p "$lib" "$bin" "$prefix/etc"

for project in src/Poold src/PgEnc src/PcpTools; do
    log "publishing $project"
    dotnet publish "$project" -c Release -o "$lib" --nologo --verbosity quiet -clp:ErrorsOnly
done

dotnet_host=$(readlink -f "$(command -v dotnet)")
launcher() { # NAME DLL [ARGS...]
    local name=$1 dll=$2; shift 2
    cat > "$bin/$name" <<LAUNCHER
#!/bin/sh
exec "$dotnet_host" "$lib/$dll" $* "\$@"
LAUNCHER
    chmod 755 "$bin/$name"
}

launcher poold poold.dll
launcher pg_enc pg_enc.dll
for verb in node-count node-info health-check-stats pool-status proc-count proc-info attach-node detach-node \
            promote-node recovery-node stop-pgpool reload-config watchdog-info; do
    launcher "pcp_${verb//-/_}" pcp.dll "$verb"
done

for f in etc/*; do
    [ -e "$prefix/etc/$(basename "$f")" ] || cp "$f" "$prefix/etc/"
done
log "installed into $prefix (add $bin to PATH)"
