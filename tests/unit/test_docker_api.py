"""docker_api.translated: Docker's failures in our terms, each told to whoever counts them."""

from __future__ import annotations

import docker.errors
import pytest
import requests

from sandbox_engine.docker_api import translated
from sandbox_engine.executor import ExecutorError, RuntimeUnavailable


def refusal(status: int) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError("refused", response=response, explanation="no")


@pytest.fixture
def failures() -> list[tuple[str, str]]:
    return []


def test_a_refusal_is_counted_by_operation_and_status(failures):
    with pytest.raises(ExecutorError, match="Docker could not kill the sandbox: no"):
        with translated("kill the sandbox", failed=lambda *failure: failures.append(failure)):
            raise refusal(500)
    assert failures == [("kill the sandbox", "500")]


def test_a_daemon_that_does_not_answer_and_a_missing_image_are_counted_as_such(failures):
    with pytest.raises(RuntimeUnavailable):
        with translated("list the sandboxes", failed=lambda *failure: failures.append(failure)):
            raise requests.exceptions.ConnectionError("refused")
    with pytest.raises(RuntimeUnavailable, match="make images"):
        with translated(
            "create a sandbox of x:1", failed=lambda *f: failures.append(f), operation="create a sandbox"
        ):
            raise docker.errors.ImageNotFound("gone", response=refusal(404).response)
    assert failures == [("list the sandboxes", "unreachable"), ("create a sandbox", "image_missing")]


def test_what_the_caller_ignores_is_no_failure(failures):
    with translated("remove the sandbox", ignore=(404,), failed=lambda *failure: failures.append(failure)):
        raise refusal(404)
    assert failures == []


def test_a_race_lost_is_raised_for_the_caller_but_no_failure(failures):
    with pytest.raises(ExecutorError):
        with translated("claim the sandbox", failed=lambda *f: failures.append(f), expected=(404, 409)):
            raise refusal(409)
    assert failures == []
