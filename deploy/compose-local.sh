#!/usr/bin/env bash
# The lab's docker-compose.yml on a machine without Docker and without a container registry:
# podman + podman-compose, with every base image built here from Debian packages.
#
#   deploy/compose-local.sh up       build what is missing, start the stack, wait until it serves
#   deploy/compose-local.sh status   the containers and what each answers
#   deploy/compose-local.sh down     stop and remove the containers, the pod and the network
#                                    (`down --volumes` also drops the data volumes)
#   deploy/compose-local.sh images   (re)build the local base images only
#
# What it does, in order:
# 1. installs podman, runc, debootstrap (apt) and podman-compose (pip, pinned) when missing;
# 2. builds the local base images when missing (deploy/images/):
#      localhost/lab-debian:bookworm       debootstrap --variant=minbase from apt's Debian mirror
#      localhost/lab-runtime:bookworm      glibc, libgcc, CA certificates, user 65532: the
#                                          stand-in for gcr.io/distroless/cc-debian12:nonroot
#      localhost/lab-redis|lab-postgres|lab-prometheus:bookworm
#                                          stand-ins for redis:7-alpine, postgres:15 and
#                                          prom/prometheus, from Debian's packages;
# 3. builds the binaries on the host (`cargo build`, profile COMPOSE_LOCAL_PROFILE, default
#    release) into localhost/lab-binaries:local, the builder image of our Dockerfiles here;
# 4. builds our images with the repository's Dockerfiles (podman-compose build) and starts
#    every service but Grafana (no Debian package) from docker-compose.yml plus
#    deploy/compose.local.yml;
# 5. waits until every service answers: podman-compose ignores `condition: service_healthy`
#    (podman < 4.6 cannot wait for health, and without systemd no timer runs the health
#    checks), so this script runs each container's own health check until it passes.
# When podman refuses to run a container because of this host's cgroups (crun) or open-file
# limit, it writes /etc/containers/containers.conf (runtime runc, default ulimits) if there
# is none. `down` removes exactly what carries the project's label, never a container that
# only shares a name with a service (podman-compose's own `down` goes by name). Every
# published port is bound to 127.0.0.1. Runs on Debian 12 (bookworm) only: the host's
# binaries go into bookworm images, so their glibc must match. The output of podman and
# podman-compose goes to target/compose-local/*.log, passwords masked.
#
# Settings (environment): COMPOSE_LOCAL_PROFILE (release | debug | dist: which cargo build
# goes into the images), COMPOSE_LOCAL_TIMEOUT (seconds to wait for the stack, default 180),
# DEBIAN_MIRROR (default: the one apt uses), CARGO_TARGET_DIR (default target).
set -euo pipefail
cd "$(dirname "$0")/.."

PODMAN_COMPOSE_VERSION=1.5.0
SUITE=bookworm
PROFILE=${COMPOSE_LOCAL_PROFILE:-release}
WAIT_SECONDS=${COMPOSE_LOCAL_TIMEOUT:-180}
COMPOSE_FILES=(-f docker-compose.yml -f deploy/compose.local.yml)
PROJECT=resilient-llm
# Every service but Grafana, dependencies first.
SERVICES=(redis postgres prometheus llm_service_1 llm_service_2 llm_service_3 api_gateway chaos_monkey)
BUILT=(api_gateway llm_service_1 llm_service_2 llm_service_3 chaos_monkey)
BINARIES=(gateway llm-service chaos-monkey)

TARGET_DIR=${CARGO_TARGET_DIR:-target}
LOG_DIR=$TARGET_DIR/compose-local
LABEL="label=io.podman.compose.project=$PROJECT"
step() { printf '\n--> %s\n' "$*"; }
fail() { echo "error: $*" >&2; exit 1; }
# Masks passwords: podman-compose prints the podman commands it runs, `-e …PASSWORD=…` and
# URLs with credentials included.
mask() { sed -E 's/(PASSWORD=)[^ ]*/\1***/g; s#(://[^:/@ ]+:)[^@ ]+@#\1***@#g'; }
# quietly NAME SECONDS COMMAND…: runs COMMAND within SECONDS, its output (masked) in
# $LOG_DIR/NAME.log; on failure shows the end of that log.
quietly() {
    local name=$1 limit=$2
    shift 2
    mkdir -p "$LOG_DIR"
    if ! timeout "$limit" "$@" 2>&1 | mask > "$LOG_DIR/$name.log"; then
        tail -n 30 "$LOG_DIR/$name.log" >&2
        fail "$name failed (whole output: $LOG_DIR/$name.log)"
    fi
}
# Temporary directories, removed on exit (a debootstrap tree may still have mounts).
TEMPORARY=()
cleanup() {
    local dir
    for dir in "${TEMPORARY[@]+"${TEMPORARY[@]}"}"; do
        umount -R "$dir/proc" "$dir/sys" "$dir/dev" 2>/dev/null || true
        rm -rf --one-file-system "$dir"
    done
}
trap cleanup EXIT
temporary_dir() { local dir; dir=$(mktemp -d); TEMPORARY+=("$dir"); echo "$dir"; }

check_host() {
    local codename
    # shellcheck source=/dev/null
    codename=$(. /etc/os-release && echo "${ID:-}:${VERSION_CODENAME:-}")
    [ "$codename" = "debian:$SUITE" ] || fail "this script builds Debian $SUITE images and \
copies the host's binaries into them: run it on Debian 12 ($SUITE), not $codename \
(elsewhere, use Docker: docker compose up -d --build)"
}
# Docker image format: it keeps the Dockerfiles' HEALTHCHECK (OCI has no such field).
export BUILDAH_FORMAT=docker
COMPOSE=(podman-compose "${COMPOSE_FILES[@]}")

install_tools() {
    local missing=()
    command -v podman >/dev/null || missing+=(podman)
    command -v runc >/dev/null || missing+=(runc)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    if [ ${#missing[@]} -gt 0 ]; then
        step "installing ${missing[*]} (apt)"
        export DEBIAN_FRONTEND=noninteractive
        timeout 600 apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
            || { timeout 300 apt-get update -qq \
                && timeout 600 apt-get install -y -qq "${missing[@]}" >/dev/null; }
    fi
    if [ "$(podman-compose --version 2>/dev/null | awk '/podman-compose/ {print $NF}')" \
        != "$PODMAN_COMPOSE_VERSION" ]; then
        step "installing podman-compose $PODMAN_COMPOSE_VERSION (pip)"
        timeout 300 python3 -m pip install --quiet --disable-pip-version-check \
            --root-user-action=ignore \
            "podman-compose==$PODMAN_COMPOSE_VERSION"
    fi
}

has_image() { podman image exists "$1"; }

debian_mirror() {
    if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
    # The mirror apt already uses (deb822 or one-line sources), else Debian's CDN.
    local found
    found=$(grep -hoE '(URIs:[[:space:]]*|^deb[[:space:]]+)https?://[^[:space:]]+/debian/?' \
        /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
        | grep -oE 'https?://[^[:space:]]+' | head -n 1 || true)
    echo "${found:-http://deb.debian.org/debian}"
}

build_debian() {
    has_image localhost/lab-debian:$SUITE && return
    local mirror root
    mirror=$(debian_mirror)
    root=$(temporary_dir)
    step "localhost/lab-debian:$SUITE (debootstrap --variant=minbase $SUITE $mirror)"
    quietly debootstrap 900 debootstrap --variant=minbase "$SUITE" "$root" "$mirror"
    # Package scripts must not start services inside an image build.
    printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
    chmod +x "$root/usr/sbin/policy-rc.d"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | timeout 300 podman import --change 'CMD ["/bin/bash"]' - \
        localhost/lab-debian:$SUITE > "$LOG_DIR/import.log" 2>&1 \
        || fail "podman import failed (its output: $LOG_DIR/import.log)"
}

# Runs one throw-away container; when podman cannot because of crun and this host's cgroups
# or a default open-file limit above the hard limit, writes the settings that make it work
# (only then, and only when there is no such file).
check_podman_runs() {
    local conf=/etc/containers/containers.conf error
    if error=$(timeout 120 podman run --rm localhost/lab-debian:$SUITE true 2>&1); then return; fi
    if ! grep -qiE 'crun|cgroup|rlimit|ulimit|nofile' <<<"$error"; then
        fail "podman cannot run a container: $error"
    fi
    if [ -e "$conf" ]; then
        fail "podman cannot run a container ($error); $conf exists, so it was left alone: set
    runtime = \"runc\" under [engine] and
    default_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"] under [containers]"
    fi
    step "writing $conf (runtime runc, default ulimits within the hard limit)"
    mkdir -p /etc/containers
    local hard
    hard=$(ulimit -Hn)
    [ "$hard" = unlimited ] && hard=1048576
    cat > "$conf" <<EOF
# Written by deploy/compose-local.sh: crun refuses this host's hybrid cgroups, and
# podman's default open-file limit is above the hard limit here.
[containers]
default_ulimits = ["nofile=$hard:$hard", "nproc=32768:32768"]

[engine]
runtime = "runc"
EOF
    if ! error=$(timeout 120 podman run --rm localhost/lab-debian:$SUITE true 2>&1); then
        rm -f "$conf"
        fail "podman still cannot run a container ($error); $conf removed again"
    fi
}

# The label an image built from deploy/images/ carries: a hash of its Containerfile, the
# scripts it copies and the Debian base it starts from, so that an edit rebuilds it.
source_hash() {
    local name=$1
    {
        timeout 60 podman image inspect -f '{{.Id}}' localhost/lab-debian:$SUITE
        cat "deploy/images/$name.Containerfile"
        cat "deploy/images/$name"-*.sh 2>/dev/null || true
    } | sha256sum | cut -c1-16
}

build_base_images() {
    build_debian
    check_podman_runs
    local name image hash
    for name in runtime redis postgres prometheus; do
        image="localhost/lab-$name:$SUITE"
        hash=$(source_hash "$name")
        if has_image "$image" && [ "$(timeout 60 podman image inspect \
            -f '{{index .Labels "lab.source-hash"}}' "$image")" = "$hash" ]; then
            continue
        fi
        step "$image (deploy/images/$name.Containerfile)"
        quietly "image-$name" 900 podman build --label "lab.source-hash=$hash" \
            -f "deploy/images/$name.Containerfile" -t "$image" deploy/images
    done
}

build_binaries_image() {
    local dir
    case "$PROFILE" in
        debug) dir=debug; profile=(--profile dev) ;;
        *) dir=$PROFILE; profile=(--profile "$PROFILE") ;;
    esac
    step "the binaries, built on the host (cargo build ${profile[*]})"
    local packages=()
    for binary in "${BINARIES[@]}"; do packages+=(-p "$binary" --bin "$binary"); done
    cargo build --quiet --locked "${profile[@]}" "${packages[@]}"
    local context
    context=$(temporary_dir)
    for binary in "${BINARIES[@]}"; do cp "$TARGET_DIR/$dir/$binary" "$context/"; done
    quietly image-binaries 600 podman build -f deploy/images/binaries.Containerfile \
        -t localhost/lab-binaries:local "$context"
    step "our images, from the repository's Dockerfiles (podman-compose build)"
    quietly build 900 "${COMPOSE[@]}" build "${BUILT[@]}"
}

container_of() { # the container name of a compose service
    timeout 30 podman ps -a --filter "$LABEL" \
        --filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | head -n 1
}

# Whether container $1 runs and passes its own health check (if it has one).
serving() {
    local name=$1 running check
    running=$(timeout 30 podman inspect -f '{{.State.Running}}' "$name" 2>/dev/null || true)
    [ "$running" = true ] || return 1
    check=$(timeout 30 podman inspect -f '{{.Config.Healthcheck}}' "$name" 2>/dev/null || true)
    case "$check" in
        *"["*) timeout 15 podman healthcheck run "$name" >/dev/null 2>&1 ;;
        *) return 0 ;;
    esac
}

# Removes what carries the project's label: containers (stopped with a grace period), the
# network and, with --volumes, the volumes; and the project's pod.
remove_stack() {
    local volumes=$1 ids
    ids=$(timeout 30 podman ps -a -q --filter "$LABEL")
    if [ -n "$ids" ]; then
        # shellcheck disable=SC2086 # one id per word
        quietly stop 120 podman stop -t 15 $ids
        # --depend: depends_on became podman's --requires, and a required container goes last.
        # shellcheck disable=SC2086
        quietly rm 60 podman rm -f --depend $ids
    fi
    # podman-compose names its pod after the project (and labels it not).
    if timeout 30 podman pod exists "pod_$PROJECT"; then
        quietly pod-rm 60 podman pod rm -f "pod_$PROJECT"
    fi
    ids=$(timeout 30 podman network ls -q --filter "$LABEL")
    # shellcheck disable=SC2086
    [ -z "$ids" ] || quietly network-rm 60 podman network rm -f $ids
    if [ "$volumes" = yes ]; then
        ids=$(timeout 30 podman volume ls -q --filter "$LABEL")
        # shellcheck disable=SC2086
        [ -z "$ids" ] || quietly volume-rm 60 podman volume rm -f $ids
    fi
}

# Polls every service's own health check (or, without one, that it runs) until all pass.
wait_until_serving() {
    step "waiting until every service passes its health check (up to $WAIT_SECONDS s)"
    local deadline=$((SECONDS + WAIT_SECONDS)) pending=("${SERVICES[@]}") still service name
    while [ ${#pending[@]} -gt 0 ]; do
        still=()
        for service in "${pending[@]}"; do
            name=$(container_of "$service")
            if [ -n "$name" ] && serving "$name"; then
                echo "  $service ($name) ready"
            else
                still+=("$service")
            fi
        done
        pending=("${still[@]+"${still[@]}"}")
        [ ${#pending[@]} -eq 0 ] && break
        if [ $SECONDS -ge $deadline ]; then
            for service in "${pending[@]}"; do
                name=$(container_of "$service")
                echo "--- $service did not become ready; the end of its log:" >&2
                [ -n "$name" ] && timeout 30 podman logs --tail 20 "$name" 2>&1 | mask >&2 || true
            done
            fail "not ready within $WAIT_SECONDS s: ${pending[*]}"
        fi
        sleep 1
    done
}

print_urls() {
    cat <<EOF

The lab runs (podman-compose, project $PROJECT):
  gateway        http://127.0.0.1:8000   (curl localhost:8000/health)
  llm_service_1  http://127.0.0.1:8001
  llm_service_2  http://127.0.0.1:8002
  llm_service_3  http://127.0.0.1:8003   (secondary tier)
  prometheus     http://127.0.0.1:9090
  redis          redis://127.0.0.1:16379
  postgres       postgresql://admin@127.0.0.1:15432/resilience_metrics
Grade it:  resilience-tests suite --controller compose --compose-engine podman \\
               --compose-file docker-compose.yml --compose-file deploy/compose.local.yml
Stop it:   deploy/compose-local.sh down
EOF
}

case "${1:-}" in
    up)
        check_host
        install_tools
        build_base_images
        build_binaries_image
        step "starting ${SERVICES[*]}"
        # A fresh start: containers of an earlier run go first (volumes stay).
        remove_stack no
        quietly up 300 "${COMPOSE[@]}" up -d --no-build "${SERVICES[@]}"
        wait_until_serving
        print_urls
        ;;
    down)
        case "${2:-}" in
            "") volumes=no ;;
            --volumes) volumes=yes ;;
            *) fail "down takes --volumes or nothing, not ${2}" ;;
        esac
        command -v podman >/dev/null || { echo "no podman: nothing runs"; exit 0; }
        remove_stack "$volumes"
        left=$(timeout 30 podman ps -a -q --filter "$LABEL")
        [ -z "$left" ] || fail "containers left after down: $left"
        echo "the stack is down"
        ;;
    status)
        timeout 30 podman ps -a --filter "$LABEL" \
            --format 'table {{.Names}}\t{{.Status}}\t{{.Ports}}'
        ;;
    images)
        check_host
        install_tools
        build_base_images
        ;;
    *)
        sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
