"""What the package ships: every launcher a sandbox may be given, installed or not.

The launchers are read as text when a sandbox is made, so a file that setup.cfg leaves out of
the package works in a checkout and fails in every install (the server's Docker image: pip
install .) the first time a sandbox of its language starts.
"""

from __future__ import annotations

import configparser
import fnmatch
import os

import sandbox_engine.launchers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_every_launcher_file_ships_with_the_package():
    setup = configparser.ConfigParser()
    setup.read(os.path.join(ROOT, "setup.cfg"))
    patterns = [p.strip() for p in setup["options.package_data"]["sandbox_engine.launchers"].split(",")]
    directory = os.path.dirname(sandbox_engine.launchers.__file__)
    launchers = [name for name in os.listdir(directory) if not name.startswith(("_", "."))]
    assert launchers
    left_out = [name for name in launchers if not any(fnmatch.fnmatch(name, p) for p in patterns)]
    assert not left_out, f"not in setup.cfg's package_data: {left_out}"
