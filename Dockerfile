# schoolmdm service image. Behind a TLS-terminating load balancer set SCHOOLMDM_TLS=false.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 MALLOC_ARENA_MAX=2 \
    SCHOOLMDM_DATA_DIR=/data SCHOOLMDM_HOST=0.0.0.0 SCHOOLMDM_PORT=8443

WORKDIR /srv/schoolmdm
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY mdm ./mdm
COPY profiles ./profiles
COPY simulator ./simulator
COPY migrations ./migrations
COPY examples ./examples
RUN pip install --no-cache-dir . \
 && useradd --system --home /data schoolmdm \
 && mkdir -p /data && chown schoolmdm /data

USER schoolmdm
VOLUME ["/data"]
EXPOSE 8443
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,ssl; urllib.request.urlopen('https://127.0.0.1:8443/healthz', context=ssl._create_unverified_context())" || exit 1
CMD ["schoolmdm", "serve"]
