"""GET /metrics: the server's metrics in Prometheus' text format, for every worker at once (see
metrics), with the figures read at the scrape: sessions admitted, the capacity, the pool's sizes."""

from __future__ import annotations

from flask import Blueprint, Response

from .metrics import CONTENT_TYPE, gauge
from .worker import Worker, current_worker

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics():
    worker = current_worker()
    return Response(worker.metrics.exposition(scraped(worker)), content_type=CONTENT_TYPE)


def scraped(worker: Worker) -> list:
    """What a scrape reads now, from the state directory and the configuration: no Docker call."""
    engine = worker.engine
    sizes = gauge(
        "pool_size",
        "Warm sandboxes the pool keeps, by language and tty (--pool-size)",
        labels=["language", "tty"],
    )
    for (language, tty), size in engine.pool_sizes.items():
        sizes.add_metric([language, "true" if tty else "false"], size)
    return [
        gauge(
            "admitted",
            "Sessions and runs admitted and not ended, in every worker: what --max-sessions caps",
            engine.records.live_count(),
        ),
        gauge(
            "max_sessions",
            "Sessions and runs admitted at once before 429 at_capacity (--max-sessions)",
            engine.config.max_sessions,
        ),
        sizes,
    ]
