"""WorkflowExporter.to_docker: the build context, and its entrypoint run directly (no Docker engine here)."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from kailash.errors import SerializationError
from kailash.nodes.base import Node, NodeParameter
from kailash.nodes.code.python import PythonCodeNode
from kailash.nodes.logic.operations import SwitchNode
from kailash.security.secrets import Secret
from kailash.utils.export import WorkflowExporter
from kailash.workflow import Workflow

DOCKER_INSTRUCTIONS = {"FROM", "ENV", "WORKDIR", "COPY", "RUN", "USER", "EXPOSE", "ENTRYPOINT", "CMD"}


def pricing_workflow() -> Workflow:
    wf = Workflow("Pricing Pipeline")
    wf.add_node("price", PythonCodeNode(code="result = {'amount': qty * unit, 'qty': qty}"))
    wf.add_node("route", SwitchNode(condition="amount", outputs={"big": "amount >= 100", "small": "amount < 100"}))
    wf.add_node("discount", PythonCodeNode(code="result = round(data['amount'] * 0.9, 2)"))
    wf.add_node("full", PythonCodeNode(code="result = data['amount']"))
    wf.connect("price", "route")
    wf.connect("route", "discount", "big")
    wf.connect("route", "full", "small")
    return wf


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    text = dockerfile.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.append((word, rest))
    return out


def requirement_lines(context: Path) -> list[str]:
    return [x for x in (context / "requirements.txt").read_text().splitlines() if x and not x.startswith("#")]


def test_context_files_and_dockerfile(tmp_path):
    out = tmp_path / "docker"
    written = WorkflowExporter(pricing_workflow()).to_docker(out)
    names = sorted(p.relative_to(out).as_posix() for p in written)
    wheel = "wheels/kailash-0.1.0-py3-none-any.whl"
    assert names == [".dockerignore", "Dockerfile", "README.md", "entrypoint.sh", "requirements.txt", wheel, "workflow.yaml"]
    assert (out / "entrypoint.sh").stat().st_mode & 0o111
    steps = instructions(out / "Dockerfile")
    assert {w for w, _ in steps} <= DOCKER_INSTRUCTIONS
    assert steps[0] == ("FROM", "python:3.11-slim")
    for word, rest in steps:
        if word == "COPY":  # every source of a COPY is in the build context
            for src in shlex.split(rest)[:-1]:
                assert (out / src).exists(), src
    assert ("ENTRYPOINT", '["/app/entrypoint.sh"]') in steps
    assert ("USER", "10001") in steps
    assert ("WORKDIR", "/app") in steps and ("RUN", "pip install -r requirements.txt") in steps
    # never `kailash==0.1.0` from the index (another project's name there): this SDK's wheel, and it says so
    assert requirement_lines(out) == [f"./{wheel}"]
    assert "built from the source checkout" in (out / "requirements.txt").read_text()
    assert f"Kailash wheel `{wheel}` (built from the source checkout" in (out / "README.md").read_text()
    loaded = Workflow.load(out / "workflow.yaml")
    assert loaded.to_dict()["nodes"] == pricing_workflow().to_dict()["nodes"]


def test_extras_packages_and_json_format(tmp_path):
    from kailash.nodes.api.http import HTTPRequestNode

    wf = pricing_workflow()
    wf.add_node("fetch", HTTPRequestNode(url="http://127.0.0.1:9/"))
    wf.add_node("load", PythonCodeNode(code="import yaml\nresult = yaml.safe_load('a: 1')"))
    out = tmp_path / "docker"
    WorkflowExporter(wf).to_docker(out, config={"format": "json", "packages": ["rich>=13"]})
    lines = requirement_lines(out)
    assert lines[0] == "./wheels/kailash-0.1.0-py3-none-any.whl[http]"
    assert {Requirement(x).name for x in lines[1:]} == {"PyYAML", "rich"}
    assert (out / "workflow.json").exists() and not (out / "workflow.yaml").exists()
    assert "KAILASH_WORKFLOW=/app/workflow.json" in (out / "Dockerfile").read_text()
    assert json.loads((out / "workflow.json").read_text())["dependencies"]["extras"] == ["http"]


def test_sdk_from_a_wheel_is_copied_into_the_context(tmp_path):
    wheel = tmp_path / "kailash-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK\x03\x04 not really a wheel")
    out = tmp_path / "docker"
    WorkflowExporter(pricing_workflow()).to_docker(out, config={"sdk": str(wheel)})
    assert (out / "wheels" / wheel.name).read_bytes() == wheel.read_bytes()
    assert requirement_lines(out)[0] == f"./wheels/{wheel.name}"
    steps = instructions(out / "Dockerfile")
    copy_wheels = steps.index(("COPY", "wheels/ /app/wheels/"))
    pip = next(i for i, (w, r) in enumerate(steps) if w == "RUN" and "pip install" in r)
    assert copy_wheels < pip
    with pytest.raises(SerializationError, match="wheel '.*missing.whl' does not exist"):
        WorkflowExporter(pricing_workflow()).to_docker(out, config={"sdk": str(tmp_path / "missing.whl")})


def test_sdk_as_a_source_checkout_or_an_index_requirement(tmp_path):
    root = Path(__file__).resolve().parents[2]  # this checkout
    out = tmp_path / "docker"
    WorkflowExporter(pricing_workflow()).to_docker(out, config={"sdk": str(root)})
    assert requirement_lines(out) == ["./wheels/kailash-0.1.0-py3-none-any.whl"]
    spec = "kailash-sdk==0.9.0"
    WorkflowExporter(pricing_workflow()).to_docker(tmp_path / "idx", config={"sdk": spec})
    assert requirement_lines(tmp_path / "idx") == [spec]
    assert not (tmp_path / "idx" / "wheels").exists()
    with pytest.raises(ValueError, match="not a Kailash source checkout"):
        WorkflowExporter(pricing_workflow()).to_docker(tmp_path / "bad", config={"sdk": str(tmp_path)})


def test_installed_distribution_is_packed_back_into_a_wheel(tmp_path):
    from kailash.utils.export import wheel as wheel_mod

    # install the built wheel into a directory, then pack what is recorded there back into a wheel
    built = wheel_mod.sdk_wheel().path
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(built)],
        check=True, capture_output=True,
    )
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import kailash, kailash.utils.export.wheel as w; "
        "assert kailash.__file__.startswith(sys.argv[1]), kailash.__file__; r = w.sdk_wheel(); print(r.path); print(r.origin)"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    path, origin = proc.stdout.splitlines()
    assert origin == "packed from the installed distribution kailash 0.1.0"
    with zipfile.ZipFile(path) as repacked, zipfile.ZipFile(built) as original:
        assert sorted(repacked.namelist()) == sorted(original.namelist())
        assert repacked.read("kailash/__init__.py") == original.read("kailash/__init__.py")
        assert any(n.startswith("kailash/api/static/") for n in repacked.namelist())  # the Studio files
        assert "kailash-0.1.0.dist-info/licenses/LICENSE" in original.namelist()
        assert "License-Expression: Apache-2.0" in original.read("kailash-0.1.0.dist-info/METADATA").decode()
        assert "Apache License" in original.read("kailash-0.1.0.dist-info/licenses/LICENSE").decode()


@pytest.mark.slow
def test_context_installs_in_a_fresh_venv_and_its_entrypoint_runs(tmp_path, image_env):
    """The image's install step for real: a fresh venv, `pip install -r requirements.txt` in the
    context (the bundled wheel + PyYAML from the index), then the entrypoint runs the workflow
    with nothing of this checkout on the path."""
    out = tmp_path / "docker"
    WorkflowExporter(pricing_workflow()).to_docker(out)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-r", "requirements.txt"],
        cwd=out, capture_output=True, text=True, env=env, timeout=300,
    )
    assert pip.returncode == 0, pip.stderr
    run_env = {**image_env(out), "PATH": f"{venv / 'bin'}:/usr/bin:/bin"}
    run_env["KAILASH_PARAMS"] = json.dumps({"price": {"qty": 3, "unit": 50}})
    proc = subprocess.run(
        ["sh", str(out / "entrypoint.sh")], env=run_env, cwd=tmp_path / "workdir", capture_output=True, text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["results"]["discount"]["result"] == 135.0
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import kailash; print(kailash.__file__)"],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )
    assert where.stdout.startswith(str(venv)), where.stdout  # the wheel's copy ran, not this checkout


# -- the entrypoint, run as the image would run it ------------------------------------------------


def test_entrypoint_runs_with_params_from_the_environment(tmp_path, run_entrypoint):
    out = tmp_path / "docker"
    WorkflowExporter(pricing_workflow()).to_docker(out)
    proc = run_entrypoint(out, env={"KAILASH_PARAMS": json.dumps({"price": {"qty": 30, "unit": 5}})})
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["status"] == "completed"
    assert doc["results"]["discount"] == {"result": 135.0}
    assert "full" not in doc["results"]  # the small branch was not taken


def test_entrypoint_reads_a_mounted_params_file_and_baked_defaults(tmp_path, run_entrypoint):
    out = tmp_path / "docker"
    WorkflowExporter(pricing_workflow()).to_docker(out, config={"parameters": {"price": {"qty": 1, "unit": 7}}})
    baked = run_entrypoint(out)
    assert baked.returncode == 0, baked.stderr
    assert json.loads(baked.stdout)["results"]["full"] == {"result": 7}

    mounted = tmp_path / "params.yaml"
    mounted.write_text("price:\n  qty: 50\n  unit: 4\n")
    proc = run_entrypoint(out, env={"KAILASH_PARAMS_FILE": str(mounted)})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["results"]["discount"] == {"result": 180.0}

    proc = run_entrypoint(out, "run", "-p", "price.qty=2", env={"KAILASH_PARAMS_FILE": str(mounted)})
    assert json.loads(proc.stdout)["results"]["full"] == {"result": 8}  # extra arguments reach kailash run

    text = run_entrypoint(out, env={"KAILASH_OUTPUT": "text"})
    assert text.returncode == 0 and "workflow 'Pricing Pipeline' completed" in text.stdout


def test_entrypoint_errors(tmp_path, run_entrypoint):
    out = tmp_path / "docker"
    WorkflowExporter(pricing_workflow()).to_docker(out)
    missing = run_entrypoint(out, env={"KAILASH_PARAMS_FILE": str(tmp_path / "nope.json")})
    assert missing.returncode == 2 and "KAILASH_PARAMS_FILE" in missing.stderr and "does not exist" in missing.stderr

    no_params = run_entrypoint(out)
    assert no_params.returncode == 1  # the code needs qty/unit: the run fails and is reported
    assert "node 'price'" in no_params.stderr and "qty" in no_params.stderr

    bad_json = run_entrypoint(out, env={"KAILASH_PARAMS": "{not json"})
    assert bad_json.returncode == 2 and "error" in bad_json.stderr

    wrong_mode = run_entrypoint(out, "deploy")
    assert wrong_mode.returncode == 2 and "unknown mode 'deploy'" in wrong_mode.stderr

    no_file = run_entrypoint(out, env={"KAILASH_WORKFLOW": str(tmp_path / "gone.yaml")})
    assert no_file.returncode == 2 and "workflow file" in no_file.stderr

    valid = run_entrypoint(out, "validate")
    assert valid.returncode == 0 and "valid: workflow 'Pricing Pipeline'" in valid.stdout


def test_entrypoint_with_custom_nodes_and_secrets(tmp_path, run_entrypoint, custom_nodes):
    token = "container-secret-31337"
    wf = Workflow("digest")
    wf.add_node("source", PythonCodeNode(code="result = 21"))
    wf.add_node("scale", custom_nodes.ScaleNode())
    wf.add_node("digest", custom_nodes.TokenDigestNode(token=Secret(token), salt="s-"))
    wf.connect("source", "scale")
    out = tmp_path / "docker"
    WorkflowExporter(wf).to_docker(out)

    for path in out.rglob("*"):  # the secret is nowhere in the build context
        if path.is_file():
            assert token not in path.read_text(errors="replace"), path
    assert (out / "nodes" / "kx_export_nodes.py").read_text() == Path(custom_nodes.__file__).read_text()
    dockerfile = (out / "Dockerfile").read_text()
    assert "KAILASH_NODE_MODULES=kx_export_nodes" in dockerfile and "PYTHONPATH=/app/nodes" in dockerfile
    assert "KAILASH_REQUIRED_ENV=DIGEST_TOKEN" in dockerfile
    assert "`DIGEST_TOKEN`" in (out / "README.md").read_text()

    refused = run_entrypoint(out)
    assert refused.returncode == 2
    assert "DIGEST_TOKEN is not set" in refused.stderr

    proc = run_entrypoint(out, env={"DIGEST_TOKEN": token})
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)["results"]
    assert results["scale"] == {"result": 42}
    assert results["digest"] == {"digest": hashlib.sha256(f"s-{token}".encode()).hexdigest()[:16]}
    assert token not in proc.stdout + proc.stderr


def test_node_class_defined_in_a_function_cannot_ship(tmp_path):
    class LocalNode(Node):
        def get_parameters(self):
            return {"x": NodeParameter(type=int, default=1)}

        def run(self, x=1):
            return {"result": x}

    wf = Workflow("local")
    wf.add_node("mine", LocalNode())
    WorkflowExporter(wf).to_yaml(tmp_path / "wf.yaml")  # a file is fine: the class registers where it is defined
    with pytest.raises(SerializationError, match=r"node 'mine' \(LocalNode, defined in .*\).*cannot import it"):
        WorkflowExporter(wf).to_docker(tmp_path / "docker")
    assert not (tmp_path / "docker").exists()


def test_entrypoint_serve_mode_starts_the_gateway(tmp_path, image_env):
    """``serve`` runs `kailash serve` on $KAILASH_HOST:$KAILASH_PORT; /health is what Kubernetes probes."""
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    import os
    import signal
    import socket
    import subprocess
    import time
    import urllib.request

    out = tmp_path / "docker"
    wf = pricing_workflow()
    wf.name = "pricing"  # the gateway serves workflows under URL-safe names
    WorkflowExporter(wf).to_docker(out)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **image_env(out),
        "KAILASH_HOST": "127.0.0.1",
        "KAILASH_PORT": str(port),
        "KAILASH_API_KEYS": "test-key-123456",
    }
    proc = subprocess.Popen(
        ["sh", str(out / "entrypoint.sh"), "serve", "--no-tenants"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        health = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as r:
                    health = json.loads(r.read())
                    break
            except OSError:
                time.sleep(0.2)
        assert health is not None, proc.stderr.read() if proc.poll() is not None else "gateway did not answer"
        request = urllib.request.Request(
            base + "/workflows/pricing/execute",
            method="POST",
            data=json.dumps({"parameters": {"price": {"qty": 40, "unit": 5}}}).encode(),
            headers={"Content-Type": "application/json", "X-API-Key": "test-key-123456"},
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            body = json.loads(r.read())
        assert body["status"] == "completed"
        assert body["results"]["discount"] == {"result": 180.0}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()
