"""The application factory: the Flask app, its blueprints, and the error answers of every route."""

from __future__ import annotations

import logging
import os
import sys

from flask import Flask, request
from werkzeug.exceptions import HTTPException

from .config import Config
from .errors import EngineError, Kind, kind_for_status, runtime_error
from .executor import ExecutorError


def _ui_root() -> str:
    """templates/ and static/: beside the package in a checkout, under share/ when installed."""
    checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.isdir(os.path.join(checkout, "templates")):
        return checkout
    return os.path.join(sys.prefix, "share", "sandbox-engine")


ROOT = _ui_root()


def kube_executor(config: Config, own_only: bool = False):
    """The Kubernetes executor of this configuration; imported here, as docker-py is below.
    `own_only`: it lists only this replica's pods (the start-up reap's)."""
    from .kube_executor import KubeExecutor

    return KubeExecutor(
        config.instance,
        namespace=config.namespace,
        kubeconfig=config.kubeconfig or None,
        runtime_class=config.runtime_class or None,
        deadline=config.sandbox_deadline,
        own_only=own_only,
        registry=config.registry or None,
    )


def create_app(config: Config | None = None, executor=None) -> Flask:
    """The application factory. `config` defaults to the environment; `executor` to Docker."""
    from . import (
        access,
        api,
        auth,
        docs,
        headers,
        judge0,
        metrics_api,
        piston,
        piston_ws,
        runs_api,
        ui,
        watch,
        ws,
    )
    from .keys import KeyStore
    from .metrics import Metrics
    from .rates import RateLimits, Rates
    from .store import open_store
    from .worker import EXTENSION, Worker

    config = config or Config.from_env()
    app = Flask(
        __name__,
        template_folder=os.path.join(ROOT, "templates"),
        static_folder=os.path.join(ROOT, "static"),
    )
    app.config["SANDBOX"] = config
    # The body may carry code up to the limit, JSON-escaped (at most 6 bytes a byte) plus framing.
    app.config["MAX_CONTENT_LENGTH"] = config.max_code_size * 6 + 4096
    app.config["SOCK_SERVER_OPTIONS"] = {"ping_interval": 25, "max_message_size": ws.MAX_MESSAGE}
    app.json.sort_keys = False

    # The one place the store is chosen: the state directory, or Redis with --redis-url.
    records = open_store(config)
    metrics = Metrics()
    if executor is None and config.executor == "kubernetes":
        executor = kube_executor(config)
    if executor is None:
        # Imported here: an app given another executor (the unit tests' fake) never loads docker-py.
        from .docker_executor import DockerExecutor
        from .uids import UidLeases

        executor = DockerExecutor(
            config.instance,
            UidLeases(config.uid_dir, config.uids),
            config.docker_host,
            pool_size=config.max_sessions + 16,
            # Replicas share the daemon but not a directory: without one, a claim is two renames,
            # safe whoever races it (see DockerExecutor._rename).
            lock_dir=None if config.redis_url else records.directory,
            runtime=config.runtime,
            failed=metrics.docker_failed,
        )
    worker = Worker(config, executor, records, metrics=metrics)
    app.extensions[EXTENSION] = worker

    app.register_blueprint(api.bp)
    app.register_blueprint(runs_api.bp)
    app.register_blueprint(ws.bp)
    app.register_blueprint(watch.bp)
    app.register_blueprint(ui.bp)
    app.register_blueprint(piston.bp)
    app.register_blueprint(piston_ws.bp)
    app.register_blueprint(judge0.bp)
    app.register_blueprint(metrics_api.bp)
    app.register_blueprint(docs.bp)
    headers.install(app)

    def _judge0_path(path: str) -> bool:
        return path == judge0.PREFIX or path.startswith(judge0.PREFIX + "/")

    def api_of(path: str) -> str:
        """Which API a path is under: its errors are answered, and counted, in that API's terms."""
        if piston.owns(path):
            return "piston"
        return "judge0" if _judge0_path(path) else "sandbox"

    # First: every other hook may count on the request's id.
    access.install(app, metrics, api_of)

    @app.before_request
    def start_worker() -> None:
        # Started on first use in each process: threads started before gunicorn forks are lost.
        worker.ensure_started()

    keys = KeyStore.for_config(config)
    if config.redis_url:
        from .redis_keys import RedisRateLimits

        rates: Rates = RedisRateLimits(config.redis_url, config.instance)
    else:
        rates = RateLimits(keys.rates_directory)
    auth.install(app, auth.Auth(keys, rates, config.auth == "required"))

    @app.errorhandler(EngineError)
    def engine_error(exc: EngineError):
        access.refused(exc.kind.code)
        if request.blueprint is None and piston.owns(request.path):
            # Refused before routing chose a blueprint (no key for an unknown path): Piston's shape.
            return piston.engine_error(exc)
        if request.blueprint is None and _judge0_path(request.path):
            return judge0.engine_error(exc)
        return exc.to_json(), exc.kind.http_status, exc.headers

    @app.errorhandler(ExecutorError)
    def executor_error(exc: ExecutorError):
        # A runtime failure no engine call turned into an EngineError (a pool listing, say).
        return engine_error(runtime_error(exc))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        api = api_of(request.path)
        if api == "piston":
            # Routing's own errors (404, 405) reach no blueprint's handler: Piston's shape here.
            return piston.http_error(exc)
        if api == "judge0":
            # Routing failed before any blueprint was chosen: an unknown path or method of Judge0's.
            return judge0.http_error(exc)
        kind = kind_for_status(exc.code or 500)
        return {"error": {"code": kind.code, "message": exc.description}}, exc.code

    if config.redis_url:
        import redis

        @app.errorhandler(redis.RedisError)
        def store_error(exc: redis.RedisError):
            # The replicas' shared records are out of reach: nothing can be admitted or attached.
            logging.getLogger(__name__).warning("redis: %s", exc)
            unavailable = "the session store (Redis) is unavailable"
            return engine_error(EngineError(Kind.RUNTIME_UNAVAILABLE, unavailable))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        logging.getLogger(__name__).exception("unhandled error")
        return {"error": {"code": "internal_error", "message": "internal error"}}, 500

    return app
