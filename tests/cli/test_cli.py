"""The ``modelkiln`` client commands against a live embedded server (API + worker).

Everything goes through the installed ``modelkiln`` script as a user would run it; the job
store is checked over HTTP. Jobs are tiny (digits, moons, two epochs) so the file runs in
about a minute on a laptop CPU.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.cli.conftest import Cli
from tests.cli.live import CliResult, LiveServer, free_port, modelkiln_command, run_cli

pytestmark = pytest.mark.e2e

GAN_ARGS = ("--dataset", "digits", "--epochs", "2", "--set", "hidden=64", "--seed", "3")
SUBMITTED = re.compile(r"submitted (\w+) job (\w+)")


def job_id_of(result: CliResult) -> str:
    match = SUBMITTED.search(result.stderr)
    assert match, f"no 'submitted ... job ID' line in stderr: {result.stderr!r}"
    return match.group(2)


def get_job(server: LiveServer, job_id: str) -> dict:
    response = httpx.get(f"{server.url}/v1/jobs/{job_id}", timeout=10)
    response.raise_for_status()
    return response.json()


def wait_for(server: LiveServer, job_id: str, statuses: set[str], timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = get_job(server, job_id)
        if job["status"] in statuses:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']}"
        time.sleep(0.3)


def assert_one_line_error(result: CliResult, code: int, *needles: str) -> None:
    """A failure a user can read: the exit code, one stderr line, no traceback."""
    assert result.code == code, (result.code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr_lines) == 1, result.stderr
    line = result.stderr_lines[0].lower()
    for needle in needles:
        assert needle.lower() in line, line


# -- a GAN followed to the end, then inspected ------------------------------------------------


@pytest.fixture(scope="module")
def gan_run(cli: Cli) -> CliResult:
    return cli("train", "gan", *GAN_ARGS, "--follow")


@pytest.fixture(scope="module")
def gan_job(gan_run: CliResult) -> str:
    assert gan_run.code == 0, gan_run.stderr
    return job_id_of(gan_run)


def test_train_follow_reports_progress_and_exits_0_when_the_job_succeeds(
    gan_run: CliResult, server: LiveServer
) -> None:
    assert gan_run.code == 0, gan_run.stderr
    job = get_job(server, job_id_of(gan_run))
    assert job["status"] == "succeeded"
    assert job["step"] == job["total_steps"] > 0
    # Not a terminal, so one line per epoch with the latest GAN losses, then the outcome.
    assert re.search(r"epoch 1/2 .*d_loss=\S+ +g_loss=\S+ +d_real=\S+ +d_fake=\S+", gan_run.stdout)
    assert "epoch 2/2" in gan_run.stdout
    assert f"job {job['id']} succeeded" in gan_run.stdout


def test_jobs_lists_the_job_with_its_status(cli: Cli, gan_job: str) -> None:
    result = cli("jobs")
    assert result.code == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if gan_job in line)
    assert re.search(r"gan +digits +succeeded +100%", row), row


def test_jobs_filters_by_model(cli: Cli, gan_job: str) -> None:
    result = cli("jobs", "--model", "neuron")
    assert result.code == 0
    assert gan_job not in result.stdout


def test_show_describes_the_job(cli: Cli, gan_job: str, server: LiveServer) -> None:
    result = cli("show", gan_job)
    assert result.code == 0, result.stderr
    job = get_job(server, gan_job)
    assert "succeeded" in result.stdout
    assert f"step {job['total_steps']}/{job['total_steps']}" in result.stdout
    assert "epochs=2" in result.stdout and "hidden=64" in result.stdout
    assert "d_loss=" in result.stdout


def test_logs_csv_is_the_whole_history(cli: Cli, gan_job: str, server: LiveServer) -> None:
    result = cli("logs", gan_job, "--csv")
    assert result.code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert rows, result.stdout
    assert {"seq", "step", "epoch", "d_loss", "g_loss", "d_real", "d_fake"} <= set(rows[0])
    total = get_job(server, gan_job)["total_steps"]
    assert [int(r["step"]) for r in rows] == list(range(1, total + 1))
    assert all(0 <= float(r["d_real"]) <= 1 and 0 <= float(r["d_fake"]) <= 1 for r in rows)


def test_logs_follow_on_a_finished_job_adds_nothing_and_exits_0(cli: Cli, gan_job: str) -> None:
    plain = cli("logs", gan_job, "--csv")
    followed = cli("logs", gan_job, "--csv", "--follow")
    assert followed.code == 0, followed.stderr
    assert followed.stdout == plain.stdout  # resumed after the last seq: no duplicates


def test_logs_prints_one_line_per_step(cli: Cli, gan_job: str, server: LiveServer) -> None:
    result = cli("logs", gan_job)
    assert result.code == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("step ")]
    assert len(lines) == get_job(server, gan_job)["total_steps"]
    assert lines[0].startswith("step 1 epoch 1  d_loss=")


def test_sample_writes_a_png_grid_and_the_seed_fixes_it(
    cli: Cli, gan_job: str, tmp_path: Path
) -> None:
    first, again, other = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    for path, seed in ((first, "7"), (again, "7"), (other, "8")):
        result = cli("sample", gan_job, "-n", "16", "--seed", seed, "-o", str(path))
        assert result.code == 0, result.stderr
    with Image.open(first) as img:
        assert img.format == "PNG"
        assert img.width >= 4 * 8 and img.height >= 4 * 8  # a 4x4 grid of 8x8 digits
    assert first.read_bytes() == again.read_bytes()
    assert first.read_bytes() != other.read_bytes()


def test_sample_json_format_follows_the_suffix(cli: Cli, gan_job: str, tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    result = cli("sample", gan_job, "-n", "3", "--seed", "1", "-o", str(out))
    assert result.code == 0, result.stderr
    body = json.loads(out.read_text())
    assert body["n"] == 3 and len(body["samples"]) == 3


# -- classifiers: predict ---------------------------------------------------------------------


def test_predict_json_on_a_neuron(cli: Cli) -> None:
    run = cli("train", "neuron", "--dataset", "moons", "--epochs", "3", "--follow")
    assert run.code == 0, run.stderr
    job_id = job_id_of(run)
    result = cli("predict", job_id, "--json", "[[0.0, 0.9], [1.5, -0.4]]")
    assert result.code == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[1:] if line.strip()]
    assert [r[0] for r in rows] == ["0", "1"]
    assert all(0.5 <= float(r[2]) <= 1 for r in rows)  # the winning class's probability
    # the sample command is for GANs: a clear refusal, not a crash
    assert_one_line_error(cli("sample", job_id, "-o", "x.png"), 1, "409")


def test_predict_image_on_a_cnn(cli: Cli, tmp_path: Path) -> None:
    run = cli(
        "train", "cnn", "--dataset", "digits", "--epochs", "1", "--set", "channels=8", "--follow"
    )
    assert run.code == 0, run.stderr
    digit = tmp_path / "one.png"
    img = Image.new("L", (8, 8), 0)
    for y in range(1, 7):
        img.putpixel((4, y), 255)
    img.save(digit)
    result = cli("predict", job_id_of(run), "--image", str(digit))
    assert result.code == 0, result.stderr
    row = result.stdout.splitlines()[1].split()
    assert row[0] == "0" and row[1] in {str(d) for d in range(10)}


def test_predict_needs_exactly_one_input(cli: Cli, gan_job: str) -> None:
    assert_one_line_error(cli("predict", gan_job), 2, "exactly one")


# -- datasets ----------------------------------------------------------------------------------


def test_upload_then_datasets_lists_it(cli: Cli, tmp_path: Path) -> None:
    data = tmp_path / "points.csv"
    rows = ["a,b,label"] + [f"{i % 7},{(i * 3) % 5},{i % 2}" for i in range(60)]
    data.write_text("\n".join(rows) + "\n")
    up = cli("upload", str(data), "--name", "my-points")
    assert up.code == 0, up.stderr
    upload_id = up.stdout.strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]+", upload_id)
    listing = cli("datasets")
    assert listing.code == 0, listing.stderr
    assert "digits" in listing.stdout and "grid25" in listing.stdout
    assert re.search(rf"my-points +{upload_id}", listing.stdout), listing.stdout


def test_upload_names_an_unusual_label_column(cli: Cli, server: LiveServer, tmp_path: Path) -> None:
    data = tmp_path / "flowers.csv"
    rows = ["petal,sepal,species"] + [f"{i % 7},{(i * 3) % 5},{'ab'[i % 2]}" for i in range(60)]
    data.write_text("\n".join(rows) + "\n")

    # Without it: one line that says how to name it, in the CLI's own terms too.
    assert_one_line_error(cli("upload", str(data)), 1, "no label column", "--label-column")

    up = cli("upload", str(data), "--label-column", "species")
    assert up.code == 0, up.stderr
    upload_id = up.stdout.strip()
    listed = httpx.get(f"{server.url}/v1/datasets", timeout=10).json()
    record = next(d for d in listed["data"] if d.get("id") == upload_id)
    assert record["class_names"] == ["a", "b"], record


def test_upload_of_a_missing_file_is_one_line(cli: Cli) -> None:
    assert_one_line_error(cli("upload", "no-such-file.csv"), 2, "no such file")


# -- cancel, Ctrl-C, delete -------------------------------------------------------------------


def _start_follow(server: LiveServer, *extra: str) -> tuple[subprocess.Popen[str], str]:
    """``train gan --follow`` in the background; returns it once its job is running."""
    proc = subprocess.Popen(
        [
            *modelkiln_command(),
            "train",
            "gan",
            "--dataset",
            "grid25",
            "--epochs",
            "200",
            "--follow",
            *extra,
        ],
        env={**server.env, "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    match = SUBMITTED.search(line)
    assert match, line
    job_id = match.group(2)
    wait_for(server, job_id, {"running"})
    return proc, job_id


def test_ctrl_c_detaches_and_leaves_the_job_running(cli: Cli, server: LiveServer) -> None:
    proc, job_id = _start_follow(server)
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "detached" in stderr and "Traceback" not in stderr
    assert get_job(server, job_id)["status"] == "running"

    # A running job cannot be deleted; cancel it, and `logs --follow` reports how it ended.
    assert_one_line_error(cli("delete", job_id), 1, "409", "cancel it first")
    cancelled = cli("cancel", job_id)
    assert cancelled.code == 0, cancelled.stderr
    assert "cancel requested" in cancelled.stdout
    follow = cli("logs", job_id, "--follow", timeout=120)
    assert follow.code == 4, follow.stderr  # 4 = the job was cancelled
    assert get_job(server, job_id)["status"] == "cancelled"

    deleted = cli("delete", job_id)
    assert deleted.code == 0, deleted.stderr
    assert_one_line_error(cli("show", job_id), 1, "404", job_id)


def test_ctrl_c_with_cancel_on_exit_cancels_the_job(server: LiveServer) -> None:
    proc, job_id = _start_follow(server, "--cancel-on-exit")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 4, stderr
    assert "cancel requested" in stderr and "Traceback" not in stderr
    assert wait_for(server, job_id, {"cancelled"})["status"] == "cancelled"


# -- errors: one line on stderr, non-zero, no traceback ---------------------------------------


@pytest.mark.parametrize(
    "args",
    [("jobs",), ("show", "abc"), ("train", "gan", "--dataset", "digits"), ("datasets",)],
)
def test_a_server_that_is_down_is_one_line(args: tuple[str, ...], server: LiveServer) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    result = run_cli(*args, "--url", down, env=server.env)
    assert_one_line_error(result, 1, "cannot reach", down)


def test_modelkiln_url_is_the_default(server: LiveServer) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    result = run_cli("jobs", env={**server.env, "MODELKILN_URL": down})
    assert_one_line_error(result, 1, down)


@pytest.mark.parametrize(
    "args",
    [
        ("show", "nosuchjob"),
        ("logs", "nosuchjob"),
        ("cancel", "nosuchjob"),
        ("delete", "nosuchjob"),
        ("sample", "nosuchjob", "-o", "x.png"),
        ("predict", "nosuchjob", "--json", "[[1, 2]]"),
    ],
)
def test_an_unknown_job_is_one_line(cli: Cli, args: tuple[str, ...]) -> None:
    assert_one_line_error(cli(*args), 1, "404", "nosuchjob")


@pytest.mark.parametrize(
    ("setting", "needle"),
    [
        ("lr=-1", "lr"),
        ("d_steps=99", "d_steps"),
        ("latent_dist=cauchy", "latent_dist"),
        ("nonsense=1", "unknown gan setting nonsense"),
        ("epochs", "key=value"),
    ],
)
def test_an_invalid_setting_is_one_line(cli: Cli, setting: str, needle: str) -> None:
    assert_one_line_error(cli("train", "gan", "--dataset", "digits", "--set", setting), 2, needle)


def test_an_unknown_dataset_is_the_apis_one_line(cli: Cli) -> None:
    assert_one_line_error(cli("train", "gan", "--dataset", "nope"), 1, "422", "nope")


def test_an_unsuitable_dataset_is_the_apis_one_line(cli: Cli) -> None:
    assert_one_line_error(cli("train", "neuron", "--dataset", "digits"), 1, "422", "neuron")


def test_help_lists_the_client_commands() -> None:
    result = subprocess.run(
        [*modelkiln_command(), "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0
    for command in (
        "train",
        "jobs",
        "show",
        "logs",
        "cancel",
        "delete",
        "sample",
        "predict",
        "datasets",
        "upload",
        "serve",
    ):
        assert re.search(rf"^\W*{command}\b", result.stdout, re.M), command
