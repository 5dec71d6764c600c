# syntax=docker/dockerfile:1.7
# ImageGate's container images: three targets, one file.
#
#   docker build --target api        -t imagegate/api:0.1.0 .         API replicas (no torch)
#   docker build --target worker-gpu -t imagegate/worker-gpu:0.1.0 .  workers on NVIDIA GPUs
#   docker build --target embedded   -t imagegate/embedded:0.1.0 .    API and workers in one
#
# No model weights are baked in: the worker images keep Hugging Face's cache under /models
# (HF_HOME), a volume. tests/test_deploy.py lints this file with hadolint, and
# tests/test_deploy_images.py replays each target's `pip install` into a fresh venv, then
# starts the target's command.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
# Ubuntu 24.04's Python is 3.12 (ImageGate supports 3.11 and later); torch's wheels bring
# their own CUDA libraries, and this base brings the driver hooks of the NVIDIA runtime.
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu24.04

# --- what every Python image shares -------------------------------------------------------
FROM ${PYTHON_IMAGE} AS python-base
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/imagegate \
    PATH=/opt/imagegate/bin:$PATH
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/imagegate --create-home \
        --shell /usr/sbin/nologin imagegate

# --- builders: one venv per target, from the working tree ----------------------------------
FROM python-base AS source
RUN python -m venv /opt/imagegate
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src

# The API answers requests and runs the prompt checks: no torch, no diffusers, no NudeNet.
FROM source AS api-build
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install "./[prompt-safety,s3]"
# The prompt encoder's embedding table as a file, which the API reads rows from (not heap).
RUN python -m imagegate.safety.universal /opt/imagegate/share/imagegate

# Everything but torch: the sketch and openai backends, prompt safety, output moderation.
# Add the diffusers backend (CPU torch) with --build-arg EMBEDDED_EXTRAS=safety,s3,diffusers.
FROM source AS embedded-build
ARG EMBEDDED_EXTRAS=safety,s3
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install "./[${EMBEDDED_EXTRAS}]"

# --- api --------------------------------------------------------------------------------
FROM python-base AS api
COPY --from=api-build /opt/imagegate /opt/imagegate
ENV IMAGEGATE_DATA_DIR=/var/lib/imagegate/data \
    IMAGEGATE_SAFETY_TABLE_DIR=/opt/imagegate/share/imagegate \
    IMAGEGATE_PORT=8000
WORKDIR /var/lib/imagegate
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('IMAGEGATE_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["imagegate"]
CMD ["serve", "--host", "0.0.0.0", "--workers", "0"]

# --- embedded: one process, API and workers (SQLite and local files unless told otherwise) --
FROM python-base AS embedded
COPY --from=embedded-build /opt/imagegate /opt/imagegate
ENV IMAGEGATE_DATA_DIR=/var/lib/imagegate/data \
    IMAGEGATE_PORT=8000 \
    IMAGEGATE_WORKER_METRICS_PORT=9100 \
    IMAGEGATE_WORKER_METRICS_HOST=0.0.0.0 \
    HF_HOME=/models
RUN install -d -o 10001 -g 10001 /models /var/lib/imagegate/data
VOLUME ["/models", "/var/lib/imagegate/data"]
WORKDIR /var/lib/imagegate
USER 10001:10001
EXPOSE 8000 9100
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('IMAGEGATE_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["imagegate"]
CMD ["serve", "--host", "0.0.0.0"]

# --- worker-gpu: `imagegate worker` with the diffusers backend on CUDA ----------------------
FROM ${CUDA_IMAGE} AS cuda-base
# The distribution's own Python, kept current by its security updates rather than pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/imagegate --create-home \
        --shell /usr/sbin/nologin imagegate
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/imagegate \
    PATH=/opt/imagegate/bin:$PATH

FROM cuda-base AS worker-gpu-build
RUN python3 -m venv /opt/imagegate
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# torch is pinned here, as in the test extra; PyPI's Linux wheels are the CUDA builds.
ARG TORCH_VERSION=2.13.0
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install "./[diffusers,safety,s3]" "torch==${TORCH_VERSION}"

FROM cuda-base AS worker-gpu
COPY --from=worker-gpu-build /opt/imagegate /opt/imagegate
ENV IMAGEGATE_DATA_DIR=/var/lib/imagegate/data \
    IMAGEGATE_BACKEND=diffusers \
    IMAGEGATE_DIFFUSERS_DEVICE=cuda \
    IMAGEGATE_WORKER_METRICS_PORT=9100 \
    IMAGEGATE_WORKER_METRICS_HOST=0.0.0.0 \
    HF_HOME=/models
RUN install -d -o 10001 -g 10001 /models /var/lib/imagegate/data
VOLUME ["/models"]
WORKDIR /var/lib/imagegate
USER 10001:10001
EXPOSE 9100
# Liveness of the worker loop; the start period leaves room for loading the model.
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('IMAGEGATE_WORKER_METRICS_PORT', '9100'), timeout=4)"]
ENTRYPOINT ["imagegate"]
CMD ["worker"]
