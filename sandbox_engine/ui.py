"""The server-rendered IDE page; its JavaScript and CSS are a bundle built by `npm run build`."""

from __future__ import annotations

import os

from flask import Blueprint, current_app, render_template

from .protocol import MAX_COLS, MAX_ROWS

bp = Blueprint("ui", __name__)

# What `npm run build` writes under static/; without them the page says how to build them.
BUNDLE = ("dist/ide.js", "dist/ide.css")


def bundle_version(static_folder: str) -> int | None:
    """The bundle's newest modification time, which also busts caches; None when it is missing."""
    try:
        return max(int(os.path.getmtime(os.path.join(static_folder, path))) for path in BUNDLE)
    except OSError:
        return None


@bp.get("/")
def index():
    config = current_app.config["SANDBOX"]
    return render_template(
        "index.html",
        bundle=bundle_version(current_app.static_folder),
        idle_timeout=f"{config.idle_timeout:g}",
        # The terminal sizes the protocol accepts: the page sizes its terminal within them.
        max_cols=MAX_COLS,
        max_rows=MAX_ROWS,
    )
