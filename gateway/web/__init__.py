"""The trading page: `GET /` and its static files under `/static/` (docs/WEB.md).

Plain HTML, CSS and JavaScript modules shipped as package data: no build step, no Node at
run time. The page talks to the same public endpoints as any client (/api/*, /ws/md,
/ws/trade); the gateway only serves its files, with headers that keep the page to its own
origin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from aiohttp import web

STATIC_DIR: Final = Path(__file__).parent / "static"

# Scripts only from this origin (no inline script, no eval); connections only back to it.
# Inline styles are allowed for the chart library, which sizes its canvases with them.
CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self' ws: wss:; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'"
)
PAGE_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Small files, changed with every release of the gateway: always revalidate.
    "Cache-Control": "no-cache",
}


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)


async def _page_headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path.startswith("/static/"):
        response.headers.update(PAGE_HEADERS)


def install(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC_DIR, follow_symlinks=False)
    app.on_response_prepare.append(_page_headers)
