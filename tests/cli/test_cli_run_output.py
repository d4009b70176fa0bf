"""`kailash runs RUN_ID` shows what each node printed (captured with the run)."""

from __future__ import annotations

import json

from test_cli import kailash

from kailash.nodes.code.python import PythonCodeNode
from kailash.workflow import Workflow


def test_runs_detail_shows_each_nodes_printed_output(tmp_path, _isolated_home):
    wf = Workflow("chatty")
    wf.add_node("say", PythonCodeNode(code="print('hello from say')\nprint('second line')\nresult = 1"))
    wf.add_node("quiet", PythonCodeNode(code="result = data + 1"))
    wf.connect("say", "quiet", mapping={"result": "data"})
    wf.save(tmp_path / "chatty.yaml")
    ran = kailash("run", str(tmp_path / "chatty.yaml"), home=_isolated_home)
    assert ran.returncode == 0, ran.stderr
    assert "hello from say" in ran.stdout  # printed live, as before
    run_id = json.loads(kailash("runs", "--json", home=_isolated_home).stdout)[0]["run_id"]
    detail = kailash("runs", run_id, home=_isolated_home)
    assert detail.returncode == 0
    lines = detail.stdout.splitlines()
    at = lines.index("  output of 'say':")
    assert lines[at + 1:at + 3] == ["    | hello from say", "    | second line"]
    assert "output of 'quiet'" not in detail.stdout
    as_json = json.loads(kailash("runs", run_id, "--json", home=_isolated_home).stdout)
    assert as_json["output"] == {"say": "hello from say\nsecond line\n"}
