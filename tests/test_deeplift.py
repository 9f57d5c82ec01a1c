"""DeepLIFT, DeepLiftShap and GradientSHAP against captum in float64 and, where captum cannot
follow a network (functional, reused and adjacent activations, ReLU6, GELU), against a slow
reference written here from the rescale rule's definition."""

import copy
import unittest.mock
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.models as tvm
from torch.overrides import TorchFunctionMode

import netloupe as nl
import zoo
from netloupe.attribution.gradient_shap import draws

captum_attr = pytest.importorskip("captum.attr")
warnings.filterwarnings("ignore", module="captum")
TARGETS = [3, 1, 4]


def rel(ours, ref):
    return float((ours - ref).norm() / ref.norm()) if ref.norm() > 0 else float(ours.norm())


class Same(nn.Module):
    """x * 1: a linear module between two activation modules, so captum 0.9's hooks do not read a
    stale gradient (captum issue #1104, fixed after 0.9): the reference's numbers are unchanged."""

    def forward(self, x):
        return x * 1.0


class Small(nn.Module):
    """Conv, BatchNorm, in-place ReLU, max pool, sigmoid, tanh, ELU: every activation captum's
    DeepLift knows, each a module of its own, with a linear module between any two of them
    (captum 0.9 errs where an activation's gradient reaches another's hook directly, even
    through a sum or a branch: issue #1104)."""

    def __init__(self, separated=True):
        super().__init__()
        self.c1, self.bn, self.r1 = nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(inplace=True)
        self.gap = Same() if separated else nn.Identity()
        self.pool, self.c2 = nn.MaxPool2d(2), nn.Conv2d(6, 8, 3)
        self.sig, self.c3, self.tanh, self.c4, self.elu = nn.Sigmoid(), nn.Conv2d(8, 8, 1), nn.Tanh(), nn.Conv2d(8, 8, 1), nn.ELU()
        self.fc = nn.Linear(8 * 6 * 6, 5)

    def forward(self, x):
        x = self.pool(self.gap(self.r1(self.bn(self.c1(x)))))
        x = self.c4(self.tanh(self.c3(self.sig(self.c2(x)))))
        return self.fc(self.elu(x).flatten(1))


def small(separated=True):
    torch.manual_seed(0)
    model = zoo._randomize_bn(Small(separated)).double().eval()
    return model, torch.randn(3, 3, 16, 16, dtype=torch.float64), torch.randn(3, 3, 16, 16, dtype=torch.float64) * 0.3


@pytest.mark.parametrize("multiply", [True, False])
def test_deeplift_matches_captum(multiply):
    model, x, b = small()
    ours = nl.deeplift(model, x, TARGETS, baseline=b, multiply_by_inputs=multiply)
    ref, delta = captum_attr.DeepLift(model, multiply_by_inputs=multiply).attribute(
        x, b, target=TARGETS, return_convergence_delta=True)
    assert rel(ours.values, ref) <= 1e-10
    if multiply:
        assert torch.allclose(ours.delta, delta, atol=1e-10) and ours.delta.abs().max() < 1e-10


def test_deeplift_on_vgg_matches_captum_with_its_adjacent_activation_bug_avoided():
    torch.manual_seed(0)
    model = tvm.vgg11(weights=None).double().eval()
    separated = copy.deepcopy(model)
    for i, layer in enumerate(separated.features):
        if isinstance(layer, nn.MaxPool2d):  # ReLU then max pool: captum 0.9 reads a stale gradient there
            separated.features[i] = nn.Sequential(Same(), layer)
    x, b = torch.randn(2, 3, 32, 32, dtype=torch.float64), torch.randn(2, 3, 32, 32, dtype=torch.float64)
    ours = nl.deeplift(model, x, [1, 7], baseline=b)
    ref = captum_attr.DeepLift(separated).attribute(x, b, target=[1, 7])
    assert rel(ours.values, ref) <= 1e-10
    assert ours.delta.abs().max() <= 1e-10 * (ours.values.sum((1, 2, 3)).abs().max() + 1)
    wrong = captum_attr.DeepLift(model).attribute(x, b, target=[1, 7])
    assert rel(wrong, ref) > 0.01  # the bug the reference avoids is real in this captum


def test_deeplift_shap_matches_captum():
    model, x, _ = small()
    dist = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    for multiply in (True, False):
        ours = nl.deeplift_shap(model, x, TARGETS, baselines=dist, multiply_by_inputs=multiply)
        ref = captum_attr.DeepLiftShap(model, multiply_by_inputs=multiply).attribute(x, dist, target=TARGETS)
        assert rel(ours.values, ref) <= 1e-10
    assert ours.delta is not None and nl.deeplift_shap(model, x, TARGETS, baselines=dist).delta.abs().max() < 1e-10


@pytest.mark.parametrize("stdevs", [0.0, 0.2])
def test_gradient_shap_matches_captum_on_the_same_draws(stdevs):
    model, x, _ = small()
    dist = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    ours = nl.gradient_shap(model, x, TARGETS, baselines=dist, n=6, stdevs=stdevs, seed=3)
    which, alphas, noises = draws((x,), 6, 4, (stdevs,), 3)
    # captum draws baselines with np.random.choice, points with np.random.uniform, noise with torch.normal
    with unittest.mock.patch.object(np.random, "choice", lambda *a, **k: which.numpy()), \
            unittest.mock.patch.object(np.random, "uniform", lambda *a, **k: alphas.numpy()), \
            unittest.mock.patch.object(torch, "normal", lambda *a, **k: noises[0]):
        ref = captum_attr.GradientShap(model).attribute(x, dist, n_samples=6, stdevs=stdevs, target=TARGETS)
    assert rel(ours.values, ref) <= 1e-10


def test_gradient_shap_converges_to_deeplift_shap_on_a_linear_model():
    """On a linear model both are exact SHAP values: w * (x - mean baseline)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).double()
    x, dist = torch.randn(2, 3, 2, 2, dtype=torch.float64), torch.randn(5, 3, 2, 2, dtype=torch.float64)
    exact = model[1].weight[[0, 2]].view(2, 3, 2, 2) * (x - dist.mean(0))
    assert rel(nl.deeplift_shap(model, x, [0, 2], baselines=dist).values, exact) < 1e-12
    error = rel(nl.gradient_shap(model, x, [0, 2], baselines=dist, n=4000, seed=0).values, exact)
    assert error < 0.05


class Rescaled(TorchFunctionMode):
    """The slow reference: DeepLIFT's rescale rule from its definition. Two plain passes record
    every activation call's input and output at x and at x'; a third pass at x replaces each call
    by a function with the same value and the slope (f(x) - f(x')) / (x - x') as its gradient, so
    autograd gives the multipliers."""

    ACTIVATIONS = {F.relu, torch.relu, torch.Tensor.relu, torch.Tensor.relu_, F.relu6, F.hardtanh, F.gelu, F.silu}

    def __init__(self, record=None):
        super().__init__()
        self.calls, self.record, self.k = [], record, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func not in self.ACTIVATIONS:
            return func(*args, **kwargs)
        kwargs.pop("inplace", None)
        args = tuple(a for a in args if not isinstance(a, bool))  # inplace given by position
        base = {torch.Tensor.relu_: torch.relu, F.relu: torch.relu}.get(func, func)
        y = base(*args, **kwargs)
        if self.record is None:
            self.calls.append((args[0].detach(), y.detach()))
            return y
        (x1, y1), (x0, y0) = self.record[0][self.k], self.record[1][self.k]
        self.k += 1
        t = args[0]
        dx = x1 - x0
        with torch.enable_grad():
            tt = x1.clone().requires_grad_(True)
            true = torch.autograd.grad(base(tt, *args[1:], **kwargs).sum(), tt)[0]
        slope = torch.where(dx.abs() < 1e-10, true, (y1 - y0) / dx)
        return y.detach() + slope * (t - t.detach())


def reference_deeplift(model, x, b, target):
    passes = []
    for inp in (x, b):
        with Rescaled() as rec, torch.no_grad():
            model(inp)
        passes.append(rec.calls)
    xi = x.clone().requires_grad_(True)
    with Rescaled(passes):
        out = model(xi)
    grad = torch.autograd.grad(out[torch.arange(len(target)), target].sum(), xi)[0]
    return (x - b) * grad


@pytest.mark.parametrize("name", ["functional", "reused_relu", "default", "timm_vit"])
def test_deeplift_follows_the_rule_where_captum_cannot(name):
    """Functional, reused and in-place ReLUs, ReLU6 in inverted residuals, GELU in a ViT: one
    sample at a time against the slow reference (the batch of two rows each is ours alone)."""
    model, (x,) = zoo.build(name)
    model = model.double()
    x = x.double()
    b = torch.randn_like(x) * 0.2
    ours = nl.deeplift(model, x, [2, 5], baseline=b)
    ref = torch.cat([reference_deeplift(model, x[i:i + 1], b[i:i + 1], [t]) for i, t in enumerate([2, 5])])
    assert rel(ours.values, ref) <= 1e-8


@pytest.mark.parametrize("name", ["resnet18", "default", "functional"])
def test_deeplift_is_complete_on_networks_of_relu_units(name):
    """Summation to delta: the attributions add up to f(x) - f(x') on ReLU/ReLU6 networks with max
    pools, residual sums and BatchNorm (a chain of multipliers breaks it if one is wrong)."""
    model, (x,) = zoo.build(name)
    model, x = model.double(), x.double()
    a = nl.deeplift(model, x, [2, 5], baseline=torch.randn_like(x))
    with torch.no_grad():
        gap = model(x)[[0, 1], [2, 5]] - model(a.inputs - (a.inputs - torch.zeros_like(x)))[[0, 1], [2, 5]]
    assert gap.abs().min() > 0
    assert float(a.delta.abs().max()) <= 1e-9 * float(a.values.flatten(1).sum(1).abs().max())


def test_deeplift_on_the_default_model_is_exact_in_float32_and_points_at_the_cat():
    model = nl.load_model()
    a = nl.deeplift(model, nl.samples.image("chelsea"))
    assert abs(float(a.delta[0])) < 1e-3 * float(a.values.sum().abs())
    heat = a.values[0].sum(0).abs()
    h, w = heat.shape
    assert heat[h // 8: h * 7 // 8, w // 8: w * 7 // 8].sum() > 0.6 * heat.sum()  # mostly away from the border


def test_bad_baselines_are_clear_errors():
    model, x, _ = small()
    with pytest.raises(nl.InputError, match="baselines must be"):
        nl.deeplift_shap(model, x, TARGETS, baselines=0.0)
    with pytest.raises(nl.InputError, match="points per input"):
        nl.gradient_shap(model, x, TARGETS, n=0)
    with pytest.raises(nl.InputError, match="stdevs"):
        nl.gradient_shap(model, x, TARGETS, stdevs=-1.0)
    with pytest.raises(nl.InputError, match="baseline"):
        nl.deeplift(model, x, TARGETS, baseline="nothing")
