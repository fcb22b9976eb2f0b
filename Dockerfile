# Multi-stage build: wheels in a builder, a slim runtime with a non-root user.
# compose.yaml runs this image as init / api / scheduler on PostgreSQL; alone
# (`docker run -p 8000:8000 IMAGE`) it runs everything in one process on SQLite (CMD below).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY forecast ./forecast
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim AS runtime
# libgomp1: LightGBM's OpenMP runtime
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* && useradd --create-home --uid 10001 forecast
WORKDIR /app
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY config ./config
ENV FORECAST_CATALOGUE=/app/config/rivers.yaml \
    FORECAST_DATA_DIR=/app/var \
    FORECAST_MODELS_DIR=/app/var/models \
    FORECAST_HTTP_HOST=0.0.0.0 \
    FORECAST_HTTP_PORT=8000 \
    FORECAST_LOG_JSON=true \
    PYTHONUNBUFFERED=1
# /app/var is the data volume (SQLite file when alone, models, replay file, archives): created
# here and owned by the runtime user, so a new named volume mounted on it is writable by it.
RUN mkdir -p /app/var/models && chown -R forecast:forecast /app/var
VOLUME ["/app/var"]
USER forecast
EXPOSE 8000
# Liveness: /health answers once the API listens. The first start prepares the demo (simulated
# history, a model per river, one cycle) before serving: about 3 min on 2 cores, hence the
# long start period (failures inside it do not count).
HEALTHCHECK --interval=30s --timeout=5s --start-period=15m --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('FORECAST_HTTP_PORT', '8000'), timeout=4)"]
# All in one, as compose starts it, in one process: prepare if needed (migrate, catalogue,
# simulated history and replay file, first models, one cycle), then the API and the scheduler,
# replaying the simulated data live. Stops on SIGTERM (run with --init for signal forwarding).
CMD ["forecast", "demo"]
