"""The namespace hosts clean up after themselves, and after a crashed earlier run."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.cluster.netns import PREFIX, Hosts, clean_leftovers, require_netns


def _namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def test_close_kills_every_process_and_removes_namespaces_and_bridge():
    require_netns()
    made = Hosts()
    try:
        made.add("a")
        made.add("b")
        proc = made.start("a", [sys.executable, "-c", "import time; time.sleep(60)"])
        # a grandchild the test never saw: still killed, because it lives in the namespace
        made.start("b", ["sh", "-c", f"{sys.executable} -c 'import time; time.sleep(60)' & wait"])
        time.sleep(0.3)
        assert made["a"].ns in _namespaces()
    finally:
        made.close()
    assert proc.poll() is not None
    assert PREFIX + made.tag + "-" not in _namespaces()
    links = subprocess.run(["ip", "link", "show", made.bridge], capture_output=True, text=True)
    assert links.returncode != 0  # the bridge is gone


def test_leftovers_of_a_dead_run_are_removed():
    require_netns()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs: the "crashed" creator
    ns = f"{PREFIX}{dead.pid}-left"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        clean_leftovers()
        assert ns not in _namespaces()
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
