"""Where things live in storage: one naming scheme, shared by writers and readers."""

from __future__ import annotations


def image_key(job_id: str, image_id: str) -> str:
    return f"{job_id[:2]}/{job_id}/{image_id}.png"


def preview_key(job_id: str, step: int) -> str:
    return f"previews/{job_id[:2]}/{job_id}/{step}.png"


def quarantine_key(job_id: str, index: int) -> str:
    """A withheld image: kept for reviewers, never served by the image routes."""
    return f"quarantine/{job_id[:2]}/{job_id}/{index}.png"


EXTENSIONS = {"image/png": "png", "image/webp": "webp", "image/jpeg": "jpg"}


def blob_key(sha256: str, content_type: str) -> str:
    """An image file named by its content, shared by every job whose image it is."""
    return f"blobs/{sha256[:2]}/{sha256}.{EXTENSIONS[content_type]}"


def job_prefix(area: str, job_id: str) -> str:
    """Where a job's own files of one kind (``previews``, ``quarantine``) live."""
    return f"{area}/{job_id[:2]}/{job_id}/"


def content_type_of(key: str) -> str:
    """The media type of a stored image, from its name (PNG for the older names)."""
    extension = key.rsplit(".", 1)[-1]
    return next((kind for kind, ext in EXTENSIONS.items() if ext == extension), "image/png")
