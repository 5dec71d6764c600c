"""The web playground at ``/playground``: a static page built on the JS client package, whose
bundled module (``client.js``) is checked in, so the page works with no npm. Same-origin, so
its state-changing requests carry our own ``Origin`` and pass the browser guard."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from imagegate.errors import NotFound

STATIC = Path(__file__).resolve().parent.parent / "static" / "playground"
MEDIA_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "playground.js": "text/javascript; charset=utf-8",
    "client.js": "text/javascript; charset=utf-8",
    "playground.css": "text/css; charset=utf-8",
}
# Scripts, styles and calls from us only; images may come from a bucket's presigned URLs.
POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src * data: blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)

router = APIRouter(include_in_schema=False)


@router.api_route("/playground", methods=["GET", "HEAD"])
def playground() -> FileResponse:
    return _file("index.html")


@router.get("/playground/")
def playground_slash() -> RedirectResponse:
    return RedirectResponse("/playground", status_code=308)


@router.api_route("/playground/{name}", methods=["GET", "HEAD"])
def playground_file(name: str) -> FileResponse:
    if name not in MEDIA_TYPES:
        raise NotFound("The playground has no such file.")
    return _file(name)


def _file(name: str) -> FileResponse:
    headers = {
        "Content-Security-Policy": POLICY,
        "Cache-Control": "no-cache",  # revalidated (ETag): a new version shows at once
        "X-Content-Type-Options": "nosniff",
    }
    return FileResponse(STATIC / name, media_type=MEDIA_TYPES[name], headers=headers)
