"""Writing content-addressed image files: note the write, then put the bytes (see
:mod:`imagegate.jobs.blobs` for why the note comes first)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine

from imagegate.jobs import blobs
from imagegate.jobs.database import WRITE
from imagegate.storage import Storage
from imagegate.storage.keys import blob_key


class BlobWriter:
    def __init__(self, storage: Storage, engine: Engine) -> None:
        self.storage = storage
        self.engine = engine

    def put(self, data: bytes, sha256: str, content_type: str) -> str:
        """Store the bytes under their hash (once, however many jobs made them); the key."""
        key = blob_key(sha256, content_type)
        with self.engine.execution_options(**WRITE).begin() as conn:
            blobs.pending(conn, key, len(data), datetime.now(UTC))
        self.storage.put(key, data)
        return key
