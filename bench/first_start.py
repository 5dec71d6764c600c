"""The first five minutes: how long a fresh clone takes from ``make serve`` to ``/ready``,
and how big its virtualenv is.

Each run clones this repository (its HEAD) into a new folder and runs ``make serve`` there
on a free loopback port, timing until ``GET /ready`` answers 200; then it generates one
image (so the modules a request needs are loaded, and their bytecode written) and
measures the virtualenv. Targets: at most 90 s and 500 MB.

- ``light``: ``make serve`` as it is (``.[safety]``: no torch, no test tools), pip's
  cache warm; ``--runs`` times, for a median.
- ``light, cold cache``: the same with ``PIP_NO_CACHE_DIR=1``, so every package is fetched
  from the index again (a first install on a new machine).
- ``baseline``: what ``make serve`` used to do, install ``.[all]`` (torch, diffusers,
  test tools), pip's cache warm. Skip it with ``--no-baseline``.

Writes ``bench/results/first_start.json``.

    python3 bench/first_start.py [--runs 3] [--no-baseline]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
READY_LIMIT_S = 900


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def first_start(target: str, env_extra: dict[str, str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="imagegate-first-") as scratch:
        clone = Path(scratch) / "imagegate"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        port = free_port()
        env = os.environ | env_extra | {"IMAGEGATE_PORT": str(port)}
        env.pop("VIRTUAL_ENV", None)
        started = time.monotonic()
        command = ["make", target] if target == "serve" else ["make", target, "serve"]
        server = subprocess.Popen(
            command,
            cwd=clone,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            ready_s = wait_ready(f"http://127.0.0.1:{port}", started, server)
            generate(f"http://127.0.0.1:{port}")
            venv = folder_bytes(clone / ".venv")
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
    return {"ready_s": round(ready_s, 1), "venv_mb": round(venv / 1e6)}


def wait_ready(base: str, started: float, server: subprocess.Popen[bytes]) -> float:
    while time.monotonic() - started < READY_LIMIT_S:
        if server.poll() is not None:
            raise RuntimeError(f"make serve exited with {server.returncode}")
        try:
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError("not ready in time")


def generate(base: str) -> None:
    job = httpx.post(f"{base}/generate", json={"prompt": "a lighthouse at dusk"}, timeout=30)
    job_id = job.raise_for_status().json()["job_id"]
    for _ in range(120):
        if httpx.get(f"{base}/status/{job_id}", timeout=10).json()["status"] == "completed":
            return
        time.sleep(0.25)
    raise RuntimeError("the first job did not complete")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    light = [first_start("serve", {}) for _ in range(args.runs)]
    cold = first_start("serve", {"PIP_NO_CACHE_DIR": "1"})
    result: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "light": {
            "runs": light,
            "ready_s_median": statistics.median(r["ready_s"] for r in light),
            "venv_mb_median": statistics.median(r["venv_mb"] for r in light),
        },
        "light_cold_cache": cold,
        "targets": {"ready_s": 90, "venv_mb": 500},
    }
    if not args.no_baseline:
        result["baseline_all_extras"] = first_start(".venv/.installed", {})
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "first_start.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
