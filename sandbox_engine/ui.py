"""The server-rendered IDE page."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template

bp = Blueprint("ui", __name__)


@bp.get("/")
def index():
    languages = [spec.public() for spec in current_app.extensions["sandbox_engine"].languages.values()]
    return render_template("index.html", languages=languages)
