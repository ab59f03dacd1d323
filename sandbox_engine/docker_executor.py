"""The Docker implementation of the executor: containers, their names, labels and claims.

A session's sandbox is one container, created under a name that is no session's yet,
`se-<instance>-pool-<id>`: a warm pool's, started ahead of time and offered in the state store,
or one made for its session, which the session takes there at once (see pool_members). A
session's client claims it in the state store too, without a Docker call (see claims), and
Docker's name follows, `se-<instance>-<session>.p<pid>`, for a session still running a moment
later. A claim by Docker itself (Executor.claim, where the store no longer has the entry) is a
rename, which the daemon makes atomic, so any gunicorn worker can serve the WebSocket and
exactly one ever does.

Inside, a launcher (see `launch`) reads the program from stdin, writes it to the source file,
waits while the sandbox runs the compile stage if there is one, and execs the program; /workspace
is a tmpfs that exists only once the container runs, and the root file system is read-only, so
stdin is the way in.

Each container runs as a host uid of its own, leased from the server's range (see uids) before
it is created and named in a label; whoever removes the container frees the uid, and the reaper
reclaims the uids of containers removed by anyone else.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import threading
import time
import uuid
import zlib
from contextlib import AbstractContextManager
from dataclasses import replace

import docker.types

from . import launch
from .docker_api import Failed, client, remove_container, status_of, translated, uncounted
from .docker_sandbox import DockerSandbox, finished_before
from .docker_warm import compiles_ahead, start_compile, start_warm
from .executor import (
    AlreadyClaimed,
    Executor,
    ExecutorError,
    Limits,
    OwnerAlive,
    RuntimeUnavailable,
    Sandbox,
    SandboxInfo,
    SandboxNotFound,
    SandboxRef,
    SandboxSpec,
)
from .locks import exclusive
from .uids import RangeExhausted, UidLeases

log = logging.getLogger(__name__)

LABEL = "sandbox-engine"
LABEL_INSTANCE = "sandbox-engine.instance"
LABEL_LANGUAGE = "sandbox-engine.language"
LABEL_CREATED = "sandbox-engine.created"
LABEL_TTY = "sandbox-engine.tty"
LABEL_POOL = "sandbox-engine.pool"
# The compile stage's command, as JSON; empty without one.
LABEL_COMPILE = "sandbox-engine.compile"
LABEL_UID = "sandbox-engine.uid"
LABEL_ENDS_STDERR = "sandbox-engine.ends-stderr"
WORKDIR = "/workspace"
CLAIMING = "claiming"
TAKING = "taking"
POOL = "pool-"
# gVisor's runtime, as scripts/runsc.sh registers it: the program runs on a kernel of its own.
GVISOR = "runsc"
# The seccomp profile inside a gVisor sandbox (runsc.sh's --oci-seccomp applies it). Not Docker's
# default: this runsc answers EPERM where that profile says ENOSYS (clone3), and glibc then starts
# no thread. gVisor's kernel is the boundary to the host; inside it, the profile denies what would
# free a program of the process limit: a user namespace of its own. (This runsc has no clone3.)
CLONE_NEWUSER = 0x10000000
GVISOR_SECCOMP = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [
        {"names": ["unshare", "setns"], "action": "SCMP_ACT_ERRNO"},
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ERRNO",
            # (flags & CLONE_NEWUSER) == CLONE_NEWUSER
            "args": [
                {"index": 0, "op": "SCMP_CMP_MASKED_EQ", "value": CLONE_NEWUSER, "valueTwo": CLONE_NEWUSER}
            ],
        },
    ],
}
_INSTANCE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,40}$")
RENAME_STRIPES = 64
# A rename's refusals when another worker took, claimed or removed the container first.
RACE_LOST = (400, 404, 409)
# A pooled sandbox not running, or half taken, for this long was left by someone who failed.
STUCK = 60.0
HALF_CLAIMED = 600.0


class DockerExecutor(Executor):
    def __init__(
        self,
        instance: str,
        uids: UidLeases,
        docker_host: str | None = None,
        pool_size: int = 32,
        lock_dir: str | None = None,
        runtime: str = "runc",
        failed: Failed = uncounted,
    ) -> None:
        if not _INSTANCE.match(instance):
            raise ValueError(f"instance name {instance!r}: letters, digits, '-' and '_' only")
        self.instance = instance
        self.uids = uids
        self.runtime = runtime
        self.gvisor = runtime == GVISOR
        # Docker's default seccomp profile, unless under gVisor (see GVISOR_SECCOMP).
        self.seccomp = [f"seccomp={json.dumps(GVISOR_SECCOMP)}"] if self.gvisor else []
        self.prefix = f"se-{instance}-"
        # With lock files shared by every worker of the server, renames of one container are
        # serialised and one rename makes a claim; without, a claim takes two (see _rename).
        self.lock_dir = lock_dir
        # Starting a container keeps a core busy for tens of milliseconds (runc, the shim, the
        # cgroup): more starts at once than cores only make every one of them slower.
        self.starts = threading.BoundedSemaphore(os.cpu_count() or 2)
        self.api = client(docker_host, pool_size)
        # Told of every Docker call that fails, here and in the sandboxes (the metrics).
        self.failed = failed
        self._translated = functools.partial(translated, failed=failed)

    def _name(self, session_id: str) -> str:
        return self.prefix + session_id

    def create(self, spec: SandboxSpec) -> SandboxRef:
        try:
            with self.uids.take(self.instance) as lease:
                created, labels, name = self._create(spec, lease.uid)
                lease.bind(created["Id"])
        except RangeExhausted as exc:
            raise RuntimeUnavailable(f"no host uid is free for a sandbox: {exc}") from exc
        if spec.session_id is None:
            nonce = None
            try:
                start_warm(self.api, created["Id"], spec.tty, self.gvisor, self.starts, self._translated)
                if spec.compile and compiles_ahead(spec, self.gvisor):
                    nonce = start_compile(
                        self.api, created["Id"], lease.uid, spec.compile, spec.tty, self._translated
                    )
            except ExecutorError:
                self._remove(created["Id"], lease.uid)
                raise
            return replace(_ref(created["Id"], labels, running=True), name=name, compile_nonce=nonce)
        return replace(_ref(created["Id"], labels, running=False), name=name)

    def _create(self, spec: SandboxSpec, uid: int) -> tuple[dict, dict[str, str], str]:
        """The container, not started, running as `uid`; and its labels."""
        # The container starts under the compile stage's limits when there is one, lowered to the
        # run's once it is over. runsc cannot change a running sandbox's limits (it has no
        # `update`), so under gVisor the compile stage runs under the run's limits.
        compiles_apart = spec.compile and spec.compile_limits and not self.gvisor
        limits = spec.compile_limits if compiles_apart else spec.limits
        tmpfs_opts = f"rw,exec,nosuid,nodev,size={spec.limits.disk}"
        host_config = self.api.create_host_config(
            runtime=self.runtime,
            read_only=True,
            tmpfs={
                # exec: compiled programs run from here; Docker mounts tmpfs noexec otherwise.
                WORKDIR: f"{tmpfs_opts},uid={uid},gid={uid},mode=0700",
                "/tmp": f"{tmpfs_opts},mode=1777",
            },
            network_mode="none",
            cap_drop=["ALL"],
            security_opt=["no-new-privileges", *self.seccomp],
            # docker-init is tini, which passes signals to the program's whole process group.
            init=True,
            # Under gVisor the host's pids cgroup holds the sandbox's own kernel, whose threads (38
            # at rest) a limit of 32 kills before the program starts: the nproc ulimit counts
            # the program's processes and threads there instead (see _ulimits).
            pids_limit=None if self.gvisor else limits.pids,
            nano_cpus=int(limits.cpus * 1e9),
            mem_limit=limits.memory,
            memswap_limit=limits.memory,
            ulimits=_ulimits(limits, self.gvisor),
            log_config=docker.types.LogConfig(type="none"),
        )
        # Built once (it reads the launcher's files): what runs, and what its label says of it.
        command = launch.command(spec)
        labels = {
            LABEL: "1",
            LABEL_INSTANCE: self.instance,
            LABEL_LANGUAGE: spec.language,
            LABEL_CREATED: f"{time.time():.3f}",
            LABEL_COMPILE: json.dumps(spec.compile) if spec.compile else "",
            LABEL_TTY: "1" if spec.tty else "",
            LABEL_POOL: "1" if spec.session_id is None else "",
            LABEL_UID: str(uid),
            LABEL_ENDS_STDERR: "1" if launch.ends_stderr(command) else "",
        }
        name = self._name(f"{POOL}{uuid.uuid4().hex[:12]}")
        create = dict(
            image=spec.image,
            command=command,
            name=name,
            # Its own uid, and a group of its own: the image's files are readable by all, and
            # /workspace is this uid's.
            user=f"{uid}:{uid}",
            working_dir=WORKDIR,
            environment=launch.environment(spec),
            labels=labels,
            # docker-py sets StdinOnce with stdin_open: the attach stream's EOF then closes
            # the program's stdin, which is how `eof` works.
            stdin_open=True,
            tty=spec.tty,
            network_disabled=True,
            host_config=host_config,
        )
        # The image is named in the error: "a sandbox image is missing" alone would not say which.
        with self._translated(f"create a sandbox of {spec.image}", operation="create a sandbox"):
            created = self.api.create_container(**create)
        return created, labels, name

    def _remove(self, container: str, uid: int | None) -> None:
        """Remove a container, then free its uid: only once no process of it is left."""
        if remove_container(self.api, container, self.failed) and uid is not None:
            self.uids.release(uid, container)

    def _info(self, row: dict) -> SandboxInfo:
        labels = row.get("Labels") or {}
        state = row.get("State", "")
        name = (row.get("Names") or ["/"])[0].lstrip("/")
        base, _, suffix = name[len(self.prefix) :].partition(".")
        pooled = base.startswith(POOL)
        return SandboxInfo(
            ref=_ref(row.get("Id", ""), labels, running=state == "running"),
            name=name,
            session_id="" if pooled else base,
            created_at=float(labels.get(LABEL_CREATED, "0") or 0),
            claimed=bool(suffix),
            running=state == "running",
            exited=state in ("exited", "dead"),
            pooled=pooled,
            owner=suffix if suffix not in ("", CLAIMING, TAKING) else None,
        )

    def _containers(self, name: str | None = None) -> list[dict]:
        filters: dict = {"label": [f"{LABEL_INSTANCE}={self.instance}"]}
        if name is not None:
            filters["name"] = [name]
        with self._translated("list the sandboxes"):
            rows = self.api.containers(all=True, filters=filters)
        return rows

    def _find(self, session_id: str) -> SandboxInfo | None:
        # Docker's name filter matches a part of the name: the session's name, claimed or not.
        rows = [
            row
            for row in self._containers(self._name(session_id))
            if self._info(row).session_id == session_id
        ]
        return self._info(rows[0]) if rows else None

    def list(self) -> list[SandboxInfo]:
        return [self._info(row) for row in self._containers()]

    def orphaned(self, info: SandboxInfo, alive: OwnerAlive, now: float) -> bool:
        if info.pooled:
            # Stopped, never started, or left half taken by a taker that died.
            return info.exited or ((not info.running or info.claimed) and now - info.created_at > STUCK)
        if not info.claimed:
            return False
        if info.owner is None:
            # Between the two renames of a claim made without a lock directory: a claimer that
            # died stays here. (A server always has its lock directory: its claims are one rename.)
            return now - info.created_at > HALF_CLAIMED
        return not alive(info.owner, info.session_id)

    def _rename_lock(self, name: str) -> AbstractContextManager[None]:
        # Striped: renames of different containers go on at once; of one, one at a time.
        stripe = zlib.crc32(name.encode()) % RENAME_STRIPES
        return exclusive(os.path.join(self.lock_dir, f".rename-{stripe}.lock"))

    def _rename(self, old: str, new: str, fixed: str) -> None:
        """Rename atomically: of racing renames of `old`, exactly one succeeds.

        The daemon looks a container up by name before it locks it, so two renames of one name
        to different names can both succeed. Serialised by the lock file, one rename is safe;
        without it, the first rename goes to one fixed name, which only one can take.
        """
        if self.lock_dir is not None:
            with self._rename_lock(old):
                self.api.rename(old, new)
            return
        self.api.rename(old, fixed)
        self.api.rename(fixed, new)

    def claim(self, session_id: str, owner: str, ref: SandboxRef | None = None) -> Sandbox:
        name = self._name(session_id)
        # A warm sandbox taken for the session (in the state store) still has its pool's name.
        old = ref.name if ref is not None and ref.name else name
        try:
            with self._translated("claim the sandbox", expected=RACE_LOST):
                self._rename(old, f"{name}.{owner}", f"{old}.{CLAIMING}")
        except RuntimeUnavailable:
            raise
        except ExecutorError as exc:
            status = status_of(exc)
            if status == 404 and self._find(session_id) is None:
                raise SandboxNotFound(session_id) from exc
            if status in RACE_LOST:
                raise AlreadyClaimed(session_id) from exc
            raise
        if ref is None:
            details = self._inspect(f"{name}.{owner}")
            ref = _ref(details["Id"], details["Config"]["Labels"], running=details["State"]["Running"])
        return self._sandbox(ref, session_id)

    def sandbox(self, ref: SandboxRef, session_id: str) -> Sandbox:
        return self._sandbox(ref, session_id)

    def name_claim(self, session_id: str, owner: str, ref: SandboxRef, claimed_at: float) -> bool:
        name = self._name(session_id)
        if ref.name:
            with self._translated("name the sandbox's claim", ignore=(404,)):
                self._rename(ref.name, f"{name}.{owner}", f"{ref.name}.{CLAIMING}")
        # Attaching to a stopped container does not fail, and its stream never ends: asked here,
        # off the client's path, instead.
        with self._translated("inspect the sandbox", ignore=(404,)):
            return not finished_before(self.api.inspect_container(ref.id)["State"], claimed_at)
        return True  # removed already: its session ran, and ended (or its attach failed)

    def _sandbox(self, ref: SandboxRef, session_id: str) -> DockerSandbox:
        # Its removal frees its uid, as every other removal of a container does.
        return DockerSandbox(
            self.api,
            ref,
            session_id,
            starts=self.starts,
            remove=lambda: self._remove(ref.id, ref.uid),
            fixed_limits=self.gvisor,
            failed=self.failed,
        )

    def _inspect(self, container: str) -> dict:
        with self._translated("inspect the sandbox"):
            details = self.api.inspect_container(container)
        return details

    def remove(self, session_id: str, ref: SandboxRef | None = None) -> None:
        if ref is not None:
            self._remove(ref.id, ref.uid)
            return
        info = self._find(session_id)
        if info is not None:
            self._remove(info.ref.id, info.ref.uid)

    def remove_sandbox(self, info: SandboxInfo) -> None:
        self._remove(info.ref.id, info.ref.uid)

    def reclaim(self) -> None:
        listed_at = time.time()
        present = {row["Id"] for row in self._containers()}
        for uid in self.uids.reclaim(self.instance, present, listed_at):
            log.info("freed uid %d: its sandbox was removed by someone else", uid)

    def check(self, images: list[str]) -> str | None:
        try:
            with self._translated("answer a ping"):
                self.api.ping()
            with self._translated("list its runtimes"):
                runtimes = self.api.info().get("Runtimes") or {}
            if self.runtime not in runtimes:
                how = "run scripts/runsc.sh as root" if self.gvisor else "register it in daemon.json"
                return f"Docker does not know the runtime {self.runtime}; {how}"
            if self.gvisor and "--oci-seccomp" not in runtimes[self.runtime].get("runtimeArgs", []):
                # Without it the sandbox's seccomp profile, and with it the process limit, is void.
                return "Docker's runtime runsc lacks --oci-seccomp; run scripts/runsc.sh as root"
            for image in images:
                with self._translated(f"find the image {image}", ignore=(404,), operation="find an image"):
                    self.api.inspect_image(image)
                    continue
                # Reached only when the image's 404 was let through.
                return f"the image {image} is missing; run `make images`"
        except ExecutorError as exc:
            log.info("not ready: %s", exc, exc_info=exc.__cause__)
            return str(exc)
        return None

    def image_labels(self, image: str) -> dict[str, str]:
        try:
            with self._translated(f"inspect the image {image}", operation="inspect an image"):
                return self.api.inspect_image(image)["Config"].get("Labels") or {}
        except ExecutorError as exc:
            log.debug("no labels for %s: %s", image, exc)
        return {}

    def close(self) -> None:
        self.api.close()


def _ulimits(limits: Limits, gvisor: bool) -> list[docker.types.Ulimit]:
    ulimits = [docker.types.Ulimit(name="nofile", soft=256, hard=256)]
    if gvisor:
        # gVisor's kernel counts the processes and threads of a user, in this sandbox alone (it is a
        # kernel of its own): the pids limit, exactly. (Under runc the count is the host's, over
        # every sandbox of the same uid.) Docker's seccomp profile, which runsc.sh has gVisor
        # apply, keeps the program from leaving it behind in a user namespace of its own.
        ulimits.append(docker.types.Ulimit(name="nproc", soft=limits.pids, hard=limits.pids))
    return ulimits


def _ref(container_id: str, labels: dict[str, str], running: bool) -> SandboxRef:
    """A container as a SandboxRef, from the labels it was created with."""
    return SandboxRef(
        id=container_id,
        language=labels.get(LABEL_LANGUAGE, ""),
        tty=labels.get(LABEL_TTY) == "1",
        compile=tuple(json.loads(labels[LABEL_COMPILE])) if labels.get(LABEL_COMPILE) else None,
        running=running,
        uid=int(labels[LABEL_UID]) if labels.get(LABEL_UID, "").isdigit() else None,
        ends_stderr=labels.get(LABEL_ENDS_STDERR) == "1",
    )
