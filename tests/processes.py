"""Real ``imagegate`` processes on loopback ports, for the end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.helpers import eventually

IMAGEGATE = str(Path(sys.executable).parent / "imagegate")
# Processes start without the semantic safety model (seconds to load): its own tests load it.
QUICK = {"IMAGEGATE_SAFETY_SEMANTIC": "false"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Process:
    def __init__(
        self, args: list[str], env: dict[str, str], log: Path, program: str = IMAGEGATE
    ) -> None:
        self.log = log
        self._handle = log.open("ab")
        self.popen = subprocess.Popen(
            [program, *args],
            env=os.environ | QUICK | env,
            stdout=self._handle,
            stderr=self._handle,
        )

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def wait(self, timeout_s: float = 30) -> int:
        try:
            code = self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:  # say where it got to, not only that it hung
            raise AssertionError(
                f"{' '.join(map(str, self.popen.args))} was still running after {timeout_s} s;"
                f" its log ends:\n{self.output()[-3000:]}"
            ) from None
        self._handle.close()
        return code

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.signal(signal.SIGKILL)
        self.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def imagegate_process(args: list[str], env: dict[str, str], log: Path) -> Iterator[Process]:
    process = Process(args, env, log)
    try:
        yield process
    finally:
        process.stop()


@contextmanager
def serve(env: dict[str, str], log: Path, workers: int) -> Iterator[httpx.Client]:
    """``imagegate serve`` on a free port; yields a client once the server answers."""
    port = free_port()
    args = ["serve", "--port", str(port), "--workers", str(workers)]
    with imagegate_process(args, env, log) as process:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)

        def up() -> bool:
            assert process.popen.poll() is None, process.output()
            try:
                return client.get("/ready").status_code == 200
            except httpx.TransportError:
                return False

        eventually(up, timeout_s=60)
        try:
            yield client
        finally:
            client.close()
            process.signal(signal.SIGTERM)
            # uvicorn shuts down gracefully, then re-raises the signal it caught.
            assert process.wait() in (0, -signal.SIGTERM), process.output()
