#!/usr/bin/env bash
# Lint and type-check: ruff over the package, mypy over the core packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
"$PY" -m ruff check kailash
"$PY" -m mypy kailash/errors.py kailash/workflow kailash/runtime/engine.py kailash/runtime/local.py \
  kailash/runtime/store.py kailash/runtime/testing.py kailash/nodes/base.py kailash/nodes/registry.py \
  kailash/nodes/code kailash/nodes/logic kailash/nodes/data/readers.py kailash/nodes/data/writers.py \
  kailash/security/config.py kailash/security/paths.py kailash/security/secrets.py
