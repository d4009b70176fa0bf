"""Fixtures for the exporter tests: a custom node module on disk, and running an export's entrypoint.

There is no Docker engine here, so ``run_entrypoint`` plays the image: it reads the
ENV instructions of the exported Dockerfile, maps the image's directories onto the
export directory and temporary ones, and runs ``entrypoint.sh`` with ``sh``.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

VENV_BIN = str(Path(sys.executable).parent)

CUSTOM_NODES = '''
"""Custom node types used by the exporter tests (shipped into the Docker context)."""

import hashlib

from kailash.nodes.base import Node, NodeParameter
from kailash.security.secrets import Secret, reveal


class TokenDigestNode(Node):
    """Outputs a short digest of a secret token (never the token)."""

    def get_parameters(self):
        return {"token": NodeParameter(type=(str, Secret), required=True, secret=True),
                "salt": NodeParameter(type=str, default="")}

    def run(self, token, salt=""):
        return {"digest": hashlib.sha256((salt + str(reveal(token))).encode()).hexdigest()[:16]}


class ScaleNode(Node):
    """Multiplies ``data`` by ``factor``."""

    def get_parameters(self):
        return {"data": NodeParameter(type=(int, float), required=True),
                "factor": NodeParameter(type=(int, float), default=2)}

    def run(self, data, factor=2):
        return {"result": data * factor}
'''


@pytest.fixture(scope="session")
def custom_nodes(tmp_path_factory):
    """The module ``kx_export_nodes`` (a real file), imported so its node types register."""
    d = tmp_path_factory.mktemp("custom-nodes")
    path = d / "kx_export_nodes.py"
    path.write_text(CUSTOM_NODES)
    spec = importlib.util.spec_from_file_location("kx_export_nodes", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["kx_export_nodes"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("kx_export_nodes", None)


def dockerfile_env(dockerfile: Path) -> dict[str, str]:
    """The variables set by the ENV instructions of ``dockerfile``."""
    text = dockerfile.read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for item in shlex.split(line[4:]):
                key, _, value = item.partition("=")
                env[key] = value
    return env


@pytest.fixture
def image_env(tmp_path):
    """``image_env(context)``: the environment a container of the exported image would have.

    The Dockerfile's ENV, with ``/app`` mapped onto the export directory and the run
    store in a temporary directory. The working directory is ``tmp_path / "workdir"``.
    """
    (tmp_path / "workdir").mkdir(exist_ok=True)

    def make(context: Path) -> dict[str, str]:
        mapped = {k: v.replace("/app", str(context)) for k, v in dockerfile_env(context / "Dockerfile").items()}
        home = tmp_path / "kailash-home-image"
        home.mkdir(exist_ok=True)
        return {
            "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(tmp_path),
            "TMPDIR": str(tmp_path),
            **mapped,
            "KAILASH_HOME": str(home),
        }

    return make


@pytest.fixture
def run_entrypoint(tmp_path, image_env):
    """Run ``<context>/entrypoint.sh`` as the image would; returns the CompletedProcess."""

    def run(context: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60):
        full = {**image_env(context), **(env or {})}
        return subprocess.run(
            ["sh", str(context / "entrypoint.sh"), *args],
            env=full,
            cwd=tmp_path / "workdir",
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@pytest.fixture
def immutable_dir(tmp_path):
    """A directory nobody, root included, can create files in (chattr +i), or skip."""
    d = tmp_path / "locked"
    d.mkdir()
    if os.geteuid() != 0:
        d.chmod(0o555)
        yield d
        d.chmod(0o755)
        return
    proc = subprocess.run(["chattr", "+i", str(d)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot make a read-only directory as root here: {proc.stderr.strip()}")
    try:
        yield d
    finally:
        subprocess.run(["chattr", "-i", str(d)], capture_output=True)
