# syntax=docker/dockerfile:1
# One image for the API, the migrations and every kind of worker (compose.yaml builds it once
# and picks the command for each service).
#
#   docker build -t selfhosted-stt .                      # everything, GPU workers included
#   docker build -t selfhosted-stt --target runtime .     # smaller: no CUDA libraries (no GPU)

FROM python:3.11-slim AS runtime

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv

RUN pip install --no-cache-dir "uv==0.13.8"

# A fixed uid/gid, so that a host directory mounted at /data can be given to it.
RUN groupadd --system --gid 10001 stt \
    && useradd --system --uid 10001 --gid stt --create-home --home-dir /home/stt \
       --shell /usr/sbin/nologin stt \
    && mkdir -p /data \
    && chown stt:stt /data

WORKDIR /app

# Dependencies first (exactly as locked, without the dev group): code changes keep this layer.
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project

# The project itself. It stays an editable install: core.migrate finds alembic.ini and
# migrations/ beside the packages, in /app.
COPY alembic.ini ./
COPY core ./core
COPY api ./api
COPY worker ./worker
COPY migrations ./migrations
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev

ENV PATH="/app/.venv/bin:${PATH}" \
    HOST=0.0.0.0 \
    PORT=8000 \
    STT_DATA_DIR=/data \
    HF_HOME=/data/huggingface

# Processes run from the data directory: the embedded (filesystem) broker keeps its exchange
# tables in ./control, which must be writable. /app stays read-only; the editable install puts
# it on sys.path, so `python -m worker` and `stt` work from here.
WORKDIR /data
USER stt
EXPOSE 8000

# Alive = the API answers on its port. compose.yaml gives workers (no port) their own check.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('PORT', '8000'), timeout=4)"]

# compose.yaml runs `stt serve --workers 0`, `stt migrate`, `python -m worker` and
# `python -m worker --webhooks` instead.
CMD ["stt", "serve"]


# The runtime plus what a GPU worker needs: CTranslate2 (under faster-whisper) loads cuBLAS for
# CUDA 12 and cuDNN 9 at run time, and python:3.11-slim has neither. NVIDIA ships them as
# wheels; the driver itself comes from the host through the NVIDIA Container Toolkit. They are
# loaded only on `STT_DEVICE=cuda` (or `auto` with a GPU visible), so the API, migrate and CPU
# workers run this same image. The last stage: what `docker build .` and compose build.
FROM runtime AS gpu

ARG CUBLAS_VERSION=12.8.4.1
ARG CUDNN_VERSION=9.10.2.21

USER root
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install --python /app/.venv/bin/python \
        "nvidia-cublas-cu12==${CUBLAS_VERSION}" "nvidia-cudnn-cu12==${CUDNN_VERSION}"

ENV LD_LIBRARY_PATH=/app/.venv/lib/python3.11/site-packages/nvidia/cublas/lib:/app/.venv/lib/python3.11/site-packages/nvidia/cudnn/lib \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

USER stt
CMD ["stt", "serve"]
