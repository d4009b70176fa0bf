"""Assembling the gateway's FastAPI application: middleware slots, error handling, routes, OpenAPI.

:func:`build_app` is called once by :attr:`WorkflowGateway.app`. The application keeps no
state of its own (nothing on ``app.state``): the pipeline slots and the route installers
are handed the gateway and use its public methods.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_app"]


def build_app(gw: Any) -> Any:
    """The FastAPI application serving ``gw``."""
    from kailash._version import __version__
    from kailash.api.gateway import require_fastapi

    fastapi = require_fastapi()
    from starlette.middleware import Middleware

    from kailash.api import failures, routes
    from kailash.api.pipeline import GatewayLayer
    from kailash.api.serving import lifespan

    app = fastapi.FastAPI(title=gw.title, description=gw.description or "Kailash workflows over HTTP",
                          version=__version__, lifespan=lambda _app: lifespan(gw))
    if gw.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.user_middleware.append(Middleware(CORSMiddleware, allow_origins=gw.cors_origins,
                                              allow_methods=["*"], allow_headers=["*"]))
    app.user_middleware += [Middleware(GatewayLayer, gateway=gw, kind=k) for k in ("guard", "auth", "limits", "body")]
    failures.install(app)
    routes.install(app, gw)
    app.openapi = lambda: gw.openapi_schema(app)
    return app
