"""``python -m ml``: help that documents every hyperparameter, one-line errors, real runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ml.__main__ import _StopOnInterrupt, main
from ml.specs import GANHyperparams

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``python -m ml ARGS`` in a fresh process, as a user would run it."""
    env = {**os.environ, "COLUMNS": "100"}
    env.pop("MODELKILN_DATA_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "ml", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def flat(text: str) -> str:
    return " ".join(text.split())  # help text wraps anywhere


# --- help -------------------------------------------------------------------------------------


def test_top_level_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("train", "sample", "datasets"):
        assert command in out


def test_gan_help_documents_every_hyperparameter(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "gan", "--help"]) == 0
    out = flat(capsys.readouterr().out)
    for name, info in GANHyperparams.model_fields.items():
        assert "--" + name.replace("_", "-") in out, name
        description = info.description or ""
        assert flat(description)[:30] in out, name
    assert "--epochs INT Passes over the training split. Range [1, 5000]. Default 60." in out
    assert "--lr FLOAT Learning rate. Range (0, 1]. Default 0.001." in out
    assert "{non_saturating,minimax}" in out and "{normal,uniform}" in out
    assert "--spectral-norm, --no-spectral-norm" in out
    for option in ("--dataset", "--out", "--seed", "--device"):
        assert option in out


# --- bad input: one line on stderr, exit 2 ------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--lr", "-1"], "invalid --lr -1: Input should be greater than 0"),
        (["--epochs", "abc"], "invalid --epochs abc: Input should be a valid integer"),
        (["--d-steps", "11"], "invalid --d-steps 11: Input should be less than or equal to 10"),
        (["--batch-size", "10", "--pack", "3"], "batch_size (10) must be a multiple of pack (3)"),
        (["--latent-dist", "cauchy"], "invalid choice: 'cauchy'"),
        (["--seed", "-1"], "invalid --seed -1"),
    ],
)
def test_invalid_value_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], expected: str
) -> None:
    code = main(["train", "gan", "--dataset", "digits", "--out", str(tmp_path / "run"), *extra])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1, captured.err
    assert expected in captured.err
    assert not (tmp_path / "run").exists()  # nothing was trained


def test_unknown_dataset_names_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "neuron", "--dataset", "nmist", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "unknown dataset 'nmist'" in err and "mnist" in err and "breast_cancer" in err


def test_missing_required_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "cnn", "--dataset", "digits"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--out" in err


def test_bad_input_in_a_real_process_has_no_traceback(tmp_path: Path) -> None:
    proc = run_cli("train", "gan", "--dataset", "digits", "--out", str(tmp_path), "--lr", "0")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "invalid --lr 0: Input should be greater than 0"
    assert "Traceback" not in proc.stderr + proc.stdout


def test_bad_csv_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b,label\n1,2,x\n3,oops,y\n")
    assert main(["train", "neuron", "--dataset", str(path), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "error: line 3, column 'b' of the CSV holds 'oops', which is not a number; feature "
        "columns must be numeric"
    ]


def test_a_model_refusing_its_data_says_only_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "neuron", "--dataset", "digits", "--out", str(tmp_path / "r")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no "training neuron on digits ..." for a run that never starts
    assert captured.err.strip().splitlines() == [
        "error: the neuron needs tabular or 2-D points data, but 'digits' is image data; use "
        "the cnn for images"
    ]


# --- real runs --------------------------------------------------------------------------------


def test_neuron_trains_on_breast_cancer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    argv = ["train", "neuron", "--dataset", "breast_cancer", "--epochs", "3", "--out", str(out)]
    assert main([*argv, "--seed", "1", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    epoch_lines = [line for line in text.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 3
    assert all("loss" in line and "val_accuracy" in line for line in epoch_lines)
    assert "completed: 24/24 steps" in text
    config = json.loads((out / "checkpoint" / "config.json").read_text())
    assert config["spec"]["hyperparams"]["epochs"] == 3 and config["spec"]["seed"] == 1
    assert config["metrics"]["val_accuracy"] > 0.8


def test_neuron_trains_on_a_local_csv_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    labels = np.where(x[:, 0] + x[:, 1] > 0, "yes", "no")
    rows = "".join(f"{a},{b},{c},{t}\n" for (a, b, c), t in zip(x, labels, strict=True))
    path = tmp_path / "table.csv"
    path.write_text("f1,f2,f3,answer\n" + rows)
    out = tmp_path / "run"
    argv = ["train", "neuron", "--dataset", str(path), "--label-column", "answer"]
    assert main([*argv, "--epochs", "20", "--out", str(out)]) == 0
    assert (out / "dataset" / "local.npz").is_file()
    config = json.loads((out / "checkpoint" / "config.json").read_text())
    assert config["metrics"]["val_accuracy"] > 0.85
    capsys.readouterr()


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("gan") / "run"
    proc = run_cli(
        "train", "gan", "--dataset", "digits", "--epochs", "1", "--hidden", "32",
        "--seed", "3", "--out", str(out),
    )  # fmt: skip
    return out, proc


def test_gan_run_writes_checkpoint_and_samples_png(
    gan_run: tuple[Path, subprocess.CompletedProcess],
) -> None:
    out, proc = gan_run
    assert proc.returncode == 0, proc.stderr
    assert "epoch   1/1  d_loss" in proc.stdout and "g_loss" in proc.stdout
    assert f"samples: {out / 'samples.png'}" in proc.stdout
    with Image.open(out / "samples.png") as img:
        img.verify()
        assert img.format == "PNG"
    assert (out / "checkpoint" / "weights.safetensors").is_file()


def test_sample_is_deterministic_per_seed(
    gan_run: tuple[Path, subprocess.CompletedProcess], tmp_path: Path
) -> None:
    out, _ = gan_run
    a, b, c = (tmp_path / f"{n}.npy" for n in "abc")
    assert main(["sample", str(out), "-n", "5", "--seed", "7", "-o", str(a)]) == 0
    assert main(["sample", str(out / "checkpoint"), "-n", "5", "--seed", "7", "-o", str(b)]) == 0
    assert main(["sample", str(out), "-n", "5", "--seed", "8", "-o", str(c)]) == 0
    x = np.load(a)
    assert x.shape == (5, 1, 8, 8)
    np.testing.assert_array_equal(x, np.load(b))
    assert not np.array_equal(x, np.load(c))
    grid = tmp_path / "grid.png"
    assert main(["sample", str(out), "-n", "16", "--nrow", "4", "-o", str(grid)]) == 0
    with Image.open(grid) as img:
        assert img.format == "PNG"


def test_samples_png_is_drawn_from_the_checkpoint_if_missing(
    gan_run: tuple[Path, subprocess.CompletedProcess], tmp_path: Path
) -> None:
    from ml.__main__ import _ensure_samples_png

    out, _ = gan_run
    path = _ensure_samples_png(tmp_path, out / "checkpoint")
    assert path == tmp_path / "samples.png"
    with Image.open(path) as img:
        assert img.format == "PNG"


def test_sample_refuses_a_classifier(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", "neuron", "--dataset", "moons", "--epochs", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["sample", str(out), "-o", str(tmp_path / "x.png")]) == 2
    assert "sample needs a GAN; this checkpoint is a neuron" in capsys.readouterr().err


def test_datasets_lists_builtins(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MODELKILN_DATA_DIR", raising=False)
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "digits" in out and "1x8x8" in out and "grid25" in out
    assert "mnist" in out and "unavailable" in out


def test_ctrl_c_asks_to_stop_then_aborts() -> None:
    class Quiet:
        def print(self, *_: object) -> None:
            pass

    stop = _StopOnInterrupt(Quiet())
    assert stop() is False
    stop._handle(2, None)
    assert stop() is True
    with pytest.raises(KeyboardInterrupt):
        stop._handle(2, None)
