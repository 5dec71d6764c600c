"""Image bytes, served only at a valid signed URL."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from imagegate.api.deps import RuntimeDep
from imagegate.api.image_headers import image_headers
from imagegate.errors import ImageNotFound

router = APIRouter(prefix="/v1/images", tags=["images"])


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
