"""The ``modelkiln`` client commands: submit, follow, inspect and use jobs over the REST API.

Every command talks to the API through :class:`app.client.ModelKilnClient` (``--url``, default
``$MODELKILN_URL`` else ``http://127.0.0.1:8000``). Failures — a server that is down, an
unknown job, an invalid setting — print one line on stderr and exit non-zero; no tracebacks.

``app/cli.py`` adds these commands to its Typer app with
``register_client_commands(app)``; ``python -m app.cli_client`` runs them on their own.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column, Table
from rich.text import Text

from app.client import DEFAULT_URL, TERMINAL_STATUSES, ClientError, Event, Json, ModelKilnClient
from ml.specs import HYPERPARAMS, DeviceChoice, ModelKind

# Exit codes: how a followed job ended (and how the command itself failed).
EXIT_OK = 0
EXIT_ERROR = 1  # the API said no, or could not be reached
EXIT_USAGE = 2  # a bad option or setting (Click uses 2 for usage errors too)
EXIT_FAILED = 3  # the job failed
EXIT_CANCELLED = 4  # the job was cancelled
EXIT_DETACHED = 130  # Ctrl-C: we stopped following, the job keeps running

STATUS_EXIT = {"succeeded": EXIT_OK, "failed": EXIT_FAILED, "cancelled": EXIT_CANCELLED}
STATUS_STYLE = {
    "queued": "yellow",
    "running": "cyan",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "magenta",
}

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

P = ParamSpec("P")
R = TypeVar("R")

UrlOpt = Annotated[
    str,
    typer.Option(
        "--url", envvar="MODELKILN_URL", help="Base URL of the ModelKiln API.", show_default=True
    ),
]
JobArg = Annotated[str, typer.Argument(help="Job id.", show_default=False)]


class SampleFormat(StrEnum):
    png = "png"
    json = "json"
    npy = "npy"


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """Print one line on stderr and exit with ``code``."""
    err.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    raise typer.Exit(code)


def _handles_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn ClientError and OS errors into one stderr line and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ClientError as exc:
            fail(_escape(str(exc)))
        except OSError as exc:
            fail(_escape(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)))
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:  # a bug here, not the user's fault: still one line
            if os.environ.get("MODELKILN_DEBUG"):
                raise
            fail(_escape(f"unexpected {type(exc).__name__}: {exc} (MODELKILN_DEBUG=1 shows more)"))

    return wrapper


def _escape(text: str) -> str:
    return text.replace("[", r"\[")


# -- small formatting helpers -------------------------------------------------------------


def parse_settings(pairs: list[str]) -> dict[str, Any]:
    """``["lr=0.001", "g_loss=minimax"]`` → ``{"lr": 0.001, "g_loss": "minimax"}``.

    Values are read as JSON when they parse (numbers, booleans), else kept as strings.
    Raises ValueError for a pair without ``=``.
    """
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ValueError(f"--set expects key=value, got {pair!r}")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        settings[key] = value
    return settings


def check_hyperparams(model: ModelKind, hyperparams: dict[str, Any]) -> None:
    """Validate ``hyperparams`` with the same spec the API uses; ValueError with one line."""
    cls = HYPERPARAMS[model]
    unknown = sorted(set(hyperparams) - set(cls.model_fields))
    if unknown:
        known = ", ".join(cls.model_fields)
        raise ValueError(f"unknown {model.value} setting {', '.join(unknown)} (known: {known})")
    try:
        cls.model_validate(hyperparams)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "hyperparams"
        raise ValueError(f"invalid setting {loc}: {first['msg']}") from None


def dataset_ref(name: str) -> dict[str, str]:
    """``digits`` → ``{"name": "digits"}``; ``id:abc`` or ``upload:abc`` → ``{"id": "abc"}``."""
    for prefix in ("id:", "upload:"):
        if name.startswith(prefix):
            return {"id": name.removeprefix(prefix)}
    return {"name": name}


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def age(value: Any, now: datetime | None = None) -> str:
    """A compact age like ``12s``, ``5m``, ``3h``, ``2d`` for an ISO timestamp."""
    when = _parse_time(value)
    if when is None:
        return "-"
    seconds = max(0, int(((now or datetime.now(UTC)) - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def fmt_number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}"


def fmt_metrics(metrics: Any, keys: list[str] | None = None) -> str:
    if not isinstance(metrics, dict) or not metrics:
        return ""
    names = [k for k in (keys or sorted(metrics)) if k in metrics]
    return "  ".join(f"{k}={fmt_number(metrics[k])}" for k in names)


def job_progress(job: Json) -> tuple[int, int, int]:
    """``(step, total_steps, epoch)`` from a job, whatever nesting the API uses."""
    prog = job.get("progress")
    src = prog if isinstance(prog, dict) else job
    step = src.get("step") or 0
    total = src.get("total_steps") or src.get("total") or 0
    epoch = src.get("epoch") or 0
    return int(step), int(total), int(epoch)


def job_dataset(job: Json) -> str:
    ds = job.get("dataset")
    if isinstance(ds, dict):
        return str(ds.get("name") or (f"upload:{ds['id']}" if ds.get("id") else "-"))
    return str(ds or job.get("dataset_key") or "-")


def job_metrics(job: Json) -> dict[str, Any]:
    for key in ("metrics", "latest_metrics", "latest"):
        value = job.get(key)
        if isinstance(value, dict):
            return value
    return {}


def job_hyperparams(job: Json) -> dict[str, Any]:
    spec = job.get("spec")
    src = spec if isinstance(spec, dict) else job
    hp = src.get("hyperparams")
    return hp if isinstance(hp, dict) else {}


def styled_status(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def event_status(data: Any) -> str | None:
    """The job status an ``status`` or ``end`` event reports (nested in ``data`` or flat)."""
    if not isinstance(data, dict):
        return None
    inner = data.get("data")
    if isinstance(inner, dict) and inner.get("status"):
        return str(inner["status"])
    return str(data["status"]) if data.get("status") else None


def _event_fields(data: Any) -> tuple[int | None, int | None, int | None, dict[str, Any]]:
    """``(step, epoch, total_steps, metrics)`` from an SSE or loss-history record."""
    if not isinstance(data, dict):
        return None, None, None, {}
    metrics = data.get("metrics")
    if not isinstance(metrics, dict):
        metrics = data.get("data") if isinstance(data.get("data"), dict) else None
    if metrics is None:
        skip = {"seq", "id", "step", "epoch", "total_steps", "kind", "created_at", "time"}
        metrics = {k: v for k, v in data.items() if k not in skip and isinstance(v, int | float)}
    return data.get("step"), data.get("epoch"), data.get("total_steps"), metrics


# -- train --follow ------------------------------------------------------------------------


class MetricsColumn(ProgressColumn):
    """The latest losses, beside the bar (on a wide terminal)."""

    def render(self, task: Task) -> Text:
        return Text(str(task.fields.get("metrics", "")), style="dim")


class FollowProgress(Progress):
    """A progress bar whose losses go on a line of their own when the terminal is narrow."""

    def __init__(self, *columns: str | ProgressColumn, metrics_beside: bool, **kwargs: Any):
        self.metrics_beside = metrics_beside
        if metrics_beside:
            columns = (*columns, MetricsColumn(table_column=Column(no_wrap=True)))
        super().__init__(*columns, **kwargs)

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        if not self.metrics_beside:
            for task in self.tasks:
                text = Text("  " + str(task.fields.get("metrics", "")), style="dim")
                text.no_wrap, text.overflow = True, "ellipsis"
                yield text


def _metric_keys(model: str) -> list[str]:
    if model == ModelKind.gan:
        return ["d_loss", "g_loss", "d_real", "d_fake"]
    return ["loss", "accuracy", "val_loss", "val_accuracy"]


def follow_job(api: ModelKilnClient, job: Json, *, cancel_on_exit: bool = False) -> int:
    """Follow ``job`` over SSE until it ends; returns the exit code for how it ended.

    On a terminal: a live progress bar (steps, epoch, elapsed, ETA) with the latest losses
    beside it. Otherwise (a pipe, a log file): one plain line per epoch and per status change.
    """
    job_id = str(job["id"])
    model = str(job.get("model", ""))
    epochs = job_hyperparams(job).get("epochs")
    keys = _metric_keys(model)
    latest: dict[str, Any] = dict(job_metrics(job))
    status = str(job.get("status", "queued"))
    _, total, _ = job_progress(job)
    step = epoch = 0  # the stream replays from the first event
    console = out if out.is_terminal else err
    live = console.is_terminal
    width = len(str(total or 9999))
    epochs_width = len(f"epoch {epochs}/{epochs}") if epochs else 9
    progress = FollowProgress(
        SpinnerColumn(),
        TextColumn("{task.description}", table_column=Column(no_wrap=True, min_width=9)),
        BarColumn(bar_width=None if console.width >= 140 else 20),
        MofNCompleteColumn(table_column=Column(no_wrap=True, min_width=2 * width + 1)),
        TextColumn("epoch {task.fields[epoch]}", table_column=Column(min_width=epochs_width)),
        TimeElapsedColumn(),
        TextColumn("eta", table_column=Column(no_wrap=True)),
        TimeRemainingColumn(),
        metrics_beside=console.width >= 140,
        console=console,
        disable=not live,
    )

    def epoch_text(e: int) -> str:
        return f"{e}/{epochs}" if epochs else str(e)

    final: Json | None = None
    printed_epoch, printed_status = epoch, status
    try:
        with progress:
            task = progress.add_task(
                status,
                total=total or None,
                completed=step,
                epoch=epoch_text(epoch),
                metrics=fmt_metrics(latest, keys),
            )
            for event in api.events(job_id):
                if event.event == "metrics":
                    e_step, e_epoch, e_total, metrics = _event_fields(event.data)
                    if e_epoch is not None and e_epoch != epoch and not live and epoch:
                        out.print(f"epoch {epoch_text(epoch)}  {fmt_metrics(latest, keys)}")
                        printed_epoch = epoch
                    latest.update(metrics)
                    step = e_step if e_step is not None else step
                    epoch = e_epoch if e_epoch is not None else epoch
                    total = e_total or total
                elif event.event in ("status", "end"):
                    status = event_status(event.data) or status
                    if event.event == "end":
                        final = event.data if isinstance(event.data, dict) else None
                    if not live and status in TERMINAL_STATUSES and epoch != printed_epoch:
                        out.print(f"epoch {epoch_text(epoch)}  {fmt_metrics(latest, keys)}")
                        printed_epoch = epoch
                    if not live and status != printed_status:
                        out.print(f"status: {status}")
                        printed_status = status
                progress.update(
                    task,
                    description=status,
                    completed=step,
                    total=total or None,
                    epoch=epoch_text(epoch),
                    metrics=fmt_metrics(latest, keys),
                )
            if not live and epoch and epoch != printed_epoch:
                out.print(f"epoch {epoch_text(epoch)}  {fmt_metrics(latest, keys)}")
    except KeyboardInterrupt:
        if cancel_on_exit:
            api.cancel_job(job_id)
            err.print(f"cancel requested for job {job_id}")
            return EXIT_CANCELLED
        err.print(f"detached; job {job_id} keeps running (modelkiln logs {job_id} --follow)")
        return EXIT_DETACHED

    end_job = api.get_job(job_id)
    status = str(end_job.get("status", status))
    if status not in TERMINAL_STATUSES and final and final.get("status"):
        status = str(final["status"])
    line = f"job {job_id} {status}"
    best = end_job.get("best_metrics")
    if isinstance(best, dict) and best:
        line += f"  best: {fmt_metrics(best, keys) or fmt_metrics(best)}"
    if status == "succeeded":
        out.print(Text(line, style="green"))
    else:
        error = end_job.get("error")
        err.print(Text(line + (f": {error}" if error else ""), style=STATUS_STYLE.get(status, "")))
    return STATUS_EXIT.get(status, EXIT_ERROR)


# -- commands --------------------------------------------------------------------------------


@_handles_errors
def train(
    model: Annotated[ModelKind, typer.Argument(help="What to train.", case_sensitive=False)],
    dataset: Annotated[
        str,
        typer.Option(
            "--dataset", "-d", help="Built-in name (digits, grid25, ...) or id:<upload id>."
        ),
    ],
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", "-s", metavar="KEY=VALUE", help="A hyperparameter, e.g. lr=0.001; repeatable."
        ),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Shortcut for --set epochs=N.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Shortcut for --set batch_size=N.")] = None,
    lr: Annotated[float | None, typer.Option(help="Shortcut for --set lr=X.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seeds init, split and noise.")] = None,
    device: Annotated[
        DeviceChoice,
        typer.Option(help="Where to train; auto: CUDA if the worker that takes it has a GPU."),
    ] = DeviceChoice.auto,
    name: Annotated[str | None, typer.Option(help="A label for people.")] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Show live progress until the job ends.")
    ] = False,
    cancel_on_exit: Annotated[
        bool,
        typer.Option(
            "--cancel-on-exit", help="With --follow: Ctrl-C cancels the job instead of detaching."
        ),
    ] = False,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """Submit a training job (and with --follow, watch it to the end)."""
    try:
        hyperparams = parse_settings(set_ or [])
        for key, value in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr)):
            if value is not None:
                hyperparams[key] = value
        check_hyperparams(model, hyperparams)
    except ValueError as exc:
        fail(_escape(str(exc)), EXIT_USAGE)
    with ModelKilnClient(url) as api:
        job = api.create_job(
            model.value,
            dataset_ref(dataset),
            hyperparams,
            seed=seed,
            device=device.value,
            name=name,
        )
        job_id = str(job["id"])
        if not follow:
            out.print(job_id)
            err.print(
                f"submitted {model.value} job {job_id}; follow with: modelkiln logs {job_id} -f"
            )
            return
        err.print(f"submitted {model.value} job {job_id}")
        code = follow_job(api, job, cancel_on_exit=cancel_on_exit)
    raise typer.Exit(code)


@_handles_errors
def jobs(
    status: Annotated[str | None, typer.Option(help="Only jobs in this status.")] = None,
    model: Annotated[ModelKind | None, typer.Option(help="Only this model kind.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many to show.")] = 20,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """List jobs, newest first."""
    with ModelKilnClient(url) as api:
        page = api.list_jobs(status=status, model=model.value if model else None, limit=limit)
    rows = page.get("data", []) if isinstance(page, dict) else list(page)
    named = any(job.get("name") for job in rows)
    table = Table(box=None, header_style="bold")
    for col in ("ID", *(["NAME"] if named else []), "MODEL", "DATASET", "STATUS"):
        table.add_column(col)
    for col in ("PROGRESS", "EPOCH", "AGE"):
        table.add_column(col, justify="right")
    for job in rows[:limit]:
        step, total, epoch = job_progress(job)
        pct = (
            "100%"
            if job.get("status") == "succeeded"
            else (f"{100 * step / total:.0f}%" if total else "-")
        )
        table.add_row(
            str(job.get("id")),
            *([str(job.get("name") or "")] if named else []),
            str(job.get("model")),
            job_dataset(job),
            styled_status(str(job.get("status"))),
            pct,
            str(epoch or "-"),
            age(job.get("created_at")),
        )
    if not rows:
        err.print("no jobs")
        return
    out.print(table)


@_handles_errors
def show(job_id: JobArg, url: UrlOpt = DEFAULT_URL) -> None:
    """Show one job: status, progress, metrics, settings."""
    with ModelKilnClient(url) as api:
        job = api.get_job(job_id)
    step, total, epoch = job_progress(job)
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("id", str(job.get("id")))
    if job.get("name"):
        table.add_row("name", str(job["name"]))
    table.add_row("model", str(job.get("model")))
    table.add_row("dataset", job_dataset(job))
    table.add_row("status", styled_status(str(job.get("status"))))
    table.add_row("progress", f"step {step}/{total or '?'}  epoch {epoch}")
    for key in ("device", "worker", "created_at", "started_at", "finished_at"):
        if job.get(key):
            table.add_row(key.replace("_", " "), str(job[key]))
    metrics = job_metrics(job)
    if metrics:
        table.add_row("latest", fmt_metrics(metrics))
    if isinstance(job.get("best_metrics"), dict) and job["best_metrics"]:
        table.add_row("best", fmt_metrics(job["best_metrics"]))
    hp = job_hyperparams(job)
    if hp:
        table.add_row("hyperparams", "  ".join(f"{k}={fmt_number(v)}" for k, v in hp.items()))
    if job.get("seed") is not None:
        table.add_row("seed", str(job["seed"]))
    if job.get("error"):
        table.add_row("error", Text(str(job["error"]), style="red"))
    out.print(table)


def _history(api: ModelKilnClient, job_id: str) -> Iterator[Json]:
    """Every record of the loss history, paging through ``?after=``."""
    after: int | None = None
    while True:
        page = api.losses(job_id, after=after, limit=1000)
        rows = page.get("data", []) if isinstance(page, dict) else list(page)
        if not rows:
            return
        yield from rows
        last = rows[-1].get("seq")
        nxt = page.get("next_after") if isinstance(page, dict) else None
        if nxt is None and (last is None or len(rows) < 1000):
            return
        after = int(nxt if nxt is not None else last)


def _csv_row(header: list[str], event: Event) -> list[str]:
    step, epoch, _, metrics = _event_fields(event.data)
    known = {"seq": event.id, "step": step, "epoch": epoch}
    row = []
    for col in header:
        value = known.get(col, metrics.get(col))
        row.append("" if value is None else str(value))
    return row


@_handles_errors
def logs(
    job_id: JobArg,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new losses until the job ends.")
    ] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV (the API's columns).")] = False,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """Print a job's loss history."""
    with ModelKilnClient(url) as api:
        job = api.get_job(job_id)
        keys = _metric_keys(str(job.get("model")))
        last_seq: int | None = None
        header: list[str] = []
        if as_csv:
            text = api.losses_csv(job_id)
            sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
            sys.stdout.flush()
            lines = text.splitlines()
            if lines:
                header = next(csv.reader([lines[0]]))
            if follow and "seq" in header and len(lines) > 1:
                seqs = [r[header.index("seq")] for r in csv.reader(lines[1:]) if r]
                last_seq = int(seqs[-1]) if seqs and seqs[-1].isdigit() else None
        else:
            for rec in _history(api, job_id):
                step, epoch, _, metrics = _event_fields(rec)
                out.print(f"step {step} epoch {epoch}  {fmt_metrics(metrics, keys)}")
                if isinstance(rec.get("seq"), int):
                    last_seq = rec["seq"]
        if not follow:
            return
        if as_csv and not header:
            header = ["seq", "step", "epoch", *keys]
            sys.stdout.write(",".join(header) + "\n")
        writer = csv.writer(sys.stdout, lineterminator="\n")
        status = str(job.get("status"))
        try:
            for event in api.events(job_id, last_event_id=last_seq):
                if event.event == "metrics":
                    if as_csv:
                        writer.writerow(_csv_row(header, event))
                        sys.stdout.flush()
                    else:
                        step, epoch, _, metrics = _event_fields(event.data)
                        out.print(f"step {step} epoch {epoch}  {fmt_metrics(metrics, keys)}")
                elif event.event in ("status", "end"):
                    status = event_status(event.data) or status
                    if not as_csv:
                        err.print(f"status: {status}")
        except KeyboardInterrupt:
            raise typer.Exit(EXIT_DETACHED) from None
    raise typer.Exit(STATUS_EXIT.get(status, EXIT_OK))


@_handles_errors
def cancel(job_id: JobArg, url: UrlOpt = DEFAULT_URL) -> None:
    """Cancel a queued or running job."""
    with ModelKilnClient(url) as api:
        job = api.cancel_job(job_id)
    status = job.get("status") if isinstance(job, dict) else None
    out.print(f"cancel requested for job {job_id}" + (f" (status: {status})" if status else ""))


@_handles_errors
def delete(job_id: JobArg, url: UrlOpt = DEFAULT_URL) -> None:
    """Delete a finished job and its artifacts."""
    with ModelKilnClient(url) as api:
        api.delete_job(job_id)
    out.print(f"deleted job {job_id}")


@_handles_errors
def sample(
    job_id: JobArg,
    n: Annotated[int, typer.Option("-n", min=1, help="How many samples.")] = 64,
    seed: Annotated[int | None, typer.Option(help="Same seed, same samples.")] = None,
    nrow: Annotated[int | None, typer.Option(help="Images per row of the grid.")] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write; .png, .json or .npy.")
    ] = Path("samples.png"),
    fmt: Annotated[
        SampleFormat | None, typer.Option("--format", help="Default: from the -o suffix.")
    ] = None,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """Draw samples from a GAN job's generator."""
    suffix = output.suffix.lower().lstrip(".")
    fmt_value = fmt.value if fmt else (suffix if suffix in SampleFormat.__members__ else "png")
    with ModelKilnClient(url) as api:
        data = api.samples(job_id, n=n, seed=seed, nrow=nrow, format=fmt_value)
    output.write_bytes(data)
    out.print(f"wrote {n} samples to {output}")


@_handles_errors
def predict(
    job_id: JobArg,
    image: Annotated[
        Path | None, typer.Option("--image", "-i", help="An image file to classify.")
    ] = None,
    json_inputs: Annotated[
        str | None, typer.Option("--json", help="Inputs as JSON: a list of rows.")
    ] = None,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """Class probabilities from a neuron or CNN job."""
    if (image is None) == (json_inputs is None):
        fail("give exactly one of --image FILE or --json '[...]'", EXIT_USAGE)
    inputs: list[Any] | None = None
    if json_inputs is not None:
        try:
            parsed = json.loads(json_inputs)
        except ValueError as exc:
            fail(f"--json is not valid JSON: {exc}", EXIT_USAGE)
        if isinstance(parsed, dict) and "inputs" in parsed:
            parsed = parsed["inputs"]
        if not isinstance(parsed, list):
            fail("--json must be a list of input rows", EXIT_USAGE)
        inputs = parsed
    if image is not None and not image.is_file():
        fail(f"no such file: {image}", EXIT_USAGE)
    with ModelKilnClient(url) as api:
        result = api.predict(job_id, inputs=inputs, image=image)
    _print_predictions(result)


def _print_predictions(result: Json) -> None:
    preds = result.get("predictions") if isinstance(result, dict) else None
    probs = result.get("probabilities") if isinstance(result, dict) else None
    classes = (
        result.get("classes") or result.get("class_names") if isinstance(result, dict) else None
    )
    if isinstance(preds, list) and preds and isinstance(preds[0], dict):
        table = Table(box=None, header_style="bold")
        table.add_column("#", justify="right")
        table.add_column("CLASS")
        table.add_column("P", justify="right")
        table.add_column("ALL")
        for i, p in enumerate(preds):
            dist = p.get("probabilities") or {}
            if isinstance(dist, list) and classes:
                dist = dict(zip(classes, dist, strict=False))
            top = max(dist.values()) if isinstance(dist, dict) and dist else p.get("probability")
            cls = p.get("label", p.get("class", p.get("prediction")))
            shown = (
                "  ".join(f"{k}:{v:.2f}" for k, v in dist.items())
                if isinstance(dist, dict)
                else str(dist)
            )
            table.add_row(str(i), str(cls), fmt_number(top), shown)
        out.print(table)
        return
    if isinstance(probs, list):
        table = Table(box=None, header_style="bold")
        table.add_column("#", justify="right")
        table.add_column("CLASS")
        table.add_column("P", justify="right")
        for i, row in enumerate(probs):
            if not isinstance(row, list) or not row:
                continue
            best = max(range(len(row)), key=lambda j: row[j])
            label = classes[best] if isinstance(classes, list) and best < len(classes) else best
            table.add_row(str(i), str(label), f"{row[best]:.4f}")
        out.print(table)
        return
    out.print_json(json.dumps(result))


@_handles_errors
def datasets(url: UrlOpt = DEFAULT_URL) -> None:
    """List built-in and uploaded datasets."""
    with ModelKilnClient(url) as api:
        rows = api.datasets()
    table = Table(box=None, header_style="bold")
    for col in ("NAME", "ID", "SOURCE", "KIND", "SHAPE", "CLASSES", "TRAIN", "VAL"):
        table.add_column(col, justify="right" if col in ("CLASSES", "TRAIN", "VAL") else "left")
    notes: list[str] = []
    for ds in rows:
        shape = ds.get("shape")
        classes = ds.get("num_classes")
        if classes is None and isinstance(ds.get("class_names"), list):
            classes = len(ds["class_names"])
        name = str(ds.get("name", ""))
        if not ds.get("available", True):
            notes.append(f"{name}: {ds.get('detail') or 'unavailable'}")
            name += " *"
        table.add_row(
            name,
            str(ds.get("id") or "-"),
            str(ds.get("source", "")),
            str(ds.get("kind") or ""),
            "x".join(str(s) for s in shape) if isinstance(shape, list) else "",
            "" if classes is None else str(classes),
            "" if ds.get("train_size") is None else str(ds["train_size"]),
            "" if ds.get("val_size") is None else str(ds["val_size"]),
        )
    out.print(table)
    for note in notes:
        out.print(Text(f"* {note}", style="yellow"))


@_handles_errors
def upload(
    file: Annotated[Path, typer.Argument(help="CSV, NPZ or ZIP of PNG folders (one per class).")],
    name: Annotated[str | None, typer.Option(help="A name for the dataset.")] = None,
    label_column: Annotated[
        str | None,
        typer.Option(
            "--label-column",
            metavar="NAME",
            help="The CSV's label column, if not label, y, target or class (any case).",
        ),
    ] = None,
    url: UrlOpt = DEFAULT_URL,
) -> None:
    """Upload a dataset; prints its id (train with --dataset id:<ID>)."""
    if not file.is_file():
        fail(f"no such file: {file}", EXIT_USAGE)
    with ModelKilnClient(url) as api:
        record = api.upload_dataset(file, name=name, label_column=label_column)
    out.print(str(record.get("id")))
    err.print(f"uploaded {file.name}; train with --dataset id:{record.get('id')}")


@_handles_errors
def ready(url: UrlOpt = DEFAULT_URL) -> None:
    """Check that the API, its store, broker and a worker are ready."""
    with ModelKilnClient(url) as api:
        body = api.readiness()
    out.print(json.dumps(body))


COMMANDS: dict[str, Callable[..., Any]] = {
    "train": train,
    "jobs": jobs,
    "show": show,
    "logs": logs,
    "cancel": cancel,
    "delete": delete,
    "sample": sample,
    "predict": predict,
    "datasets": datasets,
    "upload": upload,
    "ready": ready,
}


def register_client_commands(app: typer.Typer) -> None:
    """Add the client commands (train, jobs, show, logs, ...) to ``app``."""
    for name, func in COMMANDS.items():
        app.command(name)(func)


def build_app() -> typer.Typer:
    """A Typer app with only the client commands (``python -m app.cli_client``)."""
    app = typer.Typer(
        help="ModelKiln client: train and inspect jobs over the REST API.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    register_client_commands(app)
    return app


def main() -> None:  # pragma: no cover - thin entry point
    build_app()()


if __name__ == "__main__":  # pragma: no cover
    main()
