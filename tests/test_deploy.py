"""The deployment files, checked without a container engine or a cluster: the Dockerfile
(hadolint, and each target's install replayed into a fresh venv and started), compose.yaml
(the Compose specification's schema), and the kustomize overlays (rendered, then checked
against Kubernetes', KEDA's and the ServiceMonitor's schemas), with the invariants that
tie them to the code: real settings, routes that exist, grace periods, images."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import kubernetes_validate
import pytest
from fastapi import FastAPI
from sqlalchemy import update
from starlette.routing import Match

from imagegate.api.app import create_app
from imagegate.jobs.queue_stats import queue_stats
from imagegate.jobs.store import JobStore
from imagegate.jobs.tables import jobs
from imagegate.settings import Settings, load_settings
from imagegate.worker.liveness import Health
from imagegate.worker.probes import ProbeServer
from tests.deploy_files import (
    COMPOSE,
    DOCKERFILE,
    ENV_NAME,
    K8S,
    OUR_IMAGE,
    REPO,
    SCHEMAS,
    TARGETS,
    VERSION,
    chain,
    compose_file,
    container_env,
    containers,
    dockerfile_stages,
    exec_form,
    image_env,
    kubectl,
    pip_installs,
    render,
    seconds,
    setting_env_names,
    settings_from_env,
)
from tests.helpers import spec

KUBERNETES_VERSION = "1.30.0"  # the oldest release the manifests are meant for
OVERLAYS = ("demo", "gpu")
COMPONENTS = ("monitoring", "scale-to-zero")
needs_kubectl = pytest.mark.skipif(
    kubectl() is None,
    reason="no kubectl 1.27+ (kustomize v5): `kubectl kustomize` renders the overlays",
)


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / name).read_text())
    return loaded


# --- the Dockerfile ---------------------------------------------------------------------


def hadolint(dockerfile: str) -> subprocess.CompletedProcess[str]:
    binary = Path(sys.executable).parent / "hadolint"
    return subprocess.run(
        [str(binary), "--no-color", "-"], input=dockerfile, capture_output=True, text=True
    )


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    done = hadolint(DOCKERFILE.read_text())
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_hadolint_does_report_a_dockerfile_with_faults() -> None:
    done = hadolint("FROM python:latest\nRUN pip install flask\nCMD imagegate serve\n")
    assert done.returncode != 0
    assert {"DL3007", "DL3013", "DL3025"} <= set(re.findall(r"DL\d{4}", done.stdout))


def test_each_target_runs_imagegate_unprivileged_in_exec_form() -> None:
    stages = dockerfile_stages()
    for target in TARGETS:
        stage = stages[target]
        (user,) = stage.values("USER")
        assert user.split(":")[0] not in ("0", "root"), target
        assert exec_form(stage, "ENTRYPOINT") == ["imagegate"], target
        assert exec_form(stage, "CMD")[0] in ("serve", "worker"), target
        (check,) = stage.values("HEALTHCHECK")
        probe = json.loads(check[check.index("CMD") + 3 :])
        assert probe[:2] == ["python", "-c"], f"{target}: HEALTHCHECK must be in exec form"


def test_base_images_are_pinned_to_full_versions() -> None:
    for stage in dockerfile_stages().values():
        if stage.base in dockerfile_stages():
            continue
        _, _, tag = stage.base.partition(":")
        assert re.match(r"\d+\.\d+\.\d+", tag), f"{stage.name}: {stage.base} is not pinned"
    assert chain(dockerfile_stages(), "api")[0].base.startswith("python:3.11.")
    for name, service in compose_file()["services"].items():  # the engines', too
        _, _, tag = service["image"].partition(":")  # PostgreSQL's releases are 16.8, …
        release = r"(\d+\.\d+\.\d+|\d+\.\d+-|RELEASE\.\d{4}-)"
        assert re.match(release, tag), f"{name}: {service['image']}"


def test_no_weights_are_baked_into_an_image() -> None:
    """Worker images point Hugging Face's cache at a volume, and no step downloads a
    model or copies anything but the package."""
    stages = dockerfile_stages()
    for target in ("worker-gpu", "embedded"):
        env = image_env(stages, target)
        assert env["HF_HOME"] == "/models"
        assert any('"/models"' in v for v in stages[target].values("VOLUME")), target
    text = DOCKERFILE.read_text()
    assert not re.search(r"from_pretrained|huggingface-cli|hf download|snapshot_download", text)
    copied = {
        value.split()[0]
        for stage in stages.values()
        for value in stage.values("COPY")
        if not value.startswith("--from")
    }
    assert copied <= {"pyproject.toml", "src"}


def test_dockerignore_lets_in_what_the_dockerfile_copies_and_little_else() -> None:
    rules = [
        line for line in (REPO / ".dockerignore").read_text().splitlines() if line[:1] not in "#"
    ]
    assert rules[0] == "*"  # everything out, then what the build needs back in
    kept = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert kept == {"pyproject.toml", "README.md", "src"}


def extras_of(target: str) -> dict[str, list[str]]:
    """The extras that a target's ``pip install ./[…]`` names, with their requirements."""
    (command,) = pip_installs(dockerfile_stages(), target)
    match = re.search(r"\./\[([^\]]+)\]", command)
    assert match is not None, command
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    optional = declared["optional-dependencies"]
    return {extra: optional[extra] for extra in match.group(1).split(",")}


def test_the_api_image_has_prompt_safety_and_no_models_and_workers_have_theirs() -> None:
    assert set(extras_of("api")) == {"prompt-safety", "s3"}  # the prompt checks, S3
    api = " ".join(r for reqs in extras_of("api").values() for r in reqs)
    assert not re.search(r"\b(torch|diffusers|transformers|nudenet)\b", api)
    worker = " ".join(r for reqs in extras_of("worker-gpu").values() for r in reqs)
    assert "diffusers" in worker and "nudenet" in worker  # the model, output moderation
    assert "nudenet" in " ".join(r for reqs in extras_of("embedded").values() for r in reqs)
    (command,) = pip_installs(dockerfile_stages(), "worker-gpu")
    assert re.search(r'"torch==\d+\.\d+\.\d+"', command)  # as pinned as the test extra


def requirement_names(extra: str) -> set[str]:
    optional = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {
        re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower()
        for r in optional["optional-dependencies"][extra]
    }


def test_prompt_safety_is_the_safety_extra_less_output_moderation() -> None:
    """The API image installs `prompt-safety`: all of `safety` but NudeNet and the ONNX
    Runtime it runs on. A package the prompt checks come to need goes into both extras
    (the API image's replay below shows that the checks then load)."""
    output_moderation = {"nudenet", "onnxruntime"}
    assert requirement_names("safety") - requirement_names("prompt-safety") == output_moderation
    assert requirement_names("prompt-safety") <= requirement_names("safety")


# --- compose.yaml -----------------------------------------------------------------------


def test_compose_file_matches_the_compose_specification() -> None:
    validator = jsonschema.Draft202012Validator(schema("compose-spec.json"))
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(compose_file())]
    assert not errors, errors


def test_the_compose_schema_refuses_a_misspelt_healthcheck() -> None:
    broken = copy.deepcopy(compose_file())
    broken["services"]["redis"]["healthcheck"]["tset"] = broken["services"]["redis"][
        "healthcheck"
    ].pop("test")
    validator = jsonschema.Draft202012Validator(schema("compose-spec.json"))
    assert not validator.is_valid(broken)


def test_every_compose_service_is_health_checked_and_waited_for() -> None:
    services = compose_file()["services"]
    one_shots = {name for name, s in services.items() if s.get("restart") == "no"}
    assert one_shots == {"migrate", "minio-bucket"}
    for name, service in services.items():
        check = service.get("healthcheck", {})
        if name in one_shots:  # exits 0 when done: there is nothing to probe
            assert check == {"disable": True}, name
        else:
            assert check.get("test", [None])[0] == "CMD" and check.get("interval"), name
        for needed, how in service.get("depends_on", {}).items():
            wanted = "service_completed_successfully" if needed in one_shots else "service_healthy"
            assert how == {"condition": wanted}, f"{name} -> {needed}"


def test_compose_runs_two_apis_behind_the_proxy_and_a_gpu_profile() -> None:
    services = compose_file()["services"]
    assert set(services["proxy"]["depends_on"]) == {"api-1", "api-2"}
    nginx = (REPO / "deploy" / "compose" / "nginx.conf").read_text()
    assert re.findall(r"server (api-\d):8000", nginx) == ["api-1", "api-2"]
    trusted = json.loads(services["api-1"]["environment"]["IMAGEGATE_TRUSTED_PROXIES"])
    assert trusted == [services["proxy"]["networks"]["imagegate"]["ipv4_address"]]
    gpu = services["worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert "models:/models" in gpu["volumes"]


def test_compose_stop_grace_outlasts_the_drain() -> None:
    stages = dockerfile_stages()
    for name, service in compose_file()["services"].items():
        target = service.get("build", {}).get("target")
        if target is None or service.get("restart") == "no":
            continue
        settings = settings_from_env(image_env(stages, target) | service["environment"])
        grace = seconds(service["stop_grace_period"])
        command = service.get("command") or exec_form(stages[target], "CMD")
        if command[0] == "worker":
            assert grace > settings.drain_grace_s + settings.job_timeout_s, name
        else:  # uvicorn waits drain_grace_s + 5 for open connections
            assert grace > settings.drain_grace_s + 5, name


# --- Kubernetes ---------------------------------------------------------------------------


def kustomization(tmp_path: Path, overlay: str, components: tuple[str, ...]) -> Path:
    """A throwaway kustomization: an overlay plus components, as an operator would add."""
    folder = tmp_path / f"{overlay}-{'-'.join(components) or 'plain'}"
    folder.mkdir()
    lines = ["resources:", f"  - {os.path.relpath(K8S / 'overlays' / overlay, folder)}"]
    lines += [
        "components:",
        *(f"  - {os.path.relpath(K8S / 'components' / c, folder)}" for c in components),
    ]
    (folder / "kustomization.yaml").write_text("\n".join(lines) + "\n")
    return folder


RENDERINGS = [(o, ()) for o in OVERLAYS] + [(o, COMPONENTS) for o in OVERLAYS]


@pytest.fixture(scope="module", params=RENDERINGS, ids=lambda p: "+".join([p[0], *p[1]]))
def manifests(request: pytest.FixtureRequest, tmp_path_factory: Any) -> list[dict[str, Any]]:
    if kubectl() is None:
        pytest.skip("no kubectl 1.27+ (kustomize v5): `kubectl kustomize` renders the overlays")
    overlay, parts = request.param
    if not parts:
        return render(K8S / "overlays" / overlay)
    return render(kustomization(tmp_path_factory.mktemp("k"), overlay, parts))


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    return found


def test_manifests_match_the_kubernetes_and_crd_schemas(manifests: list[dict[str, Any]]) -> None:
    crds = {
        "ScaledObject": schema("keda-scaledobject-v1alpha1.json"),
        "ServiceMonitor": schema("servicemonitor-v1.reduced.json"),
    }
    for doc in manifests:
        if doc["kind"] in crds:
            jsonschema.Draft202012Validator(crds[doc["kind"]]).validate(doc)
        else:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    assert len(of_kind(manifests, "ScaledObject")) == 1


def test_the_keda_schema_refuses_broken_scaled_objects() -> None:
    validator = jsonschema.Draft202012Validator(schema("keda-scaledobject-v1alpha1.json"))
    good = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "x"},
        "spec": {"scaleTargetRef": {"name": "w"}, "triggers": [{"type": "cpu", "metadata": {}}]},
    }
    assert validator.is_valid(good)
    misspelt = copy.deepcopy(good)
    misspelt["spec"]["minReplicas"] = 0  # KEDA's field is minReplicaCount
    no_triggers = copy.deepcopy(good)
    no_triggers["spec"]["triggers"] = []
    numeric = copy.deepcopy(good)
    numeric["spec"]["triggers"][0]["metadata"] = {"targetQueryValue": 2}  # must be a string
    for broken in (misspelt, no_triggers, numeric):
        assert not validator.is_valid(broken)


def test_every_imagegate_variable_anywhere_is_a_real_setting(
    manifests: list[dict[str, Any]],
) -> None:
    texts = [json.dumps(manifests), COMPOSE.read_text(), DOCKERFILE.read_text()]
    texts.append((REPO / "deploy" / "compose" / "nginx.conf").read_text())
    named = {name for text in texts for name in ENV_NAME.findall(text)}
    assert named - setting_env_names() == set()
    assert {"IMAGEGATE_WORKER_METRICS_PORT", "IMAGEGATE_POD_DELETION_COST"} <= named


def effective_settings(docs: list[dict[str, Any]], container: dict[str, Any]) -> Settings:
    """What a container's process reads: its image's ENV, then the manifest's values."""
    target = OUR_IMAGE.match(container["image"])
    assert target is not None, container["image"]
    env = image_env(dockerfile_stages(), target.group(1)) | container_env(docs, container)
    return settings_from_env(env)


def worker_of(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    deployment = one(docs, "Deployment", "imagegate-worker")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return deployment, container


def test_worker_grace_period_outlasts_the_drain_and_a_job(
    manifests: list[dict[str, Any]],
) -> None:
    deployment, container = worker_of(manifests)
    settings = effective_settings(manifests, container)
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    # The drain waits drain_grace_s; a job then still running is aborted and handed back.
    assert grace > settings.drain_grace_s + settings.job_timeout_s
    api = one(manifests, "Deployment", "imagegate-api")["spec"]["template"]["spec"]
    api_settings = effective_settings(manifests, api["containers"][0])
    pre_stop = api["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert api["terminationGracePeriodSeconds"] > (
        api_settings.drain_grace_s + 5 + float(pre_stop[-1])
    )


def app_serves(app: FastAPI, path: str) -> bool:
    """Whether the app routes ``GET path`` to a handler, as it would a real request."""
    scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "headers": []}
    return any(route.matches(scope)[0] == Match.FULL for route in app.router.routes)


def test_api_probes_hit_routes_of_the_app(manifests: list[dict[str, Any]], tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'x.db'}")
    app = create_app(settings, 0)
    assert not app_serves(app, "/healthz")  # the worker's, not the API's: the check can fail
    api = one(manifests, "Deployment", "imagegate-api")["spec"]["template"]["spec"]
    paths = probe_paths(api["containers"][0])
    assert paths == {"/health", "/ready"}
    stages = dockerfile_stages()
    for target in ("api", "embedded"):
        (check,) = stages[target].values("HEALTHCHECK")
        paths |= set(re.findall(r"127\.0\.0\.1:%s(/\w+)", check))
    for service in compose_file()["services"].values():
        if service.get("image", "").startswith(("imagegate/api", "imagegate/embedded")):
            paths |= set(re.findall(r"127\.0\.0\.1:8000(/\w+)", str(service["healthcheck"])))
    assert paths >= {"/health", "/ready"}
    assert all(app_serves(app, path) for path in paths), paths


def probe_paths(container: dict[str, Any]) -> set[str]:
    kinds = ("startupProbe", "readinessProbe", "livenessProbe")
    return {container[k]["httpGet"]["path"] for k in kinds if k in container}


class _Alive:
    def metrics(self) -> bytes:
        return b"# nothing\n"

    def liveness(self) -> Health:
        return Health(True, "ok")

    def readiness(self) -> Health:
        return Health(True, "ok")


@pytest.fixture(scope="module")
def probe_server() -> Iterator[str]:
    """The worker's real probe server, on loopback, over a stand-in for the worker."""
    server = ProbeServer(_Alive(), "127.0.0.1", 0)
    server.start()
    yield f"http://127.0.0.1:{server.port}"
    server.stop()


def test_worker_probes_hit_routes_the_worker_serves(
    manifests: list[dict[str, Any]], probe_server: str
) -> None:
    _, container = worker_of(manifests)
    paths = probe_paths(container)
    assert paths == {"/readyz", "/healthz"}
    (check,) = dockerfile_stages()["worker-gpu"].values("HEALTHCHECK")
    paths |= set(re.findall(r"127\.0\.0\.1:%s(/\w+)", check))
    assert httpx.get(f"{probe_server}/nowhere").status_code == 404  # the check can fail
    for path in paths:
        assert httpx.get(f"{probe_server}{path}").status_code == 200, path
    settings = effective_settings(manifests, container)
    (port,) = container["ports"]
    assert port["containerPort"] == settings.worker_metrics_port
    assert settings.worker_metrics_host == "0.0.0.0"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300  # the model's load


def test_workers_may_set_their_own_deletion_cost(manifests: list[dict[str, Any]]) -> None:
    deployment, container = worker_of(manifests)
    pod = deployment["spec"]["template"]["spec"]
    assert effective_settings(manifests, container).pod_deletion_cost
    downward = {
        e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"]
        for e in container["env"]
        if "fieldRef" in e.get("valueFrom", {})
    }
    assert downward["POD_NAME"] == "metadata.name"
    assert downward["POD_NAMESPACE"] == "metadata.namespace"
    assert {"POD_NAME", "POD_NAMESPACE"} <= setting_env_names()
    account = one(manifests, "ServiceAccount", pod["serviceAccountName"])
    binding = one(manifests, "RoleBinding", "imagegate-worker-deletion-cost")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"],
         "namespace": account["metadata"]["namespace"]}
    ]  # fmt: skip
    role = one(manifests, "Role", binding["roleRef"]["name"])
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "patch"]}]


def test_api_scales_on_cpu_and_workers_on_their_models_queue(
    manifests: list[dict[str, Any]], request: pytest.FixtureRequest
) -> None:
    hpa = one(manifests, "HorizontalPodAutoscaler", "imagegate-api")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 10)
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    scaled = one(manifests, "ScaledObject", "imagegate-worker")["spec"]
    assert scaled["scaleTargetRef"]["name"] == "imagegate-worker"
    assert scaled["fallback"]["replicas"] >= 1
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "postgresql"
    assert trigger["metadata"]["activationTargetQueryValue"] == "0"
    _, container = worker_of(manifests)
    model = effective_settings(manifests, container).model_name
    assert trigger["metadata"]["query"].endswith(f"model = '{model}')")
    assert trigger["metadata"]["connectionFromEnv"] in {e["name"] for e in container["env"]}
    _, components = request.node.callspec.params["manifests"]
    assert scaled["minReplicaCount"] == (0 if "scale-to-zero" in components else 1)


def test_the_api_and_workers_agree_on_the_model(manifests: list[dict[str, Any]]) -> None:
    models = {
        effective_settings(manifests, c).model_name
        for workload, c in containers(manifests)
        if workload["kind"] == "Deployment"
    }
    assert len(models) == 1, models


# --- the KEDA query, run on a real database -------------------------------------------------


def keda_query(overlay: str) -> str:
    docs = render(K8S / "overlays" / overlay)
    query: str = one(docs, "ScaledObject", "imagegate-worker")["spec"]["triggers"][0]["metadata"][
        "query"
    ]
    return query


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_keda_query_counts_what_the_queue_metric_counts(store: JobStore, overlay: str) -> None:
    """The count KEDA scales on is imagegate_queue_depth of the pool's model: queued jobs,
    not followers of an identical job, nor jobs that recorded another model, nor ended
    ones. It runs as written on the database (both kinds)."""
    docs = render(K8S / "overlays" / overlay)
    (trigger,) = one(docs, "ScaledObject", "imagegate-worker")["spec"]["triggers"]
    model = effective_settings(docs, worker_of(docs)[1]).model_name
    queued = [store.submit(spec(f"job {n}"), "t").id for n in range(5)]
    with store.engine.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.id == queued[0]).values(follows=queued[1]))
        conn.execute(update(jobs).where(jobs.c.id == queued[2]).values(model="other-model"))
        conn.execute(update(jobs).where(jobs.c.id == queued[3]).values(model=model))
    store.cancel(store.submit(spec("ended"), "t").id)
    with store.engine.connect() as conn:
        counted = conn.exec_driver_sql(trigger["metadata"]["query"]).scalar_one()
    depth = {s.model: s.depth for s in queue_stats(store.engine, model)}
    assert counted == depth[model] == 3


# --- image names and tags ---------------------------------------------------------------


def test_images_are_named_after_dockerfile_targets_and_the_version(
    manifests: list[dict[str, Any]],
) -> None:
    stages = dockerfile_stages()
    assert set(TARGETS) <= set(stages)
    texts = [json.dumps(manifests), COMPOSE.read_text(), DOCKERFILE.read_text()]
    texts.append((REPO / "docs" / "deploying.md").read_text())
    for name, tag in (pair for text in texts for pair in OUR_IMAGE.findall(text)):
        assert name in TARGETS and tag == VERSION, f"imagegate/{name}:{tag}"
    for service in compose_file()["services"].values():
        if "build" in service:
            assert service["image"] == f"imagegate/{service['build']['target']}:{VERSION}"
    for workload, container in containers(manifests):
        target = OUR_IMAGE.match(container["image"])
        assert target is not None
        command = container.get("args") or exec_form(stages[target.group(1)], "CMD")
        role = workload["metadata"]["labels"]["app.kubernetes.io/component"]
        wanted = {"api": {"api"}, "migrate": {"api"}, "worker": {"embedded", "worker-gpu"}}
        assert target.group(1) in wanted[role], (role, container["image"])
        assert command[0] == {"api": "serve", "migrate": "db", "worker": "worker"}[role]
        if role == "worker" and effective_settings(manifests, container).backend == "diffusers":
            assert target.group(1) == "worker-gpu"  # the only image with torch


def test_compose_workers_run_images_with_output_moderation() -> None:
    stages = dockerfile_stages()
    for name, service in compose_file()["services"].items():
        target = service.get("build", {}).get("target")
        command = service.get("command") or (exec_form(stages[target], "CMD") if target else [])
        if command[:1] == ["worker"]:
            assert target in ("embedded", "worker-gpu"), name
            assert "nudenet" in json.dumps(extras_of(target)), name
