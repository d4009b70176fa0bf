"""Serving workflows over HTTP: the gateway, single-workflow APIs, middleware, tenants, the Studio.

Names load lazily, so ``import kailash.api`` costs nothing until one is used; the
FastAPI/uvicorn stack is needed only by the gateway (``pip install 'kailash[api]'``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kailash._lazy import lazy_exports

__all__ = [
    "WorkflowGateway", "WorkflowAPI", "AuthenticationMiddleware", "RateLimitingMiddleware",
    "BodySizeLimitMiddleware", "TenantRegistry", "Tenant", "create_tenant", "StudioClient",
    "serve_workflows_mcp", "build_workflow_mcp_server",
]

_EXPORTS = {
    "WorkflowGateway": "kailash.api.gateway",
    "WorkflowAPI": "kailash.api.workflow_api",
    "AuthenticationMiddleware": "kailash.api.middleware",
    "RateLimitingMiddleware": "kailash.api.middleware",
    "BodySizeLimitMiddleware": "kailash.api.middleware",
    "TenantRegistry": "kailash.api.tenancy",
    "Tenant": "kailash.api.tenancy",
    "create_tenant": "kailash.api.tenancy",
    "StudioClient": "kailash.api.studio",
    "serve_workflows_mcp": "kailash.api.mcp_server",
    "build_workflow_mcp_server": "kailash.api.mcp_server",
}


if TYPE_CHECKING:  # what type checkers see; at run time each name is imported on first use
    from kailash.api.gateway import WorkflowGateway as WorkflowGateway
    from kailash.api.mcp_server import build_workflow_mcp_server as build_workflow_mcp_server
    from kailash.api.mcp_server import serve_workflows_mcp as serve_workflows_mcp
    from kailash.api.middleware import AuthenticationMiddleware as AuthenticationMiddleware
    from kailash.api.middleware import BodySizeLimitMiddleware as BodySizeLimitMiddleware
    from kailash.api.middleware import RateLimitingMiddleware as RateLimitingMiddleware
    from kailash.api.studio import StudioClient as StudioClient
    from kailash.api.tenancy import Tenant as Tenant
    from kailash.api.tenancy import TenantRegistry as TenantRegistry
    from kailash.api.tenancy import create_tenant as create_tenant
    from kailash.api.workflow_api import WorkflowAPI as WorkflowAPI

__getattr__ = lazy_exports("kailash.api", _EXPORTS, globals())



def __dir__() -> list[str]:
    return __all__
