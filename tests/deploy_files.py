"""Reading the deployment files as the tools that use them would: the Dockerfile's stages,
compose.yaml with its variables filled in, and the manifests that kustomize renders."""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import yaml
from dockerfile_parse import DockerfileParser
from pydantic import AliasChoices

from imagegate.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "compose.yaml"
K8S = REPO / "deploy" / "k8s"
SCHEMAS = REPO / "deploy" / "schemas"
TARGETS = ("api", "worker-gpu", "embedded")
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
ENV_NAME = re.compile(r"\bIMAGEGATE_[A-Z0-9_]+\b")
OUR_IMAGE = re.compile(r"\bimagegate/([a-z0-9-]+):([A-Za-z0-9._-]+)")
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


@dataclass
class Stage:
    name: str
    base: str  # an image, or an earlier stage's name
    instructions: list[dict[str, Any]] = field(default_factory=list)

    def values(self, instruction: str) -> list[str]:
        return [i["value"] for i in self.instructions if i["instruction"] == instruction]


def dockerfile_stages() -> dict[str, Stage]:
    """The stages by name, with the global ARG defaults filled into each FROM."""
    parser = DockerfileParser(str(DOCKERFILE))
    stages: dict[str, Stage] = {}
    global_args: dict[str, str] = {}
    current: Stage | None = None
    for item in parser.structure:
        if item["instruction"] == "FROM":
            base, _, name = item["value"].partition(" AS ")
            current = Stage(name.strip(), expand(base.strip(), global_args))
            stages[current.name] = current
        elif current is None and item["instruction"] == "ARG":
            key, _, default = item["value"].partition("=")
            global_args[key] = default
        elif current is not None:
            current.instructions.append(item)
    return stages


def chain(stages: Mapping[str, Stage], target: str) -> list[Stage]:
    """The target's stage and its ancestors (through FROM), the oldest first."""
    line = [stages[target]]
    while line[-1].base in stages:
        line.append(stages[line[-1].base])
    return line[::-1]


def image_env(stages: Mapping[str, Stage], target: str) -> dict[str, str]:
    """The ENV a container of ``target`` starts with."""
    env: dict[str, str] = {}
    for stage in chain(stages, target):
        for value in stage.values("ENV"):
            for pair in shlex.split(value):
                key, _, setting = pair.partition("=")
                env[key] = setting
    return env


def exec_form(stage: Stage, instruction: str) -> list[str]:
    """ENTRYPOINT or CMD, which must be in exec (JSON) form."""
    (value,) = stage.values(instruction)
    parsed: list[str] = json.loads(value)
    return parsed


def venv_source(stages: Mapping[str, Stage], target: str) -> Stage:
    """The build stage whose /opt/imagegate the target copies."""
    for stage in chain(stages, target):
        for value in stage.values("COPY"):
            match = re.match(r"--from=(\S+)\s+/opt/imagegate\s", value)
            if match:
                return stages[match.group(1)]
    raise AssertionError(f"{target} copies no venv from a build stage")


def pip_installs(stages: Mapping[str, Stage], target: str) -> list[str]:
    """The target's ``pip install`` commands as its build runs them: RUN's own flags
    (``--mount=…``) dropped, and the stages' ARG defaults filled in."""
    args: dict[str, str] = {}
    commands = []
    for stage in chain(stages, venv_source(stages, target).name):
        for item in stage.instructions:
            if item["instruction"] == "ARG":
                key, _, default = item["value"].partition("=")
                args[key] = default
            elif item["instruction"] == "RUN" and "pip install" in item["value"]:
                command = re.sub(r"^(--\S+\s+)+", "", item["value"])
                commands.append(expand(command, args))
    return commands


def expand(text: str, values: Mapping[str, str]) -> str:
    """``${NAME}`` and ``${NAME:-default}``, as Docker and Compose fill them in."""
    return VARIABLE.sub(lambda m: values.get(m.group(1)) or m.group(2) or "", text)


def compose_file() -> dict[str, Any]:
    """compose.yaml as Compose reads it with none of its variables set: parsed, then each
    string's variables filled in (``$$`` is a literal ``$``)."""
    loaded: dict[str, Any] = _interpolate(yaml.safe_load(COMPOSE.read_text()))
    return loaded


def _interpolate(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _interpolate(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_interpolate(value) for value in node]
    if isinstance(node, str):
        return "$".join(expand(part, {}) for part in node.split("$$"))
    return node


@functools.cache
def kubectl() -> str | None:
    """A kubectl whose built-in kustomize is v5 or later (kubectl 1.27+), or None: older
    ones (Debian's kubernetes-client is 1.20, with kustomize 2) cannot read components."""
    binary = shutil.which("kubectl")
    if binary is None:
        return None
    shown = subprocess.run(
        [binary, "version", "--client"], capture_output=True, text=True, timeout=30, check=False
    ).stdout
    version = re.search(r"Kustomize Version: v(\d+)", shown)
    return binary if version and int(version.group(1)) >= 5 else None


def render(kustomization_dir: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize DIR``: the manifests an apply would send."""
    binary = kubectl()
    assert binary is not None
    done = subprocess.run(
        [binary, "kustomize", str(kustomization_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def setting_env_names() -> set[str]:
    """Every environment name that ``Settings`` reads."""
    names = set()
    for name, info in Settings.model_fields.items():
        names.add(f"IMAGEGATE_{name.upper()}")
        if isinstance(info.validation_alias, AliasChoices):
            names.update(c.upper() for c in info.validation_alias.choices if isinstance(c, str))
    return names


def settings_from_env(env: Mapping[str, str | None]) -> Settings:
    """The settings a process with ``env`` gets, read from the environment as the process
    would read them (the values that come from Secrets left out)."""
    ours = {k: v for k, v in env.items() if ENV_NAME.fullmatch(k) and v is not None}
    with mock.patch.dict(os.environ, ours):
        return Settings()


def seconds(duration: str | int) -> float:
    """A Compose duration (``1m30s``, ``100s``, ``300``) in seconds."""
    if isinstance(duration, int):
        return float(duration)
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts, duration
    return sum(float(n) * units[u] for n, u in parts)


def containers(docs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, container) for every container of every Deployment and Job."""
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            for container in doc["spec"]["template"]["spec"]["containers"]:
                yield doc, container


def container_env(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """The literal environment of a container: its ConfigMaps' data, then its own values."""
    maps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
    return env
