#!/usr/bin/env bash
# Builds the local PostgreSQL 15 image the container tests use (tests/Poold.ContainerTests), with no registry:
# a Debian bookworm root file system from debootstrap (minbase + postgresql-15, from the mirror in this machine's
# apt sources), imported with scripts/pg-image/entrypoint.sh as its entry point. Skips the build when the image
# exists. Needs root and a running Docker engine.   IMAGE (default poold-test/postgres:15).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

IMAGE=${IMAGE:-poold-test/postgres:15}
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "image $IMAGE exists: not rebuilding"
    exit 0
fi
[ "$(id -u)" -eq 0 ] || die "building $IMAGE needs root (debootstrap)"
ensure_packages /usr/sbin/debootstrap debootstrap

# The Debian mirror this machine's apt uses: deb822 sources first, then the one-line format.
mirror=$(awk '/^URIs:/ && $2 !~ /security/ { print $2; exit }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
if [ -z "$mirror" ]; then
    mirror=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
fi
[ -n "$mirror" ] || die "no Debian mirror found in /etc/apt/sources.list*"

root=$(mktemp -d /tmp/poold-pg-image.XXXXXX)
trap 'rm -rf "$root"' EXIT
log "debootstrap bookworm with postgresql-15 from $mirror (about 80 s)"
debootstrap --variant=minbase --include=postgresql-15 bookworm "$root" "$mirror" >"$root.log" 2>&1 \
    || { tail -n 20 "$root.log" >&2; rm -f "$root.log"; die "debootstrap failed"; }
rm -f "$root.log"
# The package's default cluster is not used: the entry point makes its own in PGDATA.
rm -rf "$root/var/lib/postgresql/15" "$root/etc/postgresql/15/main" "$root/var/cache/apt/archives/"*.deb \
    "$root/var/lib/apt/lists/"*
install -m 755 scripts/pg-image/entrypoint.sh "$root/usr/local/bin/docker-entrypoint.sh"
log "importing $IMAGE"
tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PGDATA=/var/lib/postgresql/data' \
    --change 'EXPOSE 5432' \
    --change 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' \
    - "$IMAGE" >/dev/null || die "docker import failed"
log "built $IMAGE"
