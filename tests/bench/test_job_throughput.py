"""``python -m bench.job_throughput``: the harness that times real jobs per device (the GPU
comparison of the deployment issue runs it on a CUDA host), here on the CPU with short jobs."""

from __future__ import annotations

import pytest
import torch

from bench import job_throughput

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_times_each_example_job_on_each_device(capsys: pytest.CaptureFixture[str]) -> None:
    job_throughput.main(["--devices", "cpu,cuda", "--models", "gan,cnn", "--epochs", "gan=2,cnn=2"])
    out = capsys.readouterr().out
    rows = {tuple(line.split()[:2]): line.split() for line in out.splitlines()}
    # digits: 1,437 training rows, batches of 64. The GAN drops the short last batch (22 a
    # epoch), the CNN keeps it (23).
    assert int(rows["gan", "cpu"][2]) == 2 * 22
    assert int(rows["cnn", "cpu"][2]) == 2 * 23
    for model in ("gan", "cnn"):
        wall_s, steps_per_s, ms_per_step = map(float, rows[model, "cpu"][3:6])
        assert wall_s > 0 and steps_per_s > 0
        assert ms_per_step == pytest.approx(1000 / steps_per_s, rel=0.01)
        if torch.cuda.is_available():
            assert f"{model}: cuda/cpu steps per second" in out
        else:  # the gpu worker takes the job and fails it with its reason; the CPU rows stand
            assert " ".join(rows[model, "cuda"][2:]).startswith("failed: ")
            assert "no CUDA device" in " ".join(rows[model, "cuda"])
