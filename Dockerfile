# syntax=docker/dockerfile:1
#
# One image for every ModelKiln role; the command picks it:
#   modelkiln api --host 0.0.0.0 --port 8000     (the default CMD)
#   modelkiln worker --queues gpu --concurrency 1
#   modelkiln migrate
#   celery -A worker.celery_app flower --port=5555
#
# Build:  docker build -t modelkiln:cpu .
#         docker build --build-arg TORCH_VARIANT=cu130 -t modelkiln:cu130 .
# docker-compose.yml builds it for you. This file is checked statically by tests/deploy/
# (no Docker engine runs where the tests run); see README.md, "Deployment".

ARG PYTHON_VERSION=3.11

# --- builder: a virtual environment with PyTorch, the dependencies and the project ---------
FROM python:${PYTHON_VERSION}-slim AS builder

# TORCH_VARIANT chooses the PyTorch build, and with it the package index it comes from:
#   cpu            -> https://download.pytorch.org/whl/cpu    (no CUDA libraries, ~1 GB smaller)
#   cu126, cu130…  -> https://download.pytorch.org/whl/<variant> (CUDA runtime bundled in
#                     the wheels; the host needs only the NVIDIA driver and container toolkit)
# Which CUDA variants exist depends on TORCH_VERSION: see the install matrix on pytorch.org.
# TORCH_VERSION matches the Makefile's TORCH_SPEC, the version the test suite runs against.
ARG TORCH_VARIANT=cpu
ARG TORCH_VERSION=2.13.0

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv

# PyTorch first, from its own index, so the open `torch>=2.4` in pyproject.toml is already met
# and the dependencies below never pull PyPI's default (CUDA) build into a CPU image.
RUN pip install --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" \
        "torch==${TORCH_VERSION}"

# Dependencies only (this layer is reused until pyproject.toml changes), plus the `flower`
# extra so the same image serves the Flower dashboard.
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['flower']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

# The project itself, as a regular (non-editable) install into the venv.
COPY README.md ./
COPY app ./app
COPY worker ./worker
COPY ml ./ml
RUN pip install --no-deps . \
    && modelkiln --help > /dev/null

# --- runtime: the venv on a clean slim base, no compilers, no pip cache, not root -----------
FROM python:${PYTHON_VERSION}-slim AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MODELKILN_HOME=/var/lib/modelkiln

RUN groupadd --system --gid 10001 modelkiln \
    && useradd --system --uid 10001 --gid modelkiln --home-dir /var/lib/modelkiln \
        --no-create-home --shell /usr/sbin/nologin modelkiln \
    && mkdir -p /var/lib/modelkiln/artifacts \
    && chown -R modelkiln:modelkiln /var/lib/modelkiln

COPY --from=builder /opt/venv /opt/venv

WORKDIR /var/lib/modelkiln
USER modelkiln

# Checkpoints, progress images and uploaded datasets (MODELKILN_HOME/artifacts). The API and
# every worker must see the same files: one named volume on one host, NFS or similar across
# hosts (README.md, "Deployment").
VOLUME ["/var/lib/modelkiln/artifacts"]

EXPOSE 8000

# The API's liveness probe, with the Python that is already here (no curl in a slim image).
# Workers, Flower and the one-shot migration override it in docker-compose.yml.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["modelkiln", "api", "--host", "0.0.0.0", "--port", "8000"]
