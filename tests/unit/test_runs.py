"""Runs: what a run's view says while its end is being recorded (on the real record store, with a
fake executor)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fakes import FakeExecutor

from sandbox_engine.batch import RunRequest, RunState, SourceFile
from sandbox_engine.config import Config
from sandbox_engine.engine import Engine
from sandbox_engine.records import RecordStore
from sandbox_engine.runs import Runs
from sandbox_engine.states import Reason


@pytest.fixture
def runs(tmp_path, executor: FakeExecutor) -> Iterator[Runs]:
    records = RecordStore(str(tmp_path / "records"))
    engine = Engine(Config(state_dir=str(tmp_path / "state")), executor, records)
    yield Runs(engine)
    engine.shutdown()


def test_a_run_reads_finished_only_once_its_end_is_recorded(runs, executor):
    # Its result is written, then its end: a reader between the two (another replica's, polling
    # for a Judge0 client that waits) saw it finished with no finish time.
    run_id = runs._admit(runs.plan(RunRequest("python", (SourceFile("", b"print(1)"),))), None)
    runs.records.write_result(run_id, {"error": ("internal_error", "stand-in for a result")})
    assert runs.get(run_id).state is not RunState.FINISHED
    runs.records.finish(run_id, Reason.EXITED, exit_code=0)
    view = runs.get(run_id)
    assert view.state is RunState.FINISHED and view.finished_at is not None
    assert view.error == ("internal_error", "stand-in for a result")
    executor.remove(run_id)
