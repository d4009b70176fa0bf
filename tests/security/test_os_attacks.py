"""The OS layer on its own: escapes that assume the Python guards are already bypassed.

Each attack runs as raw Python (real builtins, real ``os``/``socket``) in a sandbox
worker through :func:`run_unguarded_for_tests`, under every isolation mode, so what
holds here holds even when sandboxed code gets past every guard. The same attacks run
again in a host process without capabilities (``setpriv --bounding-set=-all``) and as
an unprivileged user (``nobody``), where bubblewrap may not start.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

import pytest

from kailash.errors import SecurityError
from kailash.security import SecurityConfig
from kailash.security.sandbox import run_unguarded_for_tests, sandbox_info, shutdown_sandboxes
from kailash.security.sandbox.files import bwrap_available, namespaces_available

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOST_SECRET = "sk-host-secret-0123456789"

# Raw code: every attempt is recorded as ("ok", value) or ("refused", error type).
ATTACKS = """
import os, socket
out = {}
def attempt(name, fn):
    try:
        out[name] = ("ok", repr(fn())[:300])
    except BaseException as exc:
        out[name] = ("refused", type(exc).__name__)
def write(path):
    with open(path, "w") as f:
        f.write("escaped")
attempt("etc_passwd", lambda: open("/etc/passwd").read())
attempt("etc_list", lambda: os.listdir("/etc"))
attempt("project_read", lambda: open(PROJECT + "/pyproject.toml").read())
attempt("project_list", lambda: os.listdir(PROJECT))
attempt("project_tests", lambda: open(PROJECT + "/tests/security/test_os_attacks.py").read())
attempt("proc1_environ", lambda: open("/proc/1/environ", "rb").read())
attempt("host_environ", lambda: open(f"/proc/{HOST_PID}/environ", "rb").read())
attempt("parent_environ", lambda: open(f"/proc/{os.getppid()}/environ", "rb").read())
attempt("host_cmdline", lambda: open(f"/proc/{HOST_PID}/cmdline", "rb").read())
attempt("host_fd", lambda: os.listdir(f"/proc/{HOST_PID}/fd"))
attempt("host_pid_stat", lambda: os.stat(f"/proc/{HOST_PID}").st_uid)
attempt("proc_list", lambda: sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
attempt("home", lambda: os.listdir("/home"))
attempt("root", lambda: os.listdir("/root"))
attempt("write_tmp", lambda: write(OUTSIDE_FILE))
attempt("write_project", lambda: write(PROJECT + "/" + ESCAPE_NAME))
attempt("connect_pg", lambda: socket.create_connection(("127.0.0.1", 5432), timeout=2))
attempt("env", lambda: dict(os.environ))
attempt("write_allowed", lambda: write(ALLOWED + "/inside.txt"))
attempt("read_allowed", lambda: open(ALLOWED + "/inside.txt").read())
attempt("kill_host", lambda: os.kill(HOST_PID, 0))
result = out
"""

MUST_BE_REFUSED = ("etc_passwd", "etc_list", "project_read", "project_list", "project_tests", "home", "root",
                   "write_tmp", "write_project", "connect_pg", "host_cmdline", "host_fd", "kill_host")


def attack_script(allowed: str, outside_file: str, escape_name: str, host_pid: int) -> str:
    return (f"PROJECT = {ROOT!r}; ALLOWED = {allowed!r}; OUTSIDE_FILE = {outside_file!r}; "
            f"ESCAPE_NAME = {escape_name!r}; HOST_PID = {host_pid}\n" + ATTACKS)


def check_outcome(out: dict, *, allowed: str, outside_file: str, escape_name: str, host_pid: int,
                  namespaces: bool = True) -> None:
    """Every attack failed; the allowed directory still works; nothing of the host leaked."""
    succeeded = {name: out[name] for name in MUST_BE_REFUSED if out[name][0] == "ok"}
    assert not succeeded, f"escapes that worked: {succeeded}"
    assert out["write_allowed"][0] == "ok" and list(out["read_allowed"]) == ["ok", "'escaped'"]
    assert HOST_SECRET not in json.dumps(out), "the host's environment leaked into the sandbox"
    assert "KAILASH_API_KEYS" not in out["env"][1] and "OPENAI_API_KEY" not in out["env"][1]
    if out["proc_list"][0] == "ok":  # a /proc of its own: none of the host's processes
        assert host_pid not in json.loads(out["proc_list"][1])
    if namespaces:  # not even the host's process ids can be probed
        assert out["host_pid_stat"][0] == "refused"
    assert not os.path.exists(outside_file)
    assert not os.path.exists(os.path.join(ROOT, escape_name))
    if host_pid > 0:  # the host-side view of what the sandbox wrote
        with open(os.path.join(allowed, "inside.txt")) as f:
            assert f.read() == "escaped"


MODES = ["bwrap", "process", "auto"]


@pytest.fixture
def host_secrets(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", HOST_SECRET)
    monkeypatch.setenv("KAILASH_API_KEYS", HOST_SECRET)
    shutdown_sandboxes()  # templates start afresh with these variables in the host's environment
    yield
    shutdown_sandboxes()


@pytest.mark.parametrize("isolation", MODES)
def test_an_escaped_sandbox_reaches_nothing_of_the_host(isolation, tmp_path, host_secrets):
    if isolation == "bwrap" and not bwrap_available():
        pytest.skip("bubblewrap does not work on this machine")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    outside = str(tmp_path / f"outside-{uuid.uuid4().hex}.txt")
    escape = f"escape-{uuid.uuid4().hex}.txt"
    config = SecurityConfig(allowed_directories=[str(allowed)], execution_timeout=20.0, isolation=isolation)
    try:
        out = run_unguarded_for_tests(config, attack_script(str(allowed), outside, escape, os.getpid()))
    finally:
        if os.path.exists(os.path.join(ROOT, escape)):
            os.unlink(os.path.join(ROOT, escape))
    namespaces = sandbox_info(config)["namespaces"]
    assert namespaces or not namespaces_available()
    check_outcome(out, allowed=str(allowed), outside_file=outside, escape_name=escape, host_pid=os.getpid(),
                  namespaces=namespaces)


# -- a host without capabilities ----------------------------------------------------------------

HOST_SCRIPT = """
import json, logging, os, sys
sys.path.insert(0, ROOT)
os.environ["OPENAI_API_KEY"] = os.environ["KAILASH_API_KEYS"] = SECRET
from kailash.errors import SecurityError
from kailash.security import SecurityConfig
from kailash.security.config import tenant_policy
from kailash.security.sandbox import run_unguarded_for_tests, sandbox_info
def attack_script(allowed, outside_file, escape_name, host_pid):
    return (f"PROJECT = {ROOT!r}; ALLOWED = {allowed!r}; OUTSIDE_FILE = {outside_file!r}; "
            f"ESCAPE_NAME = {escape_name!r}; HOST_PID = {host_pid}\\n" + ATTACKS)

warnings = []
class Keep(logging.Handler):
    def emit(self, record):
        warnings.append((record.name, record.levelname, record.getMessage()))
logging.getLogger().addHandler(Keep())
report = {"uid": os.getuid(), "modes": {}}
for isolation in ("auto", "process", "bwrap"):
    config = SecurityConfig(allowed_directories=[ALLOWED], execution_timeout=20.0, isolation=isolation)
    try:
        info = sandbox_info(config)
        out = run_unguarded_for_tests(config, attack_script(ALLOWED, OUTSIDE, ESCAPE, os.getpid()))
        report["modes"][isolation] = {"ran_as": info["isolation"], "namespaces": info["namespaces"], "out": out}
    except SecurityError as exc:
        report["modes"][isolation] = {"refused": str(exc)}
    os.unlink(os.path.join(ALLOWED, "inside.txt")) if os.path.exists(os.path.join(ALLOWED, "inside.txt")) else None
tenant = tenant_policy(SecurityConfig(isolation="auto"), tenant="acme", allowed_directories=[ALLOWED])
try:
    report["tenant"] = {"ran_as": sandbox_info(tenant)["isolation"]}
except SecurityError as exc:
    report["tenant"] = {"refused": str(exc)}
report["warnings"] = warnings
print(json.dumps(report))
"""

UNPRIVILEGED = {
    "root without capabilities": ["setpriv", "--bounding-set=-all", "--inh-caps=-all"],
    "nobody": ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--bounding-set=-all"],
}


def _interpreter_for(prefix: list[str]) -> str:
    """An interpreter the unprivileged host can start (a pyenv build under /root is out of reach for nobody)."""
    for exe in (sys.executable, "/usr/bin/python3"):
        probe = subprocess.run([*prefix, "env", "-i", exe, "-c", f"import sys; sys.path.insert(0, {ROOT!r}); "
                                "import kailash.security.sandbox"], capture_output=True, timeout=60, cwd="/")
        if probe.returncode == 0:
            return exe
    pytest.skip("no Python interpreter this user can run")


@pytest.mark.skipif(shutil.which("setpriv") is None or os.geteuid() != 0,
                    reason="needs setpriv and root to start the unprivileged host")
@pytest.mark.parametrize("who", list(UNPRIVILEGED))
def test_without_capabilities_every_mode_holds_or_is_refused(who):
    base = tempfile.mkdtemp(prefix="kailash-nocaps-")
    os.chmod(base, 0o755)
    allowed = os.path.join(base, "allowed")
    os.mkdir(allowed)
    os.chmod(allowed, 0o777)
    outside = os.path.join(base, f"outside-{uuid.uuid4().hex}.txt")
    escape = f"escape-{uuid.uuid4().hex}.txt"
    script = (f"ROOT = {ROOT!r}; ALLOWED = {allowed!r}; OUTSIDE = {outside!r}; ESCAPE = {escape!r}; "
              f"SECRET = {HOST_SECRET!r}; ATTACKS = {ATTACKS!r}\n" + HOST_SCRIPT)
    try:
        exe = _interpreter_for(UNPRIVILEGED[who])
        proc = subprocess.run(UNPRIVILEGED[who] + ["env", "-i", f"PATH={os.environ.get('PATH', '/usr/bin:/bin')}",
                                                   exe, "-c", script], capture_output=True, text=True,
                              timeout=240, cwd="/", env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        assert proc.returncode == 0, proc.stderr[-3000:]
        report = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        if os.path.exists(os.path.join(ROOT, escape)):
            os.unlink(os.path.join(ROOT, escape))
        shutil.rmtree(base, ignore_errors=True)
    assert report["uid"] == (0 if who.startswith("root") else 65534)
    modes = report["modes"]
    for isolation, outcome in modes.items():
        if "refused" in outcome:  # only an explicit bwrap may be refused; auto always has a safe mode
            assert isolation == "bwrap", outcome
            assert "bubblewrap" in outcome["refused"]
            continue
        check_outcome(outcome["out"], allowed=allowed, outside_file=outside, escape_name=escape, host_pid=-1,
                      namespaces=outcome["namespaces"])
    fell_back = modes["auto"]["ran_as"] == "process"
    if fell_back:  # said loudly, and never for a tenant
        assert any(level == "WARNING" and "falls back" in msg for _, level, msg in report["warnings"])
        assert "refused" in report["tenant"] and "tenant" in report["tenant"]["refused"]
    else:
        assert report["tenant"] == {"ran_as": "bwrap"}


def test_auto_falling_back_warns_and_a_tenant_policy_refuses(tmp_path, monkeypatch, caplog):
    from kailash.security.config import tenant_policy
    from kailash.security.sandbox import files as sandbox_fs
    from kailash.security.sandbox import sandbox_info

    monkeypatch.setattr(sandbox_fs, "bwrap_available", lambda: False)
    auto = SecurityConfig(allowed_directories=[str(tmp_path)], isolation="auto")
    with caplog.at_level(logging.WARNING):
        assert sandbox_info(auto)["isolation"] == "process"
    assert any(r.levelno == logging.WARNING and "falls back" in r.getMessage() for r in caplog.records)
    assert any("sandbox_isolation_fallback" in r.getMessage() for r in caplog.records if r.name == "kailash.audit")
    with pytest.raises(SecurityError, match="needs a working bubblewrap"):
        sandbox_info(SecurityConfig(isolation="bwrap"))
    tenant = tenant_policy(auto, tenant="acme", allowed_directories=[str(tmp_path)])
    assert tenant.isolation == "auto" and tenant.tenant == "acme"
    with pytest.raises(SecurityError, match="tenant 'acme'.*refuses to fall back"):
        sandbox_info(tenant)
    explicit = tenant_policy(SecurityConfig(isolation="process"), tenant="acme", allowed_directories=[str(tmp_path)])
    assert explicit.isolation == "process"  # the operator chose it: the tenant keeps it


def test_without_landlock_process_mode_refuses_every_write(tmp_path, host_secrets):
    """A kernel without Landlock: nothing else confines writes in "process" mode, so none is allowed."""
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    outside = str(tmp_path / f"outside-{uuid.uuid4().hex}.txt")
    escape = f"escape-{uuid.uuid4().hex}.txt"
    config = SecurityConfig(allowed_directories=[str(allowed)], execution_timeout=20.0, isolation="process")
    try:
        out = run_unguarded_for_tests(config, attack_script(str(allowed), outside, escape, os.getpid()),
                                      landlock=False)
    finally:
        if os.path.exists(os.path.join(ROOT, escape)):
            os.unlink(os.path.join(ROOT, escape))
    assert out["write_tmp"][0] == out["write_project"][0] == out["write_allowed"][0] == "refused"
    assert out["connect_pg"][0] == "refused" and HOST_SECRET not in json.dumps(out)
    assert not os.path.exists(outside) and not os.path.exists(os.path.join(ROOT, escape))
    assert out["etc_passwd"][0] == "ok"  # documented: reads are not confined without Landlock or bwrap


@pytest.mark.skipif(not bwrap_available(), reason="bubblewrap does not work on this machine")
def test_the_bubblewrap_view_holds_without_landlock(tmp_path, host_secrets):
    """Each layer holds on its own: bubblewrap's view, as on a kernel without Landlock."""
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    outside = str(tmp_path / f"outside-{uuid.uuid4().hex}.txt")
    escape = f"escape-{uuid.uuid4().hex}.txt"
    config = SecurityConfig(allowed_directories=[str(allowed)], execution_timeout=20.0, isolation="bwrap")
    try:
        out = run_unguarded_for_tests(config, attack_script(str(allowed), outside, escape, os.getpid()),
                                      landlock=False)
    finally:
        if os.path.exists(os.path.join(ROOT, escape)):
            os.unlink(os.path.join(ROOT, escape))
    # without Landlock, the directories leading to the bound paths can be listed: they hold only those paths
    status, listed = out.pop("project_list")
    bound = {"kailash"}
    if os.path.realpath(sys.prefix).startswith(os.path.realpath(ROOT) + os.sep):  # a venv inside the checkout (CI)
        bound.add(os.path.relpath(os.path.realpath(sys.prefix), os.path.realpath(ROOT)).split(os.sep)[0])
    assert status == "ok" and set(ast.literal_eval(listed)) <= bound, listed
    if out["root"][0] == "ok":
        assert all(sys.executable.startswith(f"/root/{name}") or os.path.realpath(sys.executable).startswith(
            f"/root/{name}") for name in ast.literal_eval(out["root"][1])), out["root"]
        out["root"] = ("refused", "only the interpreter's directory")
    out["project_list"] = ("refused", "")
    check_outcome(out, allowed=str(allowed), outside_file=outside, escape_name=escape, host_pid=os.getpid())
    assert out["proc_list"][0] == "ok" and max(json.loads(out["proc_list"][1])) < 10  # its own PID namespace
