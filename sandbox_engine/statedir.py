"""The state directory on disk, private to the server's user whatever its umask.

A session id is a capability (whoever knows it may attach, read the output and type into the
program) and a waiting program is a user's code: no other local user may list or read either.
Directories are 0700, files 0600. The engine changes the mode only of what it names itself, the
instance's directory under `--state-dir` and what is in it; `--state-dir` is created 0700 when
missing, and an existing one keeps its mode (it may be /var/lib or /tmp), unless other users may
write to it, which is refused.
"""

from __future__ import annotations

import logging
import os
import stat

log = logging.getLogger(__name__)

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600


class StateDirectoryError(Exception):
    """The state directory cannot be made private; the message says what to do."""


def instance_directory(state_dir: str, instance: str) -> str:
    """The instance's private directory under state_dir, created or made private; its path."""
    _check_state_dir(state_dir)
    path = os.path.join(state_dir, instance)
    private_directory(path)
    return path


def _check_state_dir(path: str) -> None:
    try:
        os.makedirs(path, mode=DIRECTORY_MODE)
        os.chmod(path, DIRECTORY_MODE)  # exactly, whatever the umask
        return
    except FileExistsError:
        pass
    info = os.stat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise StateDirectoryError(f"the state directory {path} is not a directory")
    # Whoever may write to it may rename this server's directory away and put one of their own in
    # its place; the sticky bit (as on /tmp) forbids renaming what is not one's own.
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not info.st_mode & stat.S_ISVTX:
        raise StateDirectoryError(
            f"the state directory {path} may be written by other users "
            f"(mode {stat.S_IMODE(info.st_mode):o}): run `chmod go-w {path}`, or give --state-dir "
            "a directory of the server's own"
        )


def private_directory(path: str) -> None:
    """Create path 0700, or make an existing directory of this user's 0700; refuse anything else."""
    try:
        os.mkdir(path, DIRECTORY_MODE)
        os.chmod(path, DIRECTORY_MODE)
        return
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise StateDirectoryError(f"{path} is not a directory (a symbolic link is not taken)")
    if info.st_uid != os.geteuid():
        raise StateDirectoryError(
            f"{path} belongs to uid {info.st_uid}, not to this server's uid {os.geteuid()}: "
            "another user may have made it; remove it, or choose another --state-dir or --instance"
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode != DIRECTORY_MODE:
        # Left by an older version (0755) or made by hand: ours, so made private, not refused.
        os.chmod(path, DIRECTORY_MODE)
        log.warning("state directory %s was mode %o; made it %o", path, mode, DIRECTORY_MODE)


def private_opener(path: str, flags: int) -> int:
    """For open(..., opener=private_opener): a file this creates is 0600 whatever the umask."""
    return os.open(path, flags, FILE_MODE)


def touch(path: str) -> None:
    """Create an empty file 0600 unless it exists."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE))
