"""The decisions of self-organising agents as pure functions: analyse, pool, team, evaluate.

* :func:`analyze_problem` — required capabilities, subtasks in phases, complexity.
* :func:`capabilities_of` — capabilities a text (a query, a tool's description) calls for.
* :func:`create_pool` — a deterministic pool of agents with varied skills.
* :func:`form_team` — the four strategies: capability_matching, swarm_based,
  market_based, hierarchical, each explaining its choice; :func:`team_report` describes
  any chosen team (a model's too) in the same shape.
* :func:`evaluate_solution` — quality from coverage, evidence, confidence, reliability.

No I/O, no randomness: the same inputs give the same team and score. The nodes in
:mod:`kailash.nodes.ai.self_organizing` and the orchestrator call these.
"""

from __future__ import annotations

import math
import re
import zlib
from typing import Any

from kailash.nodes.ai._text import capability_match, keywords, stems

__all__ = ["COVERS", "analyze_problem", "as_task", "capabilities_of", "create_pool", "form_team", "evaluate_solution",
           "hierarchy", "information", "STRATEGIES", "team_bounds", "team_report"]

STRATEGIES = ("capability_matching", "swarm_based", "market_based", "hierarchical")

# capability -> (word-stem prefixes that call for it, phase, subtask template)
CAPABILITIES: dict[str, tuple[tuple[str, ...], int, str]] = {
    "research": (("research", "investigat", "search", "explor", "discover", "gather", "collect", "survey", "document"),
                 0, "Gather background information for: {topic}"),
    "market_research": (("market", "stock", "sector", "industr", "competitor", "consumer", "customer", "pric", "trend"),
                        0, "Collect market data and trends for: {topic}"),
    "data_access": (("sql", "databas", "table", "fetch", "retriev", "record", "dataset"),
                    0, "Retrieve the relevant records for: {topic}"),
    "scheduling": (("tim", "timezon", "schedul", "dat", "calendar", "deadlin", "clock", "hour"),
                   0, "Establish the timing facts for: {topic}"),
    "data_analysis": (("anal", "data", "statistic", "metric", "measur", "quantif"),
                      1, "Analyze the data for: {topic}"),
    "financial_analysis": (("financ", "revenu", "profit", "cost", "budget", "invest", "portfolio", "valuat", "earning"),
                           1, "Assess the financial picture for: {topic}"),
    "risk_assessment": (("risk", "threat", "vulnerab", "exposur", "hedg", "volatil"),
                        1, "Assess the risks for: {topic}"),
    "forecasting": (("forecast", "predict", "project", "futur", "outlook"),
                    1, "Forecast the outlook for: {topic}"),
    "strategy": (("strategy", "strategic", "recommend", "plan", "decid", "decision", "advic", "advis", "roadmap"),
                 2, "Recommend a strategy for: {topic}"),
    "summarization": (("summar", "report", "brief", "overview", "synthes", "explain", "describ"),
                      2, "Summarize the findings for: {topic}"),
    "visualization": (("visual", "chart", "graph", "plot", "dashboard"), 2, "Prepare visual views for: {topic}"),
}
COVERS = 0.6  # least capability_match for an agent to count as having a skill ("analysis" ~ "data_analysis")
_LEADERSHIP = ("coordination", "leadership", "management", "planning", "strategy")


def capabilities_of(text: str) -> list[str]:
    """The capabilities ``text`` calls for, in catalogue order."""
    words = set(stems(text))
    return [cap for cap, (prefixes, _, _) in CAPABILITIES.items()
            if any(w.startswith(p) for w in words for p in prefixes)]


def as_task(task: Any) -> Any:
    """A task given as plain text becomes ``{"id", "description", "required_capabilities"}``."""
    if isinstance(task, str):
        return {"id": "task", "description": task, "required_capabilities": capabilities_of(task)}
    return task


def analyze_problem(query: str, context: dict[str, Any] | None = None) -> dict[str, Any]:
    """Break a problem into required capabilities and phased subtasks."""
    context = context or {}
    required = list(context.get("required_capabilities") or capabilities_of(query))
    if not required:
        required = ["research", "summarization"]
    topic = query.strip().rstrip(".?!") or "the problem"
    subtasks = []
    by_phase: dict[int, list[str]] = {}
    for i, cap in enumerate(required):
        _, phase, template = CAPABILITIES.get(cap, ((), 1, cap.replace("_", " ").capitalize() + " for: {topic}"))
        sid = f"st_{i + 1}_{cap}"
        by_phase.setdefault(phase, []).append(sid)
        subtasks.append({"id": sid, "description": template.format(topic=topic), "required_capabilities": [cap],
                         "phase": phase})
    for st in subtasks:
        st["depends_on"] = [s for p, ids in by_phase.items() if p < st["phase"] for s in ids]
    words = len(query.split())
    complexity = round(min(1.0, 0.15 + 0.1 * len(required) + 0.01 * words + 0.1 * len(by_phase)), 3)
    return {
        "query": query, "topic": topic, "keywords": keywords(query, 8), "required_capabilities": required,
        "subtasks": subtasks, "phases": len(by_phase), "complexity_score": complexity,
        "estimated_agents": max(2, min(10, len(required) + 1)),
        "decomposition_strategy": "phased: gather, then analyse, then synthesise",
    }


def _h(text: str) -> int:
    return zlib.crc32(text.encode())


def create_pool(size: int, capabilities: list[str], *, prefix: str = "agent") -> list[dict[str, Any]]:
    """``size`` agents; each gets two capabilities cycling through ``capabilities`` (plus the catalogue).

    Performance (0.6..0.95) and cost (0.5..2.0) vary deterministically per agent id.
    """
    caps = list(dict.fromkeys(list(capabilities) + list(CAPABILITIES)))
    agents = []
    for i in range(size):
        own = list(dict.fromkeys([caps[i % len(caps)], caps[(i * 3 + 1) % len(caps)]]))
        aid = f"{prefix}_{i + 1:03d}"
        h = _h(aid)
        agents.append({"id": aid, "capabilities": own, "performance": round(0.6 + (h % 36) / 100, 2),
                       "cost": round(0.5 + (h >> 8) % 16 / 10, 2)})
    return agents


def _norm(agent: dict[str, Any]) -> dict[str, Any]:
    return {**agent, "id": str(agent.get("id") or agent.get("agent_id")),
            "capabilities": [str(c) for c in agent.get("capabilities") or []],
            "performance": float(agent.get("performance", 0.8)), "cost": float(agent.get("cost", 1.0))}


def _fit(agent: dict[str, Any], cap: str) -> float:
    return max((capability_match(cap, c) for c in agent["capabilities"]), default=0.0)


def form_team(required: list[str], agents: list[dict[str, Any]], strategy: str = "capability_matching",
              constraints: dict[str, Any] | None = None) -> dict[str, Any]:
    """Choose a team for ``required`` capabilities from ``agents`` with one of :data:`STRATEGIES`."""
    c = constraints or {}
    pool = [_norm(a) for a in agents]
    max_size = int(c.get("max_team_size") or len(pool) or 1)
    min_size = int(c.get("min_team_size") or 1)
    budget = c.get("budget")
    team: list[dict[str, Any]] = []
    structure: dict[str, Any] = {}

    def uncovered() -> list[str]:
        return [cap for cap in required if not any(_fit(a, cap) >= COVERS for a in team)]

    def gain(a: dict[str, Any]) -> float:
        return sum(_fit(a, cap) for cap in uncovered() if _fit(a, cap) >= COVERS)

    def spent() -> float:
        return sum(a["cost"] for a in team)

    rest = lambda: [a for a in pool if a not in team]  # noqa: E731
    if strategy == "capability_matching":
        while uncovered() and len(team) < max_size:
            best = max(rest(), key=lambda a: (gain(a), a["performance"], -a["cost"], a["id"]), default=None)
            if best is None or gain(best) == 0:
                break
            team.append(best)
        reasoning = "greedy cover: each pick covers the most still-missing capabilities (ties: performance, cost)"
    elif strategy == "swarm_based":
        target = min(max_size, max(min_size, math.ceil(1.5 * len(required)) + 1))
        while len(team) < target and rest():
            seen = {x for a in team for x in a["capabilities"]}

            def swarm(a: dict[str, Any], seen: set[str] = seen) -> tuple[float, float, str]:
                novel = len(set(a["capabilities"]) - seen) / max(1, len(a["capabilities"]))
                relevance = sum(_fit(a, cap) for cap in required) / max(1, len(required))
                return (0.4 * novel + 0.6 * (gain(a) / max(1, len(required))) + 0.2 * relevance, a["performance"], a["id"])

            team.append(max(rest(), key=swarm))
        reasoning = "swarm: a larger, diverse team for exploration — picks balance new skills and coverage"
    elif strategy == "market_based":
        bids = {}
        while uncovered() and len(team) < max_size:
            offers = [(gain(a) * a["performance"] / a["cost"], a) for a in rest() if gain(a) > 0 and
                      (budget is None or spent() + a["cost"] <= float(budget))]
            if not offers:
                break
            value, best = max(offers, key=lambda x: (x[0], x[1]["id"]))
            bids[best["id"]] = round(value, 4)
            team.append(best)
        structure["bids"] = bids
        reasoning = "market: agents bid value = covered skills x performance / cost; best value wins" + \
                    (f" within budget {budget}" if budget is not None else "")
    elif strategy == "hierarchical":
        def lead_score(a: dict[str, Any]) -> tuple[float, float, str]:
            bonus = 0.5 if any(capability_match(lead, x) >= COVERS for lead in _LEADERSHIP for x in a["capabilities"]) else 0
            return (sum(1 for cap in required if _fit(a, cap) >= COVERS) + bonus, a["performance"], a["id"])

        if pool:
            leader = max(pool, key=lead_score)
            team.append(leader)
            structure = {"leader": leader["id"], "members": {}}
            for cap in required:
                if len(team) >= max_size:
                    break
                holder = next((a for a in team if _fit(a, cap) >= COVERS), None)
                if holder is None:
                    cands = [a for a in rest() if _fit(a, cap) >= COVERS]
                    if cands:
                        holder = max(cands, key=lambda a: (_fit(a, cap), a["performance"], -a["cost"], a["id"]))
                        team.append(holder)
                if holder is not None:
                    structure["members"].setdefault(cap, holder["id"])
        reasoning = "hierarchy: a leader covering the most skills (coordination counts), one specialist per missing skill"
    else:
        raise ValueError(f"unknown formation strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    while len(team) < min(min_size, len(pool)):
        team.append(max(rest(), key=lambda a: (sum(_fit(a, cap) for cap in required), a["performance"], a["id"])))
    return team_report(required, team, strategy, reasoning, structure)


def team_bounds(agents: list[dict[str, Any]], constraints: dict[str, Any] | None = None) -> tuple[int, int]:
    """The least and the most members a team from ``agents`` may have under ``constraints``."""
    c = constraints or {}
    max_size = max(1, min(int(c.get("max_team_size") or len(agents) or 1), len(agents) or 1))
    min_size = max(1, min(int(c.get("min_team_size") or 1), max_size))
    return min_size, max_size


def team_report(required: list[str], team: list[dict[str, Any]], strategy: str, reasoning: str,
                structure: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a chosen team covers and costs (the same shape whoever chose it)."""
    team = [_norm(a) for a in team]
    coverage = {cap: [a["id"] for a in team if _fit(a, cap) >= COVERS] for cap in required}
    missing = [cap for cap, ids in coverage.items() if not ids]
    return {
        "team": [a["id"] for a in team], "team_members": team, "coverage": coverage,
        "coverage_ratio": round(1 - len(missing) / len(required), 4) if required else 1.0,
        "missing_capabilities": missing, "total_cost": round(sum(a["cost"] for a in team), 4),
        "expected_performance": round(sum(a["performance"] for a in team) / len(team), 4) if team else 0.0,
        "strategy": strategy, "reasoning": reasoning, "structure": structure or {},
    }


def hierarchy(required: list[str], team: list[dict[str, Any]], leader: str) -> dict[str, Any]:
    """``{"leader", "members": {capability: the first member who has it}}`` of a chosen team."""
    team = [_norm(a) for a in team]
    members: dict[str, str] = {}
    for cap in required:
        holder = next((a for a in team if _fit(a, cap) >= COVERS), None)
        if holder is not None:
            members[cap] = holder["id"]
    return {"leader": leader, "members": members}


_NON_ANSWER = re.compile(r"\b(i (?:do not|don't|dont|cannot|can't) (?:know|say|tell|help)|not sure|no idea|"
                        r"no (?:data|information) (?:returned|available)|cannot (?:answer|help|determine)|"
                        r"unable to (?:answer|help|determine|find)|as an ai)\b", re.I)
_OWN_WORDS = set(stems("summary for key topics context recommendation act on tool finding teammate found overall "
                       "goal agent"))


def information(content: Any, request: str = "") -> float:
    """How much an answer says beyond the request (0..1): new content words, 0 for a non-answer.

    "I don't know.", an echo of the question and the offline provider's "Key topics:"
    fallback carry no information; eight or more new content words count fully.
    """
    text = content if isinstance(content, str) else str(content or "")
    if not text.strip():
        return 0.0
    lines = [ln for ln in text.splitlines() if not ln.strip().startswith(("Summary for:", "Key topics:"))]
    body = " ".join(lines)
    if _NON_ANSWER.search(body) and len(set(stems(body))) < 12:
        return 0.0
    new = set(stems(body)) - set(stems(request)) - _OWN_WORDS
    return round(min(1.0, len(new) / 8), 4)


def _obtained(call: dict[str, Any]) -> bool:
    """A tool call that really returned something (not an error, not empty)."""
    return bool(call.get("ok")) and call.get("result") not in (None, "", [], {})


def evaluate_solution(findings: list[dict[str, Any]], subtasks: list[dict[str, Any]], *,
                      tools_available: bool = True, quality_threshold: float = 0.8, query: str = "") -> dict[str, Any]:
    """Score findings against subtasks (0..1) by what they really obtained and say.

    Each subtask scores ``0.6 x grounded + 0.4 x information`` when tools exist (grounded:
    its finding rests on a tool result actually obtained; information: see
    :func:`information`), and ``0.5 x information`` when no tools exist (an ungrounded
    answer never reaches a high score). When tools exist and none returned anything,
    quality is 0. Coverage, confidence and reliability are reported, not scored.
    """
    by_id = {f.get("subtask_id"): f for f in findings if f.get("content")}
    ids = [s["id"] for s in subtasks] or sorted(x for x in by_id if x)
    texts = {s["id"]: str(s.get("description") or "") for s in subtasks}
    per: dict[str, dict[str, Any]] = {}
    for i in ids:
        f = by_id.get(i)
        info = information(f.get("content"), f"{texts.get(i, '')} {query}") if f else 0.0
        grounded = f is not None and any(_obtained(t) for t in f.get("tool_calls") or [])
        score = (0.6 * grounded + 0.4 * info) if tools_available else 0.5 * info
        per[i] = {"score": round(score, 4), "grounded": grounded, "information": info, "answered": f is not None}
    calls = [t for f in findings for t in f.get("tool_calls") or []]
    quality = round(sum(p["score"] for p in per.values()) / len(per), 4) if per else 0.0
    nothing_obtained = tools_available and not any(p["grounded"] for p in per.values())
    if nothing_obtained:
        quality = 0.0
    scores = {"coverage": round(sum(p["answered"] for p in per.values()) / len(per), 4) if per else 0.0,
              "grounding": round(sum(p["grounded"] for p in per.values()) / len(per), 4) if per else 0.0,
              "information": round(sum(p["information"] for p in per.values()) / len(per), 4) if per else 0.0,
              "confidence": round(sum(float(f.get("confidence") or 0) for f in findings) / len(findings), 4)
              if findings else 0.0,
              "reliability": round(sum(1 for t in calls if t.get("ok")) / len(calls), 4) if calls else 0.0}
    gaps = [i for i, p in per.items() if not p["answered"] or p["information"] < 0.5
            or (tools_available and not p["grounded"])]
    feedback = [f"subtask {i} has no finding" for i, p in per.items() if not p["answered"]]
    feedback += [f"subtask {i}'s answer carries no information" for i, p in per.items()
                 if p["answered"] and p["information"] == 0]
    if tools_available:
        feedback += [f"subtask {i} is not backed by a tool result" for i, p in per.items()
                     if p["answered"] and not p["grounded"]]
    feedback += [f"tool {t.get('tool')} on {t.get('server')} {'was refused' if t.get('outcome') == 'rejected' else 'failed'}"
                 f": {str(t.get('error'))[:120]}" for t in calls if not t.get("ok")]
    if nothing_obtained:
        feedback.insert(0, "no tool returned anything: the answers rest on nothing obtained")
    return {"overall_score": quality, "quality": quality, "scores": scores, "subtask_scores": per,
            "weights": {"grounded": 0.6, "information": 0.4} if tools_available else {"information": 0.5},
            "gaps": gaps, "feedback": feedback, "meets_threshold": quality >= quality_threshold,
            "recommendation": "accept" if quality >= quality_threshold else "iterate", "decided_by": "heuristic",
            "basis": "tool results obtained and information in the answers"}
