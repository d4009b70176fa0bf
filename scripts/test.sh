#!/usr/bin/env bash
# Install everything the test suite needs on a fresh machine, then run it.
# Used by the README and by .ci/run. Safe to run again: each step is skipped when done.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages: headless Chromium for the Studio tests, bubblewrap for the sandbox, socat for the cluster tests.
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
command -v socat >/dev/null 2>&1 || need+=(socat)        # the cluster tests relay PostgreSQL into network namespaces
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "missing system packages: ${need[*]} (run: sudo apt-get install -y ${need[*]})" >&2
    exit 1
  fi
fi

# Python environment.
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first, pinned: the CPU wheel on disk (anything else would pull a multi-GB CUDA build).
.venv/bin/python -m pip install -q "torch==2.13.0" || echo "torch 2.13.0 not available: semantic-cache tests use the fallback embedder" >&2
# llama-cpp-python (the real model server in the agent tests) has no wheel and compiles here: a portable
# build (the native one dies with SIGILL on some CPUs), two jobs; pip's wheel cache reuses it afterwards.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
.venv/bin/python -m pip install -q -e '.[dev]'

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PY=.venv/bin/python bash scripts/lint.sh

# Dependency floors: every dependency of these extras at the lowest version pyproject.toml
# allows (scripts/floors.py), in a venv of its own, on the integration tests that broke below
# the floors (websocket streams, multipart upload, a real uvicorn server, PostgreSQL, Redis).
# About a minute. Raise a floor in pyproject.toml when this fails; never pin around it here.
[ -x .venv-floors/bin/python ] || "$PY" -m venv .venv-floors
.venv/bin/python scripts/floors.py api http postgres redis > .venv-floors/floors.txt
.venv-floors/bin/python -m pip install -q -r .venv-floors/floors.txt pytest pytest-asyncio pytest-timeout
echo "dependency floors: $(tr '\n' ' ' < .venv-floors/floors.txt)"
PYTHONPATH="$PWD" .venv-floors/bin/python -m pytest -q -p no:randomly -p no:cacheprovider \
  tests/nodes/data/test_streaming.py tests/api/test_request_bodies.py tests/api/test_workflows.py \
  tests/api/test_server_e2e.py tests/nodes/data/test_sql.py tests/api/test_rate_limit.py

exec .venv/bin/python -m pytest -q "$@"
