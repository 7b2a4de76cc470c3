#!/usr/bin/env bash
# Publishes poold, pg_enc and the pcp_* commands into PREFIX (default ./dist):
#   PREFIX/lib/poold/   the published .NET application (one folder, shared by all commands)
#   PREFIX/bin/         poold, pg_enc and every pcp_* name, as small launchers
#   PREFIX/etc/         sample configuration (not overwritten if present) and poold.service for this prefix
# With --systemd (as root), poold.service is also installed into /etc/systemd/system and systemd reloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_dotnet

systemd=
args=()
for a in "$@"; do
    case $a in
        --systemd) systemd=1 ;;
        *) args+=("$a") ;;
    esac
done
prefix=${args[0]:-./dist}
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
    [ "$(basename "$f")" = poold.service ] && continue
    [ -e "$prefix/etc/$(basename "$f")" ] || cp "$f" "$prefix/etc/"
done
sed "s|@PREFIX@|$prefix|g" etc/poold.service > "$prefix/etc/poold.service"
if [ -n "$systemd" ]; then
    [ "$(id -u)" = 0 ] || die "--systemd needs root (it writes /etc/systemd/system/poold.service)"
    install -m 644 "$prefix/etc/poold.service" /etc/systemd/system/poold.service
    if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
        systemctl daemon-reload
    fi
    log "installed /etc/systemd/system/poold.service: systemctl enable --now poold"
fi
log "installed into $prefix (add $bin to PATH)"
