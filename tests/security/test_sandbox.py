"""run_sandboxed: code semantics, state, errors, data crossing the boundary, files, audit."""

from __future__ import annotations

import datetime
import decimal
import json
import os
import pickle
import threading
import time
import uuid

import pytest

from kailash.errors import NodeConfigurationError, NodeExecutionError, NodeTimeoutError, SecurityError
from kailash.security import Secret
from kailash.security.sandbox import pool as sandbox_pool
from kailash.security.sandbox import release_sandbox, run_sandboxed, sandbox_info
from kailash.security.sandbox.wire import MalformedReply, encode, loads_result
from tests.security.helpers import Runner, make_config

COUNTER = """
if not hasattr(self, "count"):
    self.count = 0
self.count += 1
result = self.count
"""


def test_inputs_are_variables_and_result_is_the_output(run):
    assert run("result = sum(range(n))", {"n": 1000}) == 499500


def test_top_level_return_sets_the_result(run):
    assert run("if x > 0:\n    return 'positive'\nresult = 'other'", {"x": 5}) == "positive"
    assert run("if x > 0:\n    return 'positive'\nresult = 'other'", {"x": -5}) == "other"


def test_indented_code_is_dedented(run):
    assert run("\n    total = a + b\n    result = total * 2\n", {"a": 1, "b": 2}) == 6


def test_code_that_never_sets_result_is_reported(run):
    with pytest.raises(NodeExecutionError, match="did not set `result`"):
        run("x = 1")


def test_self_state_persists_per_node(run):
    assert [run(COUNTER) for _ in range(3)] == [1, 2, 3]
    other = f"{run.key}-other"
    assert run(COUNTER, key=other) == 1
    assert run(COUNTER) == 4


def test_release_discards_the_state(run):
    assert run(COUNTER) == 1
    release_sandbox(run.key)
    assert run(COUNTER) == 1


def test_state_is_reset_after_a_timeout(run):
    assert run(COUNTER) == 1
    config = make_config(run.config.allowed_directories[0], run.config.isolation, execution_timeout=0.5)
    with pytest.raises(NodeTimeoutError):
        run("while True:\n    pass", config=config)
    assert run(COUNTER) == 1


def test_imports_are_pre_imported_with_aliases_and_submodules(run):
    code = "result = [math.sqrt(16), j.dumps({'a': 1}), urllib.parse.quote('a b')]"
    assert run(code, imports=["math", "json as j", "urllib.parse"]) == [4.0, '{"a": 1}', "a%20b"]


def test_a_listed_import_outside_the_allow_list_is_refused(run):
    with pytest.raises(SecurityError, match="import of 'os' is not allowed"):
        run("result = 1", imports=["os"])


def test_allowed_modules_work_inside_code(run):
    code = """
import statistics, datetime, re, collections, dataclasses, decimal

@dataclasses.dataclass
class Point:
    x: int
    y: int

p = Point(1, 2)
counts = collections.Counter("abca")
result = {
    "mean": statistics.mean(values),
    "day": datetime.date(2024, 1, 2).isoformat(),
    "words": re.findall(r"\\w+", "hello sandboxed world"),
    "top": counts.most_common(1)[0][0],
    "point": dataclasses.asdict(p),
    "money": str(decimal.Decimal("1.10") + decimal.Decimal("2.20")),
    "parsed": datetime.datetime.strptime("2024-03-04", "%Y-%m-%d").day,
    "fmt": "{} + {name}".format(1, name="two"),
}
"""
    assert run(code, {"values": [1, 2, 3, 4]}) == {
        "mean": 2.5, "day": "2024-01-02", "words": ["hello", "sandboxed", "world"], "top": "a",
        "point": {"x": 1, "y": 2}, "money": "3.30", "parsed": 4, "fmt": "1 + two",
    }


def test_common_python_idioms_still_work(run):
    code = """
import collections, enum, typing, zoneinfo, datetime

P = collections.namedtuple("P", "a b")

class Color(enum.Enum):
    RED = 1

class Meta(type):
    def __call__(cls, *args):
        return "made by Meta"

class Made(metaclass=Meta):
    pass

class Row(typing.NamedTuple):
    x: int
    y: typing.Optional[int] = None

paris = zoneinfo.ZoneInfo("Europe/Paris")
result = {
    "namedtuple": P(1, 2)._asdict(),
    "replaced": tuple(P(1, 2)._replace(b=3)),
    "enum": Color.RED.name,
    "meta": Made(),
    "typed": Row(1).x,
    "types": [isinstance(int, type), type(3) is int, type(int) is type, type("X", (), {"a": 1}).a],
    "tz": datetime.datetime(2024, 1, 1, tzinfo=paris).utcoffset().seconds,
}
"""
    assert run(code) == {"namedtuple": {"a": 1, "b": 2}, "replaced": (1, 3), "enum": "RED", "meta": "made by Meta",
                         "typed": 1, "types": [True, True, True, 1], "tz": 3600}


def test_user_errors_name_the_node_and_the_line(run):
    code = "a = 1\nb = 0\nresult = a / b\n"
    with pytest.raises(NodeExecutionError, match=r"'sandboxed'.*line 3.*ZeroDivisionError: division by zero") as info:
        run(code)
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    assert info.value.line == 3
    assert "result = a / b" in str(info.value)


def test_errors_inside_nested_functions_point_at_the_user_line(run):
    code = "def parse(v):\n    return int(v)\n\nresult = [parse(v) for v in values]\n"
    with pytest.raises(NodeExecutionError, match=r"line 2 of its code: ValueError") as info:
        run(code, {"values": ["1", "x"]})
    assert isinstance(info.value.__cause__, ValueError)


def test_syntax_errors_name_the_node_and_the_line(run):
    with pytest.raises(NodeConfigurationError, match=r"'sandboxed'.*syntax error in code at line 2") as info:
        run("x = 1\nresult = (x +\n")
    assert info.value.parameter == "code"


def test_every_rule_violation_is_listed_at_once(run):
    with pytest.raises(SecurityError) as info:
        run("import os\nx = ().__class__\nresult = eval('1')\n")
    text = str(info.value)
    assert "line 1" in text and "line 2" in text and "line 3" in text


def test_violations_fail_the_node_even_when_the_code_catches_them(run):
    code = "try:\n    import os\nexcept Exception:\n    pass\nresult = 1\n"
    with pytest.raises(SecurityError):  # refused statically
        run(code)
    code = "try:\n    getattr(1, '__class__')\nexcept Exception:\n    pass\nresult = 'ok'\n"
    with pytest.raises(SecurityError, match="getattr"):
        run(code)


def test_plain_data_crosses_the_boundary(run):
    code = """
import datetime, decimal, uuid, collections
result = {
    "when": datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc),
    "amount": decimal.Decimal("9.99"),
    "tags": {"a", "b"},
    "raw": b"\\x00\\x01",
    "pair": (1, 2.5),
    "id": uuid.UUID(int=7),
    "ordered": collections.OrderedDict(a=1),
    "nested": [{"x": [None, True]}],
}
"""
    out = run(code)
    assert out["when"] == datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.UTC)
    assert out["amount"] == decimal.Decimal("9.99")
    assert out["tags"] == {"a", "b"} and out["raw"] == b"\x00\x01" and out["pair"] == (1, 2.5)
    assert out["id"] == uuid.UUID(int=7) and out["ordered"] == {"a": 1}
    assert out["nested"] == [{"x": [None, True]}]


def test_a_result_that_cannot_cross_the_boundary_is_a_clear_error(run):
    code = "class Point:\n    pass\nresult = {'points': [Point()]}\n"
    with pytest.raises(NodeExecutionError, match=r"result\['points'\]\[0\] is a Point \(a class defined in the code\)"
                                                 r".*cannot cross the process boundary"):
        run(code)
    with pytest.raises(NodeExecutionError, match="result is a generator"):
        run("result = (x for x in range(3))")


def test_an_input_that_cannot_be_sent_is_a_clear_error(run):
    with pytest.raises(NodeExecutionError, match="input 'callback' .*cannot be sent to the sandbox") as info:
        run("result = 1", {"callback": lambda x: x})
    assert info.value.parameter == "callback"


def test_hostile_replies_are_refused_by_the_host():
    with pytest.raises(MalformedReply):
        loads_result(pickle.dumps(os.system))  # replies are never unpickled
    with pytest.raises(MalformedReply):
        loads_result(b"L\xff\xff\xff\xff")  # a count the bytes do not back
    assert loads_result(encode({"a": [1, {2}], "b": datetime.date(2024, 1, 1)})) == {
        "a": [1, {2}], "b": datetime.date(2024, 1, 1)}


def test_printed_output_reaches_the_host_stdout(run, capsys):
    assert run("print('hello', name)\nresult = 1", {"name": "sandbox"}) == 1
    assert "hello sandbox" in capsys.readouterr().out


def test_secrets_are_usable_but_never_shown(run, capsys):
    token = Secret("tok-1234567890")
    assert run("result = token.reveal()[:4]", {"token": token}) == "tok-"
    with pytest.raises(NodeExecutionError) as info:
        run("print(token.reveal())\nraise ValueError('bad token ' + token.reveal())", {"token": token})
    assert "tok-1234567890" not in str(info.value)
    assert "tok-1234567890" not in capsys.readouterr().out
    with pytest.raises(SecurityError):
        run("result = token._value", {"token": token})


def test_files_inside_the_allowed_directory_can_be_read_and_written(run, sandbox_dirs):
    allowed, _ = sandbox_dirs
    target = allowed / f"out-{uuid.uuid4().hex}.json"
    code = f"""
import json
with open({str(allowed / 'input.txt')!r}) as f:
    text = f.read()
with open({str(target)!r}, "w") as f:
    json.dump({{"text": text}}, f)
result = len(text)
"""
    assert run(code) == len("hello from the allowed directory")
    assert json.loads(target.read_text()) == {"text": "hello from the allowed directory"}


def test_reading_a_file_over_max_file_size_is_refused(run, sandbox_dirs):
    allowed, _ = sandbox_dirs
    big = allowed / "big-input.bin"
    big.write_bytes(b"x" * (2 * 1024 * 1024))
    try:
        with pytest.raises(SecurityError, match="over the 1048576-byte limit"):
            run(f"result = len(open({str(big)!r}, 'rb').read())")
    finally:
        big.unlink()


def test_without_allowed_directories_no_file_can_be_opened(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    runner = Runner(make_config(tmp_path, allowed_directories=[]))
    with pytest.raises(SecurityError, match="none configured"):
        runner(f"result = open({str(tmp_path / 'f.txt')!r}).read()")


def test_concurrent_calls_on_separate_nodes_and_on_one_node(run):
    results: list = []
    errors: list = []

    def call(key):
        try:
            results.append(run(COUNTER, key=key))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(f"{run.key}-{i % 2}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert sorted(results) == [1, 1, 2, 2, 3, 3, 4, 4]


def worker_of(node_key):
    """The worker process hosting ``node_key``'s state."""
    for pool in sandbox_pool._pools.values():
        if node_key in pool.assigned:
            return pool.slots[pool.assigned[node_key]].worker
    return None


def test_a_worker_killed_from_outside_is_replaced(run):
    run(COUNTER)
    worker = worker_of(run.key)
    worker.template.kill(worker.pid)  # SIGKILL, as the OOM killer would
    worker.dead = False  # the host has not noticed yet
    assert run(COUNTER) == 1  # fresh worker, fresh state, no error


def test_sandbox_info_reports_the_isolation_in_effect(run):
    info = sandbox_info(run.config)
    assert info["isolation"] in ("bwrap", "process")
    if run.config.isolation == "process":
        assert info["isolation"] == "process"
    assert info["seccomp"] is True
    assert info["address_space_limit"] > 256 * 1024 * 1024


def test_bwrap_required_but_unavailable_is_an_error(tmp_path, monkeypatch):
    from kailash.security.sandbox import files as sandbox_fs

    monkeypatch.setattr(sandbox_fs, "bwrap_available", lambda: False)
    with pytest.raises(SecurityError, match="needs a working bubblewrap"):
        run_sandboxed("k", "result = 1", [], {}, make_config(tmp_path, isolation="bwrap"), "n")
    # "auto" falls back to a plain process and still enforces the guards
    fallback = make_config(tmp_path, isolation="auto")
    assert run_sandboxed(f"k-{uuid.uuid4().hex}", "result = 1", [], {}, fallback, "n") == 1
    assert sandbox_info(fallback)["isolation"] == "process"


def test_audit_log_records_violations_and_timeouts_without_secrets(tmp_path):
    log = tmp_path / "audit.jsonl"
    config = make_config(tmp_path, enable_audit_logging=True, audit_log_path=str(log), execution_timeout=0.5)
    runner = Runner(config)
    token = Secret("sup3r-s3cret-token")
    with pytest.raises(SecurityError):
        runner("import os", {"token": token})
    with pytest.raises(SecurityError):
        runner("open('/etc/passwd').read() + token.reveal()", {"token": token})
    with pytest.raises(NodeTimeoutError):
        runner("while True:\n    pass", {"token": token})
    text = log.read_text()
    events = [json.loads(line) for line in text.splitlines()]
    assert [e["event"] for e in events] == ["sandbox_code_rejected", "sandbox_violation", "sandbox_timeout"]
    assert all(e["node_id"] == "sandboxed" and len(e["code_sha256"]) == 16 for e in events)
    assert "/etc/passwd" in events[1]["reason"]
    assert "sup3r-s3cret-token" not in text


def test_a_dead_template_is_restarted(run):
    assert run(COUNTER) == 1
    worker = worker_of(run.key)
    worker.template.proc.kill()  # the whole sandbox process tree goes away
    worker.template.proc.wait(timeout=10)
    assert run(COUNTER) == 1  # a new template and worker; the old state is gone
    assert run(COUNTER) == 2


def test_a_sandbox_started_from_a_thread_that_ended_keeps_working(sandbox_dirs):
    """Runtimes call nodes from short-lived pool threads: the worker must not die with them."""
    from kailash.nodes.code.python import PythonCodeNode

    allowed, _ = sandbox_dirs
    node = PythonCodeNode(code="self.n = getattr(self, 'n', 0) + 1\nresult = self.n",
                          security_config=make_config(allowed, "auto"))
    box = {}
    t = threading.Thread(target=lambda: box.update(first=node.execute()["result"]))
    t.start()
    t.join()
    assert box == {"first": 1}
    time.sleep(0.3)  # give a parent-death signal time to land, were it tied to that thread
    assert node.execute()["result"] == 2  # same worker, state intact


def test_a_garbage_collected_node_is_released_without_taking_locks(sandbox_dirs):
    """The release runs from a GC finalizer, which can fire while the sandbox holds its
    locks (mid-fork): it must only queue the key, and the next call releases it."""
    import gc

    from kailash.nodes.code.python import PythonCodeNode

    allowed, _ = sandbox_dirs
    cfg = make_config(allowed, "auto")
    node = PythonCodeNode(code="result = 1", security_config=cfg)
    node.execute()
    key = node._sandbox_key
    assert worker_of(key) is not None
    with sandbox_pool._lock:  # what a finalizer firing inside the sandbox would find
        done = threading.Event()
        threading.Thread(target=lambda: (sandbox_pool.release_later("probe"), done.set())).start()
        assert done.wait(2), "release_sandbox_later blocked on the sandbox lock"
    del node
    gc.collect()
    PythonCodeNode(code="result = 2", security_config=cfg).execute()  # the next call releases the queue
    assert worker_of(key) is None


def test_many_nodes_keep_their_own_state_in_a_bounded_number_of_workers(run):
    keys = [f"{run.key}-many-{i}" for i in range(3 * sandbox_pool.workers_per_policy() + 40)]
    for round_ in (1, 2, 3):
        assert [run(COUNTER, key=k) for k in keys] == [round_] * len(keys)
    hosts = {id(worker_of(k)) for k in keys}
    assert len(hosts) <= sandbox_pool.workers_per_policy()
    assert sandbox_pool.worker_processes() <= sandbox_pool.MAX_TEMPLATES * sandbox_pool.workers_per_policy()
    for k in keys:
        release_sandbox(k)


def test_releasing_one_node_keeps_the_state_of_the_others_on_its_worker(run):
    first, second = f"{run.key}-a", f"{run.key}-b"
    others = [f"{run.key}-o{i}" for i in range(sandbox_pool.workers_per_policy())]
    for key in (first, second, *others):
        run(COUNTER, key=key)
    shared = next(k for k in (second, *others) if worker_of(k) is worker_of(first))
    assert run(COUNTER, key=shared) == 2
    release_sandbox(first)
    assert run(COUNTER, key=shared) == 3  # the worker still hosts it, state intact
    assert run(COUNTER, key=first) == 1  # a fresh namespace for the released node
    for key in (first, second, *others):
        release_sandbox(key)


def test_a_worker_hosting_no_node_is_stopped(run):
    key = f"{run.key}-alone"
    config = make_config(run.config.allowed_directories[0], run.config.isolation, max_file_size=12345)
    assert run(COUNTER, key=key, config=config) == 1
    worker = worker_of(key)
    assert worker is not None and not worker.dead
    release_sandbox(key)
    assert worker.dead and worker_of(key) is None
