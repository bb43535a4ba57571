#!/usr/bin/env bash
# Gives CI (or a fresh machine of this kind) a Docker engine and the sandbox image, offline.
#
# Idempotent: installs only what is missing, starts dockerd only if no daemon
# answers, builds the image only if the tag is absent. Exits non-zero, with the
# daemon's log tail, if the engine cannot be started: the Docker tests must
# fail in CI rather than skip.
#
# The engine runs without a bridge, iptables or masquerading: sandbox
# containers use network_mode=none, and this host must not gain a NAT network.
# gVisor's runtime (Debian's runsc) is registered as `runsc`, with its own
# networking off, for the tests of TRIALFORGE_DOCKER_RUNTIME=runsc.
# Run from the repository root after the venv exists at .venv.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SOCKET=/var/run/docker.sock
DAEMON_JSON=/etc/docker/daemon.json
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/dockerd.log}
SANDBOX_IMAGE=${SANDBOX_IMAGE:-trialforge/sandbox:latest}
START_TIMEOUT_S=60

daemon_answers() {
    docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

if ! command -v docker >/dev/null || ! command -v dockerd >/dev/null \
    || ! command -v debootstrap >/dev/null || ! command -v docker-compose >/dev/null \
    || ! command -v runsc >/dev/null; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y docker.io debootstrap docker-compose runsc
fi

# Register runsc in daemon.json, keeping whatever else it holds.
mkdir -p "$(dirname "$DAEMON_JSON")"
python3 - "$DAEMON_JSON" "$(command -v runsc)" <<'PY'
import json, sys
from pathlib import Path
path, runsc = Path(sys.argv[1]), sys.argv[2]
config = json.loads(path.read_text()) if path.exists() and path.read_text().strip() else {}
config.setdefault("runtimes", {})["runsc"] = {"path": runsc, "runtimeArgs": ["--network=none"]}
path.write_text(json.dumps(config, indent=2) + "\n")
PY

if ! daemon_answers; then
    echo "starting dockerd (log: $DOCKERD_LOG)" >&2
    nohup dockerd --bridge=none --iptables=false --ip-masq=false >>"$DOCKERD_LOG" 2>&1 &
    for _ in $(seq "$START_TIMEOUT_S"); do
        if [ -S "$SOCKET" ] && daemon_answers; then
            break
        fi
        sleep 1
    done
    if ! daemon_answers; then
        echo "dockerd did not answer within ${START_TIMEOUT_S}s; last lines of $DOCKERD_LOG:" >&2
        tail -n 20 "$DOCKERD_LOG" >&2 || true
        exit 1
    fi
fi
# A daemon that was already running re-reads its runtimes on SIGHUP.
if ! docker info --format '{{json .Runtimes}}' | grep -q '"runsc"'; then
    kill -HUP "$(cat /var/run/docker.pid)"
    for _ in $(seq 10); do
        docker info --format '{{json .Runtimes}}' | grep -q '"runsc"' && break
        sleep 1
    done
fi
echo "docker engine $(docker version --format '{{.Server.Version}}') answering, runtimes: \
$(docker info --format '{{range $name, $_ := .Runtimes}}{{$name}} {{end}}')" >&2

if ! docker image inspect "$SANDBOX_IMAGE" >/dev/null 2>&1; then
    .venv/bin/trialforge sandbox build --offline --tag "$SANDBOX_IMAGE"
fi
echo "sandbox image $SANDBOX_IMAGE present" >&2
