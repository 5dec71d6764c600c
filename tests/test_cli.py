"""The ``imagegate`` command, run as a real process."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from PIL import Image

from tests.processes import IMAGEGATE, QUICK, serve


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [IMAGEGATE, *args],
        env=os.environ | QUICK | env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_generate_embedded_writes_a_png(tmp_path: Path, database_url: str) -> None:
    env = {"IMAGEGATE_DATABASE_URL": database_url}
    done = run(["generate", "a lighthouse at dusk", "-o", "out.png", "--seed", "4"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    image = Image.open(tmp_path / "out.png")
    assert image.size == (512, 512)
    assert image.text["seed"] == "4"  # type: ignore[attr-defined]
    assert "wrote out.png" in done.stderr
    assert (tmp_path / "imagegate-data").is_dir()  # the embedded defaults, in the working dir


def test_generate_against_a_server_matches_embedded(tmp_path: Path, database_url: str) -> None:
    env = {"IMAGEGATE_DATA_DIR": str(tmp_path / "data"), "IMAGEGATE_DATABASE_URL": database_url}
    args = ["generate", "red boats", "--seed", "9", "--width", "256", "--style", "anime"]
    with serve(env, tmp_path / "serve.log", workers=1) as client:
        remote = run([*args, "-o", "remote.png", "--url", str(client.base_url)], {}, tmp_path)
    assert remote.returncode == 0, remote.stderr
    local = run([*args, "-o", "local.png"], env, tmp_path)
    assert local.returncode == 0, local.stderr
    remote_png, local_png = Image.open(tmp_path / "remote.png"), Image.open(tmp_path / "local.png")
    assert remote_png.tobytes() == local_png.tobytes()  # same pixels; the PNGs differ by job id
    assert remote_png.size == (256, 512)


def test_generate_reports_bad_input_plainly(tmp_path: Path, database_url: str) -> None:
    env = {"IMAGEGATE_DATABASE_URL": database_url}
    done = run(["generate", "x", "--width", "100"], env, tmp_path)
    assert done.returncode == 1
    assert "multiple of 8" in done.stderr
    assert "Traceback" not in done.stderr


def test_db_upgrade_creates_the_schema(tmp_path: Path, database_url: str) -> None:
    env = {"IMAGEGATE_DATABASE_URL": database_url, "IMAGEGATE_DATA_DIR": str(tmp_path)}
    first = run(["db", "upgrade"], env, tmp_path)
    again = run(["db", "upgrade"], env, tmp_path)
    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    assert "database at head" in again.stderr


def test_a_worker_whose_model_is_missing_says_so_plainly(tmp_path: Path, database_url: str) -> None:
    env = {
        "IMAGEGATE_DATABASE_URL": database_url,
        "IMAGEGATE_DATA_DIR": str(tmp_path),
        "IMAGEGATE_BACKEND": "diffusers",
        "IMAGEGATE_MODEL": str(tmp_path / "no-such-model"),
        "HF_HUB_OFFLINE": "1",
    }
    done = run(["worker"], env, tmp_path)
    assert done.returncode == 1
    assert "no-such-model" in done.stderr
    assert "Traceback" not in done.stderr


def test_webhook_secret_prints_the_signing_secret(tmp_path: Path) -> None:
    env = {"IMAGEGATE_DATA_DIR": str(tmp_path)}
    first, again = run(["webhook-secret"], env, tmp_path), run(["webhook-secret"], env, tmp_path)
    assert first.returncode == 0 and first.stdout.startswith("whsec_")
    assert first.stdout == again.stdout  # derived from the kept secret key: stable
    current, old = (
        "whsec_rTkGLOEWUvl6/j62v8yNnLqmEGFkzAcDnRcfTbbImTA=",
        "whsec_INVcmZelCaZI0/wuameSWa2N7Pmq/4l8GLq8ttYPrAg=",
    )
    secrets = {"IMAGEGATE_WEBHOOK_SECRET": f"{current},{old}"}
    given = run(["webhook-secret"], env | secrets, tmp_path)
    assert given.stdout.strip() == current
