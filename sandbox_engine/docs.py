"""The API's description: the OpenAPI document at /openapi.json, and /docs, which renders it with
Swagger UI from the IDE's bundle (static/src/docs.js: no CDN, works offline)."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template

from .openapi import document
from .ui import bundle_version

bp = Blueprint("docs", __name__)
EXTENSION = "sandbox_engine.openapi"
# What `npm run build` writes for /docs.
BUNDLE = ("dist/docs.js", "dist/docs.css")


@bp.get("/openapi.json")
def openapi():
    # Built once per app: the routes and the tables it is made of do not change while it runs.
    described = current_app.extensions.get(EXTENSION)
    if described is None:
        described = current_app.extensions[EXTENSION] = document(current_app)
    return described


@bp.get("/docs")
def page():
    return render_template("docs.html", bundle=bundle_version(current_app.static_folder, BUNDLE))
