"""Image bytes, served only at a valid signed URL; and a tenant's images, for a gallery."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from imagegate.api.deps import LinksDep, Reader, RuntimeDep
from imagegate.api.image_headers import image_headers
from imagegate.api.problems import documented
from imagegate.api.submission import end_user
from imagegate.errors import ImageNotFound

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
    responses={200: {"content": {"image/png": {}}, "description": "The PNG."}},
)
def get_image(
    image_id: str,
    runtime: RuntimeDep,
    expires: Annotated[int, Query()],
    sig: Annotated[str, Query(max_length=128)],
    kid: Annotated[str | None, Query(max_length=16)] = None,
) -> Response:
    runtime.signer.verify(image_id, expires, sig, kid)
    image = runtime.store.get_image(image_id)
    if image is None:
        raise ImageNotFound(image_id=image_id)
    return Response(
        runtime.storage.get(image.storage_key),
        media_type="image/png",
        headers=image_headers(image_id, "private, max-age=3600, immutable"),
    )
