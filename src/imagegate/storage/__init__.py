"""The storage seam: where PNG bytes live. ``local`` now; S3 later, behind the same Protocol."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from imagegate.settings import Settings


class Storage(Protocol):
    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes:
        """The stored bytes; raises :class:`imagegate.errors.ImageNotFound` when absent."""
        ...

    def delete(self, key: str) -> None: ...

    def check_writable(self) -> None:
        """Raise when the storage cannot take a write (the readiness probe calls it)."""


def open_storage(settings: Settings) -> Storage:
    from imagegate.storage.local import LocalStorage

    return LocalStorage(settings.data_dir / "images")
