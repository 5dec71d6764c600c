"""Request dependencies: the runtime, the caller, and links for responses."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from imagegate.api.links import Links
from imagegate.intake import Caller
from imagegate.jobs.models import LOCAL_OWNER
from imagegate.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_owner() -> str:
    """Who is calling. One local owner until authentication exists."""
    return LOCAL_OWNER


def get_caller(request: Request, owner: Annotated[str, Depends(get_owner)]) -> Caller:
    """The owner and client address, for the audit log."""
    return Caller(owner, request.client.host if request.client else None)


def get_links(request: Request, runtime: Annotated[Runtime, Depends(get_runtime)]) -> Links:
    """Links based on ``IMAGEGATE_PUBLIC_URL``, or else on the request's own address."""
    return Links(runtime.settings.public_url or str(request.base_url), runtime.signer)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
OwnerDep = Annotated[str, Depends(get_owner)]
LinksDep = Annotated[Links, Depends(get_links)]
CallerDep = Annotated[Caller, Depends(get_caller)]
