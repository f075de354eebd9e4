"""The read-only Flask service: JSON API, the original endpoints, plots, media and pages.

Development: `flask --app service run`. Production: `gunicorn 'service:create_app()'`.
"""
from __future__ import annotations

import logging

from flask import Flask
from flask_cors import CORS

from runtime.settings import Settings, load_settings


def create_app(settings: Settings | None = None, test_config: dict | None = None) -> Flask:
    """Build the application for `settings` (default: from the environment and .env)."""
    from service import api, database, errors, legacy, media, pages, search
    from service.orjson_provider import OrjsonProvider

    settings = settings or load_settings()
    app = Flask(__name__)
    app.config.update(SETTINGS=settings)
    app.config.from_mapping(test_config or {})
    app.json = OrjsonProvider(app)
    app.logger.setLevel(getattr(logging, settings.log_level))

    database.init_app(app, settings.database_url)
    errors.init_app(app)
    search.init_app(app)
    if settings.cors_origins:
        # Only the JSON API and the original endpoints are meant for other sites.
        origins = "*" if "*" in settings.cors_origins else list(settings.cors_origins)
        CORS(app, resources={r"/api/*": {"origins": origins},
                             # A regex matched at the start: not /images/... pages.
                             r"/image_(count|name|fingerprint)": {"origins": origins}})
    for blueprint in (api.bp, legacy.bp, media.bp, pages.bp):
        app.register_blueprint(blueprint)

    @app.after_request
    def _no_sniffing(response):
        # Browsers must take SVG, JSON and JPEG for what the service says they are.
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    return app
