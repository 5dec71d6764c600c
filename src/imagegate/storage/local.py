"""Images as files under one directory, written atomically (temp file, then rename)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from imagegate.errors import ImageNotFound


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ImageNotFound()  # the key is ours, never the client's to see
        return path

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, draft = tempfile.mkstemp(dir=path.parent, prefix=".put-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(draft, path)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise ImageNotFound() from exc

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def check_writable(self) -> None:
        fd, probe = tempfile.mkstemp(dir=self.root, prefix=".ready-")
        os.close(fd)
        os.unlink(probe)

    def delete_prefix(self, prefix: str) -> None:
        """Every file under ``prefix`` (a folder of ours, ending in ``/``)."""
        shutil.rmtree(self._path(prefix), ignore_errors=True)
