"""The output gate: every generated image is checked before anyone can fetch it.

A flagged image is never stored where the API serves images from: it goes to a
quarantine area for reviewers, the verdict is kept in the job's ``moderation``, and the
decision is audited. Then the job fails with ``output_blocked``, or, with
``IMAGEGATE_OUTPUT_FLAGGED=review``, waits in ``pending_review``: a reviewer who approves
it has its images released from quarantine (:class:`imagegate.storage.quarantine.Quarantine`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from imagegate.jobs.audit import AuditEntry
from imagegate.jobs.models import ErrorInfo, Job
from imagegate.storage import Storage
from imagegate.storage.quarantine import Quarantine

if TYPE_CHECKING:
    from PIL.Image import Image

    from imagegate.safety.verdict import Verdict

ImageCheck = Callable[["Image"], "Verdict"]
OUTPUT_BLOCKED = ErrorInfo(
    "output_blocked", "The generated image was withheld by the output content policy."
)


@dataclass(frozen=True, slots=True)
class Screened:
    blocked: bool
    moderation: dict[str, Any] | None
    audit: AuditEntry | None = None


class OutputGate:
    def __init__(
        self, check: ImageCheck | None, storage: Storage, *, hold_for_review: bool = False
    ) -> None:
        self.check = check
        self.vault = Quarantine(storage)
        self.hold_for_review = hold_for_review

    def screen(self, job: Job, images: Sequence[Image]) -> Screened:
        if self.check is None:
            return Screened(False, None)
        verdicts = [self.check(image) for image in images]
        results = [_result(verdict) for verdict in verdicts]
        moderation = (job.moderation or {}) | {"output": results}
        flagged = [v for v in verdicts if v.flagged]
        if not flagged:
            return Screened(False, moderation)
        action = "review" if self.hold_for_review else "block"
        return Screened(True, moderation, _audit(job, flagged, action))

    def passes(self, image: Image) -> bool:
        return self.check is None or not self.check(image).flagged

    def quarantine(self, job: Job, pngs: Sequence[bytes]) -> None:
        """Keep the withheld images for reviewers, outside anything the API serves."""
        self.vault.keep(job, pngs)


def _result(verdict: Verdict) -> dict[str, Any]:
    return {
        "flagged": verdict.flagged,
        "categories": sorted(verdict.categories),
        "reasons": list(verdict.reasons),
        "scores": {label: s for scores in verdict.scores.values() for label, s in scores.items()},
    }


def _audit(job: Job, flagged: Sequence[Verdict], action: str) -> AuditEntry:
    categories = sorted({c for v in flagged for c in v.categories})
    reasons = list(dict.fromkeys(r for v in flagged for r in v.reasons))
    return AuditEntry(
        owner=job.owner,
        prompt=job.spec.prompt,
        normalized_prompt=job.spec.full_prompt,
        stage="output",
        action=action,
        categories=tuple(categories),
        reasons=tuple(reasons),
        job_id=job.id,
    )
