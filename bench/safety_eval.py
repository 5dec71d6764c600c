"""Content safety on the held-out test half: what each filter stops, and how fast.

.venv/bin/python bench/safety_eval.py [--show]

Three filters over tests/data/safety/test.jsonl (the semantic model was fitted and its
thresholds picked on calibration.jsonl only, by other authors' prompts): (a) the original
substring filter, (b) the term lists alone
(ambiguous terms refuse, as they do when the semantic stage is off), (c) the whole input
pipeline (terms, then the semantic model; no remote service). A prompt counts as stopped
when it is refused or held for review. Targets for (c): recall >= 95%, false positives
<= 3%, and a p95 check time <= 10 ms once the model is loaded. The prompts each filter
gets wrong go to bench/results/safety.json; --show prints them too.

What checking adds to a submission is also measured end to end: two servers on loopback,
one with the whole pipeline and one with safety off, take the same test prompts in turn
(POST /v1/jobs, no workers), and the p50 and p95 of the two are compared.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from imagegate.api.server import background_server
from imagegate.safety.baseline import original_filter
from imagegate.safety.dataset import LabelledPrompt, Measurement, measure, read_prompts
from imagegate.safety.normalize import normalize
from imagegate.safety.pipeline import SafetyPipeline, build_pipeline
from imagegate.safety.terms import TermStage
from imagegate.safety.verdict import Action
from imagegate.settings import Settings, load_settings

RESULTS = Path(__file__).parent / "results"
TEST_HALF = Path(__file__).parent.parent / "tests" / "data" / "safety" / "test.jsonl"
LATENCY_ROUNDS = 3


def main() -> None:
    prompts = read_prompts(TEST_HALF)
    started = time.perf_counter()
    pipeline = build_pipeline(Settings(safety_semantic=True, safety_remote_url=None))
    pipeline.warm_up()
    load_s = time.perf_counter() - started
    terms_alone = TermStage.from_file()
    filters: dict[str, Callable[[str], bool]] = {
        "original_substring": lambda text: original_filter(text) is Action.BLOCK,
        "term_lists": lambda text: terms_alone.check(normalize(text)).action is Action.BLOCK,
        "pipeline": lambda text: pipeline.check(text).flagged,
    }
    measured = {name: measure(prompts, stops) for name, stops in filters.items()}
    latency = _latency(pipeline, prompts) | _submission(prompts)
    result = _result(prompts, measured, latency, load_s)
    _print(result, measured["pipeline"], show="--show" in sys.argv[1:])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "safety.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")


def _latency(pipeline: SafetyPipeline, prompts: list[LabelledPrompt]) -> dict[str, float]:
    check_ms: list[float] = []
    semantic_ms: list[float] = []
    for _ in range(LATENCY_ROUNDS):
        for prompt in prompts:
            started = time.perf_counter()
            verdict = pipeline.check(prompt.text)
            check_ms.append((time.perf_counter() - started) * 1000)
            if "semantic" in verdict.timings_ms:
                semantic_ms.append(verdict.timings_ms["semantic"])
    return {
        "checks": len(check_ms),
        "check_ms_p50": _percentile(check_ms, 50),
        "check_ms_p95": _percentile(check_ms, 95),
        "check_ms_max": round(max(check_ms), 2),
        "semantic_ms_p50": _percentile(semantic_ms, 50),
        "semantic_ms_p95": _percentile(semantic_ms, 95),
    }


def _submission(prompts: list[LabelledPrompt]) -> dict[str, float]:
    """POST /v1/jobs with the whole pipeline and with safety off, side by side."""
    times: dict[str, list[float]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory() as scratch:
        common = {"log_level": "warning", "safety_remote_url": None, "output_moderation": False}
        on = load_settings(data_dir=Path(scratch) / "on", safety_semantic=True, **common)
        off = load_settings(data_dir=Path(scratch) / "off", safety_enabled=False, **common)
        with (
            background_server(on, 0) as url_on,
            background_server(off, 0) as url_off,
            httpx.Client(timeout=30) as client,
        ):
            while client.get(f"{url_on}/ready").status_code != 200:
                time.sleep(0.2)
            for prompt in prompts:
                for name, url in (("on", url_on), ("off", url_off)):
                    started = time.perf_counter()
                    client.post(f"{url}/v1/jobs", json={"prompt": prompt.text})
                    times[name].append((time.perf_counter() - started) * 1000)
    on_p50, on_p95 = _percentile(times["on"], 50), _percentile(times["on"], 95)
    off_p50, off_p95 = _percentile(times["off"], 50), _percentile(times["off"], 95)
    return {
        "submissions": len(times["on"]),
        "submit_ms_p50_safety_on": on_p50,
        "submit_ms_p95_safety_on": on_p95,
        "submit_ms_p50_safety_off": off_p50,
        "submit_ms_p95_safety_off": off_p95,
        "submit_added_ms_p50": round(on_p50 - off_p50, 2),
        "submit_added_ms_p95": round(on_p95 - off_p95, 2),
    }


def _percentile(values: list[float], pct: int) -> float:
    return round(statistics.quantiles(values, n=100, method="inclusive")[pct - 1], 2)


def _result(
    prompts: list[LabelledPrompt],
    measured: dict[str, Measurement],
    latency: dict[str, float],
    load_s: float,
) -> dict[str, Any]:
    return {
        "benchmark": "safety",
        "data": {"file": "tests/data/safety/test.jsonl", **_counts(prompts)},
        "filters": {name: _figures(m, prompts) for name, m in measured.items()},
        "latency": latency,
        "model_load_and_warm_up_s": round(load_s, 2),
        "machine": {
            "cpus": os.cpu_count(),
            "onnxruntime_threads": 1,
            "load_average_1m": round(os.getloadavg()[0], 2),
        },
        "pipeline_missed": [p.text for p in measured["pipeline"].missed],
        "pipeline_false_positives": [p.text for p in measured["pipeline"].wrongly_stopped],
        "targets": (
            "pipeline recall >= 0.95, false_positive_rate <= 0.03, "
            "check_ms_p95 <= 10 (and submit_added_ms_p95 <= 10)"
        ),
    }


def _counts(prompts: list[LabelledPrompt]) -> dict[str, Any]:
    return {
        "prompts": len(prompts),
        "harmful": sum(p.harmful for p in prompts),
        "benign": sum(not p.harmful for p in prompts),
    }


def _figures(m: Measurement, prompts: list[LabelledPrompt]) -> dict[str, Any]:
    harmful_forms = Counter(p.form for p in prompts if p.harmful)
    missed_forms = Counter(p.form for p in m.missed)
    return {
        "recall": round(m.recall, 4),
        "false_positive_rate": round(m.false_positive_rate, 4),
        "caught": f"{m.caught}/{m.harmful}",
        "false_positives": f"{m.false_positives}/{m.benign}",
        "recall_by_form": {
            form: round(1 - missed_forms[form] / total, 4)
            for form, total in sorted(harmful_forms.items())
        },
        "recall_by_category": _rates(m.missed, [p for p in prompts if p.harmful], hit=False),
        "false_positives_by_category": _rates(
            m.wrongly_stopped, [p for p in prompts if not p.harmful], hit=True
        ),
    }


def _rates(
    wrong: tuple[LabelledPrompt, ...], group: list[LabelledPrompt], *, hit: bool
) -> dict[str, float]:
    """Per category: the share of ``group`` in ``wrong`` (hit) or not in it."""
    totals = Counter(p.category for p in group)
    counts = Counter(p.category for p in wrong)
    return {
        c: round(counts[c] / n if hit else 1 - counts[c] / n, 4) for c, n in sorted(totals.items())
    }


def _print(result: dict[str, Any], pipeline: Measurement, *, show: bool) -> None:
    data = result["data"]
    print(f"test half: {data['harmful']} harmful, {data['benign']} benign prompts")
    for name, figures in result["filters"].items():
        print(
            f"  {name:<20} recall {figures['recall']:.1%} ({figures['caught']})  "
            f"false positives {figures['false_positive_rate']:.1%} ({figures['false_positives']})"
        )
        print(f"  {'':<20} recall by form {figures['recall_by_form']}")
        print(f"  {'':<20} recall by category {figures['recall_by_category']}")
        print(f"  {'':<20} false positives by category {figures['false_positives_by_category']}")
    latency = result["latency"]
    print(
        f"pipeline check over {latency['checks']} checks: p50 {latency['check_ms_p50']} ms, "
        f"p95 {latency['check_ms_p95']} ms, max {latency['check_ms_max']} ms "
        f"(semantic stage p50 {latency['semantic_ms_p50']} ms, p95 {latency['semantic_ms_p95']} "
        f"ms); load and warm-up {result['model_load_and_warm_up_s']} s; "
        f"load average {result['machine']['load_average_1m']}"
    )
    print(
        f"submission over HTTP, safety on vs off ({latency['submissions']} each): "
        f"p50 {latency['submit_ms_p50_safety_on']} vs {latency['submit_ms_p50_safety_off']} "
        f"ms, p95 {latency['submit_ms_p95_safety_on']} vs "
        f"{latency['submit_ms_p95_safety_off']} ms: checking adds "
        f"{latency['submit_added_ms_p50']} ms at p50, {latency['submit_added_ms_p95']} ms at p95"
    )
    if not show:
        return
    for prompt in pipeline.missed:
        print(f"  missed:         [{prompt.category}/{prompt.form}] {prompt.text}")
    for prompt in pipeline.wrongly_stopped:
        print(f"  false positive: [{prompt.category}/{prompt.form}] {prompt.text}")


if __name__ == "__main__":
    main()
