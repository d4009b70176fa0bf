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
                          version=__version__, lifespan=lambda _app: lifespan(gw), docs_url=None, redoc_url=None)
    if gw.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.user_middleware.append(Middleware(CORSMiddleware, allow_origins=gw.cors_origins,
                                              allow_methods=["*"], allow_headers=["*"]))
    app.user_middleware += [Middleware(GatewayLayer, gateway=gw, kind=k) for k in ("guard", "auth", "limits", "body")]
    failures.install(app)
    routes.install(app, gw)
    _install_docs(app)
    app.openapi = lambda: gw.openapi_schema(app)
    return app


#: where the API docs' scripts and styles are served from (no CDN: the docs work offline)
DOCS_ASSETS = "/docs/assets"


def _docs_assets_dir() -> Any:
    """The Swagger UI and ReDoc files shipped by the ``fastapi-offline`` package (``None`` if not installed)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "static"
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def _install_docs(app: Any) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` with their assets served from the package, not a CDN.

    The assets come from ``fastapi-offline`` (part of the ``[api]`` extra). Without it the
    pages fall back to FastAPI's CDN links and the log says how to get offline docs.
    """
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from starlette.responses import HTMLResponse

    folder = _docs_assets_dir()
    if folder is not None:
        from starlette.staticfiles import StaticFiles

        app.mount(DOCS_ASSETS, StaticFiles(directory=folder), name="docs-assets")
        local: dict[str, Any] = {"swagger_js_url": f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                 "swagger_css_url": f"{DOCS_ASSETS}/swagger-ui.css",
                 "swagger_favicon_url": f"{DOCS_ASSETS}/favicon.png"}
        redoc: dict[str, Any] = {"redoc_js_url": f"{DOCS_ASSETS}/redoc.standalone.js",
                 "redoc_favicon_url": f"{DOCS_ASSETS}/favicon.png", "with_google_fonts": False}
    else:
        import logging

        logging.getLogger("kailash.api").warning(
            "API docs load their assets from a CDN: pip install fastapi-offline (in kailash[api]) to serve them here")
        local, redoc = {}, {}

    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - API docs", **local)

    async def redoc_page() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - ReDoc", **redoc)

    app.add_api_route("/docs", docs, methods=["GET"], include_in_schema=False)
    app.add_api_route("/redoc", redoc_page, methods=["GET"], include_in_schema=False)
