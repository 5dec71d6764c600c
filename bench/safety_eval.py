"""Content safety on the held-out test side: what each filter stops, per language and
per form, how fast, and in how much memory.

.venv/bin/python bench/safety_eval.py [--calibration]

Three filters over the test files (nothing was fitted or tuned on them):
tests/data/safety/test.jsonl (English, 945 prompts), test_multilingual.jsonl (13 more
languages, and English dilution and its traps, by authors who wrote none of the
calibration side of their language), and test_multilingual_2.jsonl to _4.jsonl (each
written later by two more authors; tests/data/safety/README.md logs every look):

- ``original_substring``: the first filter (safety/baseline.py);
- ``before``: the whole input pipeline as it was before issue 14 (English MiniLM,
  whole prompts, the English term lists), run from its code at git commit cefa42d;
- ``pipeline``: the pipeline now (terms in 14 languages, then the multilingual encoder
  over the prompt's clauses; no remote service).

A prompt counts as stopped when it is refused or held for review. Only counts are
written: the prompts a filter gets wrong are not shown (tests/data/safety/README.md
logs each time the test side was measured). ``--calibration`` runs everything on the
calibration side instead, to try the script without looking at the test side.

Also measured: the pipeline's check time; what checking adds to a submission end to end
(two servers on loopback, the whole pipeline and safety off, POST /v1/jobs in turn, no
workers); and resident memory: an API process with the semantic stage, one with the
term stage only, and what each pipeline's models add to a bare process.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx

from imagegate.api.server import background_server
from imagegate.safety.baseline import original_filter
from imagegate.safety.dataset import LabelledPrompt, read_prompts
from imagegate.safety.pipeline import SafetyPipeline, build_pipeline
from imagegate.safety.verdict import Action
from imagegate.settings import Settings, load_settings

ROOT = Path(__file__).parent.parent
RESULTS = Path(__file__).parent / "results"
DATA = ROOT / "tests" / "data" / "safety"
SETS = {
    "english": "test.jsonl",
    "multilingual": "test_multilingual.jsonl",
    "multilingual_fresh": "test_multilingual_2.jsonl",
    "multilingual_3": "test_multilingual_3.jsonl",
    "multilingual_4": "test_multilingual_4.jsonl",
    "multilingual_5": "test_multilingual_5.jsonl",
    "multilingual_6": "test_multilingual_6.jsonl",
    "multilingual_7": "test_multilingual_7.jsonl",
}
CALIBRATION_SETS = {
    "english": "calibration.jsonl",
    "multilingual": "calibration_multilingual.jsonl",
    "multilingual_3": "calibration_multilingual_3.jsonl",
    "multilingual_4": "calibration_multilingual_4.jsonl",
    "multilingual_5": "calibration_multilingual_5.jsonl",
    "multilingual_6": "calibration_multilingual_6.jsonl",
    "multilingual_7": "calibration_multilingual_7.jsonl",
}
BEFORE_COMMIT = "cefa42d"  # the last commit before issue 14
LATENCY_ROUNDS = 2
TARGETS = (
    "multilingual: recall >= 0.95 and false_positive_rate <= 0.03 overall, recall >= 0.90 "
    "in every language; english: recall >= 0.95, false_positive_rate <= 0.03; "
    "submit_added_ms_p95 <= 10"
)


def main() -> None:
    on_calibration = "--calibration" in sys.argv[1:]
    sets = {name: read_prompts(DATA / file) for name, file in _files(on_calibration).items()}
    started = time.perf_counter()
    pipeline = build_pipeline(Settings(safety_semantic=True, safety_remote_url=None))
    pipeline.warm_up()
    load_s = time.perf_counter() - started
    filters = _filters(pipeline)
    figures = {
        name: {f: _figures(prompts, stops) for f, stops in filters.items()}
        for name, prompts in sets.items()
    }
    everything = [p for prompts in sets.values() for p in prompts]
    result = {
        "benchmark": "safety",
        "side": "calibration" if on_calibration else "test",
        "data": {name: _counts(prompts) for name, prompts in sets.items()},
        "sets": figures,
        "latency": _latency(pipeline, everything) | _submission(everything),
        "memory_mb": _memory(),
        "model_load_and_warm_up_s": round(load_s, 2),
        "machine": {"cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2)},
        "targets": TARGETS,
    }
    _print(result)
    if not on_calibration:
        RESULTS.mkdir(exist_ok=True)
        text = json.dumps(result, indent=2, ensure_ascii=False) + "\n"
        (RESULTS / "safety.json").write_text(text, encoding="utf-8")


def _files(on_calibration: bool) -> dict[str, str]:
    return CALIBRATION_SETS if on_calibration else SETS


def _filters(pipeline: SafetyPipeline) -> dict[str, Callable[[str], bool]]:
    before = before_pipeline()
    return {
        "original_substring": lambda text: original_filter(text) is Action.BLOCK,
        "before": lambda text: bool(before.check(text).flagged),
        "pipeline": lambda text: pipeline.check(text).flagged,
    }


def before_pipeline() -> Any:
    """The input pipeline of commit cefa42d, its code and data read from git into a
    scratch package (``before_safety``), built as the service built it then."""
    scratch = Path(tempfile.mkdtemp(prefix="safety-before-"))
    listed = _git("ls-tree", "-r", "--name-only", BEFORE_COMMIT, "src/imagegate/safety")
    for name in listed.decode().split():
        target = scratch / "before_safety" / Path(name).relative_to("src/imagegate/safety")
        target.parent.mkdir(parents=True, exist_ok=True)
        content = _git("show", f"{BEFORE_COMMIT}:{name}")
        if name.endswith(".py"):
            content = content.replace(b"imagegate.safety", b"before_safety")
        target.write_bytes(content)
    sys.path.insert(0, str(scratch))
    from before_safety.pipeline import build_pipeline as build_before  # type: ignore[import-not-found]

    before = build_before(Settings(safety_semantic=True, safety_remote_url=None))
    before.warm_up()
    return before


def _git(*args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, check=True).stdout


def _figures(prompts: list[LabelledPrompt], stops: Callable[[str], bool]) -> dict[str, Any]:
    stopped = [(p, stops(p.text)) for p in prompts]
    return {
        "overall": _rates(stopped),
        "by_language": _grouped(stopped, lambda p: p.lang),
        "by_form": _grouped(stopped, lambda p: p.form),
        "by_category": _grouped(stopped, lambda p: p.category),
    }


def _grouped(
    stopped: list[tuple[LabelledPrompt, bool]], key: Callable[[LabelledPrompt], str]
) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[tuple[LabelledPrompt, bool]]] = {}
    for prompt, stop in stopped:
        groups.setdefault(key(prompt), []).append((prompt, stop))
    return {name: _rates(group) for name, group in sorted(groups.items())}


def _rates(stopped: Iterable[tuple[LabelledPrompt, bool]]) -> dict[str, Any]:
    counts = Counter((p.harmful, stop) for p, stop in stopped)
    harmful, benign = (
        counts[True, True] + counts[True, False],
        counts[False, True] + counts[False, False],
    )
    rates: dict[str, Any] = {}
    if harmful:
        rates |= {
            "recall": round(counts[True, True] / harmful, 4),
            "caught": f"{counts[True, True]}/{harmful}",
        }
    if benign:
        rates |= {
            "false_positive_rate": round(counts[False, True] / benign, 4),
            "false_positives": f"{counts[False, True]}/{benign}",
        }
    return rates


def _counts(prompts: list[LabelledPrompt]) -> dict[str, int]:
    harmful = sum(p.harmful for p in prompts)
    return {"prompts": len(prompts), "harmful": harmful, "benign": len(prompts) - harmful}


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


# Each in a fresh process: the resident memory (VmRSS) it ends with, in MB.
API_PROCESS = """
import sys, tempfile, time, httpx
from pathlib import Path
from imagegate.api.server import background_server
from imagegate.settings import load_settings
settings = load_settings(data_dir=Path(tempfile.mkdtemp()), log_level="warning",
                         safety_semantic=sys.argv[1] == "semantic", output_moderation=False)
with background_server(settings, 0) as url, httpx.Client(timeout=30) as client:
    while client.get(f"{url}/ready").status_code != 200:
        time.sleep(0.2)
    for prompt in ["a lighthouse at dusk", "un chat roux sur un canapé", "夜の東京、ネオン"] * 5:
        client.post(f"{url}/v1/jobs", json={"prompt": prompt})
    print(open("/proc/self/status").read().split("VmRSS:")[1].split()[0])
"""
PIPELINE_ONLY = """
import sys
from imagegate.settings import Settings
def rss():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0])
if sys.argv[1] == "before":
    sys.argv = sys.argv[:1]
    sys.path.insert(0, "bench")
    from safety_eval import before_pipeline
    base = rss(); pipeline = before_pipeline()
else:
    from imagegate.safety.pipeline import build_pipeline
    base = rss(); pipeline = build_pipeline(Settings(safety_semantic=True)); pipeline.warm_up()
pipeline.check("un chat roux sur un canapé, aquarelle")
print(rss() - base)
"""


def _memory() -> dict[str, float]:
    def run(script: str, arg: str) -> float:
        ran = subprocess.run(
            [sys.executable, "-c", script, arg], cwd=ROOT, capture_output=True, check=True
        )
        return round(int(ran.stdout.split()[-1]) / 1024, 1)

    return {
        "api_process_semantic": run(API_PROCESS, "semantic"),
        "api_process_terms_only": run(API_PROCESS, "terms"),
        "pipeline_models_added_before": run(PIPELINE_ONLY, "before"),
        "pipeline_models_added_now": run(PIPELINE_ONLY, "now"),
    }


def _print(result: dict[str, Any]) -> None:
    for name, filters in result["sets"].items():
        data = result["data"][name]
        print(f"{name}: {data['harmful']} harmful, {data['benign']} benign prompts")
        for filter_name, figures in filters.items():
            print(f"  {filter_name:<20} {_line(figures['overall'])}")
            for group in ("by_language", "by_form"):
                parts = ", ".join(f"{k} {_line(v)}" for k, v in figures[group].items())
                print(f"  {'':<20} {group}: {parts}")
    latency, memory = result["latency"], result["memory_mb"]
    print(
        f"check p50 {latency['check_ms_p50']} ms, p95 {latency['check_ms_p95']} ms "
        f"(semantic p95 {latency['semantic_ms_p95']} ms); submission adds "
        f"{latency['submit_added_ms_p50']} ms at p50, {latency['submit_added_ms_p95']} ms at "
        f"p95; load and warm-up {result['model_load_and_warm_up_s']} s; memory {memory} MB"
    )


def _line(rates: dict[str, Any]) -> str:
    shown = [f"recall {rates['caught']}"] if "caught" in rates else []
    if "false_positives" in rates:
        shown.append(f"fp {rates['false_positives']}")
    return " ".join(shown)


if __name__ == "__main__":
    main()
