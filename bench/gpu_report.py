"""bench/gpu.py's report: the JSON document, the targets, and the printed table."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any


class Report:
    """The JSON document, rewritten after every case so that a killed run keeps its rows."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = path
        self.data: dict[str, Any] = header | {
            "raw": [],
            "service": [],
            "options": [],
            "skipped": [],
        }

    def add(self, section: str, row: dict[str, Any]) -> None:
        self.data[section].append(row)
        self.save()

    def skip(self, what: str, why: str) -> None:
        print(f"skipped {what}: {why}", flush=True)
        self.add("skipped", {"case": what, "why": why})

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=2) + "\n")


def targets(data: dict[str, Any]) -> dict[str, Any]:
    """Did the service keep 95% of raw images/s, and 90% of the raw batch speed-up?"""
    ratios = [r["ratio_to_raw"] for r in data["service"] if r.get("ratio_to_raw")]
    kept = [r["batch_speedup_kept"] for r in data["service"] if r.get("batch_speedup_kept")]
    return {
        "service_vs_raw": {"target": ">= 0.95", "worst": min(ratios, default=None)},
        "batch_speedup_kept": {"target": ">= 0.90", "worst": min(kept, default=None)},
    }


PRECISION = re.compile(r"[.]\d+f$")  # a header takes its column's width only
Column = tuple[str, Any, str]  # header, the row's key (or a function of the row), format

RAW_COLUMNS: list[Column] = [
    ("arch", "arch", "<6"),
    ("px", "size", ">5"),
    ("steps", "steps", ">6"),
    ("batch", "batch", ">6"),
    ("img/s", "images_per_s", ">9.2f"),
    ("s/img", "seconds_per_image", ">8.3f"),
]
SERVICE_COLUMNS: list[Column] = [
    ("arch", "arch", "<6"),
    ("moder.", lambda r: "on" if r["moderation"] else "off", ">7"),
    ("steps", "steps", ">6"),
    ("batch", "batch", ">6"),
    ("img/s", "images_per_s", ">9.2f"),
    ("vs raw", lambda r: maybe(r["ratio_to_raw"]), ">7"),
    ("kept", lambda r: maybe(r["batch_speedup_kept"]), ">6"),
    ("ovh p50 ms", "overhead_ms_p50", ">11.0f"),
    ("p99 ms", "overhead_ms_p99", ">7.0f"),
]
OPTION_COLUMNS: list[Column] = [
    ("option", "option", "<24"),
    ("batch", "batch", ">6"),
    ("img/s", "images_per_s", ">9.2f"),
    ("speed-up", "speedup_vs_plain", ">9.2f"),
    ("load s", "load_and_warm_up_s", ">8.1f"),
]


def maybe(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def print_rows(title: str, columns: list[Column], rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    print(" ".join(f"{header:{PRECISION.sub('', fmt)}}" for header, _, fmt in columns))
    for r in rows:
        cells = (key(r) if callable(key) else r[key] for _, key, _ in columns)
        print(" ".join(f"{cell:{fmt}}" for cell, (_, _, fmt) in zip(cells, columns, strict=True)))


def print_table(data: dict[str, Any]) -> None:
    print(f"\n{data['machine']}")
    print_rows("raw pipeline", RAW_COLUMNS, data["raw"])
    print_rows("service (SSE, SQLite)", SERVICE_COLUMNS, data["service"])
    print_rows("options", OPTION_COLUMNS, data["options"])
    for r in data["skipped"]:
        print(f"skipped: {r['case']} ({r['why']})")
    print(f"targets: {data.get('targets')}")
