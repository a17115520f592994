# mayhold service image: non-root, migrates on start, serves on :8000.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MAYHOLD_MIGRATIONS_DIR=/srv/mayhold/migrations \
    MAYHOLD_DATABASE_URL=sqlite+aiosqlite:////var/lib/mayhold/mayhold.db

RUN groupadd --system mayhold && useradd --system --gid mayhold --home-dir /srv/mayhold mayhold

WORKDIR /srv/mayhold
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
COPY policies ./policies
COPY openapi ./openapi
RUN pip install . \
    && mkdir -p /var/lib/mayhold \
    && chown mayhold:mayhold /var/lib/mayhold

USER mayhold
VOLUME ["/var/lib/mayhold"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2).status == 200 else 1)"
# Production sets MAYHOLD_DATABASE_URL=postgresql+asyncpg://user:pass@host/db
CMD ["mayhold", "serve", "--host", "0.0.0.0", "--port", "8000"]
