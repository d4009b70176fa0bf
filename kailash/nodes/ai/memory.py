"""SharedMemoryPoolNode: a memory that agents write to, read with attention, and subscribe to.

Memories carry the writing agent, content, tags, importance (0..1) and a segment. A
``read`` applies an attention filter (tags, least importance, agents, segments, a
window) and ranks by importance, tag overlap and recency; a ``query`` ranks by meaning
with the default embedder; ``subscribe`` queues matching future writes for an agent,
delivered on its next ``read``. The node instance holds the pool (thread-safe), so
agents given the same instance share it. Exported from :mod:`kailash.nodes.ai.a2a`.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from typing import Any

from kailash.errors import NodeConfigurationError
from kailash.nodes.ai.embeddings import get_embedder, require_numpy
from kailash.nodes.base import Node, NodeParameter, register_node

__all__ = ["SharedMemoryPoolNode"]

ACTIONS = ("write", "read", "query", "subscribe", "unsubscribe", "stats", "clear")


def _text(content: Any) -> str:
    return content if isinstance(content, str) else json.dumps(content, default=str, sort_keys=True)


def _matches(memory: dict[str, Any], flt: dict[str, Any]) -> bool:
    tags = set(flt.get("tags") or [])
    if tags and not tags & set(memory["tags"]):
        return False
    if memory["importance"] < float(flt.get("importance_threshold") or 0.0):
        return False
    agents = flt.get("agents") or flt.get("agent_ids")
    if agents and memory["agent_id"] not in agents:
        return False
    segments = flt.get("segments")
    if segments and memory["segment"] not in segments:
        return False
    if flt.get("exclude_own") and flt.get("_reader") == memory["agent_id"]:
        return False
    return True


@register_node()
class SharedMemoryPoolNode(Node):
    """A memory pool shared by agents.

    Actions: ``write`` (``agent_id``, ``content``, ``tags``, ``importance``, ``segment``),
    ``read`` (``agent_id``, ``attention_filter={"tags", "importance_threshold", "agents",
    "segments", "window_size", "exclude_own"}``), ``query`` (``query`` text, ``top_k``),
    ``subscribe`` / ``unsubscribe`` (``agent_id`` with ``tags`` or ``attention_filter``),
    ``stats``, ``clear``.

    Example:
        >>> memory = SharedMemoryPoolNode(name="memory")
        >>> _ = memory.run(action="write", agent_id="a1", content="Tech stocks rose 4%",
        ...                tags=["market", "tech"], importance=0.9)
        >>> _ = memory.run(action="write", agent_id="a2", content="Lunch at noon", tags=["admin"], importance=0.2)
        >>> out = memory.run(action="read", agent_id="a3",
        ...                  attention_filter={"tags": ["market"], "importance_threshold": 0.5})
        >>> [m["content"] for m in out["memories"]]
        ['Tech stocks rose 4%']
    """

    capabilities = frozenset()

    def __init__(self, config: dict[str, Any] | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self._lock = threading.RLock()
        self._memories: list[dict[str, Any]] = []
        self._vectors: list[Any] = []
        self._subs: dict[str, list[dict[str, Any]]] = {}
        self._inbox: dict[str, list[dict[str, Any]]] = {}
        self._ids = itertools.count(1)

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {
            "action": NodeParameter(type=str, default="read", choices=ACTIONS, description="what to do"),
            "agent_id": NodeParameter(type=str, description="the agent writing, reading or subscribing"),
            "content": NodeParameter(type=Any, description="what to remember (write)"),
            "tags": NodeParameter(type=list, description="labels for attention filters and subscriptions"),
            "importance": NodeParameter(type=float, default=0.5, minimum=0, maximum=1, description="0..1; reads can require a least value"),
            "segment": NodeParameter(type=str, default="general", description="a named region of the pool"),
            "attention_filter": NodeParameter(type=dict, description="{'tags', 'importance_threshold', 'agents', "
                                                                     "'segments', 'window_size', 'exclude_own'}"),
            "query": NodeParameter(type=str, description="find memories by meaning (query)"),
            "top_k": NodeParameter(type=int, default=10, minimum=1, description="most results of a query"),
            "metadata": NodeParameter(type=dict, description="anything else to keep with a memory"),
            "max_memories": NodeParameter(type=int, default=10_000, minimum=1, description="oldest memories are dropped beyond this"),
            "embedder": NodeParameter(type=Any, description="embedder for 'query': 'hashing' (default), 'minilm', 'auto'"),
        }

    def run(self, **kw: Any) -> dict[str, Any]:
        opt = {**self.config, **{k: v for k, v in kw.items() if v is not None}}
        action = opt.get("action") or "read"
        if action not in ACTIONS:
            raise NodeConfigurationError(
                f"node {self.label} (SharedMemoryPoolNode): parameter 'action' got '{action}', expected one of "
                f"{', '.join(ACTIONS)}", node_id=self.name, parameter="action", expected=ACTIONS, got=action,
            )
        return getattr(self, f"_{action}")(opt)

    # -- actions -------------------------------------------------------------------------
    def _write(self, opt: dict[str, Any]) -> dict[str, Any]:
        if opt.get("content") is None:
            raise NodeConfigurationError(
                f"node {self.label} (SharedMemoryPoolNode): action 'write' needs parameter 'content'",
                node_id=self.name, parameter="content", expected="the content to remember",
            )
        raw = opt.get("importance")
        importance = 0.5 if raw is None else float(raw)
        if not 0.0 <= importance <= 1.0:
            raise NodeConfigurationError(
                f"node {self.label} (SharedMemoryPoolNode): parameter 'importance' must be within 0..1, got {importance}",
                node_id=self.name, parameter="importance", expected="0..1", got=importance,
            )
        with self._lock:
            memory = {"id": f"mem_{next(self._ids)}", "agent_id": opt.get("agent_id") or "anonymous",
                      "content": opt["content"], "tags": [str(t) for t in opt.get("tags") or []],
                      "importance": importance, "segment": opt.get("segment") or "general",
                      "metadata": dict(opt.get("metadata") or {}), "timestamp": time.time()}
            self._memories.append(memory)
            self._vectors.append(None)
            limit = int(opt.get("max_memories") or 10_000)
            if len(self._memories) > limit:
                del self._memories[: len(self._memories) - limit]
                del self._vectors[: len(self._vectors) - limit]
            notified = []
            for agent, subs in self._subs.items():
                if agent != memory["agent_id"] and any(_matches(memory, s) for s in subs):
                    self._inbox.setdefault(agent, []).append(memory)
                    notified.append(agent)
        return {"success": True, "memory_id": memory["id"], "notified": notified, "total_memories": len(self._memories)}

    def _read(self, opt: dict[str, Any]) -> dict[str, Any]:
        flt = dict(opt.get("attention_filter") or {})
        if opt.get("tags") and "tags" not in flt:
            flt["tags"] = opt["tags"]
        reader = opt.get("agent_id")
        flt["_reader"] = reader
        with self._lock:
            n = len(self._memories)
            want = set(flt.get("tags") or [])
            ranked = []
            for i, m in enumerate(self._memories):
                if not _matches(m, flt):
                    continue
                overlap = len(want & set(m["tags"])) / len(want) if want else 1.0
                recency = 0.5 ** ((n - 1 - i) / 50)  # half weight every 50 newer memories
                ranked.append((m["importance"] * (0.5 + 0.5 * overlap) * (0.5 + 0.5 * recency), i, m))
            ranked.sort(key=lambda x: (-x[0], -x[1]))
            window = int(flt.get("window_size") or 50)
            memories = [dict(m, relevance=round(score, 4)) for score, _, m in ranked[:window]]
            notifications = self._inbox.pop(reader, []) if reader else []
        return {"success": True, "memories": memories, "count": len(memories), "total_memories": n,
                "notifications": notifications}

    def _query(self, opt: dict[str, Any]) -> dict[str, Any]:
        text = opt.get("query")
        if not text:
            raise NodeConfigurationError(
                f"node {self.label} (SharedMemoryPoolNode): action 'query' needs parameter 'query'",
                node_id=self.name, parameter="query", expected="a query text",
            )
        np = require_numpy()
        embedder = get_embedder(self.config.get("embedder"), owner=f"node {self.label}")
        flt = dict(opt.get("attention_filter") or {})
        if opt.get("tags"):
            flt.setdefault("tags", opt["tags"])
        with self._lock:
            missing = [i for i, v in enumerate(self._vectors) if v is None]
            if missing:
                vecs = embedder.embed([_text(self._memories[i]["content"]) + " " + " ".join(self._memories[i]["tags"])
                                       for i in missing])
                for j, i in enumerate(missing):
                    self._vectors[i] = vecs[j]
            keep = [i for i, m in enumerate(self._memories) if _matches(m, flt)]
            if not keep:
                return {"success": True, "memories": [], "count": 0}
            sims = np.stack([self._vectors[i] for i in keep]) @ embedder.embed([str(text)])[0]
            order = np.argsort(-sims, kind="stable")[: int(opt.get("top_k") or 10)]
            out = [dict(self._memories[keep[j]], similarity=round(float(sims[j]), 4)) for j in order if sims[j] > 0]
        return {"success": True, "memories": out, "count": len(out)}

    def _subscribe(self, opt: dict[str, Any]) -> dict[str, Any]:
        agent = opt.get("agent_id")
        if not agent:
            raise NodeConfigurationError(
                f"node {self.label} (SharedMemoryPoolNode): action 'subscribe' needs parameter 'agent_id'",
                node_id=self.name, parameter="agent_id", expected="the subscribing agent's id",
            )
        flt = dict(opt.get("attention_filter") or {})
        if opt.get("tags"):
            flt.setdefault("tags", opt["tags"])
        with self._lock:
            self._subs.setdefault(agent, []).append(flt)
            count = len(self._subs[agent])
        return {"success": True, "agent_id": agent, "subscriptions": count, "filter": flt}

    def _unsubscribe(self, opt: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            removed = len(self._subs.pop(opt.get("agent_id") or "", []))
        return {"success": True, "removed": removed}

    def _stats(self, opt: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            by_agent: dict[str, int] = {}
            tags: dict[str, int] = {}
            for m in self._memories:
                by_agent[m["agent_id"]] = by_agent.get(m["agent_id"], 0) + 1
                for t in m["tags"]:
                    tags[t] = tags.get(t, 0) + 1
            return {"success": True, "total_memories": len(self._memories), "by_agent": by_agent, "tags": tags,
                    "subscribers": sorted(self._subs)}

    def _clear(self, opt: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            n = len(self._memories)
            self._memories.clear()
            self._vectors.clear()
            self._inbox.clear()
        return {"success": True, "removed": n}
