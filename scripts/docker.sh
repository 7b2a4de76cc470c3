# Docker for the container tests (tests/Poold.ContainerTests): sourced by scripts/test.sh after scripts/lib.sh.

# ensure_docker: installs Debian's docker.io when missing and starts dockerd when no engine answers (root only).
# Returns 0 when an engine answers; otherwise sets DOCKER_UNAVAILABLE to the reason and returns 1.
# DOCKERD_PID is set when this function started the engine (stop_docker stops it).
DOCKER_UNAVAILABLE=
DOCKERD_PID=
ensure_docker() {
    if docker info >/dev/null 2>&1; then
        return 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
        DOCKER_UNAVAILABLE="no Docker engine answers and starting one needs root"
        return 1
    fi
    if [ ! -x /usr/sbin/dockerd ]; then
        log "installing docker.io"
        export DEBIAN_FRONTEND=noninteractive
        { apt-get update -qq && apt-get install -y -qq docker.io; } >/dev/null 2>&1 || {
            DOCKER_UNAVAILABLE="apt-get install docker.io failed"
            return 1
        }
    fi
    log "starting dockerd (log: /tmp/poold-dockerd.log)"
    dockerd >/tmp/poold-dockerd.log 2>&1 &
    DOCKERD_PID=$!
    local _
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && return 0
        kill -0 "$DOCKERD_PID" 2>/dev/null || break
        sleep 0.5
    done
    DOCKER_UNAVAILABLE="dockerd did not start: $(tail -n 1 /tmp/poold-dockerd.log 2>/dev/null)"
    stop_docker
    return 1
}

# stop_docker: stops the engine ensure_docker started, if it did.
stop_docker() {
    if [ -n "$DOCKERD_PID" ] && kill "$DOCKERD_PID" 2>/dev/null; then
        wait "$DOCKERD_PID" 2>/dev/null
    fi
    DOCKERD_PID=
}
