import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import netloupe as nl
import zoo
from model_state import leaves_unchanged, scramble
from references import RefReLU, RefRule

# -- a hand-written reference for the ReLU backward rules ------------------------------------

class RefFunctional(zoo.FunctionalReluNet):
    rule = "guided"

    def forward(self, x):
        r = lambda t, hi=None: RefRule.apply(t, hi, self.rule)  # noqa: E731
        x = r(self.conv1(x))
        x = r(self.conv2(x))
        x = r(self.conv3(x))
        x = r(self.conv4(x) + x)
        x = r(x * 3.0, 6.0)
        return self.fc(x.mean((2, 3)))


def reference(name, model, rule):
    if name == "functional":
        ref = RefFunctional()
        ref.load_state_dict(model.state_dict())
        ref.rule = rule
        return ref.eval()
    ref = copy.deepcopy(model)
    ref.relu = RefReLU(rule)
    return ref.eval()


def input_grad(model, x, target, probe_kw=None):
    x = x.clone().requires_grad_(True)
    if probe_kw is None:
        out = model(x)
    else:
        with nl.probe(model, **probe_kw):
            out = model(x)
    out[torch.arange(len(x)), target].sum().backward()
    return x.grad


@pytest.mark.parametrize("rule", ["guided", "deconv"])
@pytest.mark.parametrize("name", ["functional", "reused_relu"])
def test_rules_equal_hand_written_reference(name, rule):
    model, (x,) = zoo.build(name)
    target = torch.tensor([1, 3])
    ours = input_grad(model, x, target, {"rule": rule})
    ref = input_grad(reference(name, model, rule), x, target)
    plain = input_grad(model, x, target)
    assert torch.equal(ours, ref)
    assert not torch.allclose(ours, plain)  # the rule really changed the backward


class Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def test_guided_relu_passes_only_positive_grad_at_positive_input():
    x = torch.tensor([-1.0, 2.0, 3.0, 0.5, 7.0], requires_grad=True)
    g = torch.tensor([1.0, 1.0, -1.0, 2.0, 1.0])
    relu, relu6 = Fn(torch.relu), Fn(F.relu6)
    with nl.probe(relu, rule="guided"):
        relu(x).backward(g)
    assert x.grad.tolist() == [0.0, 1.0, 0.0, 2.0, 1.0]
    x.grad = None
    with nl.probe(relu6, rule="guided"):
        relu6(x).backward(g)
    assert x.grad.tolist() == [0.0, 1.0, 0.0, 2.0, 0.0]  # 7 > 6: ReLU6 is flat there
    x.grad = None
    with nl.probe(relu, rule="deconv"):
        relu(x).backward(g)
    assert x.grad.tolist() == [1.0, 1.0, 0.0, 2.0, 1.0]
    x.grad = None
    relu(x).backward(g)  # outside the probe: the plain gradient again
    assert x.grad.tolist() == [0.0, 1.0, -1.0, 2.0, 1.0]


def test_rule_covers_relu6_modules_of_default_model():
    model, (x,) = zoo.build("default")
    target = torch.tensor([0, 1])
    guided = input_grad(model, x, target, {"rule": "guided"})
    plain = input_grad(model, x, target)
    assert not torch.allclose(guided, plain)
    # forward values are unchanged by a rule
    with torch.no_grad(), nl.probe(model, rule="guided"):
        a = model(x)
    with torch.no_grad():
        b = model(x)
    assert torch.equal(a, b)


def test_rule_leaves_non_relu_hardtanh_alone():
    x = torch.tensor([-2.0, 0.5, 3.0], requires_grad=True)
    tanh = Fn(F.hardtanh)
    with nl.probe(tanh, rule="guided"):
        tanh(x).backward(torch.tensor([-1.0, -1.0, 1.0]))
    assert x.grad.tolist() == [0.0, -1.0, 0.0]


def test_activations_survive_inplace_relu_and_gradients_are_captured():
    model, (x,) = zoo.build("resnet18")
    with nl.probe(model, ["bn1", "layer3"]) as p:
        out = model(x)
        out[:, 5].sum().backward()
    assert p.activations["bn1"].min() < 0  # not overwritten by the inplace ReLU that follows
    assert p.activations["layer3"].shape == (2, 256, 4, 4)
    assert p.gradients["layer3"].shape == p.activations["layer3"].shape
    # gradient at layer3 equals autograd's, computed without the probe
    feats = {}
    h = model.layer3.register_forward_hook(lambda m, i, o: feats.__setitem__("a", o))
    try:
        out2 = model(x)
        ref = torch.autograd.grad(out2[:, 5].sum(), feats["a"])[0]
    finally:
        h.remove()
    assert torch.allclose(p.gradients["layer3"], ref, atol=1e-6)
    assert torch.equal(out, out2)


def test_detach_and_reused_module_calls():
    model, (x,) = zoo.build("reused_relu")
    with nl.probe(model, ["relu"], detach=True) as p:
        model(x)
    assert len(p.calls["relu"]) == 3 and not p.calls["relu"][0].requires_grad
    assert torch.equal(p.activations["relu"], p.calls["relu"][-1])
    with nl.probe(model, ["relu"], detach=True) as p:  # a new forward replaces the last one's capture
        model(x)
        model(x)
    assert len(p.calls["relu"]) == 3


def test_stochastic_turns_on_dropout_but_keeps_batchnorm_in_eval():
    model, (x,) = zoo.build("default")
    assert model.drop_rate == 0.2  # functional dropout before the classifier
    with torch.no_grad(), nl.probe(model, stochastic=True):
        a, b = model(x), model(x)
        assert not any(m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    with torch.no_grad():
        c, d = model(x), model(x)
    assert not torch.equal(a, b)
    assert torch.equal(c, d)
    # without dropout, the head's input is shared: logits differ only through the mask
    assert (a - c).abs().max() > 0


def test_stochastic_dropout_modules_and_drop_path():
    from timm.layers import DropPath

    net = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), DropPath(0.5)).eval()
    x = torch.randn(64, 8)
    with torch.no_grad(), leaves_unchanged(net), nl.probe(net, stochastic=True):
        assert net[2].training and net[3].training and not net[1].training
        y = net(x)
    assert (y == 0).float().mean() > 0.3


def test_probe_restores_after_exception_and_scrambled_state():
    model, (x,) = zoo.build("reused_relu")
    scramble(model)
    with leaves_unchanged(model):
        with pytest.raises(RuntimeError):
            with nl.probe(model, ["bn1"], rule="guided", stochastic=True):
                assert not model.training
                raise RuntimeError("boom")


def test_probe_errors():
    model, _ = zoo.build("reused_relu")
    with pytest.raises(nl.UnitError, match="nearest: bn2, bn1"):
        nl.probe(model, ["bn3"])
    with pytest.raises(nl.NetloupeError, match="guided"):
        nl.probe(model, rule="smooth")
    with pytest.raises(nl.NetloupeError, match="nn.Module"):
        nl.probe("model")


OPTIONS = [dict(), dict(detach=True), dict(rule="guided"), dict(rule="deconv"), dict(stochastic=True),
           dict(freeze=False), dict(rule="guided", stochastic=True)]


@pytest.mark.parametrize("name", zoo.ZOO)
def test_probe_leaves_zoo_unchanged(name):
    model, inputs = zoo.build(name)
    scramble(model)
    layer = zoo.SPATIAL_LAYER[name]
    for kw in OPTIONS:
        with leaves_unchanged(model):
            inputs = tuple(t.clone().requires_grad_(True) for t in inputs)
            with nl.probe(model, [layer, ""], **kw) as p:
                out = model(*inputs)
                if out.requires_grad:
                    out.sum().backward()
            if kw.get("freeze") is False:  # the test's own backward wrote .grad, as asked
                assert any(q.grad is not None for q in model.parameters() if q.requires_grad)
                for q in model.parameters():
                    q.grad = None
            assert layer in p.activations
            if not kw.get("detach"):
                assert layer in p.gradients, kw
