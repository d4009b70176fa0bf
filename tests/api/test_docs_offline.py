"""``/docs`` and ``/redoc`` work without internet: every asset they load is served by the gateway."""

from __future__ import annotations

import re


def _assets(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html) + re.findall(r"url:\s*'([^']+)'", html)


def test_swagger_ui_loads_only_local_assets_and_they_are_served(client):
    page = client.get("/docs")
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    urls = _assets(page.text)
    scripts = [u for u in urls if u.endswith((".js", ".css", ".png"))]
    assert scripts, page.text
    assert not [u for u in urls if u.startswith(("http:", "https:", "//"))], urls  # no CDN, no other host
    for url in scripts:
        asset = client.get(url)  # no API key: the docs are public
        assert asset.status_code == 200, url
        assert len(asset.content) > 1000, url
    js = next(u for u in scripts if u.endswith("swagger-ui-bundle.js"))
    assert "javascript" in client.get(js).headers["content-type"]
    assert "/openapi.json" in page.text and client.get("/openapi.json").status_code == 200


def test_redoc_loads_only_local_assets(client):
    page = client.get("/redoc")
    assert page.status_code == 200
    urls = _assets(page.text)
    assert not [u for u in urls if u.startswith(("http:", "https:", "//"))], urls
    assert any(u.endswith("redoc.standalone.js") for u in urls)
    for url in urls:
        if url.endswith(".js"):
            assert client.get(url).status_code == 200, url
