"""ASGI entry: ``uvicorn --factory forecast.api.main:app_from_env`` (``forecast serve``)."""

from __future__ import annotations

from fastapi import FastAPI

from forecast.api.app import create_app
from forecast.logs import configure_logging
from forecast.pipeline.context import Context
from forecast.settings import load_settings


def app_from_env() -> FastAPI:
    """Build the app from FORECAST_* settings."""
    settings = load_settings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    return create_app(Context.from_settings(settings), scheduler=settings.scheduler)
