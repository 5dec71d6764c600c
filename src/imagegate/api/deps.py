"""Request dependencies: the runtime, the caller, and absolute URLs for responses."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from imagegate.jobs.models import LOCAL_OWNER, ImageRecord
from imagegate.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_owner() -> str:
    """Who is calling. One local owner until authentication exists."""
    return LOCAL_OWNER


class Links:
    """Absolute URLs, based on ``IMAGEGATE_PUBLIC_URL`` or else the request's own address."""

    def __init__(self, request: Request, runtime: Runtime) -> None:
        public = runtime.settings.public_url
        self.base = (public or str(request.base_url)).rstrip("/")
        self.signer = runtime.signer

    def image(self, image: ImageRecord) -> str:
        return f"{self.base}/v1/images/{image.id}?{self.signer.query(image.id)}"

    def status(self, job_id: str) -> str:
        return f"{self.base}/status/{job_id}"

    def job(self, job_id: str) -> str:
        return f"{self.base}/v1/jobs/{job_id}"


def get_links(request: Request, runtime: Annotated[Runtime, Depends(get_runtime)]) -> Links:
    return Links(request, runtime)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
OwnerDep = Annotated[str, Depends(get_owner)]
LinksDep = Annotated[Links, Depends(get_links)]
