"""Image bytes, served only at a valid signed URL; and a tenant's images, for a gallery."""

from __future__ import annotations

import hashlib
import time
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response

from imagegate.api.deps import LinksDep, Reader, RuntimeDep
from imagegate.api.image_headers import image_headers
from imagegate.api.openapi import headers
from imagegate.api.problems import documented
from imagegate.api.submission import end_user
from imagegate.errors import ImageNotFound
from imagegate.storage.encoding import FORMATS

router = APIRouter(prefix="/v1/images", tags=["images"])


@router.get("", responses=documented(401, 403, 422))
def list_images(
    runtime: RuntimeDep,
    principal: Reader,
    links: LinksDep,
    user: Annotated[str | None, Query(max_length=200, description="One end user's images.")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: str | None = None,
) -> dict[str, Any]:
    """The tenant's images (or one end user's), newest first, each with its prompt and job:
    a gallery. A browser token lists its own user's images only."""
    found, next_cursor = runtime.store.gallery(
        principal.tenant, end_user(principal, user), limit, cursor
    )
    data = [
        {
            "id": image.id,
            "url": links.image(image),
            "width": image.width,
            "height": image.height,
            "job_id": job.id,
            "prompt": job.spec.prompt,
            "style": job.spec.style,
            "seed": job.spec.seed,
            "user": job.end_user,
            "created_at": job.created_at,
        }
        for image, job in found
    ]
    return {"data": data, "next_cursor": next_cursor}


@router.get(
    "/{image_id}",
    response_class=Response,
    responses=documented(
        403,
        404,
        answers={
            200: {
                "content": {kind: {} for kind in FORMATS.values()},
                "description": "The image, in the job's output format.",
            }
            | headers("ETag", "Cache-Control", "Content-Disposition"),
            304: {"description": "Not modified: the If-None-Match tag is the image's."}
            | headers("ETag", "Cache-Control"),
        },
    ),
)
def get_image(
    image_id: str,
    runtime: RuntimeDep,
    expires: Annotated[int, Query()],
    sig: Annotated[str, Query(max_length=128)],
    kid: Annotated[str | None, Query(max_length=16)] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """The image, with a strong ``ETag`` (its content's SHA-256); ``If-None-Match`` with
    that tag answers 304 with no body. It never changes, so it may be cached privately as
    long as its URL is valid."""
    runtime.signer.verify(image_id, expires, sig, kid)
    image = runtime.store.get_image(image_id)
    if image is None:
        raise ImageNotFound(image_id=image_id)
    max_age = max(0, expires - int(time.time()))
    headers = image_headers(image_id, f"private, max-age={max_age}, immutable", image.content_type)
    data = None
    if image.sha256 is None:  # stored before content addressing: hash it now
        data = runtime.storage.get(image.storage_key)
        digest = hashlib.sha256(data).hexdigest()
    else:
        digest = image.sha256
    headers["ETag"] = f'"{digest[:32]}"'
    if if_none_match is not None and _matches(if_none_match, headers["ETag"]):
        return Response(status_code=304, headers=headers)
    if data is None:
        data = runtime.storage.get(image.storage_key)
    return Response(data, media_type=image.content_type, headers=headers)


def _matches(if_none_match: str, etag: str) -> bool:
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag in tags
