"""Checking a prompt without generating (OpenAI's moderation shape), and the templates."""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from imagegate.api.deps import PrincipalDep, RuntimeDep, Writer
from imagegate.api.problems import documented
from imagegate.jobs.specs import check_prompt

router = APIRouter(prefix="/v1", tags=["safety"], responses=documented(401, 403, 429))


class ModerationIn(BaseModel):
    input: str | list[str] = Field(description="A prompt, or a list of prompts.")
    model: str | None = None


@router.post("/moderations")
async def moderate(body: ModerationIn, runtime: RuntimeDep, _: Writer) -> dict[str, Any]:
    """``{"id", "model", "results": [{"flagged", "categories", "category_scores", "action",
    "reasons"}]}``: each prompt as a job submission would judge it, nothing recorded."""
    from imagegate.safety.pipeline import moderation_result

    texts = [body.input] if isinstance(body.input, str) else body.input
    checked = [check_prompt(text, f"input.{i}") for i, text in enumerate(texts)]
    verdicts = [await run_in_threadpool(runtime.intake.moderate, text) for text in checked]
    return {
        "id": f"modr-{uuid.uuid4().hex}",
        "model": "imagegate-safety",
        "created": int(time.time()),
        "results": [moderation_result(verdict) for verdict in verdicts],
    }


@router.get("/templates")
def list_templates(runtime: RuntimeDep, _: PrincipalDep) -> list[dict[str, Any]]:
    return [
        {
            "name": t.name,
            "description": t.description,
            "template": t.template,
            "style": t.style,
            "forbidden": list(t.forbidden),
            "inputs": [
                {"name": i.name, "description": i.description, "required": i.required}
                for i in t.inputs
            ],
        }
        for t in sorted(runtime.intake.templates.values(), key=lambda t: t.name)
    ]
