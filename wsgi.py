"""The WSGI app, for those who run gunicorn themselves: gunicorn -k gevent wsgi:app."""

from sandbox_engine import create_app

app = create_app()
