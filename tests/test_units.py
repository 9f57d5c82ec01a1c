import pytest
import torch

import netloupe as nl
import zoo
from netloupe.units import as_unit


@pytest.mark.parametrize("text,expected", [
    ("blocks.5.0.conv_pw:12@3,4", nl.Unit("blocks.5.0.conv_pw", 12, 3, 4)),
    ("layer4", nl.Unit("layer4")),
    ("layer4.1.conv2:7", nl.Unit("layer4.1.conv2", 7)),
    ("features.0:0@0,0", nl.Unit("features.0", 0, 0, 0)),
    ("", nl.Unit("")),
])
def test_parse_and_round_trip(text, expected):
    unit = nl.Unit.parse(text)
    assert unit == expected
    assert str(unit) == text
    assert nl.Unit.parse(str(unit)) == unit


@pytest.mark.parametrize("bad", ["layer4:", "layer4:x", "layer4:1@2", "layer4:1@2,", "lay er", "a:1:2", "l@1,2"])
def test_bad_syntax(bad):
    with pytest.raises(nl.UnitError, match="layer:channel"):
        nl.Unit.parse(bad)


def test_not_a_string():
    with pytest.raises(nl.UnitError, match="string"):
        nl.Unit.parse(12)


def test_module_lookup_and_nearest_names():
    model, _ = zoo.build("resnet18")
    assert nl.Unit.parse("layer4.1.conv2:3").module(model) is model.layer4[1].conv2
    with pytest.raises(nl.UnitError) as e:
        nl.Unit.parse("layer4.1.conv3").module(model)
    msg = str(e.value)
    assert "nearest:" in msg and "layer4.1.conv2" in msg and msg.count(",") >= 4  # five names
    assert as_unit(model, model.layer2) == nl.Unit("layer2")
    with pytest.raises(nl.UnitError, match="not part of"):
        as_unit(model, torch.nn.ReLU())


def test_range_checks():
    shape = (1, 64, 8, 8)
    nl.Unit("l", 63, 7, 7).check(shape)
    with pytest.raises(nl.UnitError, match="channels 0..63"):
        nl.Unit("l", 64).check(shape)
    with pytest.raises(nl.UnitError, match="valid y is 0..7, x is 0..7"):
        nl.Unit("l", 1, 8, 0).check(shape)
    with pytest.raises(nl.UnitError, match="no \\(y, x\\) positions"):
        nl.Unit("l", 1, 0, 0).check((1, 64))
