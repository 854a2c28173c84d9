#!/usr/bin/env bash
# Set up the project and run one job: `scripts/dev.sh repro` or `scripts/dev.sh test`.
#
# Setup is idempotent: the virtual environment in .venv/ is created once and
# reinstalled only when pyproject.toml changes; `dvc pull` fetches only what
# is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3

setup() {
    if [ ! -x .venv/bin/python ]; then
        "$PYTHON" -m venv .venv
    fi
    local stamp=.venv/.mtlnet-installed
    local want
    want=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        # The CPU build first, so that the package's torch range is already met
        # and pip does not fetch a multi-GB CUDA build.
        .venv/bin/python -m pip install --quiet torch==2.13.0
        .venv/bin/python -m pip install --quiet -e '.[dev]'
        echo "$want" >"$stamp"
    fi
    # Only the recordings: stage outputs are rebuilt by `dvc repro`, not stored.
    .venv/bin/dvc pull --quiet dataset/fcciq.dvc
}

checks() {
    .venv/bin/ruff check .
    .venv/bin/ruff format --check .
    .venv/bin/mypy
    # dvc.yaml parses, its stages resolve and form one acyclic graph.
    .venv/bin/dvc dag >/dev/null
    .venv/bin/python scripts/check_lock.py
    .venv/bin/python -m pytest -q
}

case "${1:-}" in
    setup) setup ;;
    # The stages run `python -m mtlnet`: the environment's python comes first.
    repro) setup && PATH="$PWD/.venv/bin:$PATH" .venv/bin/dvc repro ;;
    test) setup && checks ;;
    *) echo "usage: scripts/dev.sh setup|repro|test" >&2; exit 2 ;;
esac
