"""IntelligentCacheNode: a TTL cache that answers by exact key or by meaning.

Each entry is indexed under up to three texts — its semantic tags, its key (``_`` read
as spaces) and the query that produced it — and a semantic ``get`` returns the entry
whose best text is most similar to the query, if at least ``similarity_threshold``.
Vectors live in one preallocated numpy matrix, so a lookup among 10,000 entries is one
matrix-vector product. Thread-safe; the node instance holds the cache, so every node
that shares the instance shares the cache (``shared_cache=cache``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

from kailash.errors import NodeConfigurationError
from kailash.nodes.ai.embeddings import Embedder, get_embedder, require_numpy
from kailash.nodes.base import Node, NodeParameter, register_node

__all__ = ["IntelligentCacheNode"]

ACTIONS = ("cache", "get", "invalidate", "stats", "cleanup")


class _Index:
    """Rows of unit vectors, each owned by one entry key; dead rows are masked then compacted."""

    def __init__(self, np: Any, dimension: int) -> None:
        self.np = np
        self.vectors = np.zeros((256, dimension), dtype=np.float32)
        self.expires = np.zeros(256, dtype=np.float64)
        self.owners: list[str | None] = []
        self.rows_of: dict[str, list[int]] = {}
        self.dead = 0

    def add(self, key: str, vectors: Any, expires: float) -> None:
        np, n, k = self.np, len(self.owners), len(vectors)
        if n + k > len(self.vectors):
            size = max(2 * len(self.vectors), n + k)
            grown = np.zeros((size, self.vectors.shape[1]), dtype=np.float32)
            grown[:n] = self.vectors[:n]
            self.vectors = grown
            self.expires = np.concatenate([self.expires[:n], np.zeros(size - n)])
        self.vectors[n:n + k] = vectors
        self.expires[n:n + k] = expires
        self.owners.extend([key] * k)
        self.rows_of[key] = list(range(n, n + k))

    def remove(self, key: str) -> None:
        for r in self.rows_of.pop(key, []):
            self.owners[r] = None
            self.expires[r] = -1.0
            self.dead += 1
        if self.dead > 1024 and self.dead > len(self.owners) // 2:
            self._compact()

    def _compact(self) -> None:
        keep = [i for i, o in enumerate(self.owners) if o is not None]
        self.vectors[: len(keep)] = self.vectors[keep]
        self.expires[: len(keep)] = self.expires[keep]
        self.owners = [self.owners[i] for i in keep]
        self.rows_of = {}
        for i, o in enumerate(self.owners):
            self.rows_of.setdefault(o, []).append(i)  # type: ignore[arg-type]
        self.dead = 0

    def best(self, query: Any, now: float) -> tuple[str | None, float]:
        n = len(self.owners)
        if not n:
            return None, 0.0
        # einsum's own SIMD loop, not BLAS: a multi-threaded BLAS matvec stalls for milliseconds
        # when the cores are busy, einsum stays under ~1 ms for 20,000 rows of 256 dimensions
        sims = self.np.einsum("ij,j->i", self.vectors[:n], query)
        sims[self.expires[:n] <= now] = -2.0
        i = int(sims.argmax())
        return (self.owners[i], float(sims[i])) if sims[i] > -2.0 else (None, 0.0)


@register_node()
class IntelligentCacheNode(Node):
    """Share expensive results between agents: cache by key, find by key or by meaning.

    Actions: ``cache`` (store ``data`` under ``cache_key`` with ``metadata`` and ``ttl``),
    ``get`` (by ``cache_key``, else semantically by ``query`` with ``similarity_threshold``),
    ``invalidate`` (a key, or every entry carrying one of ``tags``), ``stats``, ``cleanup``.

    Example:
        >>> cache = IntelligentCacheNode(name="cache", ttl=3600)
        >>> _ = cache.run(action="cache", cache_key="market_analysis_2024", data={"trends": ["AI"]},
        ...               metadata={"source": "market_mcp", "cost": 2.5,
        ...                         "semantic_tags": ["market", "analysis", "trends"]})
        >>> hit = cache.run(action="get", query="stock market analysis trends", similarity_threshold=0.8)
        >>> hit["hit"], hit["matched_key"], hit["data"]
        (True, 'market_analysis_2024', {'trends': ['AI']})
        >>> cache.run(action="get", query="weather in Paris", similarity_threshold=0.8)["hit"]
        False
    """

    capabilities = frozenset()

    def __init__(self, config: dict[str, Any] | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self._lock = threading.RLock()
        self._entries: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._embedder: Embedder | None = None
        self._index: _Index | None = None
        self._stats = {"hits": 0, "semantic_hits": 0, "misses": 0, "stores": 0, "evictions": 0, "expired": 0,
                       "cost_saved": 0.0}

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {
            "action": NodeParameter(type=str, default="stats", choices=ACTIONS, description="what to do"),
            "cache_key": NodeParameter(type=str, description="the entry's key"),
            "data": NodeParameter(type=Any, description="the value to cache (action=cache)"),
            "metadata": NodeParameter(type=dict, description="{'source', 'cost', 'semantic_tags'}"),
            "ttl": NodeParameter(type=(int, float), default=3600, description="seconds an entry lives"),
            "query": NodeParameter(type=str, description="text to find an entry by meaning (get) or index it by (cache)"),
            "similarity_threshold": NodeParameter(type=float, default=0.8,
                                                  description="least cosine similarity for a semantic hit"),
            "tags": NodeParameter(type=list, description="invalidate every entry carrying one of these tags"),
            "max_entries": NodeParameter(type=int, default=100_000, minimum=1,
                                         description="least recently used entries are evicted beyond this"),
            "embedder": NodeParameter(type=Any, default=None,
                                      description="'hashing' (default), 'minilm', 'auto' or an Embedder"),
        }

    # -- public API ----------------------------------------------------------------------
    def run(self, **kw: Any) -> dict[str, Any]:
        action = kw.get("action") or "stats"
        if action not in ACTIONS:
            raise NodeConfigurationError(
                f"node {self.label} (IntelligentCacheNode): parameter 'action' got '{action}', expected one of "
                f"{', '.join(ACTIONS)}", node_id=self.name, parameter="action", expected=ACTIONS, got=action,
            )
        opt = {**self.config, **{k: v for k, v in kw.items() if v is not None}}
        if action == "cache":
            return self._store(opt)
        if action == "get":
            return self._get(opt)
        if action == "invalidate":
            return self._invalidate(opt)
        if action == "cleanup":
            return {"success": True, "removed": self.cleanup(), "stats": self.stats()}
        return {"success": True, "stats": self.stats()}

    def put(self, key: str, data: Any, *, metadata: dict[str, Any] | None = None, ttl: float | None = None,
            query: str | None = None) -> dict[str, Any]:
        """Store ``data`` under ``key`` (the Python form of ``run(action="cache")``)."""
        return self._store({**self.config, "cache_key": key, "data": data, "metadata": metadata or {},
                            **({"ttl": ttl} if ttl is not None else {}), **({"query": query} if query else {})})

    def put_many(self, entries: list[dict[str, Any]]) -> int:
        """Store many entries (``{"key", "data", "metadata", "ttl", "query"}``) with one embedding batch."""
        prepared = [self._prepare({**self.config, "cache_key": e["key"], "data": e.get("data"),
                                   "metadata": e.get("metadata") or {}, "ttl": e.get("ttl") or self.config.get("ttl"),
                                   "query": e.get("query")}) for e in entries]
        if not prepared:
            return 0
        vectors = self._embed([t for _, texts, _ in prepared for t in texts])
        at = 0
        for key, texts, entry in prepared:
            self._insert(key, vectors[at:at + len(texts)], entry, int(self.config.get("max_entries") or 100_000))
            at += len(texts)
        return len(prepared)

    def lookup(self, key: str | None = None, *, query: str | None = None,
               similarity_threshold: float | None = None) -> dict[str, Any]:
        """Find by key, else by meaning (the Python form of ``run(action="get")``)."""
        opt = {**self.config, "cache_key": key, "query": query}
        if similarity_threshold is not None:
            opt["similarity_threshold"] = similarity_threshold
        return self._get(opt)

    def stats(self) -> dict[str, Any]:
        """Hits, misses, hit rate, entries and the cost saved by hits."""
        with self._lock:
            s = dict(self._stats)
            lookups = s["hits"] + s["misses"]
            s["hit_rate"] = s["hits"] / lookups if lookups else 0.0
            s["entries"] = len(self._entries)
            s["cost_saved"] = round(s["cost_saved"], 6)
            return s

    def cleanup(self) -> int:
        """Drop expired entries; returns how many."""
        now = time.time()
        with self._lock:
            gone = [k for k, e in self._entries.items() if e["expires_at"] <= now]
            for k in gone:
                self._remove(k)
            self._stats["expired"] += len(gone)
            return len(gone)

    # -- internals -----------------------------------------------------------------------
    def _embed(self, texts: list[str]) -> Any:
        if self._embedder is None:
            self._embedder = get_embedder(self.config.get("embedder"), owner=f"node {self.label}")
        return self._embedder.embed(texts)

    def _prepare(self, opt: dict[str, Any]) -> tuple[str, list[str], dict[str, Any]]:
        key = opt.get("cache_key")
        if not key:
            raise NodeConfigurationError(
                f"node {self.label} (IntelligentCacheNode): action 'cache' needs parameter 'cache_key'",
                node_id=self.name, parameter="cache_key", expected="a key string",
            )
        meta = dict(opt.get("metadata") or {})
        ttl = float(opt.get("ttl") or 3600)
        tags = [str(t) for t in meta.get("semantic_tags") or []]
        texts = [t for t in (" ".join(tags), str(key).replace("_", " ").replace("-", " "), opt.get("query") or "") if t]
        now = time.time()
        entry = {"key": key, "data": opt.get("data"), "metadata": meta, "created_at": now, "expires_at": now + ttl,
                 "hits": 0, "tags": tags, "ttl": ttl}
        return key, texts, entry

    def _insert(self, key: str, vectors: Any, entry: dict[str, Any], limit: int) -> None:
        with self._lock:
            if self._index is None:
                self._index = _Index(require_numpy(), vectors.shape[1])
            self._remove(key)
            self._entries[key] = entry
            self._index.add(key, vectors, entry["expires_at"])
            self._stats["stores"] += 1
            while len(self._entries) > limit:
                self._remove(next(iter(self._entries)))
                self._stats["evictions"] += 1

    def _store(self, opt: dict[str, Any]) -> dict[str, Any]:
        key, texts, entry = self._prepare(opt)
        self._insert(key, self._embed(texts), entry, int(opt.get("max_entries") or 100_000))
        return {"success": True, "cache_key": key, "expires_at": entry["expires_at"], "ttl": entry["ttl"]}

    def _remove(self, key: str) -> None:
        if self._entries.pop(key, None) is not None and self._index is not None:
            self._index.remove(key)

    def _get(self, opt: dict[str, Any]) -> dict[str, Any]:
        key, query = opt.get("cache_key"), opt.get("query")
        if not key and not query:
            raise NodeConfigurationError(
                f"node {self.label} (IntelligentCacheNode): action 'get' needs parameter 'cache_key' or 'query'",
                node_id=self.name, parameter="query", expected="a key or a query text",
            )
        raw = opt.get("similarity_threshold")
        threshold = 0.8 if raw is None else float(raw)
        now = time.time()
        with self._lock:
            entry = self._entries.get(key) if key else None
            if entry is not None and entry["expires_at"] <= now:
                self._remove(entry["key"])
                self._stats["expired"] += 1
                entry = None
            if entry is not None:
                return self._hit(entry, similarity=1.0, semantic=False)
        if query:
            vector = self._embed([str(query)])[0]
            with self._lock:
                if self._index is not None:
                    best, sim = self._index.best(vector, now)
                    if best is not None and sim >= threshold and best in self._entries:
                        return self._hit(self._entries[best], similarity=sim, semantic=True)
                    out = {"hit": False, "data": None, "best_similarity": round(sim, 4) if best else 0.0}
                else:
                    out = {"hit": False, "data": None, "best_similarity": 0.0}
                self._stats["misses"] += 1
                return {**out, "success": True, "cache_key": key}
        with self._lock:
            self._stats["misses"] += 1
        return {"success": True, "hit": False, "data": None, "cache_key": key}

    def _hit(self, entry: dict[str, Any], *, similarity: float, semantic: bool) -> dict[str, Any]:
        entry["hits"] += 1
        self._entries.move_to_end(entry["key"])
        self._stats["hits"] += 1
        self._stats["semantic_hits"] += int(semantic)
        cost = entry["metadata"].get("cost") or 0
        self._stats["cost_saved"] += float(cost) if isinstance(cost, (int, float)) else 0.0
        return {"success": True, "hit": True, "data": entry["data"], "cache_key": entry["key"],
                "matched_key": entry["key"], "similarity": round(similarity, 4), "semantic": semantic,
                "metadata": dict(entry["metadata"]), "cost_saved": cost,
                "ttl_remaining": round(entry["expires_at"] - time.time(), 3)}

    def _invalidate(self, opt: dict[str, Any]) -> dict[str, Any]:
        key, tags = opt.get("cache_key"), {str(t) for t in opt.get("tags") or []}
        with self._lock:
            targets: list[str] = [str(key)] if key in self._entries else []
            if tags:
                targets += [k for k, e in self._entries.items() if tags & set(e["tags"]) and k != key]
            for k in targets:
                self._remove(k)
        return {"success": True, "removed": len(targets), "keys": targets}
