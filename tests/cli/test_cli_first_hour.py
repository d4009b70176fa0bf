"""The command line's first hour: --version, one-line errors with exit codes, --json on failure,
progress on a terminal (a real pty), colour, and a summary that does not serialise big outputs."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kailash.cli import main as cli_main
from kailash.cli.progress import RunProgress, StatusLine, format_elapsed
from kailash.nodes import progress as node_progress

ROOT = Path(__file__).resolve().parents[2]
COMMAND = [sys.executable, "-m", "kailash.cli"]
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def kailash(*args: str, home: Path | str, env: dict[str, str] | None = None, cwd: Path | None = None,
            pre: str | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "KAILASH_DEBUG")}
    full.update({"KAILASH_HOME": str(home), "PYTHONPATH": str(ROOT), **(env or {})})
    cmd = COMMAND if pre is None else [
        sys.executable, "-c", pre + "\nfrom kailash.cli.main import main\nimport sys\nsys.exit(main(sys.argv[1:]))"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120, env=full, cwd=cwd or ROOT)


@pytest.fixture
def flows(tmp_path):
    (tmp_path / "ok.yaml").write_text(
        "name: ok\nnodes:\n  - {id: a, type: PythonCodeNode, config: {code: 'result = 41 + 1'}}\nconnections: []\n")
    (tmp_path / "fails.yaml").write_text(
        "name: fails\nnodes:\n  - {id: boom, type: PythonCodeNode, config: {code: 'result = 1 / 0'}}\n"
        "connections: []\n")
    return tmp_path


def one_line(text: str) -> str:
    lines = [x for x in text.splitlines() if x.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


def test_version(tmp_path):
    proc = kailash("--version", home=tmp_path)
    assert proc.returncode == 0
    assert re.fullmatch(r"kailash 0\.1\.0 \(Python 3\.\d+\.\d+\)\n", proc.stdout)


def test_help_names_the_first_commands_and_the_exit_codes(tmp_path):
    proc = kailash("--help", home=tmp_path)
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "kailash run FILE.yaml" in text and "--version" in text
    assert "exit codes: 0 done, 1 the workflow failed" in text and "70 internal error" in text


@pytest.mark.parametrize("command", [["run", "{d}/ok.yaml"], ["runs"], ["serve", "{d}/ok.yaml"],
                                     ["mcp", "serve", "{d}/ok.yaml"]])
def test_kailash_home_that_is_a_file_is_one_line_exit_3(flows, command):
    home = flows / "home-is-a-file"
    home.write_text("")
    proc = kailash(*[c.format(d=flows) for c in command], home=home)
    assert proc.returncode == 3
    assert one_line(proc.stderr) == (
        f"error: KAILASH_HOME '{home}' is a file, not a directory; point KAILASH_HOME at a directory "
        "(or remove the file)")
    inside = home / "sub"
    proc = kailash("runs", home=inside)
    assert proc.returncode == 3 and "which is a file" in one_line(proc.stderr)


def test_mcp_serve_without_the_mcp_extra_is_one_line_exit_3(flows):
    # the MCP SDK made unimportable in that process, as when the [mcp] extra is not installed
    proc = kailash("mcp", "serve", str(flows / "ok.yaml"), home=flows / "h", pre="import sys; sys.modules['mcp'] = None")
    assert proc.returncode == 3
    assert "pip install 'kailash[mcp]'" in one_line(proc.stderr)
    proc = kailash("serve", str(flows / "ok.yaml"), home=flows / "h", pre="import sys; sys.modules['fastapi'] = None")
    assert proc.returncode == 3 and "pip install 'kailash[api]'" in one_line(proc.stderr)


def test_json_output_on_failure(flows):
    proc = kailash("run", str(flows / "fails.yaml"), "--json", home=flows / "h")
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["status"] == "failed" and doc["exit_code"] == 1 and doc["run_id"]
    assert doc["error"]["node_id"] == "boom" and "ZeroDivisionError" in doc["error"]["message"]
    assert f"kailash runs {doc['run_id']}" in proc.stderr

    proc = kailash("run", str(flows / "missing.yaml"), "--json", home=flows / "h")
    assert proc.returncode == 2
    doc = json.loads(proc.stdout)
    assert doc == {"run_id": None, "status": "error", "exit_code": 2,
                   "error": {"type": "SerializationError", "message": f"workflow file '{flows / 'missing.yaml'}' does not exist",
                             "parameter": "path"}}


def test_an_unexpected_error_is_one_line_exit_70_and_debug_shows_the_traceback(monkeypatch, capsys):
    def boom(args):
        raise RuntimeError("wires crossed")

    monkeypatch.setattr(cli_main, "cmd_nodes", boom)
    monkeypatch.delenv("KAILASH_DEBUG", raising=False)
    assert cli_main.main(["nodes"]) == 70
    err = capsys.readouterr().err
    assert one_line(err).startswith("internal error: RuntimeError: wires crossed (a bug in Kailash; run again with "
                                    "KAILASH_DEBUG=1")
    monkeypatch.setenv("KAILASH_DEBUG", "1")
    with pytest.raises(RuntimeError, match="wires crossed"):
        cli_main.main(["nodes"])


def test_colour_only_when_wanted(flows):
    plain = kailash("run", str(flows / "ok.yaml"), home=flows / "h")
    assert plain.returncode == 0 and "\x1b[" not in plain.stdout + plain.stderr  # not a terminal
    forced = kailash("run", str(flows / "ok.yaml"), home=flows / "h", env={"FORCE_COLOR": "1"})
    assert "\x1b[32mcompleted\x1b[0m" in forced.stdout
    off = kailash("run", str(flows / "fails.yaml"), home=flows / "h", env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert off.returncode == 1 and "\x1b[" not in off.stderr and off.stderr.startswith("error: ")
    red = kailash("run", str(flows / "fails.yaml"), home=flows / "h", env={"FORCE_COLOR": "1"})
    assert red.stderr.startswith("\x1b[31merror:\x1b[0m ")


def test_summary_of_a_million_rows_looks_at_a_few(flows):
    seen = []

    class Watched(dict):
        def items(self):
            seen.append(1)
            return super().items()

    rows = [Watched(id=i, name=f"n{i}") for i in range(1_000_000)]
    text = cli_main._summarise({"data": rows})
    assert len(text) <= 200 and text.endswith("... (a list of 1,000,000)")
    assert text.startswith('{"data": [{"id": 0, "name": "n0"}, {"id": 1')
    assert len(seen) < 20  # rows past the preview are never visited, let alone serialised
    assert cli_main._summarise({"result": 42}) == '{"result": 42}'
    assert cli_main._summarise("x" * 500).endswith("...") and len(cli_main._summarise("x" * 500)) == 200


def run_on_a_terminal(args: list[str], home: Path, cwd: Path, timeout: float = 120) -> tuple[int, str]:
    """Run ``kailash ARGS`` with stdout and stderr on a real pseudo-terminal; returns (exit code, screen bytes)."""
    master, slave = pty.openpty()
    env = {**os.environ, "KAILASH_HOME": str(home), "PYTHONPATH": str(ROOT), "TERM": "xterm", "COLUMNS": "120"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([*COMMAND, *args], stdout=slave, stderr=slave, stdin=subprocess.DEVNULL, env=env, cwd=cwd)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=10), out.decode("utf-8", "replace")


def test_progress_on_a_terminal_counts_rows_read_and_written(tmp_path):
    rows = 50_000
    with open(tmp_path / "big.csv", "w") as f:
        f.write("id,name\n")
        f.writelines(f"{i},n{i}\n" for i in range(rows))
    (tmp_path / "big.yaml").write_text(
        "name: big\nnodes:\n  - {id: read, type: CSVReaderNode, config: {file_path: big.csv}}\n"
        "  - {id: write, type: CSVWriterNode, config: {file_path: out.csv}}\n"
        "connections:\n  - {from: read, to: write}\n")
    code, screen = run_on_a_terminal(["run", "big.yaml"], tmp_path / "h", tmp_path)
    assert code == 0, screen
    assert "\r\x1b[K[0/2] read " in screen  # the live status line, redrawn in place
    text = ANSI.sub("", screen)
    assert re.search(r"\[0/2\] read [\d.]+ (ms|s) · [\d,]+ rows read", text), text
    assert "✔ [1/2] read" in text and f"({rows:,} rows read)" in text
    assert "✔ [2/2] write" in text and f"({rows:,} rows written)" in text
    assert "workflow 'big' completed in" in text and '"rows_written": 50000' in text
    assert (tmp_path / "out.csv").read_text().count("\n") == rows + 1


def test_batches_are_counted_too(tmp_path):
    (tmp_path / "b.csv").write_text("id\n" + "".join(f"{i}\n" for i in range(25)))
    from kailash.nodes.data.readers import CSVReaderNode

    events = []
    previous = node_progress.set_progress_listener(events.append)
    try:
        stream = CSVReaderNode(name="r", file_path=str(tmp_path / "b.csv"), batch_size=10).execute()["data"]
        assert [len(b) for b in stream] == [10, 10, 5]
    finally:
        node_progress.set_progress_listener(previous)
    assert [(e["count"], e["unit"]) for e in events if e["unit"] == "batches"] == [(1, "batches"), (2, "batches"),
                                                                                  (3, "batches")]
    assert {"node": "r", "what": "read", "count": 25, "unit": "rows"} in events


def test_nothing_listens_nothing_wraps():
    items = [1, 2, 3]
    assert node_progress.counted(items, node="n", what="read") is items


def test_status_line_and_run_progress_as_a_library(tmp_path):
    """The pieces other subcommands reuse: a StatusLine on a plain stream prints a status at most every
    `every` seconds; RunProgress shows elapsed time for a node that reports nothing."""
    out = (tmp_path / "s.txt").open("w+")
    line = StatusLine(out, live=False, every=0.2)
    line.status("too soon")
    time.sleep(0.25)
    line.status("42 events/s")
    line.line("done")
    out.seek(0)
    assert out.read() == "42 events/s\ndone\n"

    out = (tmp_path / "p.txt").open("w+")
    progress = RunProgress(1, nodes=True, status=StatusLine(out, live=False, every=0.3), tick=0.1)
    with progress:
        progress({"event": "node_started", "node_id": "slow"})
        time.sleep(1.6)
        assert re.fullmatch(r"\[0/1\] slow \d+\.\d s", progress.status_text())  # elapsed, nothing reported
        progress({"event": "node_completed", "node_id": "slow", "duration": 1.6})
    out.seek(0)
    text = out.read()
    assert text.startswith("  ▶ slow ...\n") and text.endswith("  ✔ [1/1] slow 1.6 s\n")
    assert re.search(r"^\[0/1\] slow \d+\.\d s$", text, re.M)  # a status line once the node ran for 1 s
    assert format_elapsed(0.0123) == "12.3 ms" and format_elapsed(75) == "1m15s"
