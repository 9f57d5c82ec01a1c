import pytest
import torch

import netloupe as nl
from netloupe import runtime
from netloupe.errors import NetloupeError


def test_batch_size_defaults_per_device_and_validates(monkeypatch):
    monkeypatch.setitem(runtime.BATCH_SIZES, "work", (4, 64))
    assert runtime.batch_size(None, "cpu", "work") == 4
    assert runtime.batch_size(None, torch.device("cuda", 0), "work") == 64
    assert runtime.batch_size(7, "cpu", "work") == 7
    with pytest.raises(NetloupeError, match="positive integer"):
        runtime.batch_size(0, "cpu", "work")


def test_every_batched_method_reads_the_one_table():
    """No magic batch numbers at call sites: each default comes from runtime.BATCH_SIZES."""
    import ast
    import pathlib

    import netloupe

    for path in pathlib.Path(netloupe.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                    "batch_size", "pick_batch_size", "_batch_size", "default_batch_size"):
                assert not node.keywords, f"{path.name}:{node.lineno} passes batch defaults of its own"
                kind = node.args[2] if len(node.args) > 2 else None
                assert isinstance(kind, ast.Constant) and kind.value in runtime.BATCH_SIZES, f"{path.name}:{node.lineno}"


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


def test_precision_auto_is_float32_on_the_cpu_and_bfloat16_agrees():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3), torch.nn.ReLU(), torch.nn.Conv2d(6, 4, 3)).eval()
    data = [torch.rand(3, 20, 20) for _ in range(12)]
    exact = nl.scan(model, data, ["2"], top_k=3, progress=False, precision="float32")
    auto = nl.scan(model, data, ["2"], top_k=3, progress=False)
    assert torch.equal(auto["2"].mean, exact["2"].mean)  # "auto" on a CPU: no autocast at all
    half = nl.scan(model, data, ["2"], top_k=3, progress=False, precision="bfloat16")
    assert torch.allclose(half["2"].mean, exact["2"].mean, rtol=3e-2, atol=1e-3)
    assert half["2"].mean.dtype == torch.float64  # statistics stay float64
    with pytest.raises(nl.NetloupeError, match="precision must be one of"):
        nl.scan(model, data, ["2"], progress=False, precision="fp8")
    with pytest.raises(nl.NetloupeError, match="precision must be one of"):
        nl.compare([model, model], ["2"], data, renders=False, precision="half", progress=False)


def test_visualize_takes_a_precision_and_bfloat16_reaches_the_same_activation():
    """Renders under bfloat16 autocast (asked for on the CPU here) climb like float32 ones; "auto" on a CPU is
    float32 exactly; a wrong name is refused before any work."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3)).eval()
    kw = dict(size=32, steps=24, seed=0, progress=False, transforms=None)
    exact = nl.visualize(model, ["2:1", "2:3"], precision="float32", **kw)
    auto = nl.visualize(model, ["2:1", "2:3"], **kw)
    assert torch.equal(auto.images, exact.images)
    half = nl.visualize(model, ["2:1", "2:3"], precision="bfloat16", **kw)
    assert half.images.dtype == torch.float32  # the image and its optimizer stay float32
    final, reached = exact.history[-1], half.history[-1]
    assert (final > exact.history[0]).all() and ((reached - final).abs() <= 0.05 * final.abs()).all()
    with pytest.raises(nl.NetloupeError, match="precision must be one of"):
        nl.visualize(model, "2:1", precision="fp16", **kw)
