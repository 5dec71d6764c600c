"""Backoff between attempts: exponential with full jitter, capped."""

from __future__ import annotations

import random

MAX_BACKOFF_S = 300.0


def backoff_s(attempt: int, base_s: float, rng: random.Random | None = None) -> float:
    """A delay drawn uniformly from [0, base·2^(attempt-1)], never above the cap."""
    ceiling = min(MAX_BACKOFF_S, base_s * 2 ** max(0, attempt - 1))
    return (rng or random).uniform(0, ceiling)
