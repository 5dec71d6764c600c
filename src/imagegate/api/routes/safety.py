"""Checking a prompt without generating (OpenAI's moderation shape), and the templates."""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from imagegate.api.deps import PrincipalDep, RuntimeDep, Writer, client_ip
from imagegate.api.problems import documented
from imagegate.errors import InvalidField
from imagegate.intake import Caller, audit_entry
from imagegate.jobs.specs import check_prompt
from imagegate.runtime import Runtime
from imagegate.safety.verdict import Verdict

router = APIRouter(prefix="/v1", tags=["safety"])


class ModerationIn(BaseModel):
    input: str | list[str] = Field(description="A prompt, or a list of prompts.")
    model: str | None = None


MAX_INPUTS = 32  # prompts per request
MAX_TOTAL_CHARS = 32_000  # over all of them
SCORE_DIGITS = 2  # exact scores would let a caller climb to just under a threshold


@router.post("/moderations", responses=documented(422))
async def moderate(
    body: ModerationIn, runtime: RuntimeDep, principal: Writer, request: Request
) -> dict[str, Any]:
    """``{"id", "model", "results": [{"flagged", "categories", "category_scores", "action",
    "reasons"}]}``: each prompt as a job submission would judge it. At most 32 prompts and
    32,000 characters a request. Scores are rounded; reasons name the stage and category,
    and only the operator sees the matched terms. Blocked prompts are audited."""
    texts = _inputs(body)
    checked = [check_prompt(text, f"input.{i}") for i, text in enumerate(texts)]
    verdicts = [await run_in_threadpool(runtime.intake.moderate, text) for text in checked]
    caller = Caller(principal.tenant, client_ip(request))
    await run_in_threadpool(_audit_blocked, runtime, checked, verdicts, caller)
    return {
        "id": f"modr-{uuid.uuid4().hex}",
        "model": "imagegate-safety",
        "created": int(time.time()),
        "results": [_result(verdict, principal.operator) for verdict in verdicts],
    }


def _inputs(body: ModerationIn) -> list[str]:
    texts = [body.input] if isinstance(body.input, str) else body.input
    if len(texts) > MAX_INPUTS:
        raise InvalidField(
            "input",
            "too_many_inputs",
            f"At most {MAX_INPUTS} prompts a request.",
            maximum=MAX_INPUTS,
        )
    if sum(len(text) for text in texts) > MAX_TOTAL_CHARS:
        raise InvalidField(
            "input",
            "input_too_long",
            f"At most {MAX_TOTAL_CHARS} characters a request.",
            maximum=MAX_TOTAL_CHARS,
        )
    return texts


def _result(verdict: Verdict, operator: bool) -> dict[str, Any]:
    from imagegate.safety.pipeline import moderation_result

    result = moderation_result(verdict)
    scores = result["category_scores"]
    result["category_scores"] = {c: round(score, SCORE_DIGITS) for c, score in scores.items()}
    if not operator:  # term:weapons:<the term> -> term:weapons
        reasons = (":".join(reason.split(":")[:2]) for reason in result["reasons"])
        result["reasons"] = list(dict.fromkeys(reasons))
    return result


def _audit_blocked(
    runtime: Runtime, texts: list[str], verdicts: list[Verdict], caller: Caller
) -> None:
    for text, verdict in zip(texts, verdicts, strict=True):
        if verdict.action.label == "block":
            runtime.store.record_audit(audit_entry(text, verdict, caller, "moderation", "block"))


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
