#!/usr/bin/env bash
# Lint and type-check: ruff over the package, mypy over the core packages (runtime/ and parts of
# workflow/ under the --strict flags listed in pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
"$PY" -m ruff check kailash
"$PY" -m mypy kailash/errors.py kailash/workflow kailash/runtime kailash/_backoff.py kailash/nodes/context.py \
  kailash/nodes/base.py kailash/nodes/registry.py \
  kailash/nodes/code kailash/nodes/logic kailash/nodes/data/readers.py kailash/nodes/data/writers.py \
  kailash/security/config.py kailash/security/paths.py kailash/security/secrets.py
