"""The staff web page (``routes``): Jinja2 templates, the page's own CSS and JS and vendored
libraries under ``static/`` (see ``static/vendor/README.md``)."""

from forecast.api.web.routes import STATIC, router

__all__ = ["STATIC", "router"]
