# syntax=docker/dockerfile:1
#
# The loader image: the store, the agent, the webhook and the runner in one Python package, and
# /opt/loader-run/loader-run, the runner frozen to run in images without Python.
#
#   docker build -t secret-loader:0.1.0 .
#   docker run --rm secret-loader:0.1.0 --help
#
# Two stages. `build` turns the project and every dependency into wheels; the final stage
# installs those wheels only (no compiler, no pip cache, no source tree), runs as 65532:65532
# and writes nothing outside its mounted volumes, so it works with readOnlyRootFilesystem
# (Kubernetes mounts an emptyDir at /tmp; the chart in helm/loader does).

ARG PYTHON_IMAGE=python:3.12-slim

# -- build: wheels for the project and its dependencies --------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Every dependency ships manylinux wheels for amd64 and arm64. A platform without them would
# need build-essential here, in this stage only.
COPY pyproject.toml README.md ./
COPY scripts/ scripts/
COPY src/ src/
RUN pip wheel --wheel-dir /wheels ".[fast]"

# -- freeze: loader-run, `loader run` as a standalone executable for images without Python ------
# (scripts/build-loader-run). Built for the platform being built (PyInstaller does not
# cross-compile: `docker buildx --platform linux/arm64` builds the arm64 one); it needs the
# glibc of this base image (Debian bookworm, 2.36) or newer where it runs.
FROM build AS freeze
RUN apt-get update -q \
    && apt-get install -y -q --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/* \
    && pip install --no-index --find-links=/wheels "secret-loader" \
    && pip install "pyinstaller>=6.10" \
    && scripts/build-loader-run python \
    && cp -R build/loader-run/dist/loader-run /opt/loader-run

# -- runtime ------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="secret-loader" \
      org.opencontainers.image.description="loader: an encrypted secrets store, a sidecar agent that renders env files and spicepods onto tmpfs, a runner, and a Kubernetes webhook that injects the agent" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.12-slim"

# No .pyc writes at run time (bytecode is compiled at install), unbuffered logs, and HOME and
# TMPDIR on /tmp, the only writable place besides the volumes the pod mounts.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp

# The wheels come in through a bind mount, so they never land in a layer; pip goes afterwards.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-cache-dir --no-index --find-links=/wheels "secret-loader[fast]" \
    && python -m pip uninstall --yes pip \
    && groupadd --gid 65532 loader \
    && useradd --uid 65532 --gid 65532 --home-dir /tmp --no-create-home \
       --shell /usr/sbin/nologin loader

# The standalone runner at a fixed path: the webhook's init container copies this directory
# into a memory volume for app containers whose images have no Python (docs/kubernetes.md).
COPY --from=freeze /opt/loader-run /opt/loader-run

USER 65532:65532
WORKDIR /tmp
# store, agent (loopback only: for `docker run --network container:...`), webhook
EXPOSE 8700 8701 8443

# Whatever the container runs: the store's /v1/health, the webhook's or the agent's /healthz, on
# the address it listens on (src/loader/healthcheck.py reads PID 1's command line and
# environment; LOADER_HEALTHCHECK_URL overrides). Python, since the slim image has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-m", "loader.healthcheck"]

ENTRYPOINT ["python", "-m", "loader"]
CMD ["--help"]
