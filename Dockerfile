ARG BASE=python:3.11-slim
ARG CUDA_BASE=nvidia/cuda:13.0.2-cudnn-runtime-ubuntu22.04
# DeepFER service image: `deepfer serve` with the models from service/deepfer/models/ baked in, no TensorFlow.
#
#   docker build -t deepfer:cpu .                  CPU, the default target (the last stage in this file)
#   docker build --target gpu -t deepfer:gpu .     onnxruntime-gpu on CUDA_BASE. PyPI's onnxruntime-gpu wheels
#                                                  need CUDA 13 + cuDNN 9 (1.31 says so when its CUDA provider
#                                                  fails to load): keep CUDA_BASE's CUDA major in step with it.
#
# Stages: build (venv: runtime deps, then the package) -> cpu (BASE + that venv, nothing else);
#         gpu-python (CUDA_BASE + Python 3.11) -> gpu-build (same venv recipe) -> gpu.
# Settings come only from DEEPFER_* environment variables (service/deepfer/settings.py); the image sets the two a
# container needs (listen on all interfaces, port 8000). BASE is overridable because the CI builds on a
# locally made Debian 12 / Python 3.11 base (no registry is reachable there): see tests/deploy/test_container.py.

FROM ${BASE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
# Dependencies get a layer of their own, keyed on pyproject.toml alone, so a code change rebuilds in seconds.
COPY pyproject.toml docker/requirements.py ./
RUN python requirements.py --variant cpu > requirements.txt \
    && /opt/venv/bin/pip install -r requirements.txt
# Only service/ (the package deepfer) is copied; the wheel holds that package alone, package-data brings the models.
# (README.md stays out too: setuptools only notes its absence, and no one reads a long description in here.)
COPY service/ service/
# pip and setuptools are build tools: dropping them saves ~25 MB and leaves nothing that installs code at run time.
RUN /opt/venv/bin/pip install --no-deps . \
    && /opt/venv/bin/pip uninstall -q -y pip setuptools

FROM ${CUDA_BASE} AS gpu-python
# Ubuntu 22.04's default Python is 3.10; 3.11, the version the service is tested on, is in its universe archive.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3.11 python3.11-venv \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s /usr/bin/python3.11 /usr/local/bin/python

FROM gpu-python AS gpu-build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml docker/requirements.py ./
RUN python requirements.py --variant gpu > requirements.txt \
    && /opt/venv/bin/pip install -r requirements.txt
COPY service/ service/
RUN /opt/venv/bin/pip install --no-deps . \
    && /opt/venv/bin/pip uninstall -q -y pip setuptools

FROM gpu-python AS gpu
RUN groupadd --gid 10001 deepfer \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin deepfer
COPY --from=gpu-build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    DEEPFER_HOST=0.0.0.0 DEEPFER_PORT=8000 DEEPFER_EXECUTION_PROVIDER=cuda
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('DEEPFER_PORT', '8000'), timeout=2)"]
ENTRYPOINT ["deepfer"]
CMD ["serve"]

FROM ${BASE} AS cpu
# A fixed numeric uid, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
RUN groupadd --gid 10001 deepfer \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin deepfer
# Root owns the venv and the models: the service only reads them, so a compromised process cannot rewrite them.
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    DEEPFER_HOST=0.0.0.0 DEEPFER_PORT=8000
USER 10001:10001
EXPOSE 8000
# Python rather than curl: the official slim image has no curl, and one more package is one more CVE feed.
# urlopen raises on anything but 2xx, so a 503 from /readyz (models not loaded yet, draining) fails the check.
# It calls 127.0.0.1, so DEEPFER_HOST must stay 0.0.0.0 or a loopback address.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('DEEPFER_PORT', '8000'), timeout=2)"]
# Exec form: `deepfer` is PID 1 and gets SIGTERM itself, so uvicorn drains for DEEPFER_GRACEFUL_SHUTDOWN_S.
ENTRYPOINT ["deepfer"]
CMD ["serve"]
