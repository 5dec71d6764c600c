"""Withheld images: kept for reviewers where the image routes never look, and released
into the served area when a reviewer approves them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from imagegate.errors import ImageNotFound
from imagegate.jobs.models import ImageRecord, Job
from imagegate.storage import Storage
from imagegate.storage.keys import image_key, preview_key, quarantine_key


class Quarantine:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def keep(self, job: Job, pngs: Sequence[bytes]) -> None:
        """Withhold a job's images, and drop its previews: they show the same."""
        for index, png in enumerate(pngs):
            self.storage.put(quarantine_key(job.id, index), png)
        for step in range(1, job.spec.steps + 1):
            self.storage.delete(preview_key(job.id, step))

    def get(self, job: Job, index: int) -> bytes:
        """A withheld image's PNG (``ImageNotFound`` if there is none)."""
        if index < 0:
            raise ImageNotFound(image_id=f"{job.id}/{index}")
        return self.storage.get(quarantine_key(job.id, index))

    def release(self, job: Job) -> list[ImageRecord]:
        """Copies of a held job's images where the API serves them from. The withheld
        files stay until the approval is recorded (see :meth:`settle`)."""
        records: list[ImageRecord] = []
        try:
            for index in range(len((job.moderation or {}).get("output") or ())):
                png, image_id = self.get(job, index), str(uuid.uuid4())
                key = image_key(job.id, image_id)
                self.storage.put(key, png)
                spec = job.spec
                records.append(
                    ImageRecord(image_id, job.id, index, key, spec.width, spec.height, len(png))
                )
        except ImageNotFound:  # another reviewer's approval released them first
            self.settle(job, records, recorded=False)
            raise
        return records

    def settle(self, job: Job, released: Sequence[ImageRecord], *, recorded: bool) -> None:
        """After the decision: drop the withheld files if the release was recorded, else
        the copies (another reviewer decided first)."""
        if recorded:
            for index in range(len(released)):
                self.storage.delete(quarantine_key(job.id, index))
        else:
            for record in released:
                self.storage.delete(record.storage_key)
