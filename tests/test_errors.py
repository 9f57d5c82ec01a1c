"""Bad input gets a NetloupeError that says what to do, and the user's model is left as found."""

import pytest
import torch

import netloupe as nl
import zoo
from model_state import leaves_unchanged, scramble


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


def _meta_model():
    with torch.device("meta"):
        return torch.nn.Linear(4, 2)


def _scripted():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.script(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2)))


CASES = [
    ("unknown layer", lambda m, t: nl.probe(m.module, ["blocks.9"]), nl.UnitError, "nearest: blocks"),
    ("bad unit syntax", lambda m, t: _unit_value(m, "blocks.5:twelve"), nl.UnitError, "layer:channel@y,x"),
    ("channel out of range", lambda m, t: _unit_value(m, "blocks.5.0.conv_pw:5000"), nl.UnitError, "channels 0..671"),
    ("position out of range", lambda m, t: _unit_value(m, "blocks.5.0.conv_pw:1@9,0"), nl.UnitError, "valid y is 0..3"),
    ("position on a flat layer", lambda m, t: _unit_value(m, "classifier:1@0,0"), nl.UnitError, "no \\(y, x\\)"),
    ("missing file", lambda m, t: m.predict(t / "nothere.jpg"), nl.InputError, "not found"),
    ("non-image file", lambda m, t: m.predict(_notes(t)), nl.InputError, "cannot read"),
    ("folder as image", lambda m, t: m.predict(t), nl.InputError, "is a folder"),
    ("wrong tensor rank", lambda m, t: m.predict(torch.zeros(64)), nl.InputError, r"\[N, C, H, W\]"),
    ("features to an image model", lambda m, t: m.predict(torch.zeros(3, 64)), nl.InputError,
     r"failed on inputs of shape \(3, 64\)"),
    ("empty batch", lambda m, t: nl.saliency(m, torch.zeros(0, 3, 64, 64)), nl.InputError, "batch is empty"),
    ("empty batch, CAM", lambda m, t: nl.grad_cam(m, torch.zeros(0, 3, 64, 64)), nl.InputError, "batch is empty"),
    ("fractional class", lambda m, t: nl.saliency(m, torch.zeros(1, 3, 64, 64), 3.7), nl.InputError, "whole number"),
    ("fractional classes", lambda m, t: nl.saliency(m, torch.zeros(2, 3, 64, 64), [1, 2.5]), nl.InputError,
     "whole number"),
    ("negative noise", lambda m, t: nl.smoothgrad(m, torch.zeros(1, 3, 64, 64), 1, noise=-0.1), nl.InputError,
     "noise must be"),
    ("meta-device model", lambda m, t: nl.saliency(_meta_model(), torch.zeros(1, 4)), nl.ModelError, "meta device"),
    ("TorchScript with a rule", lambda m, t: nl.guided_backprop(_scripted(), torch.zeros(1, 4), 0), nl.NetloupeError,
     "TorchScript"),
    ("TorchScript CAM", lambda m, t: nl.grad_cam(_scripted(), torch.zeros(1, 4), 0, layer="0"), nl.NetloupeError,
     "TorchScript"),
    ("top patches without a scan", lambda m, t: nl.top_patches(None, "bn1", 0), nl.InputError, "ScanResult"),
    ("model given several inputs", lambda m, t: nl.saliency(m, (torch.zeros(1, 3, 64, 64),) * 2), nl.InputError,
     "takes 2 positional arguments"),
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


class _Buggy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x):
        if x.shape[0] > 0:
            raise RuntimeError("boom: a bug in the user's forward")
        return self.fc(x)


def test_a_bug_in_the_models_forward_is_not_blamed_on_the_inputs():
    with pytest.raises(RuntimeError, match="boom") as e:
        nl.saliency(_Buggy(), torch.zeros(2, 4), 0)
    assert not isinstance(e.value, nl.NetloupeError)
    with pytest.raises(nl.InputError, match="failed on inputs of shape \\(2, 5\\)") as e:  # a real shape problem
        nl.saliency(torch.nn.Linear(4, 2), torch.zeros(2, 5), 0)
    assert isinstance(e.value.__cause__, RuntimeError)  # the original error is chained, never lost


class _WrongWidthInside(torch.nn.Module):
    """A user's model with a bug deep inside: its second Linear is fed the wrong width."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU())
        self.head = torch.nn.Sequential(torch.nn.Linear(5, 2))

    def forward(self, x):
        return self.head(self.body(x))


def test_a_shape_bug_inside_the_model_names_the_layer_not_the_inputs():
    model = _WrongWidthInside()
    for call in (lambda: nl.saliency(model, torch.zeros(2, 4), 0), lambda: nl.load_model(model).predict(torch.zeros(1, 4))):
        with pytest.raises(nl.ModelError, match=r"failed inside, in layer 'head.0' \(Linear\)") as e:
            call()
        assert not isinstance(e.value, nl.InputError) and isinstance(e.value.__cause__, RuntimeError)
    with pytest.raises(nl.InputError, match=r"failed on inputs of shape \(2, 3\)"):  # the first layer: the inputs
        nl.saliency(model, torch.zeros(2, 3), 0)


def test_a_layer_the_forward_never_reaches_is_an_error_that_says_so():
    """captum returns zeros for such a layer (a map of zeros looks like an answer); netloupe says why there is none."""
    model = _WrongWidthInside()
    model.head = torch.nn.Sequential(torch.nn.Linear(6, 2))
    model.unused = torch.nn.Linear(4, 3)
    for call in (lambda: nl.saliency(model, torch.zeros(2, 4), "unused:1"),
                 lambda: nl.integrated_gradients(model, torch.zeros(2, 4), "unused:0", steps=3)):
        with pytest.raises(nl.NetloupeError, match="'unused' did not run in the model's forward pass"):
            call()
    with pytest.raises(nl.NetloupeError, match="'unused' did not run"):
        nl.grad_cam(model, torch.zeros(2, 4), 0, layer="unused")


def test_torchscript_models_take_the_methods_that_need_no_hooks():
    model = _scripted()
    x = torch.randn(3, 4)
    ours = nl.integrated_gradients(model, x, 1, steps=8, quadrature="riemann_middle").values
    assert ours.shape == (3, 4) and torch.isfinite(ours).all()
    xi = x.clone().requires_grad_(True)
    model(xi)[:, 1].sum().backward()
    assert torch.allclose(nl.saliency(model, x, 1, abs=False).values, xi.grad)
