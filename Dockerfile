# syntax=docker/dockerfile:1
# The orchestrator image: API, workers, watcher and Flower all run from it
# (the command picks the role; see docker-compose.yml and the Helm chart).

# --- build: wheels of the package and its dependencies -----------------------
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# Compilers only live in this stage, for dependencies without a wheel.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml setup.cfg README.md ./
COPY api ./api
COPY workers ./workers
COPY orchestrator ./orchestrator
RUN pip wheel --wheel-dir /wheels ".[flower,otel]"

# --- runtime: the package installed, no build tools, not root ----------------
FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    HOME=/tmp \
    ORCHESTRATOR_WORKSPACE_ROOT=/workspace \
    GUNICORN_BIND=0.0.0.0:8080
# git prepares workspaces; ca-certificates for HTTPS to GitHub and Anthropic.
# /var/lib/orchestrator: ORCHESTRATOR_DATA_DIR in docker-compose.yml; a new named
# volume copies this directory's owner, so user 1000 can write to it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 1000 app \
 && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin app \
 && mkdir -p /workspace /var/lib/orchestrator \
 && chown 1000:1000 /workspace /var/lib/orchestrator
COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links /wheels "orchestrator[flower,otel]" \
 && rm -rf /wheels
WORKDIR /tmp
USER 1000:1000
EXPOSE 8080 5555
VOLUME ["/workspace"]
# The API by default; workers, watcher and Flower override the command.
CMD ["gunicorn", "-c", "python:api.gunicorn_conf", "api.wsgi:app"]
