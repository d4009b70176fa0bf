"""The host's sandbox processes: one template per policy and a bounded pool of workers.

A policy (:class:`~kailash.security.sandbox.host.Profile`) gets one pre-started
template and at most :func:`workers_per_policy` workers forked from it. Each node is
assigned stickily to one worker of its policy (the one hosting the fewest nodes), and
its ``self`` state lives in that worker, keyed by the node's identity; a worker hosts
many nodes' namespaces. So the number of worker processes stays bounded whatever the
number of code nodes, and a warm call is one socket round trip at any workflow size.

A node's state is released when the node is garbage collected (queued without a lock,
sent to the worker at its next call, or the worker is stopped when it hosts no node).
When a worker is killed (timeout, crash), every node it hosted starts with a fresh
``self`` state at its next call. At most :data:`MAX_TEMPLATES` policies keep
processes; the least recently used one is stopped beyond that.

This module manages processes only; it never runs or reads user code.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from kailash.security.sandbox.host import Profile, Template, Worker

__all__ = ["MAX_TEMPLATES", "workers_per_policy", "Slot", "lease", "template_for", "release", "release_later",
           "release_queued", "shutdown", "worker_processes"]

MAX_TEMPLATES = 8
_lock = threading.Lock()
_templates: OrderedDict[Profile, Template] = OrderedDict()
_template_locks: dict[Profile, threading.Lock] = {}
_pools: dict[Profile, _Pool] = {}
_released_later: list[str] = []  # keys of garbage-collected nodes, released at the next call


def workers_per_policy() -> int:
    """How many worker processes one policy may use (one per core, between 2 and 8)."""
    return max(2, min(8, os.cpu_count() or 2))


@dataclass
class Slot:
    """One worker place of a pool. Hold ``lock`` while using ``worker``."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    worker: Worker | None = None
    nodes: int = 0
    pending: list[str] = field(default_factory=list)  # released node keys whose state the worker still holds


@dataclass
class _Pool:
    slots: list[Slot]
    assigned: dict[str, int] = field(default_factory=dict)


def template_for(profile: Profile) -> Template:
    """The running template of ``profile`` (started, or restarted, when needed)."""
    with _lock:
        tpl = _templates.get(profile)
        if tpl is not None and tpl.alive:
            _templates.move_to_end(profile)
            return tpl
        plock = _template_locks.setdefault(profile, threading.Lock())
    with plock:
        with _lock:
            tpl = _templates.get(profile)
            if tpl is not None and tpl.alive:
                return tpl
        tpl = Template(profile)
        retired: list[Template] = []
        with _lock:
            _templates[profile] = tpl
            while len(_templates) > MAX_TEMPLATES:  # policies not used lately (e.g. per-test directories)
                old_profile, old = _templates.popitem(last=False)
                _template_locks.pop(old_profile, None)
                pool = _pools.pop(old_profile, None)
                for slot in pool.slots if pool else ():
                    if slot.worker is not None:
                        slot.worker.dead = True
                retired.append(old)
        for old in retired:
            old.close()
        return tpl


def lease(profile: Profile, node_key: str) -> Slot:
    """The slot hosting ``node_key`` (assigned now if new). Lock it, then call :func:`ready_worker`."""
    with _lock:
        pool = _pools.get(profile)
        if pool is None:
            pool = _pools[profile] = _Pool([Slot() for _ in range(workers_per_policy())])
        index = pool.assigned.get(node_key)
        if index is None:
            index = min(range(len(pool.slots)), key=lambda i: pool.slots[i].nodes)
            pool.assigned[node_key] = index
            pool.slots[index].nodes += 1
        return pool.slots[index]


def ready_worker(profile: Profile, slot: Slot) -> Worker:
    """The slot's live worker (forked afresh if it died); the caller holds ``slot.lock``."""
    worker = slot.worker
    if worker is not None and (worker.idle_closed() or not worker.template.alive):
        worker.kill()
        worker = None
    if worker is None:
        worker = slot.worker = template_for(profile).fork()
        slot.pending.clear()  # a new worker holds no state
    if slot.pending:
        keys, slot.pending = slot.pending, []
        worker.release(keys)
    return worker


def forget(slot: Slot, worker: Worker) -> None:
    """Kill ``worker`` (timeout, crash); the nodes of its slot restart with fresh state."""
    worker.kill()
    if slot.worker is worker:
        slot.worker = None
        slot.pending.clear()


def release_later(node_key: str) -> None:
    """Queue ``node_key``'s state for release. Safe from a GC finalizer: it takes no lock
    (a finalizer can fire while this module, or a template, holds its lock)."""
    _released_later.append(node_key)


def release_queued() -> None:
    """Release the states queued by :func:`release_later`."""
    while _released_later:
        try:
            key = _released_later.pop()
        except IndexError:  # another thread took the last one
            return
        release(key)


def release(node_key: str) -> None:
    """Discard ``node_key``'s ``self`` state; a worker left hosting no node is stopped."""
    idle: list[Slot] = []
    with _lock:
        for pool in _pools.values():
            index = pool.assigned.pop(node_key, None)
            if index is None:
                continue
            slot = pool.slots[index]
            slot.nodes -= 1
            slot.pending.append(node_key)
            if slot.nodes == 0:
                idle.append(slot)
    for slot in idle:
        if slot.lock.acquire(blocking=False):  # a call in progress keeps it; the pending release follows
            try:
                if slot.nodes == 0 and slot.worker is not None:
                    slot.worker.close()
                    slot.worker = None
                    slot.pending.clear()
            finally:
                slot.lock.release()


def worker_processes() -> int:
    """How many worker processes this host keeps now (for benchmarks and tests)."""
    with _lock:
        return sum(1 for pool in _pools.values() for s in pool.slots if s.worker is not None and not s.worker.dead)


def shutdown() -> None:
    """Stop every template and worker of this process (also runs at exit)."""
    with _lock:
        templates = list(_templates.values())
        slots = [s for pool in _pools.values() for s in pool.slots]
        _templates.clear()
        _pools.clear()
    for slot in slots:
        if slot.worker is not None:
            slot.worker.dead = True
            slot.worker = None
    for tpl in templates:
        tpl.close()


def _after_fork_in_child() -> None:
    """A forked host process must not share the parent's sandbox sockets: start afresh."""
    global _lock
    _lock = threading.Lock()
    for pool in list(_pools.values()):
        for slot in pool.slots:
            slot.lock = threading.Lock()
            if slot.worker is not None:
                slot.worker.dead = True
                try:
                    slot.worker.sock.close()
                except OSError:
                    pass
    for tpl in list(_templates.values()):
        try:
            tpl.ctl.close()
        except OSError:
            pass
    _pools.clear()
    _templates.clear()
    _template_locks.clear()


atexit.register(shutdown)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
