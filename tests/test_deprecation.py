"""Renamed parameters keep their old names for one release: a DeprecationWarning, the same result."""

import pytest
import torch
import torch.nn as nn

import netloupe as nl
from netloupe.optvis import objectives as obj
from netloupe.optvis import param


def tiny():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 3)).eval()
    return nl.LoadedModel(net, nl.Preprocess(size=16, resize=None), ["a", "b", "c"], "tiny")


def same(old, new):
    with pytest.deprecated_call():
        was = old()
    now = new()
    if isinstance(now, torch.Tensor):
        assert torch.equal(was, now)
    else:
        assert was == now


def test_old_names_warn_and_give_the_same_result():
    m = tiny()
    x = torch.randn(2, 3, 16, 16)
    same(lambda: m.predict(x, k=2), lambda: m.predict(x, top_k=2))
    same(lambda: nl.smoothgrad(m, x, 1, samples=2, seed=0).values, lambda: nl.smoothgrad(m, x, 1, n=2, seed=0).values)
    same(lambda: param.image(8, batch=2, seed=0)(), lambda: param.image(8, n=2, seed=0)())
    same(lambda: param.image(8, 6, seed=0)(), lambda: param.image((8, 6), seed=0)())
    ctx = obj.Context(torch.zeros(2, 3, 4, 4), {m.module: {"0": torch.randn(2, 4, 4, 4)}}, {}, m.module)
    same(lambda: obj.channel("0", 2, batch=1)(ctx), lambda: obj.channel("0", 2, index=1)(ctx))
    same(lambda: obj.channel("0", n=2)(ctx), lambda: obj.channel("0", channel=2)(ctx))
    same(lambda: nl.layers(m, example_input=x)[1].shape, lambda: nl.layers(m, inputs=x)[1].shape)
    same(lambda: nl.receptive_field(m, "0", input_size=12).size, lambda: nl.receptive_field(m, "0", size=12).size)
    same(lambda: nl.visualize_channels(m, "0", 2, size=8, steps=1, seed=0, progress=False).images,
         lambda: nl.visualize_channels(m, "0", range(2), size=8, steps=1, seed=0, progress=False).images)
    same(lambda: nl.visualize_class(m, n=1, size=8, steps=1, seed=0, progress=False).images,
         lambda: nl.visualize_class(m, 1, size=8, steps=1, seed=0, progress=False).images)
    fv = lambda **kw: nl.FeatureVisualizer(m, seed=0, **kw)  # noqa: E731
    with pytest.deprecated_call():
        old = fv(img_shape=(8, 8))(0, epochs=1, progress=False)
    assert old.tobytes() == fv(size=(8, 8))(0, steps=1, progress=False).tobytes()
    data = [torch.randn(3, 16, 16) for _ in range(3)]
    same(lambda: nl.scan(m, data, ["0"], inputs=lambda s: (s,), progress=False)["0"].mean,
         lambda: nl.scan(m, data, ["0"], to_inputs=lambda s: (s,), progress=False)["0"].mean)


def test_old_and_new_name_together_is_an_error():
    with pytest.raises(TypeError, match="old name of top_k"):
        tiny().predict(torch.zeros(1, 3, 16, 16), k=1, top_k=1)
