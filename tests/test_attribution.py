"""Attribution methods against trusted oracles (captum, pytorch-grad-cam) and, where an oracle
is wrong, against hand-written references."""

import copy
import warnings

import pytest
import torch
import torch.nn as nn

import netloupe as nl
import zoo
from netloupe.attribution.smooth import noise_batch
from references import RefReLU, RefRule

captum_attr = pytest.importorskip("captum.attr")
warnings.filterwarnings("ignore", module="captum")

MODELS = ["resnet18", "vgg11_bn", "densenet121", "default"]
SIZE = {"resnet18": 64, "vgg11_bn": 64, "densenet121": 64, "default": 64}
CAM_LAYER = {"resnet18": "layer3", "vgg11_bn": "features.25", "densenet121": "features.denseblock3",
             "default": "blocks.5"}
TARGETS = [3, 7]  # a batch of 2 with different targets


@pytest.fixture(scope="module", params=MODELS)
def case(request):
    name = request.param
    model, _ = zoo.build(name)
    torch.manual_seed(1)
    return name, model, torch.randn(2, 3, SIZE[name], SIZE[name])


def rel(ours, ref):
    ours, ref = torch.as_tensor(ours).float(), torch.as_tensor(ref).float()
    return float((ours - ref).abs().max() / ref.abs().max().clamp(min=1e-30))


def test_saliency_and_input_x_gradient_match_captum(case):
    """In float64, like every captum parity test here: in float32 on the CPU our batches run in channels_last
    (oneDNN's faster layout) and captum's do not, and the two algorithms round differently (up to 2e-4 on
    densenet121, 4e-3 through SmoothGrad's noisy copies on vgg11_bn, where ReLUs sit near zero)."""
    name, model, x = case
    model, x = copy.deepcopy(model).double(), x.double()
    assert rel(nl.saliency(model, x, TARGETS).values, captum_attr.Saliency(model).attribute(x, target=TARGETS)) <= 1e-5
    assert rel(nl.input_x_gradient(model, x, TARGETS).values,
               captum_attr.InputXGradient(model).attribute(x, target=TARGETS)) <= 1e-5


@pytest.mark.parametrize("method", ["riemann_left", "riemann_middle", "gausslegendre"])
def test_integrated_gradients_match_captum(case, method):
    """In float64: in float32 captum's one batch of 32 path points lands 2e-3 from the float64
    result on vgg11_bn on some CPUs (oneDNN's algorithm for that batch), ours in chunks of 8 not."""
    name, model, x = case
    model, x = copy.deepcopy(model).double(), x.double()
    ours = nl.integrated_gradients(model, x, TARGETS, steps=16, quadrature=method)
    ref = captum_attr.IntegratedGradients(model).attribute(x, target=TARGETS, n_steps=16, method=method)
    assert rel(ours.values, ref) <= 1e-6  # captum keeps its Gauss-Legendre nodes in float32: 7e-8 apart


def test_trapezoid_rule_is_captum_rescaled_because_captum_weights_sum_to_less_than_one():
    """captum's riemann_trapezoid uses step 1/n with halved ends, so its weights sum to
    (n-1)/n instead of 1; the true trapezoid rule over n points has spacing 1/(n-1). Ours is
    exactly captum's times n/(n-1)."""
    model, _ = zoo.build("resnet18")
    model, x = model.double(), torch.randn(2, 3, 64, 64, dtype=torch.float64)
    n = 10
    ours = nl.integrated_gradients(model, x, TARGETS, steps=n, quadrature="riemann_trapezoid")
    ref = captum_attr.IntegratedGradients(model).attribute(x, target=TARGETS, n_steps=n, method="riemann_trapezoid")
    assert rel(ours.values, ref * n / (n - 1)) <= 1e-5
    alphas, weights = nl.attribution.integrated.path_points(n, "riemann_trapezoid")
    assert abs(sum(weights) - 1) < 1e-12 and alphas[0] == 0 and alphas[-1] == 1


@pytest.mark.parametrize("kind,nt_type", [("smoothgrad", "smoothgrad"), ("squared", "smoothgrad_sq"),
                                          ("vargrad", "vargrad")])
def test_smoothgrad_matches_noise_tunnel_with_same_noise(case, kind, nt_type, monkeypatch):
    name, model, x = case
    model, x = copy.deepcopy(model).double(), x.double()  # see test_saliency_and_input_x_gradient_match_captum
    samples = 3
    ours = nl.smoothgrad(model, x, TARGETS, n=samples, noise=0.15, kind=kind, seed=5)
    noise = noise_batch(x, samples, 0.15, seed=5)
    # captum draws its noise with torch.normal, in the same sample-major layout: hand it ours
    monkeypatch.setattr(torch, "normal", lambda *a, **k: noise)
    ref = captum_attr.NoiseTunnel(captum_attr.Saliency(model)).attribute(
        x, nt_type=nt_type, nt_samples=samples, target=TARGETS, stdevs=1.0)
    monkeypatch.undo()
    assert rel(ours.values, ref) <= 1e-5


def test_smoothgrad_noise_scale_is_a_fraction_of_the_input_range():
    x = torch.stack([torch.linspace(0, 1, 3 * 32 * 32).view(3, 32, 32), torch.linspace(-5, 5, 3 * 32 * 32).view(3, 32, 32)])
    eps = noise_batch(x, 2000, 0.1, seed=0)
    assert abs(float(eps[:2000].std()) - 0.1) < 0.002 and abs(float(eps[2000:].std()) - 1.0) < 0.02


def _reference_rule_model(name, model, rule):
    """A copy whose every ReLU / ReLU6 is the hand-written rule; densenet's functional ReLU
    (in its forward, which captum cannot see) is rewritten too."""
    ref = copy.deepcopy(model)
    for parent in ref.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.ReLU):
                setattr(parent, child_name, RefReLU(rule))
            elif isinstance(child, nn.ReLU6):
                setattr(parent, child_name, RefReLU(rule, hi=6.0))
    if name == "densenet121":
        def forward(x, m=ref):
            f = RefRule.apply(m.features(x), None, rule)
            return m.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(f, 1), 1))
        ref.forward = forward
    return ref


def _input_grad(model, x, targets):
    x = x.clone().requires_grad_(True)
    model(x)[torch.arange(len(x)), torch.tensor(targets)].sum().backward()
    return x.grad


@pytest.mark.parametrize("method,rule,captum_cls", [("guided_backprop", "guided", "GuidedBackprop"),
                                                    ("deconvnet", "deconv", "Deconvolution")])
def test_guided_backprop_and_deconvnet(case, method, rule, captum_cls):
    name, model, x = case
    ours = getattr(nl, method)(model, x, TARGETS).values
    if name in ("resnet18", "vgg11_bn"):  # every ReLU is an nn.ReLU module: captum is right
        ref = getattr(captum_attr, captum_cls)(model).attribute(x, target=TARGETS)
    else:
        # captum hooks nn.ReLU modules only: it misses densenet's functional F.relu and the
        # default model's ReLU6, so the oracle is a hand-written reference model
        ref = _input_grad(_reference_rule_model(name, model, rule), x, TARGETS)
        captum_ref = getattr(captum_attr, captum_cls)(model).attribute(x, target=TARGETS)
        assert rel(captum_ref, ref) > 1e-3  # captum is wrong here
    assert rel(ours, ref) <= 1e-5


def test_occlusion_matches_captum(case):
    """In float64: a score drop is a difference of two close logits, and float32 rounding of
    differently composed batches alone moves it by ~1e-5 of its range."""
    name, model, x = case
    model, x = copy.deepcopy(model).double(), x[:, :, :32, :32].double()
    ours = nl.occlusion(model, x, TARGETS, window=(3, 16, 16), stride=(3, 8, 8), progress=False)
    ref = captum_attr.Occlusion(model).attribute(x, target=TARGETS, sliding_window_shapes=(3, 16, 16), strides=(3, 8, 8))
    assert rel(ours.values, ref) <= 1e-5


def test_grad_cam_matches_captum_layer_grad_cam(case):
    name, model, x = case
    layer = CAM_LAYER[name]
    module = nl.Unit(layer).module(model)
    raw = captum_attr.LayerGradCam(model, module).attribute(x, target=TARGETS, relu_attributions=True)
    assert rel(nl.grad_cam(model, x, TARGETS, layer=layer, interpolate=False).values, raw) <= 1e-5
    up = captum_attr.LayerAttribution.interpolate(raw, x.shape[-2:], interpolate_mode="bilinear")
    assert rel(nl.grad_cam(model, x, TARGETS, layer=layer).values, up) <= 1e-5


def test_guided_grad_cam(case):
    name, model, x = case
    layer = CAM_LAYER[name]
    ours = nl.guided_grad_cam(model, x, TARGETS, layer=layer).values
    module = nl.Unit(layer).module(model)
    if name in ("resnet18", "vgg11_bn"):
        ref = captum_attr.GuidedGradCam(model, module).attribute(x, target=TARGETS, interpolate_mode="bilinear")
    else:  # captum's guided part misses functional ReLU / ReLU6 here (see above)
        cam = captum_attr.LayerAttribution.interpolate(
            captum_attr.LayerGradCam(model, module).attribute(x, target=TARGETS, relu_attributions=True),
            x.shape[-2:], interpolate_mode="bilinear")
        ref = _input_grad(_reference_rule_model(name, model, "guided"), x, TARGETS) * cam
    assert rel(ours, ref) <= 1e-5


@pytest.mark.parametrize("ours,peer", [("grad_cam", "GradCAM"), ("grad_cam_pp", "GradCAMPlusPlus")])
def test_cams_match_pytorch_grad_cam(case, ours, peer):
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    name, model, x = case
    layer = CAM_LAYER[name]
    with getattr(pytorch_grad_cam, peer)(model=model, target_layers=[nl.Unit(layer).module(model)]) as cam:
        ref = cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in TARGETS])
    from pytorch_grad_cam.utils.image import scale_cam_image

    # pytorch-grad-cam post-processes each map: min-max scale, cv2 resize to the input, scale
    # again. Put our layer-resolution map through the same steps (our own bilinear upsampling
    # is checked against captum's above).
    m = getattr(nl, ours)(model, x, TARGETS, layer=layer, interpolate=False).values[:, 0].numpy()
    m = scale_cam_image(scale_cam_image(m, tuple(x.shape[-2:])[::-1]))
    assert rel(torch.from_numpy(m), torch.from_numpy(ref)) <= 1e-5


def test_integrated_gradients_completeness_on_default_model():
    """The score jumps right next to the gray baseline; the adaptive rule refines there, and at
    its 50 default steps the completeness gap on coffee stays within a few percent (uniform
    trapezoid: 6%; benchmarks/ig_accuracy.py has all five photos and the L1 errors)."""
    model = nl.load_model("default")
    r = nl.integrated_gradients(model, nl.samples.path("coffee"), steps=50)
    gap = r.extra["gap"]
    assert abs(float(r.delta[0])) < 0.05 * abs(float(gap[0]))
    assert model.labels[int(r.target[0])] == "espresso"


def test_adaptive_rule_is_closer_to_the_converged_attribution_than_fixed_rules():
    """Judged by the attribution itself, not by its completeness gap: the relative L1 distance
    from a 4000-point reference, on a ReLU net whose gradients bend many times along the path,
    is at most 0.8x that of every fixed rule at the same steps, for each sample."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(48, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                        nn.Linear(64, 3)).eval()
    with torch.no_grad():
        net[1].weight.mul_(4)
    x = torch.randn(2, 3, 4, 4)
    ref = nl.integrated_gradients(net, x, [0, 2], steps=4000, quadrature="riemann_middle").values

    def error(method: str) -> torch.Tensor:
        v = nl.integrated_gradients(net, x, [0, 2], steps=32, quadrature=method).values
        return (v - ref).abs().flatten(1).sum(1) / ref.abs().flatten(1).sum(1)

    adaptive = error("adaptive")
    for method in ("riemann_trapezoid", "riemann_middle", "gausslegendre"):
        assert (adaptive <= 0.8 * error(method)).all(), method


def test_adaptive_rule_is_exact_for_a_linear_path_and_refines_where_the_score_bends():
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).eval()
    x = torch.randn(2, 3, 2, 2)
    r = nl.integrated_gradients(net, x, [0, 2], steps=10)
    assert torch.allclose(r.delta, torch.zeros(2), atol=1e-5)  # linear model: exact
    bent = nn.Sequential(nn.Flatten(), nn.Linear(12, 64), nn.ReLU(), nn.Linear(64, 1)).eval()
    fixed = nl.integrated_gradients(bent, x, 0, steps=12, quadrature="riemann_trapezoid")
    adaptive = nl.integrated_gradients(bent, x, 0, steps=12)
    assert adaptive.delta.abs().sum() < fixed.delta.abs().sum()


class _Viewing(nn.Module):
    """Flattens a conv output with .view, which a channels_last batch cannot do."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        h = self.conv(x)
        return self.fc(h.view(h.shape[0], -1))


def test_float32_cpu_batches_run_channels_last_and_agree_with_float64():
    """Gradients of float32 image batches on the CPU run in channels_last (oneDNN's faster layout): the model
    sees that layout, and the result stays within float32 rounding of the float64 one. A model whose forward
    cannot take it (a .view of a conv output) is remembered and gets its batches as given."""
    from netloupe import runtime

    for name in ("resnet18", "densenet121"):
        model, _ = zoo.build(name)
        torch.manual_seed(1)
        x = torch.randn(2, 3, 64, 64)
        layouts = []
        hook = model.register_forward_pre_hook(
            lambda m, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last)))
        fast = nl.saliency(model, x, TARGETS, abs=False).values
        hook.remove()
        exact = nl.saliency(copy.deepcopy(model).double(), x.double(), TARGETS, abs=False).values
        assert layouts == [True] and rel(fast, exact) <= 1e-3, name
    viewing = _Viewing().eval()
    x = torch.randn(2, 3, 8, 8)
    got = nl.saliency(viewing, x, 0, abs=False).values
    assert viewing in runtime._CONTIGUOUS_ONLY
    assert torch.allclose(got, nl.saliency(viewing.double(), x.double(), 0, abs=False).values.float(), atol=1e-6)


def test_adaptive_rule_costs_its_steps_and_nothing_more():
    """The completeness gap reuses the scores at x and at the baseline that the path's first grid
    evaluated: `steps` model rows per sample, no extra forward pass (a fixed rule needs 2 more)."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    rows = []
    net.register_forward_pre_hook(lambda module, args: rows.append(args[0].shape[0]))
    x = torch.randn(2, 3, 2, 2)
    adaptive = nl.integrated_gradients(net, x, [0, 2], steps=12)
    assert sum(rows) == 2 * 12
    rows.clear()
    fixed = nl.integrated_gradients(net, x, [0, 2], steps=12, quadrature="riemann_trapezoid")
    assert sum(rows) == 2 * 12 + 2 * 2
    assert torch.allclose(adaptive.extra["gap"], fixed.extra["gap"], atol=1e-6)  # the same f(x) - f(baseline)


@pytest.mark.parametrize("method", list(nl.attribution.METHODS))
def test_batch_equals_one_at_a_time(method):
    """In float64, so that batch-size-dependent rounding cannot flip a ReLU near zero."""
    model, _ = zoo.build("resnet18")
    size = 64
    if not nl.attribution.METHODS[method].applies(model):  # attention rollout: a ViT
        model, size = zoo.build("timm_vit")[0], 32
    model = model.double()
    x = torch.randn(3, 3, size, size, dtype=torch.float64)
    kw = nl.attribution.METHODS[method].quick
    batch = nl.attribute(model, x, method, target=[1, 2, 3], **kw).values
    for i in range(3):
        if method in ("smoothgrad", "gradient_shap"):  # random draws per row (smoothgrad has its own test below)
            continue
        one = nl.attribute(model, x[i:i + 1], method, target=[1, 2, 3][i], **kw).values
        assert rel(batch[i:i + 1], one) <= 1e-5, (method, i)


def test_smoothgrad_batch_equals_explicit_noisy_average():
    model, _ = zoo.build("resnet18")
    x = torch.randn(2, 3, 64, 64)
    r = nl.smoothgrad(model, x, [1, 2], n=4, seed=9, batch_size=3)
    noisy = x.repeat_interleave(4, 0) + noise_batch(x, 4, 0.15, seed=9)
    grads = nl.saliency(model, noisy, torch.tensor([1, 2]).repeat_interleave(4)).values
    assert torch.allclose(r.values, grads.view(2, 4, 3, 64, 64).mean(1), atol=1e-6)


def test_targets_units_callables_and_top():
    model, _ = zoo.build("resnet18")
    x = torch.randn(2, 3, 64, 64)
    top = nl.saliency(model, x, "top")
    with torch.no_grad():
        assert torch.equal(top.target, model(x).argmax(1))
    # a unit target backpropagates from the channel mean, a neuron from one position
    feats = {}
    h = model.layer4.register_forward_hook(lambda m, i, o: feats.__setitem__("a", o))
    xi = x.clone().requires_grad_(True)
    model(xi)
    h.remove()
    ch = torch.autograd.grad(feats["a"][:, 12].mean((1, 2)).sum(), xi, retain_graph=True)[0]
    neuron = torch.autograd.grad(feats["a"][:, 12, 1, 0].sum(), xi)[0]
    assert rel(nl.saliency(model, x, "layer4:12", abs=False).values, ch) <= 1e-5
    assert rel(nl.saliency(model, x, "layer4:12@1,0", abs=False).values, neuron) <= 1e-5
    r = nl.saliency(model, x, lambda out: out[:, 5] - out[:, 6], abs=False)
    xi = x.clone().requires_grad_(True)
    out = model(xi)
    assert rel(r.values, torch.autograd.grad((out[:, 5] - out[:, 6]).sum(), xi)[0]) <= 1e-5


def test_segmentation_style_callable_target_with_grad_cam():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1)).eval()
    x = torch.randn(2, 3, 16, 16)
    r = nl.grad_cam(net, x, target=lambda out: out[:, 2].mean((1, 2)), layer="1")
    assert r.values.shape == (2, 1, 16, 16) and r.values.min() >= 0


def test_grad_cam_on_vit_reshapes_tokens():
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64).eval()
    nn.init.normal_(vit.heads.head.weight)  # torchvision starts the head at zero
    x = torch.randn(2, 3, 32, 32)
    r = nl.grad_cam(vit, x, [1, 2], interpolate=False, relu=False)
    assert r.extra["layer"] == "encoder.layers.encoder_layer_1.ln_1"  # before the last attention
    feats = {}
    h = vit.encoder.layers[1].ln_1.register_forward_hook(lambda m, i, o: feats.__setitem__("a", o))
    out = vit(x)
    h.remove()
    a = feats["a"]
    g = torch.autograd.grad(out[[0, 1], [1, 2]].sum(), a)[0]
    grid = lambda t: t[:, 1:].reshape(2, 4, 4, 32).permute(0, 3, 1, 2)  # noqa: E731
    expected = (grid(g).mean((2, 3))[:, :, None, None] * grid(a)).sum(1, keepdim=True)
    assert r.values.shape == (2, 1, 4, 4) and rel(r.values, expected) <= 1e-5
    custom = nl.grad_cam(vit, x, [1, 2], layer="encoder.layers.encoder_layer_1.ln_1", reshape=grid, interpolate=False,
                         relu=False)
    assert torch.allclose(custom.values, r.values)


def test_grad_cam_channel_and_default_layer():
    model, _ = zoo.build("resnet18")
    x = torch.randn(2, 3, 64, 64)
    full = nl.grad_cam(model, x, [1, 2], interpolate=False, relu=False)
    assert full.extra["layer"] == "layer4"
    feats = {}
    h = model.layer4.register_forward_hook(lambda m, i, o: feats.__setitem__("a", o))
    out = model(x)
    h.remove()
    a = feats["a"]
    w = torch.autograd.grad(out[[0, 1], [1, 2]].sum(), a)[0].mean((2, 3))
    for c in (0, 100, 511):
        one = nl.grad_cam(model, x, [1, 2], channel=c, interpolate=False, relu=False).values
        assert rel(one, w[:, c, None, None, None] * a[:, c:c + 1]) <= 1e-5
    assert rel(full.values, (w[:, :, None, None] * a).sum(1, keepdim=True)) <= 1e-5


class Counted(nn.Module):
    """A small CNN that counts its forward passes."""

    def __init__(self):
        super().__init__()
        self.calls = 0
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU())
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        self.calls += 1
        return self.head(self.features(x).mean((2, 3)))


def test_grad_cams_default_layer_is_found_once_per_model_and_shape():
    model = Counted()
    x = torch.randn(2, 3, 16, 16)
    first = nl.grad_cam(model, x, 0)
    calls = model.calls
    again = nl.grad_cam(model, x, 0)
    assert model.calls - calls == calls - 1  # the search pass is not repeated
    assert again.extra["layer"] == first.extra["layer"] == "features" and torch.equal(again.values, first.values)
    nl.grad_cam(model, torch.randn(1, 3, 20, 20), 0)  # another input size: looked for again
    assert model.calls - calls - (calls - 1) == calls
    model.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=20))  # a 1x1 grid now
    assert nl.grad_cam(model, x, 0).extra["layer"] == "features.1"  # a changed model: looked for again


def test_attribution_result_views_and_signs(tmp_path):
    model, _ = zoo.build("resnet18")
    x = torch.randn(2, 3, 64, 64)
    r = nl.saliency(model, x, [1, 2], abs=False)
    assert torch.equal(r.positive().values - r.negative().values, r.values)
    assert (r.positive().values >= 0).all() and (r.negative().values >= 0).all()
    for kind in ("heatmap", "overlay", "raw", "gray", "norm-blur"):
        im = r.to_pil(kind=kind, index=1)
        assert im.size == (64, 64)
    assert r.save(tmp_path / "s.png", kind="overlay").exists()
    with pytest.raises(nl.InputError, match="heatmap"):
        r.to_pil(kind="sparkles")
    with pytest.raises(nl.InputError, match="out of range"):
        r.to_pil(index=5)


def test_bad_attribution_arguments():
    model, _ = zoo.build("resnet18")
    x = torch.randn(2, 3, 64, 64)
    with pytest.raises(nl.InputError, match="one per input"):
        nl.saliency(model, x, [1, 2, 3])
    with pytest.raises(nl.InputError, match="out of range"):
        nl.saliency(model, x, 1000)
    with pytest.raises(nl.UnitError, match="nearest"):
        nl.saliency(model, x, "layer9:1")
    with pytest.raises(nl.UnitError, match="channels 0..511"):
        nl.saliency(model, x, "layer4:600")
    with pytest.raises(nl.InputError, match="unknown quadrature"):
        nl.integrated_gradients(model, x, 1, quadrature="simpson")
    with pytest.raises(nl.InputError, match="baseline"):
        nl.integrated_gradients(model, x, 1, baseline="zeros")
    with pytest.raises(nl.InputError, match="does not fit"):
        nl.occlusion(model, x, 1, window=100)
    with pytest.raises(nl.InputError, match="unknown attribution method"):
        nl.attribute(model, x, "lime")
    with pytest.raises(nl.NetloupeError, match="no spatial grid"):
        nl.grad_cam(model, x, 1, layer="fc")
    with pytest.raises(nl.NetloupeError, match="one score per sample"):
        nl.saliency(model, x, lambda out: out.sum())


def test_plot_has_a_colour_bar_in_attribution_units():
    from netloupe.images import figure

    model, _ = zoo.build("resnet18")
    r = nl.saliency(model, torch.randn(1, 3, 64, 64), 1)
    for kind in ("heatmap", "overlay", "raw", "norm-blur"):
        fig, axes = figure(1, 1)
        r.plot(ax=axes[0, 0], kind=kind)
        assert len(fig.axes) == 2, kind  # the image and its colour bar
        bar = fig.axes[1]
        lo, hi = bar.get_ylim()
        if kind in ("heatmap", "overlay"):  # 0 .. the robust maximum of |values| summed over channels
            m = r.values[0].abs().sum(0)
            assert lo == 0 and abs(hi - float(torch.quantile(m.flatten(), 0.995))) < 1e-6 * float(m.max())
        if kind == "raw":
            assert lo == -hi
    fig, axes = figure(1, 1)
    r.plot(ax=axes[0, 0], colorbar=False)
    assert len(fig.axes) == 1


def test_contact_sheet_explains_one_class_with_every_method():
    model, _ = zoo.build("resnet18")
    sheet = nl.attribution.contact_sheet(model, torch.randn(1, 3, 64, 64), methods=["saliency", "deconvnet", "grad_cam"])
    targets = {int(r.target[0]) for r in sheet.results.values()}
    assert len(targets) == 1 and list(sheet.results) == ["saliency", "deconvnet", "grad_cam"]
    assert sheet.view("deconvnet") == "raw" and sheet.view("grad_cam") == "overlay"
    im = sheet.to_pil()
    assert im.size[0] > 4 * 150
    with pytest.raises(nl.InputError, match="one input"):
        nl.attribution.contact_sheet(model, torch.randn(2, 3, 64, 64))


def test_adaptive_rule_on_a_gpu_runs_two_passes(monkeypatch):
    """On a GPU each round is a pass that waits for the last, so the rule takes two: a uniform
    grid and one refinement (checked here with the GPU's round size on the CPU)."""
    from netloupe.attribution import integrated

    assert integrated.round_size(50, torch.device("cuda")) == 25 and integrated.round_size(50, torch.device("cpu")) == 5
    monkeypatch.setattr(integrated, "round_size", lambda steps, device: -(-steps // 2))
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    passes = []
    net.register_forward_pre_hook(lambda module, args: passes.append(args[0].shape[0]))
    x = torch.randn(2, 3, 2, 2)
    r = nl.integrated_gradients(net, x, [0, 2], steps=20, batch_size=64)
    assert passes == [20, 20]  # two samples x 10 points, twice
    ref = nl.integrated_gradients(net, x, [0, 2], steps=2000, quadrature="riemann_middle")
    assert torch.allclose(r.values, ref.values, atol=0.05 * float(ref.values.abs().max()))
