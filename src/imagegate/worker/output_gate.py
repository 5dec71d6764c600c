"""The output gate: every generated image is checked before anyone can fetch it.

A flagged image is never stored where the API serves images from: it goes to a
quarantine area for reviewers, the job fails with ``output_blocked``, the verdict is kept
in the job's ``moderation``, and the refusal is audited.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PIL.Image import Image

from imagegate.jobs.audit import AuditEntry
from imagegate.jobs.models import ErrorInfo, Job
from imagegate.storage import Storage
from imagegate.storage.keys import preview_key
from imagegate.storage.png import encode_png

if TYPE_CHECKING:
    from imagegate.safety.verdict import Verdict

ImageCheck = Callable[[Image], "Verdict"]
OUTPUT_BLOCKED = ErrorInfo(
    "output_blocked", "The generated image was withheld by the output content policy."
)


@dataclass(frozen=True, slots=True)
class Screened:
    blocked: bool
    moderation: dict[str, Any] | None
    audit: AuditEntry | None = None


class OutputGate:
    def __init__(self, check: ImageCheck | None, storage: Storage) -> None:
        self.check = check
        self.storage = storage

    def screen(self, job: Job, images: Sequence[Image]) -> Screened:
        if self.check is None:
            return Screened(False, None)
        verdicts = [self.check(image) for image in images]
        results = [_result(verdict) for verdict in verdicts]
        moderation = (job.moderation or {}) | {"output": results}
        flagged = [v for v in verdicts if v.flagged]
        if not flagged:
            return Screened(False, moderation)
        return Screened(True, moderation, _audit(job, flagged))

    def passes(self, image: Image) -> bool:
        return self.check is None or not self.check(image).flagged

    def quarantine(self, job: Job, images: Sequence[Image]) -> None:
        """Keep the withheld images for reviewers, outside anything the API serves."""
        for index, image in enumerate(images):
            key = f"quarantine/{job.id[:2]}/{job.id}/{index}.png"
            self.storage.put(key, encode_png(image, {"job_id": job.id}))
        for step in range(1, job.spec.steps + 1):  # its previews go too: they show the same
            self.storage.delete(preview_key(job.id, step))


def _result(verdict: Verdict) -> dict[str, Any]:
    return {
        "flagged": verdict.flagged,
        "reasons": list(verdict.reasons),
        "scores": {label: s for scores in verdict.scores.values() for label, s in scores.items()},
    }


def _audit(job: Job, flagged: Sequence[Verdict]) -> AuditEntry:
    categories = sorted({c for v in flagged for c in v.categories})
    reasons = list(dict.fromkeys(r for v in flagged for r in v.reasons))
    return AuditEntry(
        owner=job.owner,
        prompt=job.spec.prompt,
        normalized_prompt=job.spec.full_prompt,
        stage="output",
        action="block",
        categories=tuple(categories),
        reasons=tuple(reasons),
        job_id=job.id,
    )
