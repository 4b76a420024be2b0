"""The page's files: served at / and /static/, with headers that keep it to its origin."""

from __future__ import annotations

import re

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway import web as web_page


async def client() -> TestClient[web.Request, web.Application]:
    app = web.Application()
    web_page.install(app)
    c: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
    await c.start_server()
    return c


async def test_index_and_every_file_it_names_are_served() -> None:
    c = await client()
    try:
        resp = await c.get("/")
        assert resp.status == 200 and resp.content_type == "text/html"
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        html = await resp.text()
        paths = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
        assert len(paths) == 3
        modules = ["/static/js/app.js"]
        for path in paths:
            got = await c.get(path)
            assert got.status == 200, path
            assert "Content-Security-Policy" in got.headers
        # Every module the app imports, transitively, exists and is served as JavaScript.
        seen: set[str] = set()
        while modules:
            path = modules.pop()
            if path in seen:
                continue
            seen.add(path)
            got = await c.get(path)
            assert got.status == 200, path
            assert "javascript" in got.content_type, (path, got.content_type)
            for name in re.findall(r'from "\./([a-z]+\.js)"', await got.text()):
                modules.append(f"/static/js/{name}")
        assert len(seen) >= 8
        licence = await c.get("/static/vendor/lightweight-charts.LICENSE")
        assert licence.status == 200 and "Apache License" in await licence.text()
    finally:
        await c.close()


async def test_nothing_outside_the_static_folder() -> None:
    c = await client()
    try:
        for path in ("/static/../__init__.py", "/static/%2e%2e/__init__.py", "/static/",
                     "/static/js/", "/static/nope.js"):
            resp = await c.get(path)
            assert resp.status in (403, 404), path
    finally:
        await c.close()


def test_every_error_code_has_words() -> None:
    from exchange.model.codes import Code

    text = (web_page.STATIC_DIR / "js" / "errors.js").read_text()
    described = {int(code) for code in re.findall(r"^\s*(\d{4}): \"[A-Z]", text, re.M)}
    assert described == {int(code) for code in Code if code is not Code.OK}
