"""The server-rendered IDE page; its JavaScript and CSS are a bundle built by `npm run build`,
served here compressed and cached for as long as its URL stays the same."""

from __future__ import annotations

import mimetypes
import os

from flask import Blueprint, Response, current_app, render_template, request, send_from_directory
from werkzeug.security import safe_join

from .protocol import MAX_COLS, MAX_ROWS

bp = Blueprint("ui", __name__)

# What `npm run build` writes under static/; without them the page says how to build them.
BUNDLE = ("dist/ide.js", "dist/ide.css")
# A bundle file's URL changes whenever its content does: the entry points carry ?v=<mtime>, the
# chunks a content hash in their names. So a browser may keep each for a year without asking.
IMMUTABLE = "public, max-age=31536000, immutable"
# The copies `npm run build` writes beside each .js and .css (scripts/compress-bundle.mjs), best
# first: sent as they are, so nothing is compressed per request.
ENCODINGS = (("br", ".br"), ("gzip", ".gz"))


def bundle_version(static_folder: str, files: tuple[str, ...] = BUNDLE) -> int | None:
    """The bundle's newest modification time, which also busts caches; None when it is missing."""
    try:
        return max(int(os.path.getmtime(os.path.join(static_folder, path))) for path in files)
    except OSError:
        return None


@bp.get("/")
def index():
    return _page()


@bp.get("/watch/<session_id>")
def watch_page(session_id: str):
    """A share link's page: the IDE's own, which makes itself read-only from its URL."""
    return _page()


def _page() -> str:
    config = current_app.config["SANDBOX"]
    return render_template(
        "index.html",
        bundle=bundle_version(current_app.static_folder),
        idle_timeout=f"{config.idle_timeout:g}",
        # For the words of the endings: "no input for 5 min while waiting at a prompt".
        input_timeout=f"{config.input_timeout:g}",
        # How long a dropped page may take to resume: it stops trying a while after.
        reconnect_grace=f"{config.reconnect_grace:g}",
        # The terminal sizes the protocol accepts: the page sizes its terminal within them.
        max_cols=MAX_COLS,
        max_rows=MAX_ROWS,
    )


@bp.get("/static/dist/<path:filename>")
def bundle_file(filename: str) -> Response:
    """A file of the bundle, pre-compressed as the browser accepts, immutable when versioned."""
    directory = os.path.join(current_app.static_folder, "dist")
    mimetype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    for encoding, suffix in ENCODINGS:
        compressed = safe_join(directory, filename + suffix)
        if request.accept_encodings[encoding] and compressed and os.path.isfile(compressed):
            response = send_from_directory(directory, filename + suffix, mimetype=mimetype)
            response.headers["Content-Encoding"] = encoding
            break
    else:
        response = send_from_directory(directory, filename, mimetype=mimetype)
    response.vary.add("Accept-Encoding")
    versioned = "v" in request.args or filename.startswith("chunks/")
    # Unversioned (a source map, a hand-typed URL): kept, but checked with the server each time.
    response.headers["Cache-Control"] = IMMUTABLE if versioned else "no-cache"
    return response
