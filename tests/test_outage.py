"""The database goes away (issue 13): a PostgreSQL cluster of the test's own is stopped
and started again under a running server. Meanwhile every route answers 503
``database_unavailable`` with ``Retry-After`` (never a 500) and ``/ready`` is false; after
it, the server and its worker carry on without a restart, and every accepted job ends."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import SettingsFactory
from tests.helpers import eventually, wait_for_job
from tests.processes import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


class Cluster:
    """A throwaway PostgreSQL cluster on a free loopback port, run as the postgres user."""

    def __init__(self, bin_dir: Path, root: Path) -> None:
        self.bin, self.root, self.port = bin_dir, root, free_port()
        self.data = root / "data"
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.root / "log")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    bin_dir = _postgres_bin()
    if bin_dir is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the outage test needs PostgreSQL's server binaries under CI")
        pytest.skip("the outage test needs PostgreSQL's server binaries (initdb, pg_ctl)")
    root = Path(tempfile.mkdtemp(prefix="imagegate-pg-"))
    root.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    own = Cluster(bin_dir, root)
    own.start()
    try:
        yield own
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            own.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


def test_a_database_restart_is_a_503_and_nothing_is_lost(
    cluster: Cluster,
    make_settings: SettingsFactory,
    server_factory: Callable[..., httpx.Client],
) -> None:
    api = server_factory(make_settings(database_url=cluster.url))
    before = [api.post("/v1/jobs", json={"prompt": f"a kite {i}"}).json()["id"] for i in range(3)]

    cluster.stop()
    answers = [
        api.post("/v1/jobs", json={"prompt": "a kite"}),
        api.post("/generate", json={"prompt": "a kite"}),
        api.get(f"/status/{before[0]}"),
        api.get(f"/v1/jobs/{before[0]}"),
        api.get("/v1/jobs"),
    ]
    for answer in answers:
        assert answer.status_code == 503, (answer.request.url, answer.text)
        assert answer.json()["code"] == "database_unavailable"
        assert int(answer.headers["Retry-After"]) >= 1
    ready = api.get("/ready")
    assert ready.status_code == 503 and ready.json()["checks"]["database"] != "ok"

    cluster.start()
    after = eventually(lambda: api.post("/v1/jobs", json={"prompt": "a kite again"}), timeout_s=30)
    assert after.status_code == 202
    for job_id in [*before, after.json()["id"]]:
        assert wait_for_job(api, job_id, timeout_s=60)["status"] == "completed"
    assert api.get("/ready").status_code == 200
