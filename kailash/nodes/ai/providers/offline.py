"""The offline default provider: deterministic planning, tool calling and summarising.

No model, no network. Given the same conversation and tools it always answers the same:

1. **Plan** — when tools are offered and none has answered since the last user message,
   it scores every tool by the stemmed words its name and description share with the
   request, and calls those scoring at least 60% of the best (up to ``max_tool_calls``). Arguments are filled from the
   tool's JSON Schema: an enum value or a quoted example the request mentions, an
   explicit ``name=value`` / ``name: value`` in the request, the schema default, or
   (for free-text fields such as ``query``) the request itself.
2. **Summarise** — otherwise it answers with an extractive summary: the tool results
   (JSON flattened to ``key: value`` facts) and the context sentences that share the
   most words with the request, plus a recommendation line when one is asked for.

It is meant to drive workflows, tests and demos offline; swap in a real provider by
config (``provider="openai"|"ollama"|"anthropic"``) for real reasoning.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from kailash.nodes.ai._text import STOPWORDS, keywords, sentences, stem, stems, tokens
from kailash.nodes.ai.providers.base import BaseProvider, ChatMessage, ChatResponse, ToolCall, ToolSpec

__all__ = ["OfflineProvider"]

_LABEL = re.compile(r"^(?:Teammate \S+ found:|Finding of [^.]*\.|Memory from \S+:)\s*")
_OWN_LINES = ("Summary for:", "Context:", "Recommendation:", "Key topics:", "You are ")
_FREE_TEXT = ("query", "question", "text", "prompt", "topic", "search", "description", "task", "input", "content",
              "subject", "keywords", "q")


class OfflineProvider(BaseProvider):
    """Deterministic stand-in for a language model.

    Args:
        max_tool_calls: the most tools it calls in one turn.
        min_tool_score: the least share of a tool's words that must match the request.

    Example:
        >>> from kailash.nodes.ai.providers.base import ChatMessage, ToolSpec
        >>> p = OfflineProvider()
        >>> tools = [ToolSpec(name="get_weather", description="Current weather for a city",
        ...                   input_schema={"type": "object", "properties": {"city": {"type": "string"}},
        ...                                 "required": ["city"]}),
        ...          ToolSpec(name="get_stock_price", description="Latest stock price")]
        >>> r = p.chat([ChatMessage(role="user", content="What is the weather in city: Paris?")], tools=tools)
        >>> [(c.name, c.arguments) for c in r.tool_calls]
        [('get_weather', {'city': 'Paris'})]
    """

    name = "offline"
    #: no model answers: nodes mark its answers ``model_called: false``, ``decided_by: "heuristic"``
    model_called = False

    def __init__(self, *, model: str = "kailash-offline-1", max_tool_calls: int = 3, min_tool_score: float = 0.05) -> None:
        self.model = model
        self.max_tool_calls = max_tool_calls
        self.min_tool_score = min_tool_score

    def __repr__(self) -> str:
        return f"OfflineProvider(model={self.model!r})"

    def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> ChatResponse:
        last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
        request = messages[last_user].content if last_user >= 0 else ""
        answered = [m for m in messages[last_user + 1:] if m.role == "tool"]
        turns = [m for m in messages[last_user + 1:] if m.tool_calls]
        if tools and not answered and not turns:
            calls = self.plan(request, tools)
            if calls:
                return ChatResponse(tool_calls=tuple(calls), model=self.model, provider=self.name,
                                    finish_reason="tool_calls", usage=_usage(messages, ""))
        elif tools and answered and len(turns) < 3:
            # chain: a relevant tool it could not fill before may be fillable from the results now
            called = {c.name for m in turns for c in m.tool_calls}
            results = [_loads(m.content) for m in answered if not m.content.startswith("ERROR:")]
            calls = self.plan(request, tools, results=[r for r in results if r is not None], exclude=called)
            if calls:
                return ChatResponse(tool_calls=tuple(calls), model=self.model, provider=self.name,
                                    finish_reason="tool_calls", usage=_usage(messages, ""))
        context = [m.content for m in messages if m.role == "system"] + \
                  [m.content for m in messages[:last_user] if m.role in ("user", "assistant", "tool")]
        text = self.summarise(request, answered, context)
        if max_tokens:
            text = " ".join(text.split(" ")[: max(1, int(max_tokens))])
        return ChatResponse(content=text, model=self.model, provider=self.name, usage=_usage(messages, text))

    # -- planning ----------------------------------------------------------------------
    def score_tool(self, request: str, tool: ToolSpec) -> float:
        """Share of the tool's name/description stems found in the request, name words doubled."""
        want = set(stems(request))
        if not want:
            return 0.0
        name_words = set(stems(tool.name))
        desc_words = set(stems(tool.description)) - name_words
        total = 2 * len(name_words) + len(desc_words)
        if not total:
            return 0.0
        return (2 * len(name_words & want) + len(desc_words & want)) / total

    def plan(self, request: str, tools: Sequence[ToolSpec], *, results: Sequence[Any] = (),
             exclude: Any = ()) -> list[ToolCall]:
        """Calls of the near-best tools whose arguments it can justify; the others are skipped.

        ``results`` (earlier tool results) may justify arguments too: a numeric series
        a previous tool returned fills an array-of-numbers parameter (chaining).
        """
        from kailash.nodes.ai._schema import schema_problems

        raw = [(self.score_tool(request, t), i, t) for i, t in enumerate(tools)]
        best = max((x[0] for x in raw), default=0.0)
        want = set(stems(request))
        # a tool the request names outright ("the prices and trend") counts as a best match
        raw = [(best if best and set(stems(t.name)) <= want else sc, i, t) for sc, i, t in raw]
        scored = sorted(raw, key=lambda x: (-x[0], x[1]))
        floor = max(self.min_tool_score, 0.6 * scored[0][0]) if scored else 1.0  # near-best tools only
        calls: list[ToolCall] = []
        for s, _, t in scored:
            if s < floor or len(calls) >= self.max_tool_calls:
                break
            if t.name in exclude:
                continue
            args = fill_arguments(request, t.input_schema, results=results)
            if args is None or schema_problems(t.input_schema, args):
                continue  # cannot justify the required arguments: skip, never guess
            calls.append(ToolCall(id=f"call_{len(calls)}_{t.name}", name=t.name, arguments=args))
        return calls

    # -- answering ---------------------------------------------------------------------
    def summarise(self, request: str, results: Sequence[ChatMessage], context: Sequence[str]) -> str:
        topic = ", ".join(keywords(request, 6)) or "the request"
        lines = [f"Summary for: {request.strip() or 'the request'}"]
        facts: list[str] = []
        for m in results:
            label = m.name or "tool"
            rendered = _facts(m.content)
            facts.extend(rendered)
            lines.append(f"- {label}: " + ("; ".join(rendered[:8]) if rendered else "no data returned"))
        want = set(stems(request))
        ranked = []
        seen: set[str] = set()
        for idx, s in enumerate(x for c in context for x in sentences(c)):
            s = _LABEL.sub("", s).rstrip(".")
            if s.startswith(_OWN_LINES):  # its own headers and agents' persona lines carry no facts
                continue
            words = set(stems(s))
            shared = len(want & words)
            # a sentence that mostly restates the request adds nothing; neither does a repeat
            if not shared or len(words - want) < max(2, len(words) // 3) or s in seen:
                continue
            seen.add(s)
            ranked.append((-shared, -len(words - want), idx, s))
        picked = [r[3] for r in sorted(ranked)[:4]]
        picked = sorted(picked, key=lambda p: next(r[2] for r in ranked if r[3] == p))
        if picked:
            lines.append("Context: " + " ".join(p if p.endswith(".") else p + "." for p in picked))
        if not results and not picked:
            lines.append(f"Key topics: {topic}.")
        if want & {"recommend", "strategy", "suggest", "advis", "plan", "decid"}:
            basis = facts[:3] or picked[:2] or [topic]
            lines.append("Recommendation: act on " + "; ".join(basis) + ".")
        return "\n".join(lines)


def fill_arguments(request: str, schema: dict[str, Any] | None, *, results: Sequence[Any] = ()) -> dict[str, Any] | None:
    """Arguments for a tool from the request text, earlier tool ``results`` and the tool's JSON Schema.

    Only what it can justify: a value the request states, an enum value or example it
    mentions, the schema's default, the request itself for free-text fields, a numeric
    series an earlier tool returned. ``None`` when a required argument cannot be justified.
    """
    schema = schema or {}
    props: dict[str, Any] = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    explicit = _explicit_values(request)
    out: dict[str, Any] = {}
    for name, spec in props.items():
        spec = spec if isinstance(spec, dict) else {}
        value = _value_for(name, spec, request, explicit, name in required, results)
        if value is _UNJUSTIFIED:
            return None
        if value is not None:
            out[name] = value
    return out


_UNJUSTIFIED = object()


def _loads(content: str) -> Any:
    try:
        return json.loads(content)
    except (TypeError, ValueError):
        return None


def _numeric_series(value: Any) -> list[float] | None:
    """The first list of numbers inside a tool result."""
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return [float(v) for v in value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for v in items:
        found = _numeric_series(v)
        if found:
            return found
    return None


def _from_results(name: str, results: Sequence[Any]) -> Any:
    """A value named ``name`` in an earlier tool result (dicts searched one level deep)."""
    for r in results:
        if isinstance(r, dict):
            if name in r:
                return r[name]
            for v in r.values():
                if isinstance(v, dict) and name in v:
                    return v[name]
    return None


def _value_for(name: str, spec: dict[str, Any], request: str, explicit: dict[str, str], required: bool,
               results: Sequence[Any] = ()) -> Any:
    value = _justified(name, spec, request, explicit, required, results)
    return _UNJUSTIFIED if value is None and required else value


def _justified(name: str, spec: dict[str, Any], request: str, explicit: dict[str, str], required: bool,
               results: Sequence[Any]) -> Any:
    kind = spec.get("type") or ("string" if "enum" not in spec else None)
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    words = {t.lower() for t in tokens(request)}
    if name.lower() in explicit:
        return _coerce(explicit[name.lower()], kind)
    enum = spec.get("enum")
    if enum:
        hit = next((e for e in enum if str(e).lower() in words or str(e).lower() in request.lower()), None)
        return hit if hit is not None else (spec.get("default") if required else None)
    if kind == "string":
        near = _named_in(request, name) if not any(w in name.lower() for w in _FREE_TEXT) else None
        if near:
            return near
        examples = [str(e) for e in spec.get("examples", [])] + re.findall(r"'([^']+)'", spec.get("description", ""))
        for ex in examples:
            if ex.lower() in request.lower():
                return ex
        shaped = _same_shape(request, examples)
        if shaped:
            return shaped
        if not required:
            return None
        if "default" in spec:
            return spec["default"]
        prior = _from_results(name, results)
        if isinstance(prior, str):
            return prior
        if any(w in name.lower() for w in _FREE_TEXT):
            return request.strip()
        fallback = re.search(r"[Uu]se '([^']+)'", spec.get("description", ""))  # the tool says what to assume
        return fallback.group(1) if fallback else None
    if kind in ("integer", "number"):
        if not required:
            return None
        if "default" in spec:
            return spec["default"]
        nums = re.findall(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])", request)
        if len(nums) == 1:  # one number in the request: that one; several: which one is not justified
            value = float(nums[0])
            return int(value) if kind == "integer" and value.is_integer() else value
        prior = _from_results(name, results)
        return prior if isinstance(prior, (int, float)) and not isinstance(prior, bool) else None
    if kind == "boolean":
        return spec.get("default") if required else None
    if kind == "array":
        if not required:
            return None
        if "default" in spec:
            return spec["default"]
        items = spec.get("items") or {}
        item_enum = items.get("enum")
        if item_enum:
            return [e for e in item_enum if str(e).lower() in words] or None
        item_kind = items.get("type")
        if item_kind in ("number", "integer"):
            nums = re.findall(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])", request)
            if len(nums) >= 2:
                return [float(n) if item_kind == "number" else int(float(n)) for n in nums]
            series = next((x for x in (_numeric_series(r) for r in results) if x), None)
            if series and item_kind == "integer":
                return [int(v) for v in series] if all(v.is_integer() for v in series) else None
            return series
        upper = re.findall(r"\b[A-Z]{2,5}\b", request)  # tickers, codes: written in capitals
        if upper and any(w in name.lower() for w in ("symbol", "ticker", "code", "id", "name")):
            return upper
        if any(w in name.lower() for w in _FREE_TEXT) or name.lower() in ("terms", "topics", "tags"):
            return keywords(request, 3) or None
        return None
    if kind == "object":
        return spec.get("default") if required else None
    return spec.get("default") if required else None


_EXPLICIT = re.compile(r"\b(\w+)\s*[:=]\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s,;?!]+))")


def _explicit_values(request: str) -> dict[str, str]:
    """``name=value`` / ``name: value`` pairs written in the request."""
    return {key.lower(): dq or sq or bare.rstrip(".") for key, dq, sq, bare in _EXPLICIT.findall(request)}


def _named_in(request: str, name: str) -> str | None:
    """The word next to the parameter's name in the request: "the energy sector" -> "energy" for ``sector``."""
    words = re.findall(r"[A-Za-z0-9][\w./+-]*", request)
    target = stem(name.replace("_", " ").split()[-1])
    for i, w in enumerate(words):
        if stem(w.lower()) == target:
            for j in (i - 1, i + 1):
                if 0 <= j < len(words) and words[j].lower() not in STOPWORDS and stem(words[j].lower()) != target:
                    return words[j]
    return None


def _same_shape(request: str, examples: Sequence[str]) -> str | None:
    """A request token shaped like the examples (e.g. ``Area/City`` for IANA timezone names)."""
    for ex in examples:
        if "/" in ex:
            m = re.search(r"\b[A-Z][A-Za-z]+/[A-Z][A-Za-z_]+(?:/[A-Z][A-Za-z_]+)?\b", request)
            if m:
                return m.group(0)
        if re.fullmatch(r"\d{1,2}:\d{2}", ex):
            m = re.search(r"\b\d{1,2}:\d{2}\b", request)
            if m:
                return m.group(0)
    return None


def _coerce(value: str, kind: Any) -> Any:
    try:
        if kind == "integer":
            return int(value)
        if kind == "number":
            return float(value)
        if kind == "boolean":
            return value.lower() in ("true", "yes", "1")
        if kind == "array":
            return [v.strip() for v in value.split(",") if v.strip()]
    except ValueError:
        return value
    return value


def _facts(content: str, limit: int = 12) -> list[str]:
    """``key: value`` facts from a tool result (JSON flattened; plain text split in sentences)."""
    try:
        data = json.loads(content)
    except (TypeError, ValueError):
        return sentences(content)[:limit]
    out: list[str] = []

    def walk(value: Any, path: str) -> None:
        if len(out) >= limit:
            return
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{path}.{k}" if path else str(k))
        elif isinstance(value, list):
            for i, v in enumerate(value[:5]):
                walk(v, f"{path}[{i}]")
        else:
            out.append(f"{path or 'value'}: {value}")

    walk(data, "")
    return out


def _usage(messages: Sequence[ChatMessage], answer: str) -> dict[str, int]:
    prompt = sum(len(m.content.split()) for m in messages)
    return {"prompt_tokens": prompt, "completion_tokens": len(answer.split()),
            "total_tokens": prompt + len(answer.split())}
