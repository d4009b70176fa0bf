"""Export speed: YAML/JSON files, loading them back, Docker contexts and Kubernetes manifests.

Run: ``python bench/export.py``. Prints one row per workflow size with the median time
of each operation (a chain of PythonCodeNodes with a SwitchNode every tenth node).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kailash.nodes.code.python import PythonCodeNode  # noqa: E402
from kailash.nodes.logic.operations import SwitchNode  # noqa: E402
from kailash.utils.export import WorkflowExporter, validate_kubernetes_manifests  # noqa: E402
from kailash.workflow import Workflow  # noqa: E402


def chain(n: int) -> Workflow:
    wf = Workflow(f"chain-{n}")
    prev = None
    for i in range(n):
        nid = f"n{i}"
        if i % 10 == 9:
            wf.add_node(nid, SwitchNode(condition="v", outputs={"lo": "v < 50", "hi": "v >= 50"}))
        else:
            wf.add_node(
                nid,
                PythonCodeNode(
                    code=f"# step {i}\nacc = data['v'] * 3 + {i}\nresult = {{'v': acc % 100}}\n"
                    if prev
                    else "result = {'v': 1}"
                ),
            )
        if prev:
            if isinstance(wf.nodes[prev], SwitchNode):
                wf.connect(prev, nid, mapping={"hi": "data"})
            else:
                wf.connect(prev, nid)
        prev = nid
    return wf


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def measure(n: int, out: Path) -> tuple[float, ...]:
    wf = chain(n)
    ex = WorkflowExporter(wf)
    repeat = 15 if n < 500 else 5
    yaml_path, json_path = out / f"{n}.yaml", out / f"{n}.json"
    return (
        n,
        median_ms(lambda: ex.to_yaml(yaml_path), repeat),
        median_ms(lambda: ex.to_json(json_path), repeat),
        median_ms(lambda: Workflow.load(yaml_path), repeat),
        median_ms(lambda: Workflow.load(json_path), repeat),
        median_ms(lambda: ex.to_docker(out / f"docker-{n}"), repeat),
        median_ms(lambda: ex.to_kubernetes(out / f"k8s-{n}", serve=True), repeat),
        median_ms(lambda: validate_kubernetes_manifests(out / f"k8s-{n}"), 3),
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        rows = [measure(n, Path(d)) for n in (10, 100, 500)]
    header = ("nodes", "to_yaml", "to_json", "load yaml", "load json", "to_docker", "to_k8s", "k8s check")
    print(" | ".join(f"{h:>10}" for h in header))
    print("-" * (13 * len(header)))
    for row in rows:
        print(" | ".join(f"{row[0]:>10}" if i == 0 else f"{v:>7.2f} ms" for i, v in enumerate(row)))


if __name__ == "__main__":
    main()
