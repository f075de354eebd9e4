"""The read-only Flask service: JSON API, the original endpoints, plots, media and pages.

Development: `flask --app service run`. Production: `gunicorn 'service:create_app()'`.
"""
from __future__ import annotations

import logging
import re

from flask import Flask
from flask_cors import CORS

from runtime.settings import Settings, load_settings


def create_app(settings: Settings | None = None, test_config: dict | None = None) -> Flask:
    """Build the application for `settings` (default: from the environment and .env)."""
    from service import api, counts, database, errors, iiif_image, legacy, manifests, media, \
        pages, search
    from service.orjson_provider import OrjsonProvider

    settings = settings or load_settings()
    app = Flask(__name__)
    app.config.update(SETTINGS=settings)
    app.config.from_mapping(test_config or {})
    app.json = OrjsonProvider(app)
    app.logger.setLevel(getattr(logging, settings.log_level))

    database.init_app(app, settings.database_url)
    counts.init_app(app)
    errors.init_app(app)
    search.init_app(app)
    if settings.cors_origins:
        _allow_other_sites(app, settings.cors_origins)
    for blueprint in (api.bp, legacy.bp, media.bp, pages.bp, iiif_image.bp, manifests.bp):
        app.register_blueprint(blueprint)

    @app.after_request
    def _no_sniffing(response):
        # Browsers must take SVG, JSON and JPEG for what the service says they are.
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    return app


def _allow_other_sites(app: Flask, allowed: tuple[str, ...]) -> None:
    """Let pages of other sites read the JSON API, the original endpoints, IIIF, thumbnails
    and files (viewers draw them on canvases); not the HTML pages."""
    origins = "*" if "*" in allowed else list(allowed)
    # Regexes matched at the start of the path. The service is read-only: POST only for
    # the search by upload.
    read = {"origins": origins, "send_wildcard": origins == "*",
            "methods": ["GET", "HEAD", "OPTIONS"],
            "expose_headers": ["ETag", "Link", "Content-Length"]}
    patterns = {r"/api/v1/search$": {**read, "methods": ["POST", "OPTIONS"]},
                r"/api/": read, r"/image_(count|name|fingerprint)": read, r"/iiif/": read,
                r"/images/[0-9]+/(thumbnail|file)$": read}
    # Compiled: flask-cors takes a plain string without regex characters literally.
    CORS(app, resources={re.compile(pattern): options for pattern, options in patterns.items()})
