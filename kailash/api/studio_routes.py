"""The Studio web UI's files, served at ``/studio`` (its page) and ``/studio/static/`` (its assets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import FileResponse, RedirectResponse

from kailash.api.responses import ApiError

__all__ = ["install", "STUDIO_DIR"]

STUDIO_DIR = Path(__file__).parent / "static" / "studio"


def install(app: Any, gw: Any) -> None:
    """Add the Studio page and its assets to ``app`` (no path outside the Studio directory is served)."""

    @app.get("/", include_in_schema=False)
    async def root(request: Request) -> Any:
        """A browser goes to the Studio; an API client gets where things are."""
        if "text/html" in request.headers.get("accept", ""):
            return RedirectResponse("/studio", 307)
        return {"studio": "/studio", "docs": "/docs", "openapi": "/openapi.json", "health": "/health",
                "workflows": "/workflows", "runs": "/runs"}

    @app.get("/studio", include_in_schema=False)
    @app.get("/studio/", include_in_schema=False)
    async def studio() -> Any:
        index = STUDIO_DIR / "index.html"
        if not index.is_file():
            raise ApiError(404, "studio_not_installed", "the Studio assets are not installed with this Kailash")
        return FileResponse(index, media_type="text/html")

    @app.get("/studio/static/{path:path}", include_in_schema=False)
    async def studio_asset(path: str) -> Any:
        base = STUDIO_DIR.resolve()
        target = (base / path).resolve()
        if not target.is_relative_to(base) or not target.is_file():
            raise ApiError(404, "not_found", f"no Studio asset '{path}'")
        media = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml",
                 ".json": "application/json"}.get(target.suffix)
        return FileResponse(target, media_type=media)
