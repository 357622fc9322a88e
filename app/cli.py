"""The ``modelkiln`` command: run the service (``serve``, ``api``, ``worker``, ``migrate``).

One Typer app, :data:`cli`: the service commands below, and the REST client commands
(``train``, ``jobs``, ``sample``, ...) from :mod:`app.cli_client`, added by
``register_client_commands(cli)``. Every command reads the same
:class:`~app.settings.Settings` (``MODELKILN_*``) and reports a bad one in one line.

* ``modelkiln serve`` — embedded mode: migrate, start one ``modelkiln worker`` subprocess,
  serve the API in this process; Ctrl-C or SIGTERM stops both (a running job is
  checkpointed and re-queued, and resumes at the next start).
* ``modelkiln api`` — the API only (distributed mode).
* ``modelkiln worker`` — a Celery worker on the ``cpu`` and/or ``gpu`` queue.
* ``modelkiln migrate`` — bring the job store's schema up to date.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from pydantic import ValidationError

from app.settings import Settings, get_settings

if TYPE_CHECKING:
    import uvicorn

cli = typer.Typer(
    name="modelkiln",
    help="Train a sigmoid neuron, a CNN and a GAN as queued jobs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

WORKER_STOP_TIMEOUT_S = 60.0  # a running job checkpoints within one step; then we kill

HostOpt = Annotated[str, typer.Option(help="Interface to listen on.")]
PortOpt = Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")]


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``modelkiln: <message>`` on stderr and exit."""
    typer.echo(f"modelkiln: {message}", err=True)
    raise typer.Exit(code)


def load_settings() -> Settings:
    """The settings, or a one-line error naming the bad ``MODELKILN_*`` variable."""
    get_settings.cache_clear()
    try:
        settings = get_settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        fail(f"invalid setting MODELKILN_{field.upper()}: {first['msg']}{more}", 2)
    _check_broker_url(settings.resolved_broker_url)
    _check_database_url(settings)
    return settings


def _check_broker_url(url: str) -> None:
    from kombu import Connection

    try:
        Connection(url).transport_cls  # noqa: B018 — resolves the transport; no I/O
        Connection(url).transport  # noqa: B018
    except Exception as exc:  # kombu raises KeyError/ImportError/ValueError for bad URLs
        fail(f"invalid setting MODELKILN_BROKER_URL ({_safe_url(url)}): {exc}", 2)


def _check_database_url(settings: Settings) -> None:
    from sqlalchemy.engine import make_url

    from app.db import database_url

    try:
        url = make_url(database_url(settings))
        if url.get_backend_name() not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported database {url.get_backend_name()!r}")
    except Exception as exc:
        fail(f"invalid setting MODELKILN_DATABASE_URL: {exc}", 2)


def _safe_url(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def ensure_store(settings: Settings, *, migrate: bool) -> None:
    """Migrate (or just reach) the job store, or fail in one line saying which and why."""
    from app.db import create_engine_for
    from app.db import migrate as run_migrations

    where = _safe_url(settings.resolved_database_url)
    engine = create_engine_for(settings)
    try:
        if migrate:
            run_migrations(settings, engine)
        else:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        fail(f"cannot {'migrate' if migrate else 'reach'} the job store at {where}: {reason}")
    finally:
        engine.dispose()


def _api_server(settings: Settings, host: str, port: int) -> uvicorn.Server:
    """A uvicorn server for the FastAPI app (``run()`` serves until SIGINT/SIGTERM)."""
    import uvicorn

    from app.main import create_app

    config = uvicorn.Config(create_app(settings), host=host, port=port, log_level="info")
    return uvicorn.Server(config)


def _check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


# --- service commands ---------------------------------------------------------------------


@cli.command()
def serve(host: HostOpt = "127.0.0.1", port: PortOpt = 8000) -> None:
    """Embedded mode: the API here and one worker process, all state under MODELKILN_HOME."""
    settings = load_settings()
    _check_port(host, port)
    settings.home.mkdir(parents=True, exist_ok=True)
    ensure_store(settings, migrate=True)

    # The worker reads the same settings from the same environment; pin the home to an
    # absolute path so both agree whatever the worker's working directory.
    env = dict(os.environ, MODELKILN_HOME=str(settings.home.resolve()))
    worker = subprocess.Popen(
        [*_self_command(), "worker", "--queues", "cpu,gpu"], env=env, preexec_fn=_die_with_parent
    )
    stopping = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        # uvicorn handles the first signal itself and re-raises it after a clean stop;
        # this handler then only notes it, so the worker is stopped below, not abandoned.
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    server = _api_server(settings, host, port)

    def watch_worker() -> None:
        while worker.poll() is None:
            time.sleep(0.5)
        if not stopping.is_set():
            typer.echo(f"modelkiln: the worker exited ({worker.returncode}); stopping", err=True)
            server.should_exit = True

    threading.Thread(target=watch_worker, name="watch-worker", daemon=True).start()
    typer.echo(f"modelkiln: embedded mode, state in {settings.home.resolve()}", err=True)
    try:
        server.run()
    finally:
        stopping.set()
        code = _stop_process(worker)
    if code != 0:
        fail(f"the worker exited with status {code}")


def _die_with_parent() -> None:
    """In the worker child (Linux): get SIGTERM if `serve` dies, even by SIGKILL, so the
    worker checkpoints and re-queues its job instead of training on as an orphan."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _self_command() -> list[str]:
    """This command line tool, run by this interpreter (whatever the install or the cwd)."""
    return [
        sys.executable,
        "-c",
        "import sys; sys.argv[0] = 'modelkiln'; from app.cli import main; main()",
    ]


def _stop_process(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM (Celery's warm shutdown), wait, then SIGKILL; returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=WORKER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@cli.command()
def api(
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
    migrate: Annotated[bool, typer.Option(help="Run database migrations before serving.")] = True,
) -> None:
    """The API only (distributed mode: workers run elsewhere with `modelkiln worker`)."""
    settings = load_settings()
    _check_port(host, port)
    ensure_store(settings, migrate=migrate)
    _api_server(settings, host, port).run()


@cli.command()
def worker(
    queues: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated queues to consume: cpu, gpu (default: MODELKILN_WORKER_QUEUES)."
        ),
    ] = None,
    concurrency: Annotated[
        int, typer.Option(min=1, max=64, help="Worker processes (one per GPU on a GPU host).")
    ] = 1,
    hostname: Annotated[
        str | None, typer.Option(help="Celery node name (default: <queues>.<pid>@<host>).")
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="PyTorch CPU threads per worker process (default: $OMP_NUM_THREADS, else 1).",
        ),
    ] = None,
    loglevel: Annotated[str, typer.Option(help="Log level.")] = "INFO",
) -> None:
    """A Celery worker: takes jobs from the queues and trains them, one at a time."""
    from worker.celery_app import QUEUES

    settings = load_settings()
    names = [q.strip() for q in (queues or settings.worker_queues).split(",") if q.strip()]
    unknown = sorted(set(names) - set(QUEUES))
    if not names or unknown:
        fail(f"--queues must name some of {', '.join(QUEUES)} (got {queues!r})", 2)
    if concurrency > 1:
        raise typer.Exit(_run_worker_group(names, concurrency, loglevel, threads))
    ensure_store(settings, migrate=False)
    _run_worker(settings, names, hostname or _node_name(names), loglevel, threads)


def _node_name(queues: list[str]) -> str:
    """e.g. ``cpu.4242@host`` or ``gpu.cuda0.4242@host``: what it serves, and which process."""
    parts = ["+".join(queues)]
    if "gpu" in queues and os.environ.get("CUDA_VISIBLE_DEVICES"):
        parts.append("cuda" + os.environ["CUDA_VISIBLE_DEVICES"].replace(",", "-"))
    parts.append(str(os.getpid()))
    return ".".join(parts) + "@%h"


def _run_worker(
    settings: Settings, queues: list[str], node: str, loglevel: str, threads: int | None
) -> None:
    from worker.celery_app import create_celery

    logging.basicConfig(
        level=loglevel.upper(), format="[%(asctime)s %(levelname)s %(name)s] %(message)s"
    )
    import ml.training  # noqa: F401 — load torch before the first job (no CUDA context yet)
    from ml.device import set_cpu_threads

    set_cpu_threads(threads)  # one per process unless told otherwise (see its docstring)

    app = create_celery(settings)
    app.worker_main(
        argv=[
            "worker",
            "--pool=solo",  # see worker/celery_app.py: no fork, CUDA-safe, graceful SIGTERM
            f"--queues={','.join(queues)}",
            f"--hostname={node}",
            f"--loglevel={loglevel}",
            "--without-gossip",
            "--without-mingle",
        ]
    )


def _run_worker_group(queues: list[str], n: int, loglevel: str, threads: int | None) -> int:
    """``n`` single-process workers; on a GPU queue worker ``i`` sees only GPU ``i``."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpus = visible.split(",") if visible else [str(i) for i in range(n)]
    if "gpu" in queues and len(gpus) < n:
        fail(f"--concurrency {n} on the gpu queue needs {n} GPUs; CUDA_VISIBLE_DEVICES={visible}")
    procs = []
    for i in range(n):
        env = dict(os.environ)
        if "gpu" in queues:
            env["CUDA_VISIBLE_DEVICES"] = gpus[i]
        cmd = [
            *_self_command(),
            "worker",
            f"--queues={','.join(queues)}",
            f"--loglevel={loglevel}",
            *([f"--threads={threads}"] if threads else []),
        ]
        procs.append(subprocess.Popen(cmd, env=env))

    def forward(signum: int, _frame: FrameType | None) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [p.wait() for p in procs]
    return max((abs(c) for c in codes), default=0)


@cli.command()
def migrate() -> None:
    """Create or upgrade the job store's tables."""
    settings = load_settings()
    ensure_store(settings, migrate=True)
    typer.echo(f"modelkiln: job store at {_safe_url(settings.resolved_database_url)} is up to date")


def _add_client_commands() -> None:
    """The REST client commands (train, jobs, sample, ...) live in :mod:`app.cli_client`."""
    from app.cli_client import register_client_commands

    register_client_commands(cli)


_add_client_commands()


def main() -> None:
    """Entry point of the ``modelkiln`` script."""
    cli()


if __name__ == "__main__":
    main()
