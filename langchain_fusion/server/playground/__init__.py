"""The browser playground `serve` shows at `/`: static files shipped in the wheel.

The page is plain HTML, CSS and JavaScript modules (no build step, nothing from a CDN), and
it talks to the server only through the public API (`GET /v1/models`, `POST /v1/responses`
streamed), so it works offline and is a live client of the gateway.

The files themselves are public, as a hosted playground's are: they hold no data and no
key, and a browser cannot send a bearer key when it opens a URL. Every API call the page
makes carries the server key the user types (kept in `sessionStorage`), and is refused
without it when the server has keys. A strict Content-Security-Policy (same origin only,
no inline script) backs up the page's own rule of never turning model text into HTML.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from langchain_fusion.contract.presets import PRESETS
from langchain_fusion.server.errors import GatewayError

STATIC = Path(__file__).with_name("static")
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _assets() -> dict[str, Path]:
    """The files the page may load, by name: a fixed set, so no path reaches elsewhere."""
    return {p.name: p for p in STATIC.iterdir() if p.suffix in _TYPES and p.name != "index.html"}


def playground_routes() -> list[BaseRoute]:
    """`/` (the page), `/playground/<file>` (its scripts and styles), and
    `/playground/presets.json` (the named panels, so that the preset picker can fill in
    the panel and the analyst as the request will name them)."""
    assets = _assets()

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type=_TYPES[".html"], headers=HEADERS)

    async def asset(request: Request) -> Response:
        path = assets.get(request.path_params["name"])
        if path is None:
            return GatewayError(404, f"no endpoint GET {request.url.path}").response()
        return FileResponse(path, media_type=_TYPES[path.suffix], headers=HEADERS)

    async def presets(request: Request) -> Response:
        body = {name: preset.model_dump(mode="json") for name, preset in PRESETS.items()}
        return JSONResponse(body, headers=HEADERS)

    return [
        Route("/", page, methods=["GET"]),
        Route("/playground/presets.json", presets, methods=["GET"]),
        Route("/playground/{name}", asset, methods=["GET"]),
    ]
