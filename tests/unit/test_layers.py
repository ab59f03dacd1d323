"""The package's layers as the unit tests rely on them: only the Docker modules load docker-py."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_everything_but_the_docker_modules_runs_without_docker_py():
    # In a fresh interpreter: in this one, an end-to-end test may have loaded docker-py already.
    code = textwrap.dedent(
        """
        import importlib, pkgutil, sys, tempfile
        sys.path.insert(0, "tests/unit")
        import sandbox_engine
        for module in pkgutil.iter_modules(sandbox_engine.__path__, "sandbox_engine."):
            # The server's own modules; examples/ and launchers/ are programs, not the server.
            if "docker" not in module.name and not module.name.startswith("sandbox_engine.bench"):
                importlib.import_module(module.name)
        from fakes import FakeExecutor
        from sandbox_engine.config import Config
        app = sandbox_engine.create_app(Config(state_dir=tempfile.mkdtemp()), executor=FakeExecutor())
        app.test_client().get("/languages")
        loaded = sorted(name for name in sys.modules if name == "docker" or name.startswith("docker."))
        assert not loaded, loaded
        """
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_only_the_kubernetes_modules_load_the_kubernetes_client():
    code = textwrap.dedent(
        """
        import importlib, pkgutil, sys, tempfile
        sys.path.insert(0, "tests/unit")
        import sandbox_engine
        for module in pkgutil.iter_modules(sandbox_engine.__path__, "sandbox_engine."):
            if not module.name.startswith("sandbox_engine.kube_"):
                importlib.import_module(module.name)
        from fakes import FakeExecutor
        from sandbox_engine.config import Config
        app = sandbox_engine.create_app(Config(state_dir=tempfile.mkdtemp()), executor=FakeExecutor())
        app.test_client().get("/languages")
        loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("kubernetes", "websocket"))
        assert not loaded, loaded
        """
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
