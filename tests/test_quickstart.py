"""The README's first five minutes, run the way a newcomer would: a fresh copy of the
repository, ``make serve``, then every command of the section, checked against the
output the README shows.

The section is read from the README itself: each ``sh`` block is run with bash in the
copy, and the ``text`` block after it is what it must print. In the expected text, ``…``
stands for any characters, and a line of ``…`` alone for any lines. ``<job_id>`` and
``<result_url>`` are filled in from the answers before them, as the README says. The one
liberty taken is the port: the server listens on a free one, not 8000.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.processes import free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Your first five minutes"
READY_TIMEOUT_S = 600  # a cold pip cache on a slow machine; the benchmark has the real figure


@dataclass(frozen=True)
class Step:
    command: str
    expected: str | None


def quickstart_steps(readme: str) -> list[Step]:
    section = readme.split(SECTION, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(sh|text)\n(.*?)```", section, flags=re.DOTALL)
    steps: list[Step] = []
    for kind, body in blocks:
        if kind == "sh":
            steps.append(Step(body.strip(), None))
        else:
            assert steps and steps[-1].expected is None, "a text block follows its command"
            steps[-1] = Step(steps[-1].command, body.rstrip("\n"))
    return steps


def matches(expected: str, actual: str) -> bool:
    """Every expected line, in order, is an actual line (``…``: anything)."""
    lines = iter(actual.splitlines())
    for wanted in expected.splitlines():
        if wanted.strip() == "…":
            continue
        pattern = re.compile(".*?".join(re.escape(part) for part in wanted.split("…")))
        if not any(pattern.fullmatch(line.rstrip()) for line in lines):
            return False
    return True


def fresh_copy(target: Path) -> Path:
    """The repository's files as a clone would have them (tracked, and new ones not yet
    committed), with no virtualenv, data or caches."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        source = ROOT / os.fsdecode(name)
        if source.is_file():
            (target / os.fsdecode(name)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / os.fsdecode(name))
    return target


@pytest.fixture(scope="module")
def newcomer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    """A fresh copy with ``make serve`` running in it, once ``/ready`` answers."""
    copy = fresh_copy(tmp_path_factory.mktemp("clone"))
    readme = (copy / "README.md").read_text()
    assert "make serve" in readme.split(SECTION, 1)[0]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env |= {"IMAGEGATE_PORT": str(port), "IMAGEGATE_LOG_LEVEL": "warning"}
    log = (copy / "make-serve.log").open("wb")
    server = subprocess.Popen(
        ["make", "serve"], cwd=copy, env=env, stdout=log, stderr=log, start_new_session=True
    )
    try:
        wait_ready(port, server, copy / "make-serve.log")
        yield copy, port
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        log.close()


def wait_ready(port: int, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        assert server.poll() is None, f"make serve exited:\n{log.read_text()[-3000:]}"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"make serve was not ready in {READY_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def test_the_readme_first_five_minutes_work_as_written(newcomer: tuple[Path, int]) -> None:
    copy, port = newcomer
    steps = quickstart_steps((copy / "README.md").read_text())
    assert len(steps) >= 6 and all(step.expected for step in steps)
    found: dict[str, str] = {}
    for step in steps:
        command = fill(step.command, port, found)
        output = run_until_it_matches(command, fill(step.expected or "", port, {}), copy)
        remember(output, found)
    assert {"job_id", "result_url"} <= set(found)
    assert (copy / "lighthouse.png").read_bytes().startswith(b"\x89PNG")
    assert (copy / "watercolor.png").read_bytes().startswith(b"\x89PNG")


def fill(text: str, port: int, found: dict[str, str]) -> str:
    text = text.replace("localhost:8000", f"localhost:{port}")
    for name, value in found.items():
        text = text.replace(f"<{name}>", value)
    return text


def run_until_it_matches(command: str, expected: str, cwd: Path) -> str:
    """Run the step; a status that is not final yet is polled again, as a reader would."""
    deadline = time.monotonic() + 30
    while True:
        ran = subprocess.run(
            ["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=60
        )
        output = ran.stdout + ran.stderr
        if ran.returncode == 0 and matches(expected, output):
            return output
        if time.monotonic() > deadline:
            pytest.fail(f"$ {command}\n{output}\n--- expected ---\n{expected}")
        time.sleep(0.5)


def remember(output: str, found: dict[str, str]) -> None:
    for line in output.splitlines():
        try:
            answer = json.loads(line)
        except ValueError:
            continue
        if isinstance(answer, dict):
            found.update(
                {k: v for k in ("job_id", "result_url") if isinstance(v := answer.get(k), str)}
            )
