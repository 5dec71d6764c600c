"""The storage seam: where PNG bytes live. Local files (``local``) by default, or an S3
bucket (``s3``) with ``IMAGEGATE_STORAGE_URL=s3://bucket/prefix``."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from imagegate.errors import StorageUnavailable

__all__ = ["MAX_PRESIGNED_S", "Presigner", "Storage", "StorageUnavailable"]

if TYPE_CHECKING:
    from imagegate.settings import Settings

MAX_PRESIGNED_S = 7 * 24 * 3600  # the longest a SigV4 presigned URL may live
Presigner = Callable[[str], str]  # a storage key -> a URL that reads it without us


class Storage(Protocol):
    """Keys come from :mod:`imagegate.storage.keys`, never from clients; a key that would
    leave the storage's root is refused as :class:`imagegate.errors.ImageNotFound`."""

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes:
        """The stored bytes; raises :class:`imagegate.errors.ImageNotFound` when absent."""
        ...

    def delete(self, key: str) -> None:
        """Remove the key; a missing one is no error."""

    def delete_prefix(self, prefix: str) -> None:
        """Remove every key that starts with ``prefix`` (one job's previews, say)."""

    def check_writable(self) -> None:
        """Raise when the storage cannot take a write (the readiness probe calls it)."""


@runtime_checkable
class Presigning(Protocol):
    """A storage that can hand out URLs of its own (S3 presigned GETs)."""

    def presigned_url(self, key: str, expires_s: int) -> str: ...


def open_storage(settings: Settings) -> Storage:
    if settings.storage_url is not None:
        try:
            from imagegate.storage.s3 import open_s3
        except ModuleNotFoundError as exc:
            raise ValueError("IMAGEGATE_STORAGE_URL=s3://… needs the s3 extra (boto3)") from exc
        return open_s3(settings)
    from imagegate.storage.local import LocalStorage

    return LocalStorage(settings.data_dir / "images")


def open_presigner(settings: Settings, storage: Storage) -> Presigner | None:
    """Direct links into the storage with ``IMAGEGATE_S3_PRESIGNED_URLS``, else None: the
    API's own signed URLs, which read the bytes through the API."""
    if not settings.s3_presigned_urls:
        return None
    if not isinstance(storage, Presigning):
        raise ValueError("IMAGEGATE_S3_PRESIGNED_URLS needs IMAGEGATE_STORAGE_URL=s3://…")
    expires_s = min(settings.signed_url_ttl_s, MAX_PRESIGNED_S)
    return partial(storage.presigned_url, expires_s=expires_s)
