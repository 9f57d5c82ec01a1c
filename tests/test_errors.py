"""Bad input gets a NetloupeError that says what to do, and the user's model is left as found."""

import pytest
import torch

import netloupe as nl
from model_state import leaves_unchanged, scramble
import zoo


@pytest.fixture(scope="module")
def model():
    m = nl.load_model(zoo.build("default")[0])
    m.preprocess = nl.Preprocess(size=64, resize=72, mean=(0.5,) * 3, std=(0.5,) * 3)
    return m


def _unit_value(model, unit):
    with nl.probe(model.module, [nl.Unit.parse(unit).layer]) as p:
        model.module(torch.zeros(1, 3, 64, 64))
        return p.unit_value(unit)


def _notes(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture")
    return path


CASES = [
    ("unknown layer", lambda m, t: nl.probe(m.module, ["blocks.9"]), nl.UnitError, "nearest: blocks"),
    ("bad unit syntax", lambda m, t: _unit_value(m, "blocks.5:twelve"), nl.UnitError, "layer:channel@y,x"),
    ("channel out of range", lambda m, t: _unit_value(m, "blocks.5.0.conv_pw:5000"), nl.UnitError, "channels 0..671"),
    ("position out of range", lambda m, t: _unit_value(m, "blocks.5.0.conv_pw:1@9,0"), nl.UnitError, "valid y is 0..3"),
    ("position on a flat layer", lambda m, t: _unit_value(m, "classifier:1@0,0"), nl.UnitError, "no \\(y, x\\)"),
    ("missing file", lambda m, t: m.predict(t / "nothere.jpg"), nl.InputError, "not found"),
    ("non-image file", lambda m, t: m.predict(_notes(t)), nl.InputError, "cannot read"),
    ("folder as image", lambda m, t: m.predict(t), nl.InputError, "is a folder"),
    ("wrong tensor rank", lambda m, t: m.predict(torch.zeros(3, 64)), nl.InputError, r"\[N, C, H, W\]"),
    ("wrong channel count", lambda m, t: m.predict(torch.zeros(1, 1, 64, 64)), nl.InputError, "failed on inputs"),
    ("NaN input", lambda m, t: m.predict(torch.full((1, 3, 64, 64), float("nan"))), nl.InputError, "NaN"),
    ("wrong input type", lambda m, t: m.predict({"img": 1}), nl.InputError, "cannot use a dict"),
    ("integer tensor", lambda m, t: m.predict(torch.zeros(1, 3, 64, 64, dtype=torch.uint8)), nl.InputError, "float"),
    ("empty input list", lambda m, t: m.predict([]), nl.InputError, "no inputs"),
    ("unknown probe rule", lambda m, t: nl.probe(m.module, rule="smooth"), nl.NetloupeError, "guided, deconv"),
    ("foreign module as layer", lambda m, t: nl.probe(m.module, [torch.nn.ReLU()]), nl.UnitError, "not part of"),
    ("uncaptured layer", lambda m, t: nl.probe(m.module, ["bn1"]).unit_value("bn2"), nl.NetloupeError, "not captured"),
    ("weights missing offline", lambda m, t: nl.load_model("timm:efficientnet_b0"), nl.ModelError, "weights=None"),
    ("wrong device for a module", lambda m, t: nl.load_model(m.module, device="meta"), nl.ModelError, "model.to"),
]


@pytest.mark.parametrize("what,call,error,match", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_helpful_error_and_leaves_model(model, tmp_path, monkeypatch, what, call, error, match):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    scramble(model.module)
    with leaves_unchanged(model.module):
        with pytest.raises(error, match=match) as e:
            call(model, tmp_path)
    assert isinstance(e.value, nl.NetloupeError)
