"""Absolute, signed URLs for responses, events and webhook payloads."""

from __future__ import annotations

from imagegate.jobs.models import ImageRecord
from imagegate.storage.signing import UrlSigner


class Links:
    def __init__(self, base: str, signer: UrlSigner) -> None:
        self.base = base.rstrip("/")
        self.signer = signer

    def image(self, image: ImageRecord) -> str:
        return self.image_id(image.id)

    def image_id(self, image_id: str) -> str:
        return f"{self.base}/v1/images/{image_id}?{self.signer.query(image_id)}"

    def preview(self, job_id: str, step: int) -> str:
        subject = f"preview/{job_id}/{step}"
        return f"{self.base}/v1/jobs/{job_id}/previews/{step}?{self.signer.query(subject)}"

    def status(self, job_id: str) -> str:
        return f"{self.base}/status/{job_id}"

    def job(self, job_id: str) -> str:
        return f"{self.base}/v1/jobs/{job_id}"
