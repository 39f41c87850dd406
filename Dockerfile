# The token-tracker exporter. Used by docker-compose.yml; also runs on its own:
#   docker build -t token-tracker-exporter .
#   docker run --rm -v ~/.multi-term:/data -p 127.0.0.1:9464:9464 token-tracker-exporter
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY . /src
RUN pip install /src \
    && rm -rf /src \
    && groupadd --system --gid 10001 nonroot \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /data --shell /usr/sbin/nologin nonroot \
    && mkdir -p /data \
    && chown 10001:10001 /data

USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 9464

HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=3).status == 200 else 1)"]

# Listens on all interfaces *inside* the container; docker-compose.yml does not
# publish the port, so only the compose network (Prometheus) reaches it.
ENTRYPOINT ["token-tracker", "serve", "--web.listen-address", "0.0.0.0:9464", "--ledger", "/data/token_usage.json"]
