#!/usr/bin/env bash
# cni2cnm on the oldest dependencies it allows:   sudo scripts/floors.sh
#
# The floors pass of .ci/run. In its own virtualenv (.venv-floors) the project is installed with
# constraints/floors.txt (each runtime dependency at its pyproject.toml floor; what they need
# comes at the newest version, as pip gives a new user) and the pinned tools; then, through
# scripts/test.sh (its engine, ruff and the plugin coverage gate):
#   1. the unit suite and a short integration smoke: ADD/CHECK/DEL in container and proxy mode,
#      the daemon (explicit and on demand, metrics), the CLI and a TLS engine, in process;
#   2. the container and proxy mode tests again through a `cni2cnm serve` daemon;
# then 3. the config-parsing unit tests on the last release of every pydantic minor between the
# floor and the newest (the models' by-name/by-alias rules changed within 2.x), each installed
# apart into .venv-floors/pydantic/<version> and put first on PYTHONPATH.
# The newest versions are .ci/run's other passes (.venv). Exit status: non-zero if any failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

log() { echo "floors.sh: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
    log "must run as root: sudo $0"
    exit 2
fi

export C2C_VENV="$ROOT/.venv-floors"
# The types are checked once, on the pinned newest dependencies (scripts/test.sh in .ci/run).
export C2C_TYPECHECK=0
export C2C_CONSTRAINTS="$ROOT/constraints/floors.txt"
PY="$C2C_VENV/bin/python"

# Plugin operations run in both modes (in process, then through the daemon).
BOTH_MODES=(
    tests/integration/test_add_del_check.py::test_cri_dockerd_pod_lifecycle
    tests/integration/test_proxy.py::test_ip_netns_namespace_reachable_by_tcp
)
# Tests that choose their own modes, or exercise click, prometheus_client and docker's TLS.
OWN_MODES=(
    tests/integration/test_daemon.py::test_lifecycle_prints_the_same_bytes
    tests/integration/test_ondemand.py::test_first_request_starts_the_daemon_later_ones_use_it
    tests/integration/test_ondemand.py::test_metrics_count_requests_and_fallbacks
    tests/integration/test_cli.py::test_add_check_del_by_container_name
    tests/integration/test_tls.py::test_add_check_status_gc_del_over_tls
)
# The last release of each pydantic minor between the floor and the newest.
PYDANTIC_BETWEEN=(2.6.4 2.7.4 2.8.2 2.9.2 2.10.6 2.11.10 2.12.5 2.13.5)
CONFIG_TESTS=(tests/unit/test_config.py tests/unit/test_docs.py tests/unit/test_prevresult.py
              tests/unit/test_result_golden.py tests/unit/plugin/test_gc_status.py)

rc=0
C2C_DAEMON_TESTS="${BOTH_MODES[*]}" bash scripts/test.sh tests/unit "${BOTH_MODES[@]}" \
    "${OWN_MODES[@]}" || rc=$?

# What ran is what the floors say: pip was told so, this shows it in the log.
installed=$("$PY" - "$C2C_CONSTRAINTS" <<'EOF'
import sys
from importlib.metadata import version

pins = [ln.split("==") for ln in open(sys.argv[1]) if "==" in ln and not ln.startswith("#")]
got = {name: version(name) for name, _ in pins}
print(", ".join(f"{n} {v}" for n, v in got.items()))
wrong = [f"{n} {got[n]} (floor {v.strip()})" for n, v in pins if got[n] != v.strip()]
sys.exit(f"not the floors: {', '.join(wrong)}" if wrong else 0)
EOF
) || rc=1
log "installed: ${installed:-?}"

for v in "${PYDANTIC_BETWEEN[@]}"; do
    target="$C2C_VENV/pydantic/$v"
    if [ ! -f "$target/.installed" ]; then
        rm -rf "$target"
        "$PY" -m pip install -q --disable-pip-version-check --no-compile --target "$target" \
            "pydantic==$v" >&2
        touch "$target/.installed"
    fi
    out=$(env -u DOCKER_HOST PYTHONPATH="$target" "$PY" -m pytest -q -p no:cacheprovider \
        "${CONFIG_TESTS[@]}" 2>&1) && got=0 || got=$?
    ran=$(PYTHONPATH="$target" "$PY" -c 'import pydantic; print(pydantic.VERSION)')
    if [ "$got" != 0 ] || [ "$ran" != "$v" ]; then
        printf '%s\n' "$out" >&2
        log "pydantic $v (imported $ran): config tests FAILED (exit $got)"
        rc=1
    else
        log "pydantic $v: ${out##*$'\n'}"
    fi
done
log "exit $rc"
exit "$rc"
