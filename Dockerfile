# One image for the portal's web process (gunicorn), its worker (`manage.py qcluster`) and the
# migrations Job (deploy/ runs each with its own args). The dependencies come from uv.lock only.
# BASE: the tests build it FROM a Debian base of their own (no public registry reachable).
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE} AS build
# The uv version the Makefile bootstraps, so the image resolves exactly what `make venv` does.
RUN pip install --no-cache-dir uv==0.13.9
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app
# Dependencies before the source: a code change reuses this layer.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev
COPY manage.py ./
COPY portal portal
COPY environments environments
COPY templates templates
COPY static static
COPY examples examples

FROM ${BASE}
# git: the pipeline resolves branches and commits of the projects' repositories with it.
# mariadb-client: the MySQL pool restores and copies datasets with mariadb and mariadb-dump.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git mariadb-client \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --home-dir /app portal \
    && install -d -o portal -g portal /var/lib/preview-portal
WORKDIR /app
# Owned by root and read-only to the portal user: the process cannot change its own code.
COPY --from=build /app /app
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    PORTAL_VAR_DIR=/var/lib/preview-portal
USER 10001
EXPOSE 8000
CMD ["gunicorn", "portal.wsgi:application", "--bind=0.0.0.0:8000"]
