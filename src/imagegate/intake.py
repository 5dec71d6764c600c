"""Intake: what every new job goes through before it is recorded.

The request becomes a spec (a template and its inputs, or a prompt with a style), the
prompt and the negative prompt are checked by the safety pipeline, and the stricter
outcome decides: blocked (audited, then refused with ``content_policy_violation``, naming
the field), held for review (``pending_review``), allowed with warnings, or allowed. A
negative prompt names what to keep out of the image, so the categories in
``IMAGEGATE_SAFETY_NEGATIVE_EXEMPT`` do not count in it; the rest (hate, by default) do.
The API, the original WebSocket and the OpenAI-compatible route all submit through here,
so a prompt is judged the same way everywhere.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from imagegate.cache.keys import NOT_CACHEABLE, CacheRequest
from imagegate.errors import InvalidField, PromptRefused, ServiceUnavailable
from imagegate.jobs.audit import AuditEntry
from imagegate.jobs.changes import Intake
from imagegate.jobs.models import Job, JobSpec
from imagegate.jobs.specs import JobRequest, build_spec
from imagegate.jobs.store import JobStore
from imagegate.prompts.styles import build_full_prompt, resolve_style
from imagegate.prompts.templates import Template, load_templates, render_template
from imagegate.settings import Settings

if TYPE_CHECKING:
    from imagegate.cache.idempotency import IdempotencyRequest
    from imagegate.limits.gatekeeper import Admission
    from imagegate.safety.pipeline import SafetyPipeline
    from imagegate.safety.verdict import Verdict


@dataclass(frozen=True, slots=True)
class Caller:
    owner: str
    client_ip: str | None = None


@dataclass(frozen=True, slots=True)
class Submitted:
    job: Job
    warnings: tuple[str, ...] = ()


class IntakeDesk:
    def __init__(self, settings: Settings, store: JobStore) -> None:
        self.settings = settings
        self.store = store
        self.templates: dict[str, Template] = load_templates(settings.templates_file)
        self._pipeline: SafetyPipeline | None = None
        self._lock = threading.Lock()
        self._inputs = TemplateInputs()

    def spec(
        self,
        request: JobRequest,
        template: str | None = None,
        inputs: Mapping[str, Any] | None = None,
    ) -> JobSpec:
        """The job's spec, from a prompt or from a template and its inputs."""
        if template is None:
            return build_spec(request, self.settings)
        if request.prompt:
            raise InvalidField("prompt", "prompt_and_template", "Give a prompt or a template.")
        rendered = render_template(template, inputs or {}, self.templates)
        spec = build_spec(dataclasses.replace(request, prompt=rendered.prompt), self.settings)
        full = build_full_prompt(rendered.full_prompt, resolve_style(request.style))
        spec = dataclasses.replace(spec, full_prompt=full)
        self._inputs.put(spec, [str(value) for value in (inputs or {}).values() if value])
        return spec

    def submit(
        self,
        spec: JobSpec,
        caller: Caller,
        webhook_url: str | None = None,
        admission: Admission | None = None,
        cache: CacheRequest | None = None,
        idempotent: IdempotencyRequest | None = None,
    ) -> Submitted:
        """Check the prompt, then record the job (or refuse it): with ``admission``, its
        caps and budgets are enforced as it is recorded. Blocking: call from a thread."""
        parts = self._inputs.take(spec)  # a template's inputs: each judged as a clause too
        judged = [Judged("prompt", spec.prompt, self.moderate(spec.prompt, parts=parts))]
        if spec.negative_prompt:
            exempt = frozenset(self.settings.safety_negative_exempt)
            negative = self.moderate(spec.negative_prompt, disregard=exempt)
            judged.append(Judged("negative_prompt", spec.negative_prompt, negative))
        intake = self._intake(judged, caller)
        verdict = judged[0].verdict
        if admission is not None:
            intake = dataclasses.replace(intake, identity=admission.identity, admit=admission)
        job = self.store.submit(
            spec,
            caller.owner,
            webhook_url=webhook_url,
            intake=intake,
            cache=cache or NOT_CACHEABLE,
            idempotent=idempotent,
        )
        warnings = verdict.reasons if verdict.action.label == "warn" else ()
        return Submitted(job, tuple(warnings))

    def moderate(
        self, text: str, disregard: frozenset[str] = frozenset(), parts: Sequence[str] = ()
    ) -> Verdict:
        if not self.settings.safety_enabled:
            from imagegate.safety.verdict import ALLOWED

            return ALLOWED
        return self.pipeline().check(text, disregard, parts)

    def pipeline(self) -> SafetyPipeline:
        """Built once per process, on first use (or at start-up, from :meth:`warm_up`)."""
        with self._lock:
            if self._pipeline is None:
                from imagegate.safety.pipeline import build_pipeline

                try:
                    self._pipeline = build_pipeline(self.settings)
                except RuntimeError as exc:  # its packages are missing: say so, as a 503
                    raise ServiceUnavailable(str(exc)) from exc
            return self._pipeline

    def warm_up(self) -> None:
        if self.settings.safety_enabled:
            self.pipeline().warm_up()

    def _intake(self, judged: list[Judged], caller: Caller) -> Intake:
        """Refuse on the first blocked text; otherwise the strictest verdict decides."""
        from imagegate.safety.pipeline import moderation_result

        for text in judged:
            if text.verdict.action.label == "block":
                self.store.record_audit(
                    audit_entry(text.text, text.verdict, caller, "input", "block")
                )
                raise text.refusal()
        strictest = max(judged, key=lambda text: text.verdict.action)
        action = strictest.verdict.action.label
        held = action == "review" or (action == "warn" and self.settings.safety_review_warn)
        entry = None
        if action != "allow":
            decided = "review" if held else action
            entry = audit_entry(strictest.text, strictest.verdict, caller, "input", decided)
        moderation = {
            MODERATION_KEYS[text.field]: moderation_result(text.verdict) for text in judged
        }
        return Intake(held=held, moderation=moderation, audit=entry, client_ip=caller.client_ip)


MODERATION_KEYS = {"prompt": "input", "negative_prompt": "negative_prompt"}


class TemplateInputs:
    """The inputs of the specs :meth:`IntakeDesk.spec` made from templates, until they are
    submitted (the most recent :data:`KEPT` of them: a spec never submitted is dropped)."""

    KEPT = 1024

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_spec: OrderedDict[JobSpec, list[str]] = OrderedDict()

    def put(self, spec: JobSpec, inputs: list[str]) -> None:
        with self._lock:
            self._by_spec[spec] = inputs
            while len(self._by_spec) > self.KEPT:
                self._by_spec.popitem(last=False)

    def take(self, spec: JobSpec) -> list[str]:
        with self._lock:
            return self._by_spec.pop(spec, [])


@dataclass(frozen=True, slots=True)
class Judged:
    """A text of the request (the prompt, the negative prompt) and the pipeline's verdict."""

    field: str
    text: str
    verdict: Verdict

    def refusal(self) -> PromptRefused:
        category = ", ".join(sorted(self.verdict.categories)) or "policy"
        what = "prompt" if self.field == "prompt" else "negative prompt"
        return PromptRefused(
            f"The {what} was refused by the content policy ({category}).",
            field=self.field,
            categories=sorted(self.verdict.categories),
            reasons=list(self.verdict.reasons),
        )


def audit_entry(
    prompt: str, verdict: Verdict, caller: Caller, stage: str, action: str
) -> AuditEntry:
    from imagegate.safety.normalize import normalize

    return AuditEntry(
        owner=caller.owner,
        prompt=prompt,
        normalized_prompt=normalize(prompt).text,
        stage=stage,
        action=action,
        categories=tuple(sorted(verdict.categories)),
        reasons=tuple(verdict.reasons),
        client_ip=caller.client_ip,
    )
