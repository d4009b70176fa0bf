"""AsyncMergeNode: MergeNode for async workflows (runs on the event loop)."""

from __future__ import annotations

from typing import Any

from kailash.errors import Problem
from kailash.nodes.base import NodeParameter, register_node
from kailash.nodes.base_async import AsyncNode
from kailash.nodes.logic.operations import _MERGE_PARAMS, check_strategy, merge_values

__all__ = ["AsyncMergeNode"]


@register_node(category="logic")
class AsyncMergeNode(AsyncNode):
    """Combine the values that arrived from concurrently running branches.

    ``wait_for_all=True`` (the default and the only behaviour of the DAG runtimes):
    the merge runs once every upstream node has finished or been skipped.
    """

    capabilities = frozenset()

    primary_input = "data"
    primary_output = "merged_data"
    collects_inputs = True

    def get_parameters(self) -> dict[str, NodeParameter]:
        return {**_MERGE_PARAMS,
                "wait_for_all": NodeParameter(type=bool, default=True, description="wait for every upstream node")}

    def get_outputs(self) -> dict[str, NodeParameter]:
        return {"merged_data": NodeParameter(name="merged_data")}

    def validate_config(self) -> list[str | Problem]:
        return check_strategy(self.config.get("merge_strategy"))

    async def async_run(self, data: list[Any] | None = None, merge_strategy: str = "concat", key: str | None = None,
                        skip_none: bool = True, wait_for_all: bool = True, on_conflict: str = "error",
                        **explicit: Any) -> dict[str, Any]:
        values = list(data or [])
        values += [explicit[f"data{i}"] for i in range(1, 6) if explicit.get(f"data{i}") is not None]
        if skip_none:
            values = [v for v in values if v is not None]
        return {"merged_data": merge_values(self, values, merge_strategy, key, on_conflict)}
