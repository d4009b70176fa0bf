"""Decisions by the model when there is one, by a named heuristic when there is not.

:func:`model_decision` asks the configured provider for a JSON object fitting a JSON
Schema (``response_format`` on OpenAI-compatible servers, an instruction elsewhere),
validates it with ``jsonschema`` and, when it does not fit, tells the model what was
wrong and asks again (bounded). When the provider is the offline one, or the model
fails or never answers in shape, the caller's heuristic decides and the result says so:
``decided_by`` is ``"model"`` or ``"heuristic"`` (with ``model_error`` saying why).
The decisions built on it: :func:`analyze` (decomposition), :func:`choose_team` (the team
from the pool) and :func:`evaluate` (the grade).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from kailash.errors import KailashError
from kailash.nodes.ai._agent_loop import model_call_event, schema_problems
from kailash.nodes.ai.providers.base import ChatMessage

__all__ = ["analyze", "choose_team", "evaluate", "has_model", "model_decision"]


def has_model(provider: Any) -> bool:
    """True unless ``provider`` is the deterministic offline stand-in."""
    from kailash.nodes.ai.providers.offline import OfflineProvider

    return provider is not None and not isinstance(provider, OfflineProvider)


#: characters of a decision answer read (a decision is a small object; a longer answer is refused)
ANSWER_CHARS = 20_000


def _json_in(text: str) -> Any:
    """The JSON object in a model's answer (the whole answer, else its first ``{`` to its last
    ``}``); ``None`` when there is none, or it is too long, too deep or not JSON (NaN...)."""
    from kailash.nodes.ai.providers.base import read_json

    text = (text or "").strip()
    if len(text) > ANSWER_CHARS:
        return None
    try:
        return read_json(text)
    except ValueError:
        pass
    start, end = text.find("{"), text.rfind("}")  # linear: a regex scan is quadratic in unmatched braces
    if 0 <= start < end:
        try:
            return read_json(text[start:end + 1])
        except ValueError:
            return None
    return None


def model_decision(provider: Any, *, purpose: str, instruction: str, prompt: str, schema: dict[str, Any],
                   fallback: Callable[[], dict[str, Any]], attempts: int = 2,
                   events: list[dict[str, Any]] | None = None, max_tokens: int = 256,
                   check: Callable[[dict[str, Any]], list[str]] | None = None) -> dict[str, Any]:
    """The model's decision (a dict fitting ``schema``), else ``fallback()``; both say ``decided_by``.

    Args:
        provider: the configured provider (offline: the fallback decides at once).
        purpose: what is decided (``"decomposition"``, ``"evaluation"``...), for events and errors.
        instruction: the system message (the rubric or the rules of the decision).
        prompt: the facts to decide on.
        schema: JSON Schema of the answer object.
        fallback: the heuristic, called when the model cannot decide.
        attempts: model answers tried (each failure is told to the model).
        events: where model-call events are appended.
        max_tokens: the most tokens of one answer.
        check: further rules the schema cannot say (an answer naming what is not there, a budget
            exceeded...): the problems, empty when the answer is acceptable; told to the model
            like schema problems.
    """
    if not has_model(provider):
        return {**fallback(), "decided_by": "heuristic"}
    messages = [ChatMessage(role="system", content=instruction + "\nAnswer with only a JSON object fitting this "
                            "JSON Schema: " + json.dumps(schema)), ChatMessage(role="user", content=prompt)]
    errors: list[str] = []  # what was wrong with each answer, in order
    for _ in range(max(1, attempts)):
        t0 = time.perf_counter()
        try:
            if hasattr(provider, "structured"):
                response = provider.structured(messages, schema, name=purpose, max_tokens=max_tokens)
            else:
                response = provider.chat(messages, max_tokens=max_tokens, temperature=0.0)
        except KailashError as exc:
            errors.append(f"the model failed: {exc}")
            if events is not None:
                events.append(model_call_event(provider, None, time.perf_counter() - t0, purpose=purpose,
                                               error=errors[-1]))
            break
        if events is not None:
            events.append(model_call_event(provider, response, time.perf_counter() - t0, purpose=purpose))
        value = _json_in(response.content)
        problems = [f"the answer is longer than {ANSWER_CHARS} characters" if len(response.content or "") > ANSWER_CHARS
                    else "the answer is not a JSON object"] if not isinstance(value, dict) \
            else schema_problems(schema, value)
        broken = "did not fit its schema"
        if not problems and check is not None:
            problems, broken = check(value), "broke a rule"
        if not problems:
            return {**value, "decided_by": "model", "model": response.model or getattr(provider, "model", "")}
        errors.append(f"the model's {purpose} {broken}: {'; '.join(problems)[:300]}")
        messages += [ChatMessage(role="assistant", content=response.content[:2000]),
                     ChatMessage(role="user", content=f"That answer is invalid ({'; '.join(problems)[:300]}). "
                                                      "Answer again with only the JSON object.")]
    error = "; asked again, ".join(dict.fromkeys(errors)) or "no answer"
    return {**fallback(), "decided_by": "heuristic", "model_error": error}


def analyze(provider: Any, query: str, context: dict[str, Any] | None,
            events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Decompose ``query`` into subtasks: the model's plan when there is a model, else the catalogue."""
    from kailash.nodes.ai import _organizing as org

    context = context or {}
    if context.get("required_capabilities"):  # the caller fixed the capabilities: nothing to decide
        return {**org.analyze_problem(query, context), "decided_by": "caller"}
    caps = list(org.CAPABILITIES)
    schema = {"type": "object", "required": ["subtasks"], "properties": {"subtasks": {
        "type": "array", "minItems": 1, "maxItems": 5, "items": {
            "type": "object", "required": ["description", "capability"],
            "properties": {"description": {"type": "string", "minLength": 3, "maxLength": 300},
                           "capability": {"type": "string", "enum": caps}}}}}}
    decision = model_decision(
        provider, purpose="decomposition", events=events, schema=schema, fallback=lambda: {},
        instruction="You plan work for a team of agents. Split the problem into 1 to 5 subtasks, in the order they "
                    f"must be done, each needing one capability from: {', '.join(caps)}.",
        prompt=f"Problem: {query}")
    if decision["decided_by"] != "model":
        out = org.analyze_problem(query, context)
        return {**out, **{k: v for k, v in decision.items() if k in ("decided_by", "model_error")}}
    steps = list({d["capability"]: d for d in decision["subtasks"]}.values())  # one subtask per capability
    out = org.analyze_problem(query, {"required_capabilities": [d["capability"] for d in steps]})
    for st, d in zip(out["subtasks"], steps, strict=True):
        st["description"] = f"{d['description'].strip()} (for: {out['topic']})"
    out.update(decided_by="model", model=decision.get("model"),
               decomposition_strategy="the model's plan, one subtask per capability")
    return out


def evaluate(provider: Any, query: str, findings: list[dict[str, Any]], subtasks: list[dict[str, Any]], *,
             tools_available: bool, quality_threshold: float,
             events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The heuristic evaluation (grounding, information) and, with a model, its rubric grade.

    With a model, quality is the model's grade — except that it can never exceed the
    heuristic's when nothing was obtained or nothing informative was said (a confident
    grade of an empty answer is not earned).
    """
    from kailash.nodes.ai import _organizing as org

    base = org.evaluate_solution(findings, subtasks, tools_available=tools_available,
                                 quality_threshold=quality_threshold, query=query)
    if not has_model(provider):
        return base
    answers = "\n".join(f"[{f.get('subtask_id')}] {str(f.get('content'))[:800]}" for f in findings) or "(no answers)"
    schema = {"type": "object", "required": ["score", "answers_the_query"],
              "properties": {"score": {"type": "number", "minimum": 0, "maximum": 1},
                             "answers_the_query": {"type": "boolean"},
                             "missing": {"type": "string", "maxLength": 400}}}
    grade = model_decision(
        provider, purpose="evaluation", events=events, schema=schema, fallback=lambda: {},
        instruction="You grade a team's answers to a query. Rubric: 1.0 = complete, specific and supported by "
                    "data; 0.5 = partly answers; 0.0 = no information, refusals or 'I don't know'. Give score (0..1), "
                    "answers_the_query and what is missing.",
        prompt=f"Query: {query}\nAnswers:\n{answers}")
    if grade["decided_by"] != "model":
        return {**base, "model_error": grade.get("model_error")}
    quality = float(grade["score"])
    if base["quality"] == 0.0 or base["scores"]["information"] == 0.0 or not grade["answers_the_query"]:
        quality = min(quality, base["quality"])
    quality = round(quality, 4)
    feedback = list(base["feedback"]) + ([f"the model grader: missing {grade['missing']}"] if grade.get("missing") else [])
    return {**base, "quality": quality, "overall_score": quality, "meets_threshold": quality >= quality_threshold,
            "recommendation": "accept" if quality >= quality_threshold else "iterate", "feedback": feedback,
            "decided_by": "model", "model": grade.get("model"), "model_score": grade["score"],
            "heuristic_quality": base["quality"], "basis": "the model's rubric grade, capped by what was obtained"}


_STRATEGY_RULES = {
    "capability_matching": "the smallest team that together has every required capability; prefer higher "
                           "performance, then lower cost",
    "swarm_based": "a larger, diverse team for exploration: cover the required capabilities and add varied other skills",
    "market_based": "the best value: required capabilities covered, times performance, per cost",
    "hierarchical": "a leader (coordination or strategy skills preferred) and, in the team, one specialist for each "
                    "required capability the leader lacks",
}


def choose_team(provider: Any, required: list[str], agents: list[dict[str, Any]],
                strategy: str = "capability_matching", constraints: dict[str, Any] | None = None, *,
                query: str = "", events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The team for ``required`` from ``agents``: the model's choice when there is a model, else :func:`form_team`.

    The model answers ``{"team": [agent ids], "reason"}`` (plus ``"leader"`` for the
    hierarchical strategy, who leads the team and belongs to it whether the model lists
    them in ``team`` or not). Only ids from the pool, no repeats, a size within the bounds
    (``min_team_size``/``max_team_size``) and the ``budget`` (market_based) are accepted; an
    answer breaking a rule is told to the model and asked again, then the strategy's
    heuristic decides (``decided_by: "heuristic"`` with ``model_error``). Offline, the
    heuristic decides at once. The output has the shape of
    :func:`kailash.nodes.ai._organizing.form_team` plus ``decided_by``.
    """
    from kailash.nodes.ai import _organizing as org

    c = dict(constraints or {})

    def heuristic() -> dict[str, Any]:
        return org.form_team(required, agents, strategy, c)

    if not has_model(provider):
        return {**heuristic(), "decided_by": "heuristic"}
    if not agents:
        return {**heuristic(), "decided_by": "heuristic", "model_error": "no agents to choose from"}
    pool = {str(a.get("id") or a.get("agent_id")): a for a in agents}
    ids = list(pool)
    least, most = org.team_bounds(agents, c)
    budget = c.get("budget")
    props: dict[str, Any] = {"team": {"type": "array", "items": {"type": "string", "enum": ids},
                                      "minItems": least, "maxItems": most, "uniqueItems": True},
                             "reason": {"type": "string", "maxLength": 200}}
    needed = ["team", "reason"]
    if strategy == "hierarchical":  # the leader first, then the team around them
        props = {"leader": {"type": "string", "enum": ids}, **props}
        needed.insert(0, "leader")
    schema = {"type": "object", "required": needed, "properties": props}

    def chosen(answer: dict[str, Any]) -> list[str]:  # the leader leads from inside the team
        return list(dict.fromkeys(([answer["leader"]] if strategy == "hierarchical" else []) + answer["team"]))

    def rules(answer: dict[str, Any]) -> list[str]:
        problems = []
        team = chosen(answer)
        if len(team) > most:
            problems.append(f"the team with its leader has {len(team)} members, more than {most}")
        if budget is not None:
            cost = sum(float(pool[i].get("cost", 1.0)) for i in team)
            if cost > float(budget):
                problems.append(f"the team costs {cost:g}, over the budget {float(budget):g}")
        return problems

    roster = "\n".join(f"- {i}: {', '.join(map(str, a.get('capabilities') or [])) or 'no listed skills'}; "
                       f"performance {float(a.get('performance', 0.8)):g}; cost {float(a.get('cost', 1.0)):g}"
                       for i, a in pool.items())
    limits = f"between {least} and {most} agents" if least < most else f"exactly {least} agent(s)"
    pick = model_decision(
        provider, purpose="team", events=events, schema=schema, fallback=lambda: {}, check=rules,
        max_tokens=min(1024, 120 + 8 * most),  # room for every id the team may hold, and the reason
        instruction=f"You form a team of agents for a problem. Strategy {strategy}: {_STRATEGY_RULES.get(strategy, '')}. "
                    f"Choose {limits} from the pool, by their ids"
                    + (f", costing at most {float(budget):g} in total" if budget is not None else "")
                    + ", and give a short reason.",
        prompt=(f"Problem: {query}\n" if query else "") + f"Required capabilities: {', '.join(required) or 'none'}\n"
               f"Pool:\n{roster}")
    if pick["decided_by"] != "model":
        return {**heuristic(), "decided_by": "heuristic", "model_error": pick.get("model_error")}
    members = [pool[i] for i in chosen(pick)]
    structure = org.hierarchy(required, members, pick["leader"]) if strategy == "hierarchical" else {}
    out = org.team_report(required, members, strategy, f"the model's choice: {str(pick.get('reason') or '').strip()}",
                          structure)
    return {**out, "decided_by": "model", "model": pick.get("model")}
