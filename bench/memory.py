"""Resident memory of an API-only process (issue 13, target 5).

Starts real ``imagegate serve --workers 0`` processes on SQLite: with the default prompt
safety (term lists and the multilingual semantic model), and with the term lists only.
Each one (restarted once on its data directory, as a deployed API is), once ready,
takes a workload of submissions in the 14 languages the pipeline
judges (the calibration prompts, so nothing of the test side is read), and its memory is
read from ``/proc`` after the workload: VmRSS, and its split into anonymous memory and
file-backed pages (the encoder's embedding table is a read-only file mapping: its pages
are shared by every process on the host that maps it, and the kernel can drop them).

The floor is ``bench/floor_app.py`` (a bare FastAPI app under uvicorn), measured in the
same run. Target: at most 150 MB VmRSS with prompt safety on.

    .venv/bin/python bench/memory.py [--prompts 400]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from status_poll import BIN, RESULTS, imagegate_env, server

ROOT = Path(__file__).parent.parent
CALIBRATION = ROOT / "tests" / "data" / "safety" / "calibration_multilingual.jsonl"
TARGET_MB = 150.0


def memory_mb(pid: int) -> dict[str, float]:
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            fields[name] = round(int(value.split()[0]) / 1024, 1)
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == "Pss":
            fields["Pss"] = round(int(value.split()[0]) / 1024, 1)
    return fields


def workload(count: int) -> list[str]:
    rows = [json.loads(line) for line in CALIBRATION.read_text().splitlines() if line.strip()]
    prompts = [row["text"] for row in rows]
    return (prompts * (count // len(prompts) + 1))[:count]


def measure(name: str, extra_env: dict[str, str], prompts: list[str]) -> dict[str, Any]:
    """The process that serves: a restart on a data directory that a first start has
    set up (the schema migrated, the encoder's table written). The first start's own
    figure is kept too: it alone loads Alembic to migrate."""
    with tempfile.TemporaryDirectory() as tmp:
        env = imagegate_env(Path(tmp), None) | extra_env
        first = run(env, prompts[:20])
        figures = run(env, prompts)
    after, ready = figures["after_workload"], figures["ready"]
    print(
        f"{name:<22} ready {ready['VmRSS']:6.1f} MB, after {len(prompts)} submissions "
        f"{after['VmRSS']:6.1f} MB (anon {after['RssAnon']}, file {after['RssFile']}, "
        f"pss {after['Pss']}), answers {figures['answers']}; first start on an empty "
        f"data directory: {first['after_workload']['VmRSS']} MB"
    )
    return figures | {"first_start": first}


def run(env: dict[str, str], prompts: list[str]) -> dict[str, Any]:
    serve = [str(BIN / "imagegate"), "serve", "--port", "{port}", "--workers", "0"]
    with server(serve, env) as (client, pid):
        deadline = time.monotonic() + 60
        while client.get("/ready").status_code != 200:
            assert time.monotonic() < deadline, "never ready"
            time.sleep(0.2)
        ready = memory_mb(pid)
        answers: dict[int, int] = {}
        for prompt in prompts:
            status = client.post("/v1/jobs", json={"prompt": prompt}).status_code
            answers[status] = answers.get(status, 0) + 1
        return {"ready": ready, "after_workload": memory_mb(pid), "answers": answers}


def floor() -> dict[str, Any]:
    command = [str(BIN / "python"), "-m", "uvicorn", "floor_app:app", "--port", "{port}"]
    with server(command, {"PYTHONPATH": str(Path(__file__).parent)}) as (client, pid):
        for _ in range(200):
            client.get("/status/x")
        after = memory_mb(pid)
    print(f"{'floor (bare FastAPI)':<22} {after['VmRSS']:6.1f} MB")
    return {"after_workload": after}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=400)
    args = parser.parse_args()
    prompts = workload(args.prompts)
    result = {
        "benchmark": "memory",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": len(__import__("os").sched_getaffinity(0)),
            "python": platform.python_version(),
        },
        "target_mb": TARGET_MB,
        "floor": floor(),
        "prompt_safety": measure("prompt safety (default)", {}, prompts),
        "terms_only": measure("term lists only", {"IMAGEGATE_SAFETY_SEMANTIC": "false"}, prompts),
    }
    rss = result["prompt_safety"]["after_workload"]["VmRSS"]
    print(f"API-only with prompt safety: {rss} MB VmRSS (target <= {TARGET_MB})")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "memory.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
