"""The remote stage: an OpenAI moderation endpoint, or any service that answers like one.

Only used when ``IMAGEGATE_SAFETY_REMOTE_URL`` is set (the full URL, for example
``https://api.openai.com/v1/moderations``). Its categories are mapped to ours. When the
service cannot be reached or answers badly, the prompt is not refused for that (the local
stages have already run): the verdict is a warning with the reason ``remote:unavailable``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import structlog

from imagegate.safety.normalize import NormalizedPrompt
from imagegate.safety.verdict import CATEGORIES, Action, Verdict
from imagegate.settings import Settings

log = structlog.get_logger(__name__)

# The OpenAI moderation categories, and ours.
CATEGORY_MAP = {
    "sexual": "sexual",
    "sexual/minors": "sexual",
    "hate": "hate",
    "hate/threatening": "hate",
    "harassment/threatening": "violence",
    "violence": "violence",
    "violence/graphic": "gore",
    "self-harm": "violence",
    "self-harm/intent": "violence",
    "self-harm/instructions": "violence",
    "illicit/violent": "weapons",
}


class RemoteStage:
    name = "remote"

    def __init__(self, client: httpx.Client, url: str) -> None:
        self.client = client
        self.url = url

    @classmethod
    def from_settings(cls, settings: Settings) -> RemoteStage:
        assert settings.safety_remote_url, "only built when a remote URL is set"
        key = settings.safety_remote_api_key
        headers = {"Authorization": f"Bearer {key.get_secret_value()}"} if key else {}
        client = httpx.Client(headers=headers, timeout=settings.safety_remote_timeout_s)
        return cls(client, settings.safety_remote_url)

    def check(self, prompt: NormalizedPrompt) -> Verdict:
        try:
            response = self.client.post(self.url, json={"input": prompt.original})
            response.raise_for_status()
            result = response.json()["results"][0]
            return self._verdict(result["flagged"], result["categories"], result["category_scores"])
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as error:
            log.warning("remote moderation unavailable", url=self.url, error=repr(error))
            return Verdict(Action.WARN, reasons=("remote:unavailable",))

    def _verdict(
        self, flagged: bool, categories: Mapping[str, bool], scores: Mapping[str, Any]
    ) -> Verdict:
        ours = {c: 0.0 for c in CATEGORIES}
        for theirs, score in scores.items():
            if theirs in CATEGORY_MAP:
                ours[CATEGORY_MAP[theirs]] = max(ours[CATEGORY_MAP[theirs]], float(score))
        hits = sorted(theirs for theirs, hit in categories.items() if hit)
        mapped = frozenset(CATEGORY_MAP[theirs] for theirs in hits if theirs in CATEGORY_MAP)
        # Flagged only for a category we do not have (harassment, say): a person decides.
        action = Action.BLOCK if mapped else Action.REVIEW if flagged or hits else Action.ALLOW
        reasons = tuple(f"remote:{theirs}" for theirs in hits) or (
            ("remote:flagged",) if flagged else ()
        )
        return Verdict(action, mapped, reasons, {self.name: ours})

    def close(self) -> None:
        self.client.close()
