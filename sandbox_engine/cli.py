"""The `sandbox-engine` command."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime

from .config import Config
from .statedir import StateDirectoryError, instance_directory, private_directory
from .states import Reason

LIMIT_FLAGS = (
    ("--idle-timeout", "idle_timeout", "seconds with no input and no output before a session ends (30)"),
    (
        "--input-timeout",
        "input_timeout",
        "seconds a program may wait at a prompt, a client attached, before it ends (300)",
    ),
    ("--run-timeout", "run_timeout", "wall-clock seconds a program may run (300)"),
    ("--output-limit", "output_limit", "bytes of stdout and stderr together a client receives (1048576)"),
    ("--memory", "memory", "memory per sandbox, no swap (256m)"),
    ("--cpus", "cpus", "CPUs per sandbox (0.5)"),
    ("--pids", "pids", "processes per sandbox (32)"),
    ("--disk", "disk", "size of /workspace and /tmp each (64m)"),
    ("--max-sessions", "max_sessions", "live sessions before POST /session answers 429 (64)"),
    ("--max-code-size", "max_code_size", "bytes of code a session may carry (262144)"),
    ("--input-limit", "input_limit", "bytes of input that may wait for a program not reading it (2m)"),
    ("--compile-timeout", "compile_timeout", "seconds the compile stage may take (90)"),
    ("--compile-memory", "compile_memory", "memory for the compile stage, no swap (1g)"),
    ("--compile-cpus", "compile_cpus", "CPUs for the compile stage (2, or the host's if fewer)"),
    ("--compile-pids", "compile_pids", "processes for the compile stage (128)"),
    (
        "--reconnect-grace",
        "reconnect_grace",
        "seconds a program runs on for its dropped client to resume (60; 0: it ends at once)",
    ),
    ("--replay-buffer", "replay_buffer", "recent messages a session keeps for resuming, in bytes (1m)"),
    ("--max-watchers", "max_watchers", "read-only watchers per session (16)"),
    ("--pool-size", "pool_size", "warm sandboxes per language: N, or python=4,python/tty=2 (0: none)"),
    ("--instance", "instance", "name of this server's containers; one per Docker daemon (default)"),
    ("--state-dir", "state_dir", "directory the workers share for session records"),
    ("--redis-url", "redis_url", "Redis the replicas share records and admission in (none: --state-dir)"),
    (
        "--relay-host",
        "relay_host",
        "with --redis-url: the address replicas relay resumes to (127.0.0.1)",
    ),
    (
        "--relay-secret",
        "relay_secret",
        "with --redis-url: the replicas' relay secret (default: one in Redis)",
    ),
    ("--keys-file", "keys_file", "the API keys (default: keys/keys.json in the instance's state directory)"),
    ("--auth", "auth", "auto: an API key is needed once one exists; required: always (auto)"),
    ("--record-ttl", "record_ttl", "seconds an ended session's record is kept for GET /session (3600)"),
    ("--max-records", "max_records", "ended sessions' records kept, the oldest forgotten first (10000)"),
    ("--allowed-origins", "allowed_origins", "comma-separated browser origins allowed to attach"),
    ("--docker-host", "docker_host", "Docker's address (DOCKER_HOST, else the local socket)"),
    ("--uid-range", "uid_range", "host uids for sandboxes, one each: FIRST-LAST (200000-265535)"),
    ("--uid-dir", "uid_dir", "the uid leases, one directory for every engine on the host"),
    ("--runtime", "runtime", "Docker's runtime for the sandboxes: runc, or runsc for gVisor (runc)"),
    ("--executor", "executor", "where sandboxes run: docker, or kubernetes (a pod each) (docker)"),
    ("--namespace", "namespace", "the Kubernetes namespace of the sandbox pods (default)"),
    ("--kubeconfig", "kubeconfig", "the Kubernetes client's config (KUBECONFIG, else in-cluster)"),
    (
        "--runtime-class",
        "runtime_class",
        "the RuntimeClass of sandbox pods, e.g. gvisor (the cluster's default)",
    ),
    (
        "--log-format",
        "log_format",
        "the log on stderr: json (a JSON object a line), text, or auto (text at a terminal, else json)",
    ),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sandbox-engine", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the production server (gunicorn, gevent worker)")
    serve.add_argument("--bind", default="127.0.0.1:8080", help="HOST:PORT to listen on (127.0.0.1:8080)")
    serve.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (2)")
    for flag, name, text in LIMIT_FLAGS:
        serve.add_argument(flag, dest=name, default=None, help=f"{text}; env SANDBOX_ENGINE_{name.upper()}")

    bench = commands.add_parser("bench", help="measure latency and capacity over the public API")
    bench.add_argument(
        "--server", default="http://127.0.0.1:8080", help="the server's URL (with a warm pool)"
    )
    bench.add_argument("--cold-server", default=None, help="a second server, without a pool, for cold starts")
    bench.add_argument(
        "--gvisor-server", default=None, help="a server with --runtime runsc and a pool, for gVisor's costs"
    )
    bench.add_argument("--gvisor-cold-server", default=None, help="a server with --runtime runsc, no pool")
    bench.add_argument("--runs", type=int, default=50, help="sequential sessions to time (50)")
    bench.add_argument("--idle-sessions", type=int, default=200, help="idle sessions to hold (200)")
    bench.add_argument("--markdown", default=None, help="write the results to this file (BENCHMARKS.md)")

    languages = commands.add_parser(
        "bench-languages", help="every language's hello world, warm and cold, beside its `docker run` floor"
    )
    languages.add_argument("--server", default=None, help="a server with a pool of every language measured")
    languages.add_argument("--cold-server", default=None, help="a server without a pool")
    languages.add_argument("--runs", type=int, default=5, help="runs of each, the median reported (5)")
    languages.add_argument("--language", action="append", default=None, help="only this one (repeatable)")
    languages.add_argument("--markdown", default=None, help="write its section of this file (BENCHMARKS.md)")

    run = commands.add_parser("run", help="run a file in a sandbox, attached to this terminal")
    run.add_argument(
        "--server",
        default=None,
        help="the server's URL, http:// when it has no scheme "
        "(default: $SANDBOX_ENGINE_SERVER, else http://127.0.0.1:8080)",
    )
    run.add_argument("--lang", default=None, help="the language (default: from the extension)")
    run.add_argument(
        "--tty",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a terminal session (default: when stdin is a terminal)",
    )
    run.add_argument(
        "--merge-stderr",
        action="store_true",
        help="one pipe for the program's stdout and stderr, so that their order is exact",
    )
    run.add_argument(
        "--key", default=None, help="the API key, if the server needs one (default: $SANDBOX_ENGINE_KEY)"
    )
    run.add_argument("file", help="the program to run")

    watch = commands.add_parser("watch", help="follow a shared session read-only, by its share link")
    watch.add_argument("url", help="the share link: http://HOST/watch/<id>?token=...")

    keys = commands.add_parser("keys", help="make, list and revoke the server's API keys")
    add_keys_commands(keys)

    reap = commands.add_parser("reap", help="remove every container of this instance (the server does this)")
    reap.add_argument(
        "--reason",
        type=Reason,
        choices=list(Reason),
        default=Reason.INTERNAL_ERROR,
        help="the reason recorded for ended sessions",
    )

    args = parser.parse_args(argv)
    if args.command == "reap":
        return reap_command(args.reason)
    if args.command == "run":
        from .client import ClientError
        from .client import run as run_file

        try:
            return run_file(args.server, args.file, args.lang, args.tty, args.merge_stderr, args.key)
        except ClientError as exc:
            print(f"sandbox-engine: {exc}", file=sys.stderr)
            return 2
    if args.command == "watch":
        from .client import ClientError
        from .client import watch as watch_link

        try:
            return watch_link(args.url)
        except ClientError as exc:
            print(f"sandbox-engine: {exc}", file=sys.stderr)
            return 2
    if args.command == "serve":
        return serve_command(args)
    if args.command == "keys":
        return keys_command(args)
    if args.command == "bench-languages":
        from . import bench_languages

        return bench_languages.main(args.server, args.cold_server, args.language, args.runs, args.markdown)
    if args.command == "bench":
        from . import bench as bench_module

        return bench_module.main(
            args.server,
            args.cold_server,
            args.runs,
            args.idle_sessions,
            args.markdown,
            gvisor=bench_module.Servers(args.gvisor_server, args.gvisor_cold_server),
        )
    return 2


def reap_command(reason: Reason) -> int:
    """Prints how many containers it removed; the configuration comes from the environment."""
    from .app import kube_executor
    from .docker_executor import DockerExecutor
    from .executor import ExecutorError
    from .reaper import reap_instance
    from .store import open_store
    from .uids import UidLeases

    config = Config.from_env()
    if config.executor == "kubernetes":
        executor = kube_executor(config, own_only=True)
    else:
        executor = DockerExecutor(config.instance, UidLeases(config.uid_dir, config.uids), config.docker_host)
    try:
        records = open_store(config)
        print(reap_instance(executor, records, reason))
    except (ExecutorError, StateDirectoryError) as exc:
        print(f"sandbox-engine: {exc}", file=sys.stderr)
        return 1
    finally:
        executor.close()
    return 0


def add_keys_commands(parser: argparse.ArgumentParser) -> None:
    verbs = parser.add_subparsers(dest="verb", required=True)
    create = verbs.add_parser("create", help="make a key and print its secret, which is shown only once")
    create.add_argument("name", help="the key's name: letters, digits, '.', '_', '-'")
    create.add_argument(
        "--max-sessions",
        type=int,
        default=None,
        help="its sessions plus runs live at once (default: no limit of its own)",
    )
    create.add_argument(
        "--rate", type=int, default=None, help="its requests in any minute (default: no limit)"
    )
    create.add_argument(
        "--scopes",
        default="session,run",
        help="what it may use: session, run, admin, comma-separated (session,run)",
    )
    listing = verbs.add_parser("list", help="the keys, their scopes, limits and last use (never a secret)")
    listing.add_argument("--json", action="store_true", help="as JSON")
    revoke = verbs.add_parser("revoke", help="revoke a key: every worker refuses it within a second")
    revoke.add_argument("name")
    for verb in (create, listing, revoke):
        for flag, name in (
            ("--state-dir", "state_dir"),
            ("--instance", "instance"),
            ("--keys-file", "keys_file"),
            ("--redis-url", "redis_url"),
        ):
            verb.add_argument(
                flag, dest=name, default=None, help=f"as `serve` has it; env SANDBOX_ENGINE_{name.upper()}"
            )


def keys_command(args: argparse.Namespace) -> int:
    """The keys of the instance that `serve` with the same --state-dir and --instance runs."""
    from .keys import KeysError, KeyStore, parse_scopes

    try:
        names = ("state_dir", "instance", "keys_file", "redis_url")
        config = Config.from_env(**{name: getattr(args, name) for name in names})
        store = KeyStore.for_config(config)
        if args.verb == "create":
            scopes = parse_scopes(args.scopes)
            secret = store.create(args.name, scopes, args.max_sessions, args.rate)
            print(f"key {args.name!r} made; its secret, shown only this once:", file=sys.stderr)
            print(secret)
        elif args.verb == "revoke":
            store.revoke(args.name)
            print(f"key {args.name!r} revoked", file=sys.stderr)
        elif args.json:
            print(json.dumps([key.public() for key in store.list()], indent=1))
        else:
            print(keys_table(store.list()))
    except (KeysError, ValueError, StateDirectoryError, OSError) as exc:
        print(f"sandbox-engine: {exc}", file=sys.stderr)
        return 1
    return 0


def keys_table(keys: list) -> str:
    rows = [("NAME", "SCOPES", "MAX-SESSIONS", "RATE/MIN", "CREATED", "LAST USED")]
    for key in keys:
        rows.append(
            (
                key.name,
                ",".join(sorted(key.scopes)),
                str(key.max_sessions or "-"),
                str(key.rate or "-"),
                _when(key.created_at),
                _when(key.last_used) if key.last_used else "never",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def serve_command(args: argparse.Namespace) -> int:
    from .logs import resolve
    from .metrics import MULTIPROCESS_ENV, clear_directory

    overrides = {name: getattr(args, name) for _, name, _ in LIMIT_FLAGS}
    try:
        config = Config.from_env(**overrides)
    except ValueError as exc:
        print(f"sandbox-engine: {exc}", file=sys.stderr)
        return 2
    # Refused here, in words, rather than as workers that fail to boot.
    try:
        directory = instance_directory(config.state_dir, config.instance)
        # Every worker counts in files of its own there; emptied, so that this server counts from 0.
        metrics_directory = os.path.join(directory, ".metrics")
        private_directory(metrics_directory)
        clear_directory(metrics_directory)
    except (StateDirectoryError, OSError) as exc:
        print(f"sandbox-engine: {exc}", file=sys.stderr)
        return 2
    from .uids import UidLeases

    try:
        # Made here, so that a directory the server cannot write is one line, not a worker's crash.
        UidLeases(config.uid_dir, config.uids)
    except OSError as exc:
        print(f"sandbox-engine: the uid leases' directory (--uid-dir): {exc}", file=sys.stderr)
        return 2
    # The workers build their config from the environment; this hands them the flags' values.
    os.environ.update(config.to_env())
    # Decided here, where stderr is the operator's: gunicorn's master and workers write to it.
    os.environ["SANDBOX_ENGINE_LOG_FORMAT"] = resolve(config.log_format)
    os.environ[MULTIPROCESS_ENV] = metrics_directory
    # Every file the server makes is its user's alone: ours say so as they are made (0600), and
    # prometheus_client's, made with the default mode, are then 0600 too.
    os.umask(0o077)
    conf = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gunicorn_conf.py")
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        conf,
        "--bind",
        args.bind,
        "--workers",
        str(args.workers),
        "sandbox_engine:create_app()",
    ]
    # exec, so that signals sent to `sandbox-engine serve` reach gunicorn's master directly.
    os.execv(sys.executable, argv)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
