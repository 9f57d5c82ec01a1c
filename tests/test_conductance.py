"""Layer conductance, internal influence and neuron conductance against captum (in float64, on a
small CNN with a BatchNorm and on torchvision's ResNet-18 with random weights), their maps, batching
and errors."""

import copy
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import netloupe as nl
import zoo
from netloupe.attribution import conductance as C

captum_attr = pytest.importorskip("captum.attr")
warnings.filterwarnings("ignore", module="captum")

TARGETS = [1, 3]  # a batch of 2 with different targets
RULES = ["gausslegendre", "riemann_trapezoid"]
STEPS = 6
LAYERS = {"tiny": ["1", "3"], "resnet18": ["layer2", "layer3.0.conv1"]}


def rel(ours, ref):
    ours, ref = torch.as_tensor(ours).detach(), torch.as_tensor(ref).detach()
    return float((ours - ref).norm() / ref.norm())


def tiny_cnn():
    """conv - BatchNorm - ReLU (in place) - conv - ReLU - pool - linear, with BatchNorm statistics that show."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(inplace=True),
                        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                        nn.Linear(32, 5))
    net[1].running_mean.normal_(0, 0.1)
    net[1].running_var.uniform_(0.5, 1.5)
    return net.eval().double()


@pytest.fixture(scope="module", params=["tiny", "resnet18"])
def case(request):
    """(name, float64 model, inputs [2, ...], a non-zero baseline)."""
    if request.param == "tiny":
        model, size = tiny_cnn(), 8
    else:
        model, size = zoo.build("resnet18")[0].double(), 32
    torch.manual_seed(1)
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    return request.param, model, x, 0.2 * torch.randn_like(x)


def _module(model, layer):
    return nl.Unit(layer).module(model)


def _trapezoid(method, steps):
    """captum's trapezoid weights sum to (n-1)/n, ours (integrated gradients') to 1."""
    return steps / (steps - 1) if method == "riemann_trapezoid" else 1.0


@pytest.mark.parametrize("method", RULES)
def test_layer_conductance_and_its_delta_match_captum(case, method):
    name, model, x, base = case
    for layer in LAYERS[name]:
        ref, ref_delta = captum_attr.LayerConductance(model, _module(model, layer)).attribute(
            x, base, target=TARGETS, n_steps=STEPS, method=method, return_convergence_delta=True)
        ours = C.layer_conductance(model, x, TARGETS, layer=layer, baseline=base, steps=STEPS, quadrature=method,
                                   reduce=None)
        assert ours.values.shape == ref.shape
        assert rel(ours.values, ref) <= 1e-6, (layer, rel(ours.values, ref))
        # captum keeps its riemann nodes in float32 (torch.linspace): 1e-8 apart from ours
        assert torch.allclose(ours.delta, ref_delta, rtol=0, atol=1e-6 * float(ref.abs().sum())), layer


@pytest.mark.parametrize("method", RULES)
def test_internal_influence_matches_captum(case, method):
    name, model, x, base = case
    for layer in LAYERS[name]:
        ref = captum_attr.InternalInfluence(model, _module(model, layer)).attribute(
            x, base, target=TARGETS, n_steps=STEPS, method=method)
        ours = C.internal_influence(model, x, TARGETS, layer=layer, baseline=base, steps=STEPS, quadrature=method,
                                    reduce=None)
        assert rel(ours.values, ref * _trapezoid(method, STEPS)) <= 1e-6, layer
        assert ours.delta is None  # captum defines none: influence is not a share of the score


@pytest.mark.parametrize("method", RULES)
def test_neuron_conductance_of_one_neuron_matches_captum(case, method):
    name, model, x, base = case
    for layer in LAYERS[name]:
        ref = captum_attr.NeuronConductance(model, _module(model, layer)).attribute(
            x, (5, 1, 0), base, target=TARGETS, n_steps=STEPS, method=method)
        ours = C.neuron_conductance(model, x, TARGETS, unit=f"{layer}:5@1,0", baseline=base, steps=STEPS,
                                    quadrature=method)
        assert ours.values.shape == x.shape
        assert rel(ours.values, ref * _trapezoid(method, STEPS)) <= 1e-6, layer


def test_neuron_conductance_of_a_channel_is_the_sum_over_its_neurons():
    """A channel's conductance is what flows through all its neurons: the sum of captum's
    per-neuron conductances. (captum's own channel selectors, a slice or a callable for the mean,
    multiply the channel's summed gradient by the gradient of its sum, which its documentation
    warns against: conductance cannot be taken through an aggregate of neurons.)"""
    model = tiny_cnn()
    torch.manual_seed(2)
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    base = 0.1 * torch.randn_like(x)
    nc = captum_attr.NeuronConductance(model, model[3])
    ref = sum(nc.attribute(x, (2, i, j), base, target=TARGETS, n_steps=STEPS, method="gausslegendre")
              for i in range(4) for j in range(4))
    ours = C.neuron_conductance(model, x, TARGETS, unit="3:2", baseline=base, steps=STEPS)
    assert rel(ours.values, ref) <= 1e-6
    mean = nc.attribute(x, lambda a: a[:, 2].mean((1, 2)), base, target=TARGETS, n_steps=STEPS)
    assert rel(mean, ref) > 0.1  # captum's aggregate is not the channel's flow


def test_layer_input_matches_captum_where_the_input_feeds_that_layer_alone():
    model = tiny_cnn()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    ref = captum_attr.LayerConductance(model, model[3]).attribute(x, target=TARGETS, n_steps=STEPS,
                                                                   attribute_to_layer_input=True)
    ours = C.layer_conductance(model, x, TARGETS, layer="3", steps=STEPS, reduce=None, layer_input=True)
    assert rel(ours.values, ref) <= 1e-6
    ref = captum_attr.InternalInfluence(model, model[3]).attribute(x, target=TARGETS, n_steps=STEPS,
                                                                    attribute_to_layer_input=True)
    ours = C.internal_influence(model, x, TARGETS, layer="3", steps=STEPS, reduce=None, layer_input=True)
    assert rel(ours.values, ref) <= 1e-6


def test_conductances_add_up_to_the_score_change_with_many_steps():
    """Completeness: the delta shrinks with the steps (the trapezoid's nodes reach both ends), and
    the input features' conductance through a channel adds up to that channel's layer conductance."""
    model = tiny_cnn()
    torch.manual_seed(3)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    coarse = C.layer_conductance(model, x, TARGETS, layer="3", steps=4, quadrature="riemann_trapezoid", reduce=None)
    fine = C.layer_conductance(model, x, TARGETS, layer="3", steps=200, quadrature="riemann_trapezoid", reduce=None)
    gap = fine.extra["gap"]
    assert torch.allclose(fine.values.flatten(1).sum(1) - gap, fine.delta)
    assert (fine.delta.abs() <= 5e-3 * gap.abs()).all(), (fine.delta, gap)
    assert (fine.delta.abs() < coarse.delta.abs()).all()
    through = C.neuron_conductance(model, x, TARGETS, unit="3:4", steps=100)
    assert torch.allclose(through.values.flatten(1).sum(1), fine.values[:, 4].flatten(1).sum(1), rtol=1e-2, atol=1e-6)


@pytest.mark.parametrize("fn", [C.layer_conductance, C.internal_influence])
def test_the_map_is_the_channel_sum_on_the_input_grid(fn):
    """The default (what the contact sheet shows): the units summed over channels, resized to the
    input as a CAM is; interpolate=False keeps the layer's grid."""
    model = tiny_cnn()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    raw = fn(model, x, TARGETS, layer="3", steps=3, reduce=None)
    small = fn(model, x, TARGETS, layer="3", steps=3, interpolate=False)
    assert torch.allclose(small.values, raw.values.sum(1, keepdim=True))
    model_f = nn.Sequential(*list(tiny_cnn().float())[:3], nn.MaxPool2d(2), *list(tiny_cnn().float())[3:]).eval()
    xf = torch.randn(2, 3, 16, 16)
    layer = fn(model_f, xf, TARGETS, layer="4", steps=3)
    per_unit = fn(model_f, xf, TARGETS, layer="4", steps=3, reduce=None).values
    assert layer.values.shape == (2, 1, 16, 16) and per_unit.shape == (2, 8, 8, 8)
    up = F.interpolate(per_unit.sum(1, keepdim=True), size=(16, 16), mode="bilinear", align_corners=False)
    assert torch.allclose(layer.values, up, atol=1e-6)
    assert layer.extra["layer"] == "4" and layer.extra["input"] == 0 and layer.extra["interpolate"] == "bilinear"
    assert layer.to_pil(kind="overlay", index=0).size == (16, 16)


def test_token_layers_give_a_map_and_their_per_token_values():
    model, (x,) = zoo.build("vit")
    r = C.layer_conductance(model, x, 0, steps=2)  # the CAM layer: the last block before the class token is read
    raw = C.layer_conductance(model, x, 0, steps=2, reduce=None)
    assert r.values.shape == (2, 1, 32, 32) and raw.values.shape == (2, 17, 32)  # 1 class token + 4x4 grid
    assert torch.allclose(raw.delta, r.delta)


@pytest.mark.parametrize("fn", [C.layer_conductance, C.internal_influence, C.neuron_conductance])
def test_any_batch_size_gives_the_same_result(fn):
    """Chunks of any size, aligned to the path's nodes or not (conductance carries the previous node over)."""
    model = tiny_cnn()
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    kw = {"unit": "3:1@2,2"} if fn is C.neuron_conductance else {"layer": "3", "reduce": None}
    whole = fn(model, x, [0, 2, 4], steps=4, batch_size=1000, **kw).values
    for bs in (1, 2, 5):
        assert rel(fn(model, x, [0, 2, 4], steps=4, batch_size=bs, **kw).values, whole) <= 1e-12, bs


def test_default_unit_is_each_samples_top_channel_of_the_cam_layer():
    model = tiny_cnn()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    r = C.neuron_conductance(model, x, TARGETS, steps=3)
    assert [u.split(":")[0] for u in r.extra["units"]] == ["5", "5"]  # the last layer with a grid: the 2x2 pool
    for i, unit in enumerate(r.extra["units"]):
        one = C.neuron_conductance(model, x[i:i + 1], TARGETS[i], unit=unit, steps=3)
        assert rel(r.values[i:i + 1], one.values) <= 1e-12


def test_the_contact_sheet_runs_them_with_and_without_a_layer():
    model = nl.load_model(tiny_cnn().float(), preprocess=nl.Preprocess(size=(16, 16)))
    x = torch.randn(1, 3, 16, 16)
    names = ["layer_conductance", "internal_influence", "neuron_conductance"]
    for layer in (None, "3"):
        sheet = nl.attribution.contact_sheet(model, x, names, target=2, layer=layer)
        assert sheet.results["layer_conductance"].extra["layer"] == (layer or "5")
        assert sheet.to_pil().size[0] > 300
    assert all(nl.attribution.METHODS[n].quick == {"steps": 3} for n in names)


class Unused(nn.Module):
    """A model with a layer it never calls and a branch the output ignores."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.spare = nn.Conv2d(3, 4, 3, padding=1)
        self.side = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        self.side(x)  # computed, then dropped
        return self.fc(self.conv(x).mean((2, 3)))


def test_bad_input_is_a_clear_error():
    model = tiny_cnn()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    with pytest.raises(nl.UnitError, match="no layer named 'conv9'.*nearest"):
        C.layer_conductance(model, x, 0, layer="conv9")
    for fn in (C.layer_conductance, C.internal_influence, C.neuron_conductance):
        with pytest.raises(nl.InputError, match="needs steps >= 1"):
            fn(model, x, 0, steps=0)
        with pytest.raises(nl.InputError, match="unknown quadrature 'adaptive'.*gausslegendre"):
            fn(model, x, 0, quadrature="adaptive")
    with pytest.raises(nl.InputError, match="needs steps >= 2"):
        C.internal_influence(model, x, 0, steps=1, quadrature="riemann_trapezoid")
    C.layer_conductance(model, x, 0, steps=1, quadrature="riemann_trapezoid")  # two nodes: one difference
    with pytest.raises(nl.InputError, match="reduce must be"):
        C.layer_conductance(model, x, 0, reduce="max")
    with pytest.raises(nl.InputError, match="interpolate must be"):
        C.internal_influence(model, x, 0, interpolate="bicubic")
    with pytest.raises(nl.NetloupeError, match="no spatial grid.*reduce=None"):
        C.layer_conductance(model, x, 0, layer="7", steps=2)
    with pytest.raises(nl.InputError, match="channel or one neuron.*'3:C'"):
        C.neuron_conductance(model, x, 0, unit="3")
    with pytest.raises(nl.UnitError, match="channel 8 out of range"):
        C.neuron_conductance(model, x, 0, unit="3:8", steps=2)
    with pytest.raises(nl.UnitError, match=r"position \(9, 0\) out of range"):
        C.neuron_conductance(model, x, 0, unit="3:1@9,0", steps=2)
    unused, x = Unused().eval(), torch.randn(2, 3, 8, 8)
    for fn, kw in ((C.layer_conductance, {"layer": "spare"}), (C.neuron_conductance, {"unit": "spare:0"})):
        with pytest.raises(nl.NetloupeError, match="'spare' did not run"):
            fn(unused, x, 0, steps=2, **kw)
    with pytest.raises(nl.NetloupeError, match="does not depend on the output of layer 'side'"):
        C.internal_influence(unused, x, 0, layer="side", steps=2)


def test_the_model_is_left_as_found_after_an_error():
    model = tiny_cnn()
    before = copy.deepcopy(model.state_dict())
    hooks = [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()]
    with pytest.raises(nl.UnitError):
        C.neuron_conductance(model, torch.randn(1, 3, 8, 8, dtype=torch.float64), 0, unit="3:8", steps=2)
    assert [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()] == hooks
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(p.requires_grad for p in model.parameters()) and not model.training
