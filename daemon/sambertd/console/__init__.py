"""The browser console: ``GET /console``, a page to try voices from a browser.

Three static files ship inside the package (no build step, no CDN, no web fonts: servers
here are air-gapped) and are served from memory, never from a path the client names:
``/console/{file}`` answers only the names in :data:`FILES`.  The page calls the public API
(``/v1/voices``, ``POST /v1/tts``) with the token the user types; it keeps the token in a
JavaScript variable only, so the console needs no token itself and adds no new way in.

Off by default (``[console] enabled``).  The switch is read from the request's runtime, so
a reload turns the console on or off; while off, ``/console*`` is the same JSON 404 as any
unknown path.  The allowlist (``auth.allow``) applies as to every route (``routes.py``).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from aiohttp import web

from sambertd.state import RUNTIME

# name → Content-Type; nothing else under /console/ is served.
FILES = {
    "index.html": "text/html; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
}
# Script and style only from these files (no inline code: an injected string cannot run);
# audio from the object URL the page makes of the API's answer; API calls to this origin
# (and reads of that object URL, which the page itself created).
CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "media-src 'self' blob:",
        "connect-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # The page is small and changes with the daemon: a stale copy after an upgrade would
    # call the API with an old idea of it.
    "Cache-Control": "no-store",
}


@cache
def _read(name: str) -> bytes:
    """A shipped file's bytes, read once (they cannot change under a running daemon)."""
    return resources.files(__name__).joinpath(name).read_bytes()


def _serve(request: web.Request, name: str) -> web.Response:
    if not request[RUNTIME].config.console.enabled or name not in FILES:
        raise web.HTTPNotFound()  # the middleware answers it as JSON, like any unknown path
    return web.Response(body=_read(name), headers={"Content-Type": FILES[name], **HEADERS})


async def page(request: web.Request) -> web.Response:
    """``GET /console``: the page itself."""
    return _serve(request, "index.html")


async def asset(request: web.Request) -> web.Response:
    """``GET /console/{file}``: its stylesheet and script (``index.html`` too, harmless)."""
    return _serve(request, request.match_info["file"])


def add_routes(app: web.Application) -> None:
    """Register the console's two routes (always: whether they answer is decided per
    request, so a reload can switch the console without rebuilding the app)."""
    app.router.add_get("/console", page, allow_head=False)
    app.router.add_get("/console/{file}", asset, allow_head=False)
