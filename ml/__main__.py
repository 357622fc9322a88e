"""``python -m ml``: train, sample and list datasets locally, without the service.

::

    python -m ml train gan --dataset digits --epochs 30 --out runs/gan
    python -m ml train neuron --dataset my_table.csv --label-column outcome --out runs/n
    python -m ml sample runs/gan -n 64 --seed 7 -o grid.png
    python -m ml datasets

Every hyperparameter flag of ``train`` is generated from the pydantic models in
:mod:`ml.specs` (their descriptions and bounds become the help text), and values are
validated by those same models, so the CLI accepts exactly what ``POST /v1/jobs`` accepts.
Bad input prints one line on stderr and exits 2; a run whose loss became NaN exits 1; a run
stopped with Ctrl-C keeps its checkpoint (rerun with ``--resume``) and exits 130.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import Any

import annotated_types
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from ml.specs import HYPERPARAMS, DeviceChoice, ModelKind

PROG = "python -m ml"
UPLOAD_SUFFIXES = (".csv", ".npz", ".zip")
LOCAL_UPLOAD_MAX_BYTES = 4 * 2**30  # a file on the user's own disk: only memory bounds it
EXIT_USAGE = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """Bad input from the command line: reported as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error raises (one line, no usage dump) instead of exiting."""

    def error(self, message: str) -> Any:
        raise UsageError(f"{self.prog}: {message} (see --help)")


# --- the parser -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: ``train {neuron,cnn,gan}``, ``sample``, ``datasets``."""
    parser = _Parser(
        prog=PROG,
        description="Train ModelKiln's models (a sigmoid neuron, a CNN, a GAN) on this machine,\n"
        "sample from a trained GAN, and list the built-in datasets.",
        epilog="Examples:\n"
        "  python -m ml train gan --dataset digits --epochs 30 --out runs/gan\n"
        "  python -m ml train gan --help        (every GAN hyperparameter)\n"
        "  python -m ml sample runs/gan -n 64 --seed 7 -o grid.png\n"
        "  python -m ml datasets",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = commands.add_parser(
        "train",
        help="train a model and write its checkpoint (and, for a GAN, samples.png)",
        description="Train a model. Pick the model, then see its own --help for every "
        "hyperparameter, e.g. `python -m ml train gan --help`.",
    )
    models = train.add_subparsers(dest="model", metavar="MODEL", required=True)
    for kind in ModelKind:
        hp = HYPERPARAMS[kind]
        sub = models.add_parser(
            kind.value,
            help=_first_line(hp.__doc__),
            description=f"Train a {kind.value}: {_first_line(hp.__doc__)} Values are checked "
            "against the same bounds as the HTTP API's.",
        )
        _add_run_options(sub)
        _add_hyperparams(sub, hp, kind)
        sub.set_defaults(handler=_cmd_train)

    sample = commands.add_parser(
        "sample",
        help="draw samples from a trained GAN into a PNG grid (or a .npy array)",
        description="Draw samples from a trained GAN. The same --seed gives the same samples.",
    )
    sample.add_argument(
        "checkpoint", metavar="CKPT_DIR", help="a run directory (--out of train) or its checkpoint/"
    )
    sample.add_argument("-n", type=int, default=64, help="how many samples, 1-1024 (default 64)")
    sample.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    sample.add_argument("--nrow", type=int, default=8, help="images per grid row (default 8)")
    sample.add_argument(
        "-o",
        "--output",
        default="samples.png",
        help="where to write: a .png (grid, or scatter for 2-D points) or a .npy array "
        "(default samples.png)",
    )
    sample.add_argument(
        "--device", choices=[d.value for d in DeviceChoice], default="cpu", help="default cpu"
    )
    sample.set_defaults(handler=_cmd_sample)

    datasets = commands.add_parser(
        "datasets",
        help="list the built-in datasets (shape, classes, split sizes)",
        description="List the built-in datasets. mnist and fashion_mnist need IDX files under "
        "--data-dir.",
    )
    _add_data_dir(datasets)
    datasets.set_defaults(handler=_cmd_datasets)
    return parser


def _add_run_options(p: argparse.ArgumentParser) -> None:
    run = p.add_argument_group("run")
    run.add_argument(
        "--dataset",
        required=True,
        metavar="NAME|FILE",
        help="a built-in dataset (digits, breast_cancer, moons, blobs, ring8, grid25, mnist, "
        "fashion_mnist; see `python -m ml datasets`) or a .csv/.npz/.zip file to upload",
    )
    run.add_argument(
        "--label-column",
        metavar="NAME",
        help="for a CSV file: the label column (default: label, y, target or class)",
    )
    run.add_argument("--out", required=True, metavar="DIR", help="run directory to write")
    run.add_argument(
        "--seed",
        metavar="INT",
        help="seeds weight init, batch order and noise; range [0, 2147483647] (default 0)",
    )
    run.add_argument(
        "--device",
        choices=[d.value for d in DeviceChoice],
        help="auto: CUDA if this machine has a GPU, else the CPU (default auto)",
    )
    run.add_argument(
        "--resume", action="store_true", help="continue from DIR/checkpoint if there is one"
    )
    run.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="PyTorch CPU threads (default $OMP_NUM_THREADS, else 1: fastest for nets this small)",
    )
    _add_data_dir(run)


def _add_data_dir(p: argparse.ArgumentParser | Any) -> None:
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="folder with mnist/ and fashion_mnist/ IDX files (default $MODELKILN_DATA_DIR)",
    )


def _add_hyperparams(p: argparse.ArgumentParser, model: type[BaseModel], kind: ModelKind) -> None:
    """One flag per field of ``model``: ``batch_size`` -> ``--batch-size``, help from the field."""
    group = p.add_argument_group(f"{kind.value} hyperparameters")
    for name, info in model.model_fields.items():
        flag = "--" + name.replace("_", "-")
        text = _escape(_field_help(model, name, info))
        dest = f"hp_{name}"
        annotation = info.annotation
        if annotation is bool:
            group.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=None, dest=dest, help=text
            )
        elif isinstance(annotation, type) and issubclass(annotation, Enum):
            choices = [str(e.value) for e in annotation]
            group.add_argument(flag, choices=choices, dest=dest, help=text)
        else:
            metavar = "INT" if annotation is int else "FLOAT"
            group.add_argument(flag, metavar=metavar, dest=dest, help=text)


def _field_help(model: type[BaseModel], name: str, info: FieldInfo) -> str:
    description = info.description
    for base in model.__mro__[1:]:  # a subclass that re-declares a field drops its description
        if description or not (isinstance(base, type) and issubclass(base, BaseModel)):
            break
        parent = base.model_fields.get(name)
        description = parent.description if parent is not None else None
    parts = [description or name.replace("_", " ").capitalize() + "."]
    bounds = _bounds(info)
    if bounds:
        parts.append(f"Range {bounds}.")
    default = info.default
    if isinstance(default, Enum):
        default = default.value
    elif isinstance(default, bool):
        default = "on" if default else "off"
    parts.append(f"Default {default}.")
    return " ".join(parts)


def _bounds(info: FieldInfo) -> str:
    """Interval notation from the field's ge/gt/le/lt: ``(0, 10]``, ``[1, 1000]``."""
    lo: object = None
    hi: object = None
    lo_open = hi_open = False
    for m in info.metadata:
        if isinstance(m, annotated_types.Ge):
            lo = m.ge
        elif isinstance(m, annotated_types.Gt):
            lo, lo_open = m.gt, True
        elif isinstance(m, annotated_types.Le):
            hi = m.le
        elif isinstance(m, annotated_types.Lt):
            hi, hi_open = m.lt, True
    if lo is None and hi is None:
        return ""
    left = "(" if lo_open or lo is None else "["
    right = ")" if hi_open or hi is None else "]"
    return f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if doc else ""


def _escape(text: str) -> str:
    return text.replace("%", "%%")  # argparse %-formats help strings


# --- commands ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    from ml.errors import CheckpointError, DatasetError, DeviceError, MLError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return int(args.handler(args))
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except UsageError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except (DatasetError, DeviceError, CheckpointError) as exc:
        return _fail(f"error: {exc}", EXIT_USAGE)
    except MLError as exc:  # e.g. NonFiniteLossError: the input was fine, the run was not
        return _fail(f"error: {exc}", EXIT_FAILED)


def _fail(message: str, code: int) -> int:
    print(" ".join(message.split()), file=sys.stderr)  # one line, whatever the message held
    return code


def _cmd_train(args: argparse.Namespace) -> int:
    from ml.datasets import BUILTINS

    out = Path(args.out)
    data_dir = _data_dir(args)
    uploads_dir: Path | None = None
    dataset: dict[str, str]
    if args.dataset in BUILTINS:
        dataset = {"name": args.dataset}
    elif Path(args.dataset).suffix.lower() in UPLOAD_SUFFIXES and Path(args.dataset).is_file():
        uploads_dir = out / "dataset"
        dataset = {"id": _store_local_upload(Path(args.dataset), uploads_dir, args.label_column)}
    else:
        known = ", ".join(BUILTINS)
        raise UsageError(
            f"unknown dataset {args.dataset!r}: built-in datasets are {known}; or give the "
            "path of a .csv, .npz or .zip file"
        )
    spec = _spec(args, dataset)

    from rich.console import Console

    from ml.device import resolve_device, set_cpu_threads

    resolve_device(spec.device)  # fail on a missing GPU before printing anything
    set_cpu_threads(args.threads)
    console = Console(highlight=False, soft_wrap=True)
    header = (
        f"training {spec.model.value} on {args.dataset} "
        f"({', '.join(f'{k}={v}' for k, v in spec.hyperparams.model_dump(mode='json').items())})"
    )
    result, elapsed = _run_with_progress(
        spec, console, header, out, args.resume, uploads_dir, data_dir
    )
    console.print(
        f"{result.status.value}: {result.step}/{result.total_steps} steps, epoch {result.epoch}, "
        f"on {result.device} in {elapsed:.1f}s"
    )
    console.print(f"final  {_metrics_text(result.metrics)}")
    best = {k: v for k, v in result.best_metrics.items() if "loss" in k or "acc" in k}
    console.print(f"best   {_metrics_text(best)}")
    console.print(f"checkpoint: {result.checkpoint}")
    if spec.model is ModelKind.gan:
        console.print(f"samples: {_ensure_samples_png(out, result.checkpoint)}")
    return 0 if result.status.value == "completed" else EXIT_INTERRUPTED


def _spec(args: argparse.Namespace, dataset: dict[str, str]) -> Any:
    """The validated spec; a bad value becomes one line naming its flag."""
    from ml.training import parse_spec

    hyperparams = {
        key[3:]: value
        for key, value in vars(args).items()
        if key.startswith("hp_") and value is not None
    }
    raw: dict[str, Any] = {"model": args.model, "dataset": dataset, "hyperparams": hyperparams}
    if args.seed is not None:
        raw["seed"] = args.seed
    if args.device is not None:
        raw["device"] = args.device
    try:
        return parse_spec(raw)
    except ValidationError as exc:
        raise UsageError(_validation_line(exc)) from None


def _validation_line(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not isinstance(p, int)]
        message = err["msg"].removeprefix("Value error, ")
        field = loc[-1] if loc and loc[-1] not in ("hyperparams", "dataset") else None
        if field is None:
            problems.append(f"{loc[0] if loc else 'input'}: {message}")
        else:
            flag = "--" + ("dataset" if loc[0] == "dataset" else field.replace("_", "-"))
            problems.append(f"{flag} {err.get('input')!s}: {message}")
    return "invalid " + "; ".join(problems)


def _store_local_upload(path: Path, uploads_dir: Path, label_column: str | None) -> str:
    """Validate a local file exactly like an upload and store it beside the run."""
    from ml.uploads import parse_upload, store_upload

    parsed = parse_upload(
        path.name,
        path.read_bytes(),
        max_bytes=LOCAL_UPLOAD_MAX_BYTES,
        label_column=label_column,
    )
    store_upload(parsed, uploads_dir, "local", path.stem)
    return "local"


def _data_dir(args: argparse.Namespace) -> Path | None:
    value = args.data_dir or os.environ.get("MODELKILN_DATA_DIR")
    return Path(value) if value else None


def _run_with_progress(
    spec: Any,
    console: Any,
    header: str,
    out: Path,
    resume: bool,
    uploads_dir: Path | None,
    data_dir: Path | None,
) -> tuple[Any, float]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from ml.training import train

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[metrics]}"),
        console=console,
        disable=not console.is_terminal,  # in a log or a pipe the epoch lines say it all
    )
    reporter = _Reporter(progress, spec.hyperparams.epochs, header)
    stop = _StopOnInterrupt(console)
    start = time.monotonic()
    with progress, stop:
        result = train(
            spec,
            reporter,
            stop,
            out,
            resume=resume,
            uploads_dir=uploads_dir,
            data_dir=data_dir,
        )
        reporter.flush()
    return result, time.monotonic() - start


class _Reporter:
    """``on_event``: moves the bar each step, prints each epoch's mean losses and validation.

    ``header`` is printed at the first step, once the data and the model have passed their
    checks: a run refused for its data says only why.
    """

    def __init__(self, progress: Any, epochs: int, header: str) -> None:
        self.progress = progress
        self.epochs = epochs
        self.header = header
        self.task: Any = None
        self.epoch = 0
        self.sums: dict[str, float] = {}
        self.count = 0
        self.val: dict[str, float] = {}

    def __call__(self, event: Any) -> None:
        if event.kind.value != "metrics":
            return
        if self.task is None:
            self.progress.console.print(self.header)
            self.task = self.progress.add_task("", total=event.total_steps, metrics="")
        if event.epoch != self.epoch:
            self.flush()
            self.epoch = event.epoch
        if all(k.startswith("val_") for k in event.metrics):
            self.val.update(event.metrics)
        else:
            for k, v in event.metrics.items():
                self.sums[k] = self.sums.get(k, 0.0) + v
            self.count += 1
        self.progress.update(
            self.task,
            completed=event.step,
            description=f"epoch {event.epoch}/{self.epochs}",
            metrics=_metrics_text(event.metrics),
        )

    def flush(self) -> None:
        """Print the finished epoch's line (mean of its step metrics, then validation)."""
        if not self.count and not self.val:
            return
        means = {k: v / self.count for k, v in self.sums.items()} if self.count else {}
        line = f"epoch {self.epoch:>3}/{self.epochs}  {_metrics_text(means)}"
        if self.val:
            line += f"  | {_metrics_text(self.val)}"
        self.progress.console.print(line)
        self.sums, self.count, self.val = {}, 0, {}


class _StopOnInterrupt:
    """``should_stop``: the first Ctrl-C asks the loop to checkpoint and stop; a second aborts."""

    def __init__(self, console: Any) -> None:
        self.console = console
        self.requested = False
        self._previous: Any = None

    def __call__(self) -> bool:
        return self.requested

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.console.print("stopping after this step (Ctrl-C again to abort)")

    def __enter__(self) -> _StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _metrics_text(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())


def _ensure_samples_png(out: Path, checkpoint: Path) -> Path:
    """The GAN trainer writes ``samples.png`` each epoch; draw it from the checkpoint if not."""
    path = out / "samples.png"
    if not path.is_file():
        from ml.images import samples_png
        from ml.inference import sample

        path.write_bytes(samples_png(sample(checkpoint, n=64, seed=0)))
    return path


def _cmd_sample(args: argparse.Namespace) -> int:
    if not 1 <= args.n <= 1024:
        raise UsageError(f"-n {args.n}: draw between 1 and 1024 samples")
    if args.nrow < 1:
        raise UsageError(f"--nrow {args.nrow}: must be at least 1")
    output = Path(args.output)
    if output.suffix.lower() not in (".png", ".npy"):
        raise UsageError(f"-o {args.output}: write a .png or a .npy file")
    import numpy as np

    from ml import checkpoint as ckpt_io
    from ml.device import resolve_device
    from ml.images import samples_png
    from ml.inference import load_model
    from ml.layout import checkpoint_dir

    folder = Path(args.checkpoint)
    if not ckpt_io.exists(folder) and ckpt_io.exists(checkpoint_dir(folder)):
        folder = checkpoint_dir(folder)  # a run directory was given
    model = load_model(folder, resolve_device(args.device))
    if model.kind != "gan":
        raise UsageError(
            f"{args.checkpoint}: sample needs a GAN; this checkpoint is a {model.kind}"
        )
    samples = model.sample(args.n, args.seed)
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix.lower() == ".npy":
        np.save(output, samples, allow_pickle=False)
    else:
        output.write_bytes(samples_png(samples, nrow=args.nrow))
    print(f"wrote {args.n} samples (shape {list(samples.shape[1:])}) to {output}")
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ml.datasets import BUILTINS, load_dataset
    from ml.errors import DatasetError
    from ml.specs import DatasetRef

    table = Table("name", "kind", "shape", "classes", "train", "val")
    for name in BUILTINS:
        try:
            d = load_dataset(DatasetRef(name=name), data_dir=_data_dir(args)).describe()
        except DatasetError as exc:
            table.add_row(name, "-", "-", "-", "-", f"unavailable: {exc}")
            continue
        shape = "x".join(str(s) for s in d["shape"])  # type: ignore[attr-defined]
        table.add_row(
            name,
            str(d["kind"]),
            shape,
            str(d["num_classes"]),
            str(d["train_size"]),
            str(d["val_size"]),
        )
    Console(highlight=False, soft_wrap=True).print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
