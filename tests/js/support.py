"""What the JS tests share: Node and the client's installed dev dependencies (skipped
locally without them, required under CI, where .ci/run installs them with ``npm ci``), and
a second origin for the browser tests: this folder served from http://localhost:<port>,
while the API under test answers at http://127.0.0.1:<its port>. Both are loopback."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
CLIENT = ROOT / "clients" / "js"
PAGES = Path(__file__).resolve().parent


def require_js_client() -> str:
    """The path of ``node``, once the package's dependencies are installed and it is built."""
    node = shutil.which("node")
    missing = None
    if node is None:
        missing = "node (Node.js 20 or later)"
    elif not (CLIENT / "node_modules" / "typescript").exists():
        missing = "the JS client's dev dependencies (npm ci in clients/js)"
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing} must be installed under CI")
        pytest.skip(f"needs {missing}")
    assert node is not None
    _build(node)
    return node


@functools.cache
def _build(node: str) -> None:
    """The tests import dist/: built from the current source, once per test run."""
    build = subprocess.run(
        [node, "node_modules/typescript/bin/tsc", "-p", "tsconfig.json"],
        cwd=CLIENT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr


def run_node(args: list[str], env: dict[str, str] | None = None, timeout_s: float = 300) -> str:
    """Runs node in clients/js; fails the test with its output unless it exits 0."""
    node = require_js_client()
    done = subprocess.run(
        [node, *args],
        cwd=CLIENT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=os.environ | {"PYTHON": sys.executable} | (env or {}),
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def app_origin() -> Iterator[str]:
    """Serves this folder on a free loopback port; yields its origin, named ``localhost``."""
    handler = functools.partial(_Quiet, directory=str(PAGES))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
