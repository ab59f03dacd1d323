"""docker-py, as the Docker executor and its sandboxes use it: the client, and its errors in our terms.

The Docker modules (`docker_api`, `docker_executor`, `docker_sandbox`) are the only ones that
import docker-py; everything above them speaks of sandboxes, streams and exits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import docker
import docker.errors
import requests.exceptions

from .executor import ExecutorError, Limits, RuntimeUnavailable

API_VERSION = "1.41"
# Docker's errors that mean "the daemon is not there", as opposed to "it said no".
_UNREACHABLE = (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError)
# Told of each failed call: its operation and the error ("unreachable", "image_missing", or
# Docker's HTTP status), for the metrics.
Failed = Callable[[str, str], None]


def uncounted(operation: str, error: str) -> None:
    """A failure nobody counts (the `reap` command's, the tests')."""


def client(docker_host: str | None, pool_size: int) -> docker.APIClient:
    """One client per worker, shared by its greenlets. The pool is sized for every session's
    control calls at once; attach sockets are hijacked out of it and do not count."""
    return docker.APIClient(
        base_url=docker_host or "unix:///var/run/docker.sock",
        version=API_VERSION,
        timeout=30,
        max_pool_size=pool_size,
    )


@contextmanager
def translated(
    doing: str,
    ignore: tuple[int, ...] = (),
    failed: Failed = uncounted,
    operation: str | None = None,
    expected: tuple[int, ...] = (),
) -> Iterator[None]:
    """Turn docker-py's failures into the executor's errors, in the one place that knows them,
    and tell `failed` of each.

    `doing` completes "Docker could not ..."; `operation` names it for the metrics when `doing`
    names a particular image or signal. Statuses in `ignore` are outcomes the caller wants
    anyway (a 404 on a removal); those in `expected` are raised for the caller to act on (a name
    another worker took or removed first, in a race it is made to lose): neither is a failure.
    The cause is kept, for the log; the message is for a person.
    """
    operation = operation or doing
    try:
        yield
    except docker.errors.ImageNotFound as exc:
        if 404 in ignore:
            return
        failed(operation, "image_missing")
        raise RuntimeUnavailable(f"a sandbox image is missing; run `make images` ({doing})") from exc
    except docker.errors.APIError as exc:
        if exc.status_code in ignore:
            return
        if exc.status_code not in expected:
            failed(operation, str(exc.status_code))
        raise ExecutorError(f"Docker could not {doing}: {exc.explanation}") from exc
    except _UNREACHABLE as exc:
        failed(operation, "unreachable")
        raise RuntimeUnavailable("Docker does not answer") from exc


def status_of(error: ExecutorError) -> int | None:
    """The HTTP status Docker answered with, for an error translated() made of its refusal."""
    return getattr(error.__cause__, "status_code", None)


def remove_container(api: docker.APIClient, container: str, failed: Failed = uncounted) -> bool:
    """Remove a container, killing what runs in it; whether it is gone now (404: gone already).
    False when someone else's removal of it is under way (409): that one sees it gone."""
    try:
        with translated("remove the sandbox", ignore=(404,), failed=failed, expected=(409,)):
            api.remove_container(container, force=True)
    except ExecutorError as exc:
        if status_of(exc) == 409:
            return False
        raise
    return True


def update_limits(
    api: docker.APIClient,
    container: str,
    limits: Limits,
    failed: Failed = uncounted,
    ignore: tuple[int, ...] = (),
) -> None:
    # docker-py's update_container knows neither NanoCpus nor PidsLimit; the API does.
    body = {
        "Memory": limits.memory,
        "MemorySwap": limits.memory,
        "NanoCpus": int(limits.cpus * 1e9),
        "PidsLimit": limits.pids,
    }
    with translated("change the sandbox's limits", failed=failed, ignore=ignore):
        response = api._post_json(api._url("/containers/{0}/update", container), data=body)
        api._raise_for_status(response)
