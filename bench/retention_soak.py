"""Storage stays bounded: a real ``imagegate serve`` (2 workers, SQLite) under a steady
load of about 10 jobs a second (a quarter of them cache hits, every job with previews),
with short retention (jobs kept ``--retention`` seconds, events half that, previews none)
and a sweep every second. Rows and files are counted each second; the figures are the
highest counts in the run's middle and last thirds, which match when storage has levelled
off, against the jobs submitted.

Writes ``bench/results/retention_soak.json``.

    .venv/bin/python bench/retention_soak.py [--duration 180] [--retention 30]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.soak import TABLES, soak

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=180)
    parser.add_argument("--retention", type=float, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "data"
        url = f"sqlite:///{Path(scratch) / 'soak.db'}"
        run = soak(url, data, args.duration, args.retention)
    levels = {name: run.levels(name) for name in [*TABLES, "files"]}
    print(f"{run.submitted} jobs submitted in {args.duration:g} s ({run.failed} refused)")
    print(f"{'kept':14} {'middle third':>13} {'last third':>11}")
    for name, (middle, last) in levels.items():
        print(f"{name:14} {middle:13} {last:11}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "retention_soak.json").write_text(
        json.dumps(
            {
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": f"{platform.machine()}, {platform.python_version()}",
                "duration_s": args.duration,
                "retention_s": args.retention,
                "submitted": run.submitted,
                "refused": run.failed,
                "levels": {k: {"middle_max": m, "last_max": x} for k, (m, x) in levels.items()},
                "samples": run.samples,
            },
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
