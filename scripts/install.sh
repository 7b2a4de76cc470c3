#!/usr/bin/env bash
# Publishes poold, pg_enc and the pcp_* commands into PREFIX (default ./dist):
#   PREFIX/lib/poold/              the published application (one folder, shared by all commands)
#   PREFIX/bin/                    poold, pg_enc and every pcp_* name, as small launchers
#   PREFIX/etc/                    sample configuration (not overwritten if present) and poold.service for this prefix
#   PREFIX/share/doc/poold/        each command's --help text, man-style (NAME.txt)
# Usage: scripts/install.sh [--self-contained] [--systemd] [PREFIX]
#   default           framework-dependent: needs the .NET 10 runtime on the host; the launchers run it.
#   --self-contained  self-contained and ReadyToRun for linux-x64: the runtime ships in lib/poold (~80 MB more),
#                     no .NET needed on the host, and start-up is faster (precompiled code, no JIT at start).
#   --systemd         (as root) also installs poold.service into /etc/systemd/system and reloads systemd.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_dotnet

mode=framework
systemd=
args=()
for a in "$@"; do
    case $a in
        --systemd) systemd=1 ;;
        --self-contained) mode=self-contained ;;
        *) args+=("$a") ;;
    esac
done
prefix=${args[0]:-./dist}
mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd)
lib="$prefix/lib/poold"
bin="$prefix/bin"
doc="$prefix/share/doc/poold"
mkdir -p "$lib" "$bin" "$prefix/etc" "$doc"

publish_args=(-c Release -o "$lib" --nologo --verbosity quiet -clp:ErrorsOnly)
if [ $mode = self-contained ]; then
    publish_args+=(-r linux-x64 --self-contained -p:PublishReadyToRun=true)
fi
for project in src/Poold src/PgEnc src/PcpTools; do
    log "publishing $project ($mode)"
    dotnet publish "$project" "${publish_args[@]}" || die "publishing $project failed"
done

dotnet_host=$(readlink -f "$(command -v dotnet)")
launcher() { # NAME APP [ARGS...]
    local name=$1 app=$2; shift 2
    if [ $mode = self-contained ]; then
        printf '#!/bin/sh\nexec "%s" %s "$@"\n' "$lib/$app" "$*" >"$bin/$name"
    else
        printf '#!/bin/sh\nexec "%s" "%s" %s "$@"\n' "$dotnet_host" "$lib/$app.dll" "$*" >"$bin/$name"
    fi
    chmod 755 "$bin/$name"
}

pcp_verbs="node-count node-info health-check-stats pool-status proc-count proc-info attach-node detach-node
           promote-node recovery-node stop-pgpool reload-config watchdog-info"
launcher poold poold
launcher pg_enc pg_enc
for verb in $pcp_verbs; do
    launcher "pcp_${verb//-/_}" pcp "$verb"
done

log "writing the --help texts into $doc"
help_page() { # NAME
    local name=$1
    {
        printf '%s(1)\n\nNAME\n    %s\n\n' "${name^^}" "$name"
        "$bin/$name" --help
        printf '\nVERSION\n    %s\n' "$("$bin/poold" --version)"
    } >"$doc/$name.txt" || die "$name --help failed"
}
help_page poold
help_page pg_enc
for verb in $pcp_verbs; do
    help_page "pcp_${verb//-/_}"
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
log "installed into $prefix ($mode; add $bin to PATH)"
