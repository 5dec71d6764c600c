"""The one settings object, read from ``IMAGEGATE_*`` environment variables.

Build it with :func:`load_settings` at start-up and pass it in; nothing else reads the
environment. ``MODEL`` and ``MAX_RETRIES`` (the names the original deployment used) are
accepted as aliases of ``IMAGEGATE_MODEL`` and ``IMAGEGATE_MAX_RETRIES``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SECRET_KEY_FILE = "secret_key"  # noqa: S105 (a file name, not a secret)
MIN_SECRET_CHARS = 32
SafetyCategory = Literal["violence", "gore", "sexual", "weapons", "hate"]  # safety.verdict's
NEGATIVE_EXEMPT: tuple[SafetyCategory, ...] = ("violence", "gore", "sexual", "weapons")


def _negative_exempt() -> list[SafetyCategory]:
    return list(NEGATIVE_EXEMPT)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IMAGEGATE_", extra="ignore", frozen=True)

    data_dir: Path = Path("imagegate-data")
    database_url: str = ""
    backend: Literal["sketch", "diffusers", "openai"] = "sketch"
    model: str | None = Field(
        default=None, validation_alias=AliasChoices("IMAGEGATE_MODEL", "MODEL", "model")
    )
    workers: int = Field(default=1, ge=0, le=64)
    max_retries: int = Field(
        default=3,
        ge=1,
        le=100,
        validation_alias=AliasChoices("IMAGEGATE_MAX_RETRIES", "MAX_RETRIES", "max_retries"),
    )
    job_timeout_s: float = Field(default=60.0, gt=0)
    lease_s: float = Field(default=30.0, gt=0)
    poll_interval_s: float = Field(default=1.0, gt=0)
    retry_backoff_s: float = Field(default=2.0, ge=0)
    drain_grace_s: float = Field(default=20.0, ge=0)
    sketch_delay_ms: int = Field(default=0, ge=0, le=600_000)
    preview_every: int = Field(default=0, ge=0, le=1000)  # 0: no previews
    max_batch: int = Field(default=1, ge=1, le=64)  # compatible jobs per forward pass
    batch_window_ms: int = Field(default=25, ge=0, le=5000)  # how long to gather a batch
    poll_hint_s: int = Field(default=2, ge=1, le=60)  # Retry-After on unfinished jobs
    sse_keepalive_s: float = Field(default=15.0, gt=0)
    # Slow clients (api/connections.py): open SSE and WebSocket streams per process, past
    # which new ones are refused; a write the client reads nothing of for send_timeout_s
    # aborts its connection; idle connections are closed.
    max_event_streams: int = Field(default=1000, ge=1)
    send_timeout_s: float = Field(default=30.0, gt=0)
    keep_alive_timeout_s: int = Field(default=5, ge=1)  # between a connection's requests
    header_timeout_s: float = Field(default=20.0, gt=0)  # for a request's headers to arrive
    send_buffer_bytes: int | None = Field(default=None, ge=4096)  # per connection; unset: OS's
    ws_ping_interval_s: float = Field(default=20.0, gt=0)  # a WebSocket's keep-alive pings
    ws_ping_timeout_s: float = Field(default=20.0, gt=0)  # for the pong; else it is closed
    webhook_secret: SecretStr | None = None  # whsec_…; several, comma separated, to rotate
    webhook_allow_private: bool = False
    webhook_allow_networks: list[str] = Field(default_factory=list)
    webhook_retry_schedule_s: list[float] = Field(
        default_factory=lambda: [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0]
    )
    webhook_timeout_s: float = Field(default=10.0, gt=0)  # each attempt's total deadline
    webhook_concurrency: int = Field(default=16, ge=1, le=256)  # attempts at once, a 1/4 per host
    secret_key: SecretStr | None = None
    secret_key_previous: list[SecretStr] = Field(default_factory=list)  # still verify URLs
    signed_url_ttl_s: int = Field(default=7 * 24 * 3600, gt=0)
    public_url: str | None = None
    # storage: files under data_dir/images, or an S3 bucket (storage/s3.py, the s3 extra)
    storage_url: str | None = Field(default=None, pattern=r"^s3://[a-z0-9][a-z0-9.-]+(/.*)?$")
    s3_endpoint_url: str | None = None  # MinIO, R2, …; unset: AWS
    s3_region: str | None = None  # R2: "auto"
    s3_access_key_id: str | None = None  # unset (with the secret): boto3's credential chain
    s3_secret_access_key: SecretStr | None = None
    s3_presigned_urls: bool = False  # image links go to S3, for min(ttl, 7 days)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    auto_migrate: bool = True
    min_size: int = Field(default=64, ge=8)
    max_size: int = Field(default=2048, ge=8)
    default_size: int = 512
    default_steps: int = Field(default=30, ge=1, le=500)
    max_steps: int = Field(default=150, ge=1, le=1000)
    default_guidance: float = 7.5
    max_body_bytes: int = Field(default=64 * 1024, gt=0)
    log_level: str = "info"
    log_json: bool = False
    # openai backend: any OpenAI-compatible Images API (generators/openai.py)
    openai_base_url: str = "https://api.openai.com/v1"
    openai_api_key: SecretStr | None = None
    openai_model: str = "dall-e-2"
    openai_timeout_s: float = Field(default=60.0, gt=0)  # read timeout per request
    openai_max_retries: int = Field(default=3, ge=0, le=20)
    openai_retry_backoff_s: float = Field(default=0.5, ge=0)
    openai_max_response_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)  # read no more
    # diffusers backend: Hugging Face diffusers pipelines (generators/diffusers.py)
    diffusers_device: str = Field(default="auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$")
    diffusers_dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    diffusers_scheduler: str | None = Field(default=None, pattern=r"^[A-Za-z0-9]+Scheduler$")
    diffusers_attention_slicing: bool = False
    diffusers_vae_tiling: bool = False
    diffusers_cpu_offload: bool = False  # GPU only: keep idle submodels in RAM
    diffusers_taesd: str | None = None  # an AutoencoderTiny (dir or hub id) for previews
    diffusers_cpu_threads: int | None = Field(default=None, ge=1)  # default: cores - 1
    # GPU tuning (docs/gpu.md). sdpa: torch's fused attention, diffusers' default on torch 2;
    # eager: diffusers' classic processors, to compare or to debug.
    diffusers_attention: Literal["sdpa", "eager"] = "sdpa"
    diffusers_channels_last: bool = False  # NHWC memory for the UNet's and VAE's convolutions
    # torch.compile of the UNet (or transformer) at warm-up, in this mode; reduce-overhead
    # also replays CUDA graphs. Warm-up then runs at default_size, alone and at max_batch.
    diffusers_compile: Literal[
        "off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"
    ] = "off"
    diffusers_compile_vae: bool = True  # with compile on: the VAE's decoder too
    # safety: the prompt pipeline, templates and output moderation (imagegate/safety/)
    safety_enabled: bool = True  # check every prompt before a job is recorded
    safety_review_warn: bool = False  # hold prompts with warn terms for a reviewer too
    # What a negative prompt may name, since it keeps them out ("nsfw, gore" is common);
    # anything else in it (hate) is judged as in the prompt.
    safety_negative_exempt: list[SafetyCategory] = Field(default_factory=_negative_exempt)
    output_moderation: bool = True  # NudeNet on every image before it can be fetched
    output_flagged: Literal["fail", "review"] = "fail"  # a flagged image: fail, or hold it
    admin_token: SecretStr | None = None  # Bearer token of the /v1/admin routes
    safety_semantic: bool = True  # the embedding stage (needs the safety extra)
    safety_terms_file: Path | None = None  # replaces the bundled safety/data/terms.yaml
    # where the encoder's embedding table is read from (written there if missing): by
    # default data_dir/models; the API image ships one
    safety_table_dir: Path | None = None
    templates_file: Path | None = None  # more prompt templates, added to the built-in ones
    safety_remote_url: str | None = None  # an OpenAI-compatible /v1/moderations endpoint
    safety_remote_api_key: SecretStr | None = None
    safety_remote_timeout_s: float = Field(default=2.0, gt=0)
    nudenet_thresholds: dict[str, float] = Field(default_factory=dict)  # label -> min score
    # tenancy: keys, browser tokens, limits, costs and budgets (tenancy/, limits/, usage/)
    auth: Literal["off", "required"] = "off"  # off: one local tenant, no key needed
    key_cache_s: float = Field(default=1.0, ge=0, le=2)  # a revoked key works this long
    auth_failures_per_minute: int = Field(default=30, ge=1)  # per address; then 429s
    client_token_max_ttl_s: int = Field(default=3600, ge=1)
    redis_url: str | None = None  # rate limits shared by every API replica
    limit_requests_per_minute: int | None = Field(default=None, ge=1)  # per tenant (or IP)
    limit_images_per_minute: int | None = Field(default=None, ge=1)
    limit_images_per_day: int | None = Field(default=None, ge=1)
    limit_concurrent_jobs: int | None = Field(default=None, ge=1)
    max_queue_depth: int | None = Field(default=None, ge=1)  # queued jobs; past it, 503
    prices_file: Path | None = None  # replaces the bundled usage/data/prices.yaml
    failed_job_cost_fraction: float = Field(default=0.0, ge=0, le=1)  # of what it used
    # the result cache (imagegate/cache/): seeded requests only
    cache_enabled: bool = True
    cache_scope: Literal["tenant", "global"] = "tenant"  # global: shared across tenants
    cache_ttl_days: float = Field(default=30.0, gt=0)  # refreshed by each hit
    # Retention (imagegate.retention): what the sweeper deletes, and when.
    retention_days: float = Field(default=90.0, gt=0)  # ended jobs and their images
    events_retention_hours: float = Field(default=24.0, gt=0)  # all but a job's final event
    preview_retention_minutes: float = Field(default=60.0, ge=0)  # after the job ended
    quarantine_retention_days: float = Field(default=30.0, gt=0)  # withheld images
    sweep_interval_s: float = Field(default=60.0, ge=0)  # 0: only `imagegate gc` sweeps
    sweep_batch: int = Field(default=200, ge=1, le=10_000)  # of each kind, per pass
    trusted_proxies: list[str] = Field(default_factory=list)  # whose X-Forwarded-For counts
    trusted_hosts: list[str] = Field(default_factory=list)  # Host names besides loopback's
    # pages of other sites allowed in: a JSON list, or comma separated; * (any) with auth off
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    fair_share: bool = True  # false: first come, first served across tenants
    fair_share_window_s: float = Field(default=60.0, ge=0)  # recent service, per tenant
    # `imagegate worker`'s probes and metrics (worker/probes.py); the port unset: no server
    worker_metrics_port: int | None = Field(default=None, ge=0, le=65535)
    worker_metrics_host: str = "127.0.0.1"  # 0.0.0.0 in a pod, for the kubelet and Prometheus
    worker_stall_s: float | None = Field(default=None, gt=0)  # unset: 2 x max(timeout, lease)
    # Kubernetes: idle workers' pods are cheaper to delete (worker/deletion_cost.py)
    pod_deletion_cost: bool = False
    pod_name: str | None = Field(
        default=None, validation_alias=AliasChoices("IMAGEGATE_POD_NAME", "POD_NAME", "pod_name")
    )
    pod_namespace: str | None = Field(  # unset: the service account's namespace file
        default=None,
        validation_alias=AliasChoices("IMAGEGATE_POD_NAMESPACE", "POD_NAMESPACE", "pod_namespace"),
    )
    kubernetes_service_host: str | None = Field(  # set by Kubernetes in every pod
        default=None,
        validation_alias=AliasChoices("KUBERNETES_SERVICE_HOST", "kubernetes_service_host"),
    )
    kubernetes_service_port: int = Field(
        default=443,
        ge=1,
        le=65535,
        validation_alias=AliasChoices("KUBERNETES_SERVICE_PORT", "kubernetes_service_port"),
    )
    kubernetes_account_dir: Path = Path("/var/run/secrets/kubernetes.io/serviceaccount")

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        """``*``, ``https://a.example,https://b.example`` or a JSON list."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _check_ranges(self) -> Settings:
        if self.min_size > self.max_size:
            raise ValueError("IMAGEGATE_MIN_SIZE must not exceed IMAGEGATE_MAX_SIZE")
        if not self.min_size <= self.default_size <= self.max_size:
            raise ValueError("IMAGEGATE_DEFAULT_SIZE must lie within the size range")
        for name in ("secret_key", "admin_token", "webhook_secret"):
            secret = getattr(self, name)
            if secret is not None and not secret.get_secret_value().strip():
                # An empty key would sign anything, an empty token would open the admin API.
                raise ValueError(f"IMAGEGATE_{name.upper()} is set but empty")
        if "*" in self.cors_origins and self.auth != "off":
            # Any page could then spend a tenant's budget with a token it got hold of.
            raise ValueError(
                "IMAGEGATE_CORS_ORIGINS=* is allowed only with IMAGEGATE_AUTH=off; "
                "list the origins of your app's pages instead"
            )
        self._check_strength()
        return self

    def _check_strength(self) -> None:
        """Guessable secrets are refused: 32 characters at least (32 bytes of key for each
        whsec_ webhook secret), which ``secrets.token_urlsafe(32)`` gives."""
        named = [("secret_key", self.secret_key), ("admin_token", self.admin_token)]
        for k in self.secret_key_previous:
            named.append(("secret_key_previous", k))
        for name, secret in named:
            if secret is not None and len(secret.get_secret_value().strip()) < MIN_SECRET_CHARS:
                raise ValueError(f"IMAGEGATE_{name.upper()} must be {MIN_SECRET_CHARS}+ characters")
        if self.webhook_secret is not None:
            from imagegate.webhooks.signing import key_bytes

            for part in self.webhook_secret.get_secret_value().split(","):
                if len(key_bytes(part.strip())) < MIN_SECRET_CHARS:
                    raise ValueError("each IMAGEGATE_WEBHOOK_SECRET must hold 32+ bytes of key")

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL with the driver this project uses spelled out."""
        url = self.database_url or f"sqlite:///{self.data_dir / 'imagegate.db'}"
        for plain in ("postgresql://", "postgres://"):
            if url.startswith(plain):
                return "postgresql+psycopg://" + url[len(plain) :]
        return url

    @property
    def is_postgres(self) -> bool:
        return self.sqlalchemy_url.startswith("postgresql")

    @property
    def model_name(self) -> str:
        """The model this process serves: the setting, or the backend's default."""
        defaults = {
            "sketch": "sketch-v1",
            "diffusers": "stabilityai/sd-turbo",
            "openai": self.openai_model,
        }
        return self.model or defaults[self.backend]

    @property
    def webhook_secrets(self) -> list[str]:
        from imagegate.webhooks.signing import derive_secret

        if self.webhook_secret is None:
            return [derive_secret(self.signing_key)]
        return [part.strip() for part in self.webhook_secret.get_secret_value().split(",")]

    @property
    def signing_key(self) -> bytes:
        assert self.secret_key is not None, "load_settings() always provides a key"
        return self.secret_key.get_secret_value().encode()


def load_settings(**overrides: Any) -> Settings:
    """Read the environment (plus ``overrides``), and make sure a secret key exists.

    A missing secret key is generated once and kept in the data dir, so signed URLs stay
    valid across restarts of an embedded install.
    """
    settings = Settings(**overrides)
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # keys, images, database
    if settings.secret_key is None:
        key = _stored_secret_key(settings.data_dir / SECRET_KEY_FILE)
        settings = settings.model_copy(update={"secret_key": SecretStr(key)})
    return settings


def _stored_secret_key(path: Path) -> str:
    if not path.exists():
        # Made owner-only from the start (never readable between a write and a chmod), under
        # an unguessable draft name, then linked into place: a racing process uses ours.
        draft = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            file.write(secrets.token_urlsafe(32))
        with contextlib.suppress(FileExistsError):
            os.link(draft, path)
        draft.unlink()
    key = path.read_text(encoding="ascii").strip()
    if len(key) < MIN_SECRET_CHARS:  # an empty key would sign anything
        raise ValueError(
            f"The secret key in {path} is shorter than {MIN_SECRET_CHARS} characters; "
            "delete the file to have a new one made, or set IMAGEGATE_SECRET_KEY."
        )
    return key
