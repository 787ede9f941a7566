"""``GET /``: a small web page to try the server with, shipped as one static file.

``static/index.html`` is the whole page (HTML, CSS and JavaScript, no build step, nothing loaded
from elsewhere): a text, a voice from ``GET /v1/audio/voices``, a format, an API key field, and
an audio element. mp3 and aac play as they stream (Media Source Extensions); the other formats are
fetched whole and played as a file. The page itself needs no API key (it holds no data); the
requests it makes send the one typed into it.
"""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

__all__ = ["page_routes"]

#: Read once when the server starts (a few kilobytes), never on the event loop afterwards.
_PAGE = resources.files(__package__).joinpath("static").joinpath("index.html").read_bytes()

#: Nothing but this server: the page loads no script, style or font from elsewhere, and plays
#: audio from ``blob:`` URLs (the MediaSource of a stream, or a whole response).
_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; connect-src 'self'; media-src 'self' blob:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
}


async def index(request: Request) -> Response:
    return HTMLResponse(_PAGE, headers=_HEADERS)


page_routes = [Route("/", index, methods=["GET"])]
