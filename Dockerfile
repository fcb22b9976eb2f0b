# Multi-stage build: wheels in a builder, a slim runtime with a non-root user.
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
    FORECAST_LOG_JSON=true
RUN mkdir -p /app/var && chown forecast /app/var
USER forecast
EXPOSE 8000
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health')"
# Default: the embedded demo. With FORECAST_DATABASE_URL set (compose), run `forecast init-db`
# and `forecast serve` instead.
CMD ["forecast", "demo"]
