"""Busy pods are dearer to delete: the ``controller.kubernetes.io/pod-deletion-cost``
annotation of this worker's own pod follows the jobs it holds.

When a Deployment scales down, its ReplicaSet removes the pods of lowest cost first, so
idle workers go before busy ones and a scale-down rarely cuts a generation short (the
drain grace covers the rest). The cost is 100 per job in flight (0 when idle). It is
written through the in-cluster API with the pod's service account, only when it changes;
a failed write is logged and tried again later, and never stops the worker. The pod's
service account needs ``patch`` on ``pods`` in its namespace.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import structlog

from imagegate.settings import Settings

log = structlog.get_logger(__name__)

ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
COST_PER_JOB = 100
MAX_BACKOFF_S = 60.0


def deletion_cost(jobs_in_flight: int) -> int:
    return COST_PER_JOB * max(0, jobs_in_flight)


@dataclass(frozen=True, slots=True)
class PodRef:
    """Where this pod is, and how to reach the API server about it."""

    api_url: str
    namespace: str
    name: str
    account_dir: Path  # token, ca.crt, namespace: the service account's mounted files

    @classmethod
    def from_settings(cls, settings: Settings) -> PodRef:
        """The downward API's POD_NAME and POD_NAMESPACE when the manifest sets them, else
        the pod's hostname (its name, unless the spec sets another) and the service
        account's namespace file."""
        host = settings.kubernetes_service_host
        if not host:
            raise ValueError(
                "IMAGEGATE_POD_DELETION_COST needs KUBERNETES_SERVICE_HOST: run it in a pod"
            )
        host = f"[{host}]" if ":" in host else host  # an IPv6 cluster
        account = settings.kubernetes_account_dir
        namespace = settings.pod_namespace or _read(account / "namespace")
        name = settings.pod_name or socket.gethostname()
        return cls(f"https://{host}:{settings.kubernetes_service_port}", namespace, name, account)

    @property
    def path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/pods/{self.name}"


class DeletionCostAnnotator:
    """Checks the jobs in flight every ``interval_s`` and writes the cost when it changed."""

    def __init__(
        self,
        pod: PodRef,
        jobs_in_flight: Callable[[], int],
        interval_s: float = 1.0,
        timeout_s: float = 5.0,
    ) -> None:
        self.pod = pod
        self._jobs_in_flight = jobs_in_flight
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self.written: int | None = None  # the cost the API server has, as far as we know
        self._failures = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="deletion-cost", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=self._timeout_s + 1)

    def _run(self) -> None:
        while True:
            self.sync()
            if self._stopping.wait(self._pause_s()):
                return

    def _pause_s(self) -> float:
        if not self._failures:
            return self._interval_s
        return min(MAX_BACKOFF_S, self._interval_s * 2.0**self._failures)

    def sync(self) -> bool:
        """Write the cost if it changed; False when the write failed (tried again later)."""
        cost = deletion_cost(self._jobs_in_flight())
        if cost == self.written:
            return True
        try:
            self._patch(cost)
        except (httpx.HTTPError, OSError, ssl.SSLError) as exc:
            self._failures += 1
            log.warning("deletion_cost.write_failed", cost=cost, error=_describe(exc))
            return False
        self._failures, self.written = 0, cost
        log.debug("deletion_cost.written", cost=cost, pod=self.pod.name)
        return True

    def _patch(self, cost: int) -> None:
        # Read on every write: kubelet rotates projected service account tokens.
        token = _read(self.pod.account_dir / "token")
        tls = ssl.create_default_context(cafile=str(self.pod.account_dir / "ca.crt"))
        body = {"metadata": {"annotations": {ANNOTATION: str(cost)}}}
        with httpx.Client(base_url=self.pod.api_url, verify=tls, timeout=self._timeout_s) as api:
            response = api.patch(
                self.pod.path,
                content=json.dumps(body),
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "application/merge-patch+json",
                    "Accept": "application/json",
                },
            )
        response.raise_for_status()


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8").strip()


def _describe(exc: Exception) -> str:
    """What went wrong, without the request (whose headers hold the token)."""
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    return f"{type(exc).__name__}: {exc}"
