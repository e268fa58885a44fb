#!/usr/bin/env bash
# cni2cnm's benchmark, on a fresh Debian 12 machine:   sudo scripts/bench.sh [--cycles 30] [--json out.json]
#
# Installs what is missing (scripts/bootstrap.sh), then runs benchmarks/bench.py, which starts
# a throwaway engine unless DOCKER_HOST answers, prints the table and the targets, and removes
# everything it made. Arguments go to bench.py (see `bench.py --help`).
# C2C_ENGINE=20.10|28 (default 20.10, see scripts/engine.sh) and C2C_DOCKERD_ARGS pick the engine
# it starts and its extra arguments, as for scripts/dockerd.sh.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
[ "$(id -u)" = 0 ] || { echo "bench.sh: must run as root: sudo $0 $*" >&2; exit 2; }
bash scripts/bootstrap.sh
exec .venv/bin/python benchmarks/bench.py "$@"
