"""Security headers on every answer: a Content-Security-Policy (the IDE's, the docs page's, or the
API's, which loads nothing), no MIME sniffing, no referrer, no framing by other pages.

The IDE's page has one inline script (its theme, before the first paint) and CodeMirror and
xterm.js write <style> elements as they run: each carries the page's nonce, a fresh one per
request, so neither 'unsafe-inline' scripts nor styles are allowed.
"""

from __future__ import annotations

import secrets

from flask import Flask, Response, g, request

# Everything the page needs comes from this server: its bundle, its API and its WebSockets
# ('self' covers ws: and wss: on the same host in CSP 3).
_PAGE = (
    "default-src 'none'; script-src 'self'{nonce}; style-src 'self'{nonce}; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
# A JSON answer, an error, a file of the bundle: nothing to run or load, never framed.
API_POLICY = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
# The pages, by endpoint.
PAGES = ("ui.index", "ui.watch_page", "docs.page")
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def csp_nonce() -> str:
    """This request's nonce, for the page's own <script> and <style> elements."""
    nonce = g.get("csp_nonce")
    if nonce is None:
        nonce = g.csp_nonce = secrets.token_urlsafe(18)
    return nonce


def policy(endpoint: str | None, nonce: str | None) -> str:
    if endpoint not in PAGES:
        return API_POLICY
    return _PAGE.format(nonce=f" 'nonce-{nonce}'" if nonce else "")


def add_headers(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault("Content-Security-Policy", policy(request.endpoint, g.get("csp_nonce")))
    if request.endpoint in PAGES:
        # A page names its nonce: a cached copy would replay it.
        response.headers["Cache-Control"] = "no-store"
    return response


def install(app: Flask) -> None:
    app.jinja_env.globals["csp_nonce"] = csp_nonce
    app.after_request(add_headers)
