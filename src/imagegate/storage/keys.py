"""Where things live in storage: one naming scheme, shared by writers and readers."""

from __future__ import annotations


def image_key(job_id: str, image_id: str) -> str:
    return f"{job_id[:2]}/{job_id}/{image_id}.png"


def preview_key(job_id: str, step: int) -> str:
    return f"previews/{job_id[:2]}/{job_id}/{step}.png"


def quarantine_key(job_id: str, index: int) -> str:
    """A withheld image: kept for reviewers, never served by the image routes."""
    return f"quarantine/{job_id[:2]}/{job_id}/{index}.png"
