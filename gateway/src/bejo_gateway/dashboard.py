"""The public dashboard at `/`: a static page (HTML, JavaScript, CSS and the vendored uPlot chart
library under `static/`) that reads only the public API (`/api/v1/stats`, `/api/v1/categories`,
`/api/v1/ocds/releases`). No login; nothing is fetched from anywhere else (see docs/dashboard.md).

The files are read once at start into memory (about 70 KB) and served from a fixed list, so no
request path ever reaches the file system.
"""

from __future__ import annotations

import hashlib
import mimetypes
from pathlib import Path

from aiohttp import web

from bejo_kit.errors import NotFound

STATIC = Path(__file__).parent / "static"
# The page may load its own files only: no inline script, no other origin.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}


class Asset:
    def __init__(self, path: Path) -> None:
        self.body = path.read_bytes()
        self.content_type = TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        self.etag = '"' + hashlib.sha256(self.body).hexdigest()[:20] + '"'


class Dashboard:
    def __init__(self, root: Path = STATIC) -> None:
        self.page = Asset(root / "index.html")
        self.assets = {
            path.relative_to(root).as_posix(): Asset(path)
            for path in sorted(root.rglob("*"))
            if path.is_file() and path.name != "index.html"
        }

    @staticmethod
    def _answer(request: web.Request, asset: Asset, cache: str) -> web.Response:
        headers = {"ETag": asset.etag, "Cache-Control": cache, "X-Content-Type-Options": "nosniff"}
        if request.headers.get("If-None-Match") == asset.etag:
            return web.Response(status=304, headers=headers)
        charset = "utf-8" if asset.content_type.startswith("text/") else None
        return web.Response(body=asset.body, content_type=asset.content_type, charset=charset, headers=headers)

    async def index(self, request: web.Request) -> web.StreamResponse:
        # Revalidated on every visit, so a new release's page (and its asset names) is seen at once.
        response = self._answer(request, self.page, "no-cache")
        response.headers["Content-Security-Policy"] = CSP
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    async def asset(self, request: web.Request) -> web.StreamResponse:
        asset = self.assets.get(request.match_info["name"])
        if asset is None:
            raise NotFound(f"no file {request.path}", code="not_found")
        return self._answer(request, asset, "public, max-age=300")


def install(app: web.Application) -> None:
    """`GET /` (the page) and `GET /static/{name}` (its files)."""
    dashboard = Dashboard()
    app.router.add_get("/", dashboard.index)
    app.router.add_get("/static/{name:.+}", dashboard.asset)
