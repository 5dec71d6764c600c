"""Absolute, signed URLs for responses, events and webhook payloads.

Image and preview links are the API's own signed URLs, or, given a ``presign`` (with
``IMAGEGATE_S3_PRESIGNED_URLS``), URLs straight into the storage, so the bytes never pass
through the API. The API's image routes keep answering the signed URLs either way.
"""

from __future__ import annotations

from imagegate.jobs.models import ImageRecord
from imagegate.storage import Presigner
from imagegate.storage.keys import image_key, preview_key
from imagegate.storage.signing import UrlSigner


class Links:
    def __init__(self, base: str, signer: UrlSigner, presign: Presigner | None = None) -> None:
        self.base = base.rstrip("/")
        self.signer = signer
        self.presign = presign

    def image(self, image: ImageRecord) -> str:
        return self.image_id(image.job_id, image.id, image.storage_key)

    def image_id(self, job_id: str, image_id: str, storage_key: str | None = None) -> str:
        """An image known by its ids (and, in events since content addressing, its key)."""
        if self.presign is not None:
            return self.presign(storage_key or image_key(job_id, image_id))
        return f"{self.base}/v1/images/{image_id}?{self.signer.query(image_id)}"

    def preview(self, job_id: str, step: int) -> str:
        if self.presign is not None:
            return self.presign(preview_key(job_id, step))
        subject = f"preview/{job_id}/{step}"
        return f"{self.base}/v1/jobs/{job_id}/previews/{step}?{self.signer.query(subject)}"

    def status(self, job_id: str) -> str:
        return f"{self.base}/status/{job_id}"

    def job(self, job_id: str) -> str:
        return f"{self.base}/v1/jobs/{job_id}"
