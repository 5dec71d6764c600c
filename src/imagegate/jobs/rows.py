"""Mapping between SQL rows and the domain records, and list cursors."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from imagegate.errors import InvalidField
from imagegate.jobs.models import (
    Cost,
    ErrorInfo,
    GenerationMeta,
    ImageRecord,
    Job,
    JobSpec,
    Progress,
    Review,
)
from imagegate.jobs.states import Status

_SPEC = tuple(JobSpec.__dataclass_fields__)


def utc(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every time in ImageGate is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def spec_values(spec: JobSpec) -> dict[str, Any]:
    return {
        "prompt": spec.prompt,
        "full_prompt": spec.full_prompt,
        "style": spec.style,
        "negative_prompt": spec.negative_prompt,
        "width": spec.width,
        "height": spec.height,
        "steps": spec.steps,
        "guidance": spec.guidance,
        "seed": spec.seed,
        "n": spec.n,
        "priority": spec.priority,
        "output_format": spec.output_format,
        "output_compression": spec.output_compression,
    }


def job_from_row(row: Mapping[Any, Any], images: Iterable[ImageRecord] = ()) -> Job:
    return Job(
        id=row["id"],
        owner=row["owner"],
        spec=JobSpec(**{name: row[name] for name in _SPEC}),
        status=Status(row["status"]),
        attempts=row["attempts"],
        created_at=_required(row["created_at"]),
        started_at=utc(row["started_at"]),
        finished_at=utc(row["finished_at"]),
        error=_error(row),
        meta=generation_meta(row),
        progress=_progress(row),
        cancel_requested=bool(row["cancel_requested"]),
        images=tuple(images),
        webhook_url=row["webhook_url"],
        moderation=row["moderation"],
        review=_review(row),
        key_id=row["key_id"],
        end_user=row["end_user"],
        cost=_cost(row),
        cache=row["cache_status"],
    )


def _cost(row: Mapping[Any, Any]) -> Cost | None:
    if row["cost_currency"] is None:
        return None
    if row["cost_micros"] is not None:
        return Cost(row["cost_micros"], row["cost_currency"], estimated=False)
    return Cost(row["cost_estimate_micros"] or 0, row["cost_currency"], estimated=True)


def image_from_row(row: Mapping[Any, Any]) -> ImageRecord:
    return ImageRecord(
        id=row["id"],
        job_id=row["job_id"],
        index=row["idx"],
        storage_key=row["storage_key"],
        width=row["width"],
        height=row["height"],
        size_bytes=row["size_bytes"],
        content_type=row["content_type"],
        sha256=row["sha256"],
        placeholder=row["placeholder"],
    )


def _required(moment: datetime | None) -> datetime:
    aware = utc(moment)
    assert aware is not None
    return aware


def _error(row: Mapping[Any, Any]) -> ErrorInfo | None:
    if row["error_code"] is None:
        return None
    return ErrorInfo(row["error_code"], row["error_message"] or "", bool(row["error_retryable"]))


def generation_meta(row: Mapping[Any, Any]) -> GenerationMeta | None:
    """How the job's images were made; None before it ran."""
    if row["model"] is None:
        return None
    return GenerationMeta(
        seed=row["seed"],
        model=row["model"],
        generation_time_ms=row["generation_time_ms"] or 0,
        batch_size=row["batch_size"] or 1,
    )


def _review(row: Mapping[Any, Any]) -> Review | None:
    if row["review_decision"] is None:
        return None
    return Review(row["review_decision"], row["reviewed_by"], _required(row["reviewed_at"]))


def _progress(row: Mapping[Any, Any]) -> Progress | None:
    if row["progress_total"] is None:
        return None
    return Progress(row["progress_step"] or 0, row["progress_total"])


def encode_cursor(job: Job) -> str:
    raw = f"{job.created_at.isoformat()}|{job.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, job_id = raw.split("|", 1)
        if "\x00" in job_id:
            raise ValueError("NUL in cursor")
        return _required(datetime.fromisoformat(moment)), job_id
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidField("cursor", "invalid_cursor", "The cursor is not valid.") from exc
