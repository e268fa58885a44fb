#!/usr/bin/env bash
# cni2cnm's test command:   sudo scripts/test.sh [PYTEST ARGS...]
#
# Installs what is missing (scripts/bootstrap.sh), starts a throwaway Docker engine in its own
# network namespace unless DOCKER_HOST already answers, builds the local test images, then runs
# ruff and pytest.  The engine it started is always stopped and its directory removed.
#
# Exports for the tests: DOCKER_HOST, and CNI2CNM_TEST_ENGINE_DIR (only for an engine started
# here) so fault-injection tests can run `scripts/dockerd.sh restart "$CNI2CNM_TEST_ENGINE_DIR"`.
# C2C_ENGINE (20.10, the default, or 28; see scripts/engine.sh) picks the engine it starts, and
# the engines the tests start themselves (fault tests, the swarm); C2C_DOCKERD_ARGS are extra
# arguments for every one of them.  The engine's version and API are printed first.
# C2C_VENV (default .venv) and C2C_CONSTRAINTS pick the virtualenv and its constraints files
# (see scripts/bootstrap.sh); C2C_DAEMON_TESTS (pytest arguments) runs the daemon-mode pass on
# those tests, also when pytest arguments are given (scripts/floors.sh does both).
# Exit status: pytest's; a ruff failure, a mypy failure (strict, pyproject.toml; skipped only
# when C2C_TYPECHECK=0, as scripts/floors.sh sets: the types are checked against the pinned
# newest dependencies), a run with no tests (pytest exit 5) or unit coverage of cni2cnm/plugin
# below 95% also fails.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export C2C_VENV=${C2C_VENV:-$ROOT/.venv}
PY="$C2C_VENV/bin/python"

log() { echo "test.sh: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
    log "must run as root: sudo $0 $*"
    exit 2
fi

t_start=$(date +%s)
bash scripts/bootstrap.sh
# The engines the tests start themselves (fault tests, the swarm) are of the same kind.
export C2C_ENGINE=${C2C_ENGINE:-20.10}

engine_dir=""
# shellcheck disable=SC2317  # invoked by the EXIT trap
daemon_pid=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$daemon_pid" ]; then
        kill -KILL "$daemon_pid" 2>/dev/null || true
    fi
    if [ -n "$engine_dir" ]; then
        bash scripts/dockerd.sh stop "$engine_dir" || log "warning: stopping the engine failed"
        if grep -q -F " $engine_dir/" /proc/mounts; then
            log "warning: mounts left under $engine_dir; not removing it"
        else
            rm -rf "$engine_dir"
        fi
    fi
    log "total $(( $(date +%s) - t_start )) s, exit $rc"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -n "${DOCKER_HOST:-}" ] && timeout 10 docker -H "$DOCKER_HOST" info >/dev/null 2>&1; then
    log "using the engine at DOCKER_HOST=$DOCKER_HOST"
else
    if [ -n "${DOCKER_HOST:-}" ]; then
        log "DOCKER_HOST=$DOCKER_HOST does not answer; starting a throwaway engine instead"
    fi
    engine_dir=$(mktemp -d /tmp/c2c-test.XXXX)
    t0=$(date +%s.%N)
    DOCKER_HOST=$(bash scripts/dockerd.sh start "$engine_dir")
    export DOCKER_HOST
    export CNI2CNM_TEST_ENGINE_DIR="$engine_dir"
    log "engine $DOCKER_HOST ready in" \
        "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s"
fi

log "engine: $(timeout 20 docker -H "$DOCKER_HOST" version --format \
    'dockerd {{.Server.Version}}, API {{.Server.APIVersion}} (min {{.Server.MinAPIVersion}}), containerd {{range .Server.Components}}{{if eq .Name "containerd"}}{{.Version}}{{end}}{{end}}, runc {{range .Server.Components}}{{if eq .Name "runc"}}{{.Version}}{{end}}{{end}}' \
    2>&1)${engine_dir:+ (C2C_ENGINE=$C2C_ENGINE)}"
bash scripts/images.sh "$DOCKER_HOST"

ruff_rc=0
"$PY" -m ruff check cni2cnm tests benchmarks || ruff_rc=$?
if [ "$ruff_rc" != 0 ]; then
    log "ruff check failed (exit $ruff_rc)"
fi
mypy_rc=0
if [ "${C2C_TYPECHECK:-1}" != 0 ]; then
    "$PY" -m mypy || mypy_rc=$?
    if [ "$mypy_rc" != 0 ]; then
        log "mypy failed (exit $mypy_rc)"
    fi
fi

# The translation must be testable without an engine: the plugin's unit tests alone (fake
# engine, fake namespaces; no DOCKER_HOST, no daemon) must cover >= 95% of cni2cnm/plugin.
# They are a subset of tests/unit, so the whole unit suite covers at least as much.
cov_rc=0
cov_file=$(mktemp -u /tmp/c2c-cov.XXXX)
env -u DOCKER_HOST -u CNI2CNM_TEST_DAEMON_SOCKET COVERAGE_FILE="$cov_file" \
    "$PY" -m pytest -q -p no:cacheprovider tests/unit/plugin --cov=cni2cnm.plugin \
    --cov-report=term --cov-fail-under=95 || cov_rc=$?
rm -f "$cov_file"*
if [ "$cov_rc" != 0 ]; then
    log "unit coverage of cni2cnm/plugin below 95% or unit tests failed (exit $cov_rc)"
fi

# No test may leave (or start) the warm daemon on the node's default socket: a plugin process
# a test starts runs with CNI2CNM_DAEMON=off unless the test chooses otherwise.
DEFAULT_DAEMON_DIR=/run/cni2cnm
default_daemon_before=$([ -S "$DEFAULT_DAEMON_DIR/cni2cnm.sock" ] && echo yes || echo no)

pytest_rc=0
"$PY" -m pytest -ra --durations=15 "$@" || pytest_rc=$?
if [ "$pytest_rc" = 5 ]; then
    log "pytest collected no tests: failing"
fi

# The same plugin operations again, through a `cni2cnm serve` daemon: results and errors
# must be identical to in-process mode (full runs, i.e. without pytest arguments: every
# integration test; or the tests C2C_DAEMON_TESTS names).
daemon_tests=()
if [ -n "${C2C_DAEMON_TESTS:-}" ]; then
    read -ra daemon_tests <<<"$C2C_DAEMON_TESTS"
elif [ $# = 0 ]; then
    daemon_tests=(tests/integration)
fi
if [ "$pytest_rc" = 0 ] && [ ${#daemon_tests[@]} -gt 0 ]; then
    daemon_dir=$(mktemp -d /tmp/c2c-daemon.XXXX)
    chmod 700 "$daemon_dir"
    "$C2C_VENV/bin/cni2cnm" serve --socket "$daemon_dir/d.sock" 2>"$daemon_dir/serve.log" &
    daemon_pid=$!
    for _ in $(seq 100); do [ -S "$daemon_dir/d.sock" ] && break; sleep 0.1; done
    log "daemon-mode pass through cni2cnm serve (pid $daemon_pid)"
    # Every integration test that runs the plugin, except those marked own_modes: they run
    # both ways by themselves (test_daemon, the soak) or do not run the plugin at all.
    CNI2CNM_TEST_DAEMON_SOCKET="$daemon_dir/d.sock" "$PY" -m pytest -ra \
        --durations=15 -m "not own_modes" "${daemon_tests[@]}" || pytest_rc=$?
    kill -TERM "$daemon_pid"
    daemon_rc=0
    wait "$daemon_pid" || daemon_rc=$?
    daemon_pid=""
    if [ "$daemon_rc" != 0 ]; then
        log "the daemon did not exit cleanly on SIGTERM (exit $daemon_rc):"
        tail -20 "$daemon_dir/serve.log" >&2
        [ "$pytest_rc" != 0 ] || pytest_rc=1
    fi
    rm -rf "$daemon_dir"
fi

if [ "$default_daemon_before" = no ]; then
    PROG=test.sh
    # shellcheck source=scripts/lib.sh
    . "$ROOT/scripts/lib.sh"
    leaked=$(pids_mentioning "python*" "$DEFAULT_DAEMON_DIR" | tr '\n' ' ')
    if [ -n "$leaked" ] || [ -S "$DEFAULT_DAEMON_DIR/cni2cnm.sock" ]; then
        log "a test started the daemon on $DEFAULT_DAEMON_DIR (pids: ${leaked:-none left}); stopping it"
        for p in $leaked; do kill -TERM "$p" 2>/dev/null || true; done
        [ "$pytest_rc" != 0 ] || pytest_rc=1
    fi
fi

if [ "$pytest_rc" != 0 ]; then
    exit "$pytest_rc"
fi
if [ "$ruff_rc" != 0 ] || [ "$mypy_rc" != 0 ] || [ "$cov_rc" != 0 ]; then
    exit 1
fi
exit 0
