"""CPU thread defaults and device resolution."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from ml.device import resolve_device, set_cpu_threads
from ml.errors import DeviceError


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_one_thread_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(2)
    assert set_cpu_threads() == 1
    assert torch.get_num_threads() == 1


def test_omp_num_threads_then_an_explicit_count_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert set_cpu_threads() == 2 and torch.get_num_threads() == 2
    assert set_cpu_threads(3) == 3 and torch.get_num_threads() == 3


def test_cpu_resolves_and_cuda_without_a_gpu_is_a_clear_error() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")  # the CI machine has none
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(DeviceError, match="no CUDA device"):
        resolve_device("cuda")
