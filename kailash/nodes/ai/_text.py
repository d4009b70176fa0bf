"""Small, deterministic text helpers shared by the offline provider, embedder and agents.

Tokenising (snake_case and camelCase split, lower case), a stop-word list, a light
suffix-stripping stemmer (``analysis``/``analyze``/``analyst`` share a stem), keyword
extraction and capability matching. Pure functions over strings: no I/O, no state.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

__all__ = ["tokens", "stem", "keywords", "stems", "overlap", "capability_match", "sentences"]

_WORD = re.compile(r"[A-Za-z][a-z]+|[A-Z]+(?![a-z])|\d+(?:\.\d+)?|[a-z]+")

STOPWORDS = frozenset(
    """a an and are as at be but by can could do does for from get give has have how i if in into is it its
    me my no not of on or our please should so than that the their them then there these this those to up us
    use using via was we what when where which while who why will with would you your all any each some more most
    other such only own same too very just also about over under again further once here both few""".split()
)

_SUFFIXES = (
    "izations", "ization", "ational", "fulness", "iveness", "ations", "ation", "ements", "ement", "ments",
    "ment", "ingly", "ities", "ysis", "yses", "ytics", "ytical", "ytic", "yzing", "yzed", "yzes", "yze",
    "ysts", "yst", "ising", "izing", "ised", "ized", "ises", "izes", "ise", "ize", "ings", "ing", "ies",
    "ied", "ial", "ers", "er", "ed", "es", "ly", "e", "s",
)


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens; ``data_analysis`` and ``dataAnalysis`` give ``data``, ``analysis``."""
    return [t.lower() for t in _WORD.findall(str(text).replace("_", " "))]


def stem(word: str) -> str:
    """A light stem: the longest known suffix is stripped while at least 3 letters remain."""
    w = word.lower()
    if len(w) <= 3 or w.isdigit():
        return w
    for suffix in _SUFFIXES:
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            if suffix == "s" and (w.endswith("ss") or w.endswith("us")):
                continue
            base = w[: -len(suffix)]
            return base + "y" if suffix in ("ies", "ied") else base
    return w


def stems(text: str) -> list[str]:
    """Stemmed content words of ``text`` (stop words dropped), in order, repeats kept."""
    return [stem(t) for t in tokens(text) if t not in STOPWORDS and len(t) > 1]


def keywords(text: str, limit: int = 8) -> list[str]:
    """The most frequent content words of ``text`` (first occurrence breaks ties), unstemmed."""
    words = [t for t in tokens(text) if t not in STOPWORDS and len(t) > 2 and not t.isdigit()]
    counts = Counter(stem(w) for w in words)
    seen: dict[str, str] = {}
    for w in words:
        seen.setdefault(stem(w), w)
    order = {s: i for i, s in enumerate(seen)}
    ranked = sorted(seen, key=lambda s: (-counts[s], order[s]))
    return [seen[s] for s in ranked[:limit]]


def overlap(a: Iterable[str] | str, b: Iterable[str] | str) -> float:
    """Share of ``a``'s distinct stems found in ``b`` (0..1)."""
    sa = set(stems(a) if isinstance(a, str) else (s for x in a for s in stems(x)))
    sb = set(stems(b) if isinstance(b, str) else (s for x in b for s in stems(x)))
    return len(sa & sb) / len(sa) if sa else 0.0


def capability_match(required: str, offered: str) -> float:
    """How well one offered capability meets one required (0..1).

    1 for the same name; otherwise the share of the required words offered, damped by
    how much else the offer is about: ``analysis`` vs ``data_analysis`` 0.71,
    ``data_analysis`` vs ``data_access`` 0.35.
    """
    if required.lower() == offered.lower():
        return 1.0
    rs, os_ = set(stems(required)), set(stems(offered))
    shared = len(rs & os_)
    if not shared:
        return 0.0
    return (shared / len(rs)) * (shared / len(os_)) ** 0.5


def sentences(text: str) -> list[str]:
    """Split text into sentences and lines (for extractive summaries)."""
    parts = re.split(r"(?<=[.!?])\s+|\n+", str(text))
    return [p.strip(" -*\t") for p in parts if p and p.strip(" -*\t")]
