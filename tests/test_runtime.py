import pytest
import torch

from netloupe import runtime
from netloupe.errors import NetloupeError


def test_batch_size_defaults_per_device_and_validates():
    assert runtime.batch_size(None, "cpu", cpu=4, gpu=64) == 4
    assert runtime.batch_size(None, torch.device("cuda", 0), cpu=4, gpu=64) == 64
    assert runtime.batch_size(7, "cpu", cpu=4, gpu=64) == 7
    with pytest.raises(NetloupeError, match="positive integer"):
        runtime.batch_size(0, "cpu", cpu=4, gpu=64)


def test_chunks_cover_range_exactly():
    parts = list(runtime.chunks(10, 4))
    assert [(s.start, s.stop) for s in parts] == [(0, 4), (4, 8), (8, 10)]
    assert list(runtime.chunks(0, 4)) == []


def test_generator_is_reproducible():
    a = torch.randn(5, generator=runtime.generator(3, "cpu"))
    b = torch.randn(5, generator=runtime.generator(3, "cpu"))
    assert torch.equal(a, b) and runtime.generator(None, "cpu") is None


def test_progress_can_be_silenced(capsys):
    assert list(runtime.progress(range(3), enabled=False)) == [0, 1, 2]
    assert capsys.readouterr().err == ""
