"""Lock files: mutual exclusion across processes, never a blocking flock."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time

from sandbox_engine.locks import exclusive


def test_the_lock_excludes_threads_and_releases_on_error(tmp_path):
    path = str(tmp_path / "a.lock")
    inside = 0
    most = 0
    guard = threading.Lock()

    def work() -> None:
        nonlocal inside, most
        for _ in range(20):
            with exclusive(path):
                with guard:
                    inside += 1
                    most = max(most, inside)
                time.sleep(0.0005)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most == 1

    try:
        with exclusive(path):
            raise RuntimeError("inside")
    except RuntimeError:
        pass
    with exclusive(path):  # released by the error above, so this does not wait
        pass


def _hold(path: str, ready, release) -> None:
    with exclusive(path):
        ready.set()
        release.wait(10)


def test_another_process_waits_until_the_holder_lets_go(tmp_path):
    path = str(tmp_path / "b.lock")
    context = multiprocessing.get_context("fork")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(path, ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        got = threading.Event()
        waiter = threading.Thread(target=lambda: (exclusive(path).__enter__(), got.set()))
        waiter.start()
        assert not got.wait(0.2), "the lock was taken while another process held it"
        release.set()
        assert got.wait(10)
        waiter.join()
    finally:
        release.set()
        holder.join(10)
    assert os.path.exists(path)
