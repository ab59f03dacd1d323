"""Whether a program waits on its stdin, read from the host's /proc.

A program that has printed nothing for a while is either thinking, or stuck, or waiting for its
user at a prompt. Only the last deserves the input timeout instead of the idle timeout, and it
shows in the kernel: one of the program's processes sleeps in a system call that waits for what
its fd 0 refers to (read on it; poll, select or an epoll whose set holds it), and none of them
runs. That holds for every language, in a pipe or a terminal, without its cooperation.

Reading another process's /proc/<pid>/syscall and memory needs the right to trace it, which the
engine has when it runs as root beside the daemon; without it, nothing is known, and the answer
is False (the idle timeout applies as before).
"""

from __future__ import annotations

import os
import platform
import struct
from collections.abc import Iterable

# System call numbers, per architecture: reads take the fd first; waits take what they wait on.
_CALLS = {
    "x86_64": {
        "read": {0, 17, 19, 295},  # read, pread64, readv, preadv
        "poll": {7, 271},  # poll, ppoll
        "select": {23, 270},  # select, pselect6
        "epoll": {232, 281, 441},  # epoll_wait, epoll_pwait, epoll_pwait2
    },
    "aarch64": {
        "read": {63, 65, 67, 69},
        "poll": {73},
        "select": {72},
        "epoll": {22, 441},
    },
}


def waiting_on_stdin(pids: Iterable[int], proc: str = "/proc") -> bool:
    """True when no thread of pids runs and one sleeps waiting for what its stdin refers to."""
    calls = _CALLS.get(platform.machine())
    if calls is None:
        return False
    waiting = False
    for pid in pids:
        base = os.path.join(proc, str(pid))
        try:
            stdin = _stdin_fds(base)
            # Threads: a runtime often reads in a thread of its own (the JVM's main thread is
            # not the process's first one).
            for tid in os.listdir(os.path.join(base, "task")):
                task = os.path.join(base, "task", tid)
                if _state(task) == "R":
                    return False
                if not waiting and stdin:
                    waiting = _waits_on(task, base, stdin, calls)
        except (OSError, ValueError):
            continue  # gone meanwhile, or not ours to read
    return waiting


def cgroup_pids(pid: int, proc: str = "/proc", root: str = "/sys/fs/cgroup") -> list[int] | None:
    """Every process in pid's cgroup (a container's), from the host's cgroup filesystem: what
    `docker top` tells, without the `ps` that dockerd runs for it on every call (some 13 ms of
    CPU). None when it cannot be read (the process gone, another cgroup namespace)."""
    try:
        with open(os.path.join(proc, str(pid), "cgroup")) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    candidates = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        relative = path.lstrip("/")
        if not relative:
            # The root cgroup would list every process of the machine: never a sandbox's.
            continue
        if "pids" in controllers.split(","):  # cgroup v1: the pids hierarchy holds every process
            candidates.append(os.path.join(root, "pids", relative))
        elif controllers == "":  # v2, unified; or a v1 host's hybrid mount
            candidates += [os.path.join(root, relative), os.path.join(root, "unified", relative)]
    for directory in candidates:
        try:
            with open(os.path.join(directory, "cgroup.procs")) as f:
                pids = [int(line) for line in f if line.strip()]
        except (OSError, ValueError):
            continue
        # Read through another cgroup namespace the path may name some other group: this one
        # holds the process itself, or it is not the one.
        return pids if pid in pids else None
    return None


def _state(base: str) -> str:
    with open(os.path.join(base, "stat")) as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def _waits_on(task: str, base: str, stdin: set[int], calls: dict[str, set[int]]) -> bool:
    """Whether a thread sleeps in a system call that waits on one of the fds in stdin."""
    with open(os.path.join(task, "syscall")) as f:
        fields = f.read().split()
    if not fields or fields[0] in ("running", "-1"):
        return False
    number, args = int(fields[0]), [int(a, 16) for a in fields[1:7]]
    if number in calls["read"]:
        return args[0] in stdin
    if number in calls["epoll"]:
        return bool(_epoll_targets(base, args[0]) & stdin)
    if number in calls["poll"]:
        return bool(_poll_fds(task, args[0], args[1]) & stdin)
    if number in calls["select"]:
        return bool(_select_fds(task, args[0], args[1]) & stdin)
    return False


def _stdin_fds(base: str) -> set[int]:
    """The process's fds that refer to what its fd 0 refers to (a pipe, or a terminal that a
    runtime may have opened again, as libuv does)."""
    fd_dir = os.path.join(base, "fd")
    try:
        target = os.readlink(os.path.join(fd_dir, "0"))
    except OSError:
        return set()
    same = set()
    for name in os.listdir(fd_dir):
        try:
            if os.readlink(os.path.join(fd_dir, name)) == target:
                same.add(int(name))
        except OSError:
            continue
    return same


def _epoll_targets(base: str, epfd: int) -> set[int]:
    with open(os.path.join(base, "fdinfo", str(epfd))) as f:
        return {int(line.split()[1]) for line in f if line.startswith("tfd:")}


def _read_memory(base: str, address: int, size: int) -> bytes:
    with open(os.path.join(base, "mem"), "rb") as f:
        f.seek(address)
        return f.read(size)


def _poll_fds(base: str, address: int, count: int) -> set[int]:
    """The fds of a poll's struct pollfd array (int fd, short events, short revents)."""
    count = min(count, 1024)
    data = _read_memory(base, address, 8 * count)
    return {struct.unpack_from("i", data, 8 * i)[0] for i in range(len(data) // 8)}


def _select_fds(base: str, nfds: int, readfds: int) -> set[int]:
    """The fds set in a select's read set (a bitmap of nfds bits)."""
    if not readfds:
        return set()
    nfds = min(nfds, 1024)
    data = _read_memory(base, readfds, (nfds + 7) // 8)
    return {fd for fd in range(nfds) if data[fd // 8] >> (fd % 8) & 1}
