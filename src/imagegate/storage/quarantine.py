"""Withheld images: kept for reviewers where the image routes never look, and released
into the served area when a reviewer approves them."""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Sequence

from imagegate.errors import ImageNotFound
from imagegate.jobs.models import ImageRecord, Job
from imagegate.storage import Storage
from imagegate.storage.blobs import BlobWriter
from imagegate.storage.encoding import FORMATS, placeholder
from imagegate.storage.keys import job_prefix, quarantine_key


class Quarantine:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def keep(self, job: Job, pngs: Sequence[bytes]) -> None:
        """Withhold a job's images, and drop its previews: they show the same."""
        for index, png in enumerate(pngs):
            self.storage.put(quarantine_key(job.id, index), png)
        self.storage.delete_prefix(job_prefix("previews", job.id))

    def get(self, job: Job, index: int) -> bytes:
        """A withheld image's PNG (``ImageNotFound`` if there is none)."""
        if index < 0:
            raise ImageNotFound(image_id=f"{job.id}/{index}")
        return self.storage.get(quarantine_key(job.id, index))

    def release(self, job: Job, writer: BlobWriter) -> list[ImageRecord]:
        """Store a held job's images where the API serves them from (content addressed,
        like any other). The withheld files stay until the approval is recorded (see
        :meth:`settle`)."""
        from PIL import Image as PILImage

        records: list[ImageRecord] = []
        content_type = FORMATS[job.spec.output_format]
        for index in range(len((job.moderation or {}).get("output") or ())):
            data = self.get(job, index)
            sha256 = hashlib.sha256(data).hexdigest()
            records.append(
                ImageRecord(
                    id=str(uuid.uuid4()),
                    job_id=job.id,
                    index=index,
                    storage_key=writer.put(data, sha256, content_type),
                    width=job.spec.width,
                    height=job.spec.height,
                    size_bytes=len(data),
                    content_type=content_type,
                    sha256=sha256,
                    placeholder=placeholder(PILImage.open(io.BytesIO(data))),
                )
            )
        return records

    def settle(self, job: Job, released: Sequence[ImageRecord], *, recorded: bool) -> None:
        """After the decision: drop the withheld files if the release was recorded. If it
        was not (another reviewer decided first), the released files may be another
        job's too: the sweeper deletes them once nothing refers to them."""
        if recorded:
            self.storage.delete_prefix(job_prefix("quarantine", job.id))
