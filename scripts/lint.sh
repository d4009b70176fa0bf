#!/usr/bin/env bash
# Lint and type-check: ruff over the package, mypy over the whole package (the project's
# config in pyproject.toml), and the import layering of STYLE.md (import-linter's
# contract in pyproject.toml: any import pointing up a layer fails, function-local too).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
"$PY" -m ruff check kailash
"$PY" -m mypy kailash
"$PY" -c "from importlinter.cli import lint_imports_command; lint_imports_command()" --no-cache
