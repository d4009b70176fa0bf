"""The gateway's public catalog endpoints (no key needed): ``/health``, ``/nodes``, ``/nodes/{type}``
and ``/schema/workflow.json`` (the JSON Schema of workflow files, with this gateway's node types)."""

from __future__ import annotations

from typing import Any

from kailash.api.responses import ApiError

__all__ = ["install", "node_catalog"]

_catalog: tuple[int, list[dict[str, Any]]] | None = None


def node_catalog() -> list[dict[str, Any]]:
    """Every registered node type with its parameter schema and outputs (cached until new types register)."""
    global _catalog
    from kailash.nodes.registry import describe_node, list_node_types

    types = list_node_types()
    if _catalog is None or _catalog[0] != len(types):
        described = []
        for name, cls in types.items():
            info = describe_node(cls, name)
            try:
                outputs = cls().get_outputs()  # type: ignore[call-arg]
                info["outputs"] = None if outputs is None else list(outputs)
            except Exception:
                info["outputs"] = None
            described.append(info)
        _catalog = (len(types), described)
    return _catalog[1]


def install(app: Any, gw: Any) -> None:
    """Add the health check and the node catalog to ``app``."""

    @app.get("/health", tags=["gateway"], summary="Liveness check (no key needed)")
    async def health() -> dict[str, Any]:
        from kailash._version import __version__

        return {"status": "ok", "version": __version__}

    @app.get("/nodes", tags=["catalog"], summary="The node catalog with parameter schemas (no key needed)")
    def nodes() -> dict[str, Any]:
        return {"nodes": node_catalog()}

    @app.get("/schema/workflow.json", tags=["catalog"],
             summary="JSON Schema of the workflow file format, for editors (no key needed)")
    def workflow_file_schema() -> dict[str, Any]:
        from kailash.workflow.schema import workflow_schema

        return workflow_schema()

    @app.get("/nodes/{node_type}", tags=["catalog"], summary="One node type (no key needed)")
    def node(node_type: str) -> dict[str, Any]:
        from kailash.errors import UnknownNodeTypeError

        for info in node_catalog():
            if info["name"] == node_type:
                return info
        try:
            from kailash.nodes.registry import get_node_class

            get_node_class(node_type)
        except UnknownNodeTypeError as exc:
            raise ApiError(404, "unknown_node_type", str(exc), suggestions=exc.suggestions) from None
        raise ApiError(404, "unknown_node_type", f"unknown node type '{node_type}'", suggestions=[])
