"""CSV/JSON/text readers and writers: options, streaming in batches, bad files, safe paths."""

from __future__ import annotations

import json
import tracemalloc

import pytest

from kailash.errors import NodeExecutionError, SecurityError, WorkflowValidationError
from kailash.nodes.code.python import PythonCodeNode
from kailash.nodes.data.readers import BatchStream, CSVReaderNode, JSONReaderNode, TextReaderNode
from kailash.nodes.data.writers import CSVWriterNode, JSONWriterNode, TextWriterNode
from kailash.runtime import LocalRuntime
from kailash.security import SecurityConfig, set_security_config
from kailash.workflow import Workflow


@pytest.fixture
def people_csv(tmp_path):
    path = tmp_path / "people.csv"
    path.write_text('id,name,score,zip\n1,Ada,9.5,00123\n2,"Hopper, Grace",10,02139\n\n3,"multi\nline",-1e3,x\n')
    return path


# -- CSV --------------------------------------------------------------------------------------
def test_csv_reader_reads_dict_rows_with_type_inference(people_csv):
    rows = CSVReaderNode(file_path=str(people_csv)).execute()["data"]
    assert rows == [
        {"id": 1, "name": "Ada", "score": 9.5, "zip": "00123"},
        {"id": 2, "name": "Hopper, Grace", "score": 10, "zip": "02139"},
        {"id": 3, "name": "multi\nline", "score": -1000.0, "zip": "x"},
    ]


def test_csv_reader_without_type_inference_keeps_text(people_csv):
    rows = CSVReaderNode(file_path=str(people_csv), infer_types=False).execute()["data"]
    assert rows[0] == {"id": "1", "name": "Ada", "score": "9.5", "zip": "00123"}


def test_csv_reader_without_header_gives_lists(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text("1;a\n2;b\n")
    assert CSVReaderNode(file_path=str(path), has_header=False, delimiter=";").execute() == {
        "data": [[1, "a"], [2, "b"]]
    }


def test_csv_reader_encoding(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("name\nJosé\n".encode("latin-1"))
    assert CSVReaderNode(file_path=str(path), encoding="latin-1").execute()["data"] == [{"name": "José"}]


def test_utf8_files_with_a_byte_order_mark_read_cleanly(tmp_path):
    bom = "\ufeff"
    (tmp_path / "excel.csv").write_text(bom + "id,name\n1,Ada\n", encoding="utf-8")
    (tmp_path / "bom.json").write_text(bom + '{"a": 1}', encoding="utf-8")
    (tmp_path / "bom.txt").write_text(bom + "hello", encoding="utf-8")
    assert CSVReaderNode(file_path=str(tmp_path / "excel.csv")).execute()["data"] == [{"id": 1, "name": "Ada"}]
    assert JSONReaderNode(file_path=str(tmp_path / "bom.json")).execute()["data"] == {"a": 1}
    assert TextReaderNode(file_path=str(tmp_path / "bom.txt")).execute()["data"] == "hello"


def test_csv_reader_malformed_line_names_node_line_and_expectation(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b,c\n1,2,3\n4,5\n")
    with pytest.raises(NodeExecutionError, match=r"node 'reader' \(CSVReaderNode\): malformed CSV line 3 in "
                       r"'.*bad.csv': expected 3 fields \(a, b, c\), got 2") as info:
        CSVReaderNode(name="reader", file_path=str(path)).execute()
    assert info.value.parameter == "file_path"
    assert info.value.expected == "3 fields"


def test_csv_reader_unterminated_quote_is_malformed(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text('a,b\n1,"open\n')
    with pytest.raises(NodeExecutionError, match=r"node 'reader' \(CSVReaderNode\): malformed CSV line \d+ in '.*bad.csv': unexpected end of data"):
        CSVReaderNode(name="reader", file_path=str(path)).execute()


def test_missing_file_names_node_parameter_and_path(tmp_path):
    missing = tmp_path / "nope.csv"
    for cls in (CSVReaderNode, JSONReaderNode, TextReaderNode):
        with pytest.raises(NodeExecutionError, match=rf"node 'r' \({cls.__name__}\): file '.*nope.csv' does not exist") as info:
            cls(name="r", file_path=str(missing)).execute()
        assert info.value.parameter == "file_path"
        assert info.value.expected == "an existing file"


def test_missing_file_in_a_workflow_fails_the_run_naming_the_node(tmp_path):
    wf = Workflow("w")
    wf.add_node("reader", CSVReaderNode(file_path=str(tmp_path / "nope.csv")))
    with pytest.raises(NodeExecutionError, match=r"node 'reader' \(CSVReaderNode\): file '.*nope.csv' does not exist") as info:
        LocalRuntime().execute(wf)
    assert info.value.node_id == "reader"
    assert info.value.run_id


def test_reader_without_file_path_is_a_validation_error():
    wf = Workflow("w")
    wf.add_node("reader", CSVReaderNode())
    with pytest.raises(WorkflowValidationError, match=r"node 'reader' \(CSVReaderNode\) requires parameter 'file_path' \(str\)"):
        LocalRuntime().execute(wf)


def test_csv_writer_dict_rows_and_append_without_second_header(tmp_path):
    path = tmp_path / "out" / "rows.csv"
    out = CSVWriterNode(file_path=str(path)).execute(data=[{"a": 1, "b": "x"}, {"a": 2, "b": "y, z"}])
    assert out == {"rows_written": 2, "file_path": str(path)}
    CSVWriterNode(file_path=str(path), append=True).execute(data=[{"a": 3, "b": "w"}])
    assert path.read_text() == 'a,b\n1,x\n2,"y, z"\n3,w\n'
    assert CSVReaderNode(file_path=str(path)).execute()["data"][2] == {"a": 3, "b": "w"}


def test_csv_writer_list_rows_with_headers_and_delimiter(tmp_path):
    path = tmp_path / "rows.tsv"
    CSVWriterNode(file_path=str(path), delimiter="\t", headers=["n", "s"]).execute(data=[[1, "a"], [2, "b"]])
    assert path.read_text() == "n\ts\n1\ta\n2\tb\n"


def test_csv_writer_header_order_from_headers_param(tmp_path):
    path = tmp_path / "rows.csv"
    CSVWriterNode(file_path=str(path), headers=["b", "a"]).execute(data=[{"a": 1, "b": 2, "c": 3}])
    assert path.read_text() == "b,a\n2,1\n"


def test_csv_writer_mixed_rows_are_an_error(tmp_path):
    with pytest.raises(NodeExecutionError, match=r"node 'w' \(CSVWriterNode\): row 2 is a list but earlier rows were not"):
        CSVWriterNode(name="w", file_path=str(tmp_path / "x.csv")).execute(data=[{"a": 1}, [2]])


def test_writer_requires_data(tmp_path):
    from kailash.errors import NodeConfigurationError

    with pytest.raises(NodeConfigurationError, match=r"parameter 'data' is required"):
        CSVWriterNode(file_path=str(tmp_path / "x.csv")).execute()


# -- JSON -------------------------------------------------------------------------------------
def test_json_round_trip_with_indent(tmp_path):
    path = tmp_path / "d.json"
    data = {"a": [1, 2], "b": {"c": None}}
    assert JSONWriterNode(file_path=str(path), indent=4).execute(data=data) == {"file_path": str(path), "records_written": 1}
    assert path.read_text() == json.dumps(data, indent=4) + "\n"
    assert JSONReaderNode(file_path=str(path)).execute() == {"data": data}


def test_json_lines_by_extension_and_append(tmp_path):
    path = tmp_path / "events.jsonl"
    JSONWriterNode(file_path=str(path)).execute(data=[{"n": 1}, {"n": 2}])
    out = JSONWriterNode(file_path=str(path), append=True).execute(data=[{"n": 3}])
    assert out["records_written"] == 1
    assert path.read_text() == '{"n": 1}\n{"n": 2}\n{"n": 3}\n'
    assert JSONReaderNode(file_path=str(path)).execute()["data"] == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_json_lines_explicit_option(tmp_path):
    path = tmp_path / "events.txt"
    JSONWriterNode(file_path=str(path), lines=True).execute(data=[1, 2])
    assert JSONReaderNode(file_path=str(path), lines=True).execute() == {"data": [1, 2]}


def test_json_writer_handles_sets_tuples_and_dates(tmp_path):
    import datetime

    path = tmp_path / "d.json"
    JSONWriterNode(file_path=str(path)).execute(data={"s": {1}, "t": (1, 2), "d": datetime.date(2024, 1, 2)})
    assert json.loads(path.read_text()) == {"s": [1], "t": [1, 2], "d": "2024-01-02"}


def test_json_writer_unserialisable_data(tmp_path):
    with pytest.raises(NodeExecutionError, match=r"node 'w' \(JSONWriterNode\): data cannot be written as JSON: Object of type object"):
        JSONWriterNode(name="w", file_path=str(tmp_path / "x.json")).execute(data={"o": object()})


def test_malformed_json_names_line_and_column(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "a": 1,\n  "b": \n}\n')
    with pytest.raises(NodeExecutionError, match=r"node 'r' \(JSONReaderNode\): malformed JSON in '.*bad.json' at line 4 column 1"):
        JSONReaderNode(name="r", file_path=str(path)).execute()
    lines = tmp_path / "bad.jsonl"
    lines.write_text('{"a": 1}\n{oops}\n')
    with pytest.raises(NodeExecutionError, match=r"malformed JSON in '.*bad.jsonl' at line 2"):
        JSONReaderNode(name="r", file_path=str(lines)).execute()


# -- text -------------------------------------------------------------------------------------
def test_text_round_trip_and_append(tmp_path):
    path = tmp_path / "t.txt"
    assert TextWriterNode(file_path=str(path)).execute(data="héllo\n")["bytes_written"] == 6
    TextWriterNode(file_path=str(path), append=True).execute(data=["a", "b"])
    assert TextReaderNode(file_path=str(path)).execute() == {"data": "héllo\na\nb\n"}


def test_text_reader_batches_of_lines(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("".join(f"line {i}\n" for i in range(5)))
    stream = TextReaderNode(file_path=str(path), batch_size=2).execute()["data"]
    assert isinstance(stream, BatchStream)
    assert list(stream) == [["line 0", "line 1"], ["line 2", "line 3"], ["line 4"]]


# -- streaming --------------------------------------------------------------------------------
def test_batch_stream_is_lazy_and_re_iterable(tmp_path):
    path = tmp_path / "n.csv"
    path.write_text("n\n" + "".join(f"{i}\n" for i in range(7)))
    stream = CSVReaderNode(file_path=str(path), batch_size=3).execute()["data"]
    assert [len(b) for b in stream] == [3, 3, 1]
    assert [r["n"] for r in stream.records()] == list(range(7))
    path.write_text("n\n100\n")  # read lazily: a new pass sees the file as it is now
    assert list(stream) == [[{"n": 100}]]


def test_json_lines_reader_streams(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_text("".join(json.dumps({"i": i}) + "\n" for i in range(5)))
    stream = JSONReaderNode(file_path=str(path), batch_size=2).execute()["data"]
    assert [[r["i"] for r in b] for b in stream] == [[0, 1], [2, 3], [4]]


def test_malformed_line_in_a_stream_is_reported_when_reached(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n1,2\n3,4\n5\n")
    stream = CSVReaderNode(name="r", file_path=str(path), batch_size=1).execute()["data"]
    with pytest.raises(NodeExecutionError, match=r"malformed CSV line 4"):
        list(stream)


def test_large_file_flows_through_a_workflow_batch_by_batch(tmp_path):
    source = tmp_path / "big.csv"
    n = 20_000
    with open(source, "w") as f:
        f.write("id,name,amount\n")
        for i in range(n):
            f.write(f"{i},customer-{i:06d},{i % 97}\n")
    wf = Workflow("stream")
    wf.add_node("read", CSVReaderNode(file_path=str(source), batch_size=1000))
    wf.add_node("process", PythonCodeNode(code=(
        "result = ([{'id': r['id'], 'double': r['amount'] * 2} for r in batch if r['amount'] % 2 == 0]"
        " for batch in data)")))
    wf.add_node("write", CSVWriterNode(file_path=str(tmp_path / "out.csv")))
    wf.connect("read", "process")
    wf.connect("process", "write")
    tracemalloc.start()
    try:
        results, _ = LocalRuntime(store=None).execute(wf)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    expected = sum(1 for i in range(n) if (i % 97) % 2 == 0)
    assert results["write"]["rows_written"] == expected
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0] == "id,double" and len(lines) == expected + 1
    # The whole file as a list of dicts takes about 5 MB; batch by batch stays small.
    assert peak < 2 * 1024 * 1024, f"peak traced memory {peak} bytes: the file was held in memory"


def test_stream_into_json_lines_writer(tmp_path):
    source = tmp_path / "s.csv"
    source.write_text("x\n1\n2\n3\n")
    stream = CSVReaderNode(file_path=str(source), batch_size=2).execute()["data"]
    out = JSONWriterNode(file_path=str(tmp_path / "o.json")).execute(data=stream)
    assert out["records_written"] == 3
    assert (tmp_path / "o.json").read_text() == '{"x": 1}\n{"x": 2}\n{"x": 3}\n'


def test_text_writer_writes_a_stream_line_by_line(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("a\nb\nc\n")
    stream = TextReaderNode(file_path=str(source), batch_size=2).execute()["data"]
    TextWriterNode(file_path=str(tmp_path / "out.txt")).execute(data=stream)
    assert (tmp_path / "out.txt").read_text() == "a\nb\nc\n"


# -- security ---------------------------------------------------------------------------------
def test_readers_and_writers_go_through_safe_open(tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    outside = tmp_path / "outside.csv"
    outside.write_text("a\n1\n")
    (allowed / "in.csv").write_text("a\n1\n")
    set_security_config(SecurityConfig(allowed_directories=[str(allowed)]))
    assert CSVReaderNode(file_path=str(allowed / "in.csv")).execute()["data"] == [{"a": 1}]
    with pytest.raises(SecurityError, match=r"access to '.*outside.csv' refused"):
        CSVReaderNode(name="r", file_path=str(outside)).execute()
    with pytest.raises(SecurityError, match=r"access to '.*allowed/\.\./escape.json' refused"):
        JSONWriterNode(name="w", file_path=str(allowed / ".." / "escape.json")).execute(data=[1])
    assert not (tmp_path / "escape.json").exists()
