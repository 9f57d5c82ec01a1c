"""Attribution beyond one image batch, against captum: models with several inputs, extra
forward arguments that follow their sample through re-batching, non-image inputs, exact
occlusion edges, and the options captum users rely on."""

import warnings

import pytest
import torch
import torch.nn as nn

import netloupe as nl
from netloupe.attribution.smooth import noise_batch

captum_attr = pytest.importorskip("captum.attr")
warnings.filterwarnings("ignore", module="captum")


def rel(ours, ref):
    ours, ref = torch.as_tensor(ours).detach().double(), torch.as_tensor(ref).detach().double()
    return float((ours - ref).abs().max() / ref.abs().max().clamp(min=1e-30))


class TwoStream(nn.Module):
    """An image and a metadata vector, each through its own branch, then one head."""

    def __init__(self, classes: int = 5, meta: int = 6):
        super().__init__()
        self.image = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1),
                                   nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.meta = nn.Sequential(nn.Linear(meta, 8), nn.ReLU())
        self.head = nn.Linear(16, classes)

    def forward(self, img, meta):
        return self.head(torch.cat([self.pool(self.image(img)).flatten(1), self.meta(meta)], 1))


class Scaled(nn.Module):
    """Takes a per-sample scale as an extra argument; its output depends on it non-linearly."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.fc = nn.Linear(6, 4)

    def forward(self, x, scale, shift=0.0):
        h = torch.relu(self.conv(x) * scale.view(-1, 1, 1, 1) + shift)
        return self.fc(h.mean((2, 3)))


class Features(nn.Module):
    """Tabular features [N, D] -> classes."""

    def __init__(self, d: int = 10):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, 16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, x):
        return self.net(x)


TARGETS = [1, 3]


@pytest.fixture(scope="module")
def two():
    torch.manual_seed(0)
    model = TwoStream().double().eval()
    img, meta = torch.randn(2, 3, 12, 12, dtype=torch.float64), torch.randn(2, 6, dtype=torch.float64)
    return model, (img, meta)


def _pairs(ours, ref, tol=1e-8):
    assert isinstance(ours.values, tuple) and len(ours.values) == len(ref)
    for o, r in zip(ours.values, ref):
        assert o.shape == r.shape
        assert rel(o, r) <= tol


@pytest.mark.parametrize("method,captum_cls", [("saliency", "Saliency"), ("input_x_gradient", "InputXGradient"),
                                               ("guided_backprop", "GuidedBackprop"), ("deconvnet", "Deconvolution")])
def test_two_input_gradient_methods_match_captum(two, method, captum_cls):
    model, xs = two
    kw = {"abs": False} if method == "saliency" else {}
    extra = {"abs": False} if method == "saliency" else {}
    ref = getattr(captum_attr, captum_cls)(model).attribute(xs, target=TARGETS, **extra)
    _pairs(getattr(nl, method)(model, xs, TARGETS, **kw), ref)


@pytest.mark.parametrize("method", ["riemann_left", "riemann_middle", "gausslegendre"])
def test_two_input_integrated_gradients_match_captum(two, method):
    model, (img, meta) = two
    baselines = (torch.full_like(img, 0.1), torch.full_like(meta, -0.2))
    ours = nl.integrated_gradients(model, (img, meta), TARGETS, baseline=(0.1, -0.2), steps=12, quadrature=method)
    ref, delta = captum_attr.IntegratedGradients(model).attribute(
        (img, meta), baselines=baselines, target=TARGETS, n_steps=12, method=method, return_convergence_delta=True)
    _pairs(ours, ref, tol=1e-6)  # captum weights its steps in float32
    assert torch.allclose(ours.delta, delta, atol=1e-6)


def test_two_input_adaptive_integrated_gradients_are_complete(two):
    model, xs = two
    r = nl.integrated_gradients(model, xs, TARGETS, steps=40)
    assert (r.delta.abs() < 0.01 * r.extra["gap"].abs()).all()
    total = sum(v.flatten(1).sum(1) for v in r.values)
    assert torch.allclose(total - r.extra["gap"], r.delta)


def test_two_input_smoothgrad_matches_noise_tunnel(two, monkeypatch):
    model, xs = two
    ours = nl.smoothgrad(model, xs, TARGETS, n=3, noise=(0.1, 0.3), seed=4, abs=False)
    rng = nl.runtime.generator(4, "cpu")
    noises = [noise_batch(x, 3, s, rng=rng) for x, s in zip(xs, (0.1, 0.3))]
    monkeypatch.setattr(torch, "normal", lambda *a, **k: noises.pop(0))  # captum draws per input, in order
    ref = captum_attr.NoiseTunnel(captum_attr.Saliency(model)).attribute(xs, nt_type="smoothgrad", nt_samples=3,
                                                                          target=TARGETS, stdevs=1.0, abs=False)
    monkeypatch.undo()
    assert not noises
    _pairs(ours, ref)


def test_two_input_occlusion_matches_captum_with_windows_per_input(two):
    model, xs = two
    ours = nl.occlusion(model, xs, TARGETS, window=((3, 4, 4), (2,)), stride=((3, 3, 3), 1), baseline=(0.0, 0.5),
                        progress=False)
    ref = captum_attr.Occlusion(model).attribute(xs, sliding_window_shapes=((3, 4, 4), (2,)), strides=((3, 3, 3), 1),
                                                 baselines=(0.0, 0.5), target=TARGETS)
    _pairs(ours, ref, tol=1e-6)  # captum's occlusion sums in float32


def test_two_input_cams_match_captum(two):
    model, xs = two
    layer = model.image[2]
    raw = captum_attr.LayerGradCam(model, layer).attribute(xs, target=TARGETS, relu_attributions=True)
    cam = nl.grad_cam(model, xs, TARGETS, layer="image.2", interpolate=False)
    assert rel(cam.values, raw) <= 1e-8 and cam.extra["input"] == 0
    ours = nl.guided_grad_cam(model, xs, TARGETS, layer="image.2", interpolate="nearest")
    ref = captum_attr.GuidedGradCam(model, layer).attribute(xs, target=TARGETS)  # captum: nearest by default
    assert rel(ours.values[0], ref[0]) <= 1e-8
    assert ours.values[1] is None  # the metadata vector has no grid for a CAM (captum: an empty tensor)
    pp = nl.grad_cam_pp(model, xs, TARGETS, layer="image.2")
    assert pp.values.shape == (2, 1, 12, 12) and (pp.values >= 0).all()


def test_a_tuple_is_several_inputs_never_a_batch():
    model = Features(4).eval()
    x1, x2 = torch.randn(2, 4), torch.randn(2, 4)
    with pytest.raises(nl.InputError, match="takes 2 positional arguments"):
        nl.saliency(model, (x1, x2), 0)  # a one-input model given two inputs
    batch = nl.saliency(model, [x1[:1], x2[:1]], 0)  # a list stays a batch
    assert batch.values.shape == (2, 4)
    with pytest.raises(nl.InputError, match="different numbers of samples"):
        nl.saliency(TwoStream(), (torch.randn(2, 3, 8, 8), torch.randn(3, 6)), 0)
    with pytest.raises(nl.InputError, match="a tuple means several model inputs"):
        nl.load_model(model).inputs((x1, x2))


def test_parts_of_a_multi_input_attribution_draw_and_sign(two):
    model, xs = two
    r = nl.saliency(model, xs, TARGETS, abs=False)
    assert len(r) == 2 and r.several
    img = r.part(0)
    assert img.values.shape == (2, 3, 12, 12) and img.to_pil(kind="heatmap", index=1).size == (12, 12)
    assert torch.equal(r.positive().values[1] - r.negative().values[1], r.values[1])
    with pytest.raises(nl.InputError, match="part\\(i\\)"):
        r.to_pil()
    with pytest.raises(nl.InputError, match="out of range"):
        r.part(2)


# -- extra forward arguments -------------------------------------------------------------------

@pytest.fixture(scope="module")
def scaled():
    torch.manual_seed(1)
    return Scaled().double().eval(), torch.randn(3, 3, 8, 8, dtype=torch.float64), \
        torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)


def _one_at_a_time(name, model, x, scale, targets, **kw):
    """The method on each sample alone, its scale fixed inside a wrapper model: the oracle for
    forward_args following their sample."""
    out = []
    for i in range(len(x)):
        fixed = _Fixed(model, scale[i:i + 1])
        out.append(getattr(nl, name)(fixed, x[i:i + 1], targets[i], **kw).values)
    return torch.cat(out)


class _Fixed(nn.Module):
    def __init__(self, model, scale):
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, x):
        return self.model(x, self.scale.expand(len(x)))


@pytest.mark.parametrize("method,kw", [
    ("integrated_gradients", {"steps": 10, "quadrature": "riemann_middle", "batch_size": 4}),
    ("integrated_gradients", {"steps": 10, "batch_size": 3}),
    ("smoothgrad", {"n": 4, "seed": 0, "batch_size": 3}),
    ("occlusion", {"window": 4, "stride": 2, "batch_size": 5, "progress": False}),
    ("saliency", {}),
])
def test_per_sample_forward_args_follow_their_sample_when_rebatched(scaled, method, kw):
    model, x, scale = scaled
    targets = [0, 2, 3]
    ours = getattr(nl, method)(model, x, targets, forward_args=(scale,), **kw).values
    if method == "smoothgrad":  # each sample's noise, drawn for the whole batch, replayed one at a time
        noisy = x.repeat_interleave(4, 0) + noise_batch(x, 4, 0.15, seed=0)
        ref = torch.stack([nl.saliency(_Fixed(model, scale[i:i + 1]), noisy[4 * i:4 * i + 4], targets[i]).values.mean(0)
                           for i in range(3)])
    else:
        ref = _one_at_a_time(method, model, x, scale, targets, **kw)
    assert rel(ours, ref) <= 1e-8


def test_forward_args_match_captum_additional_forward_args(scaled):
    model, x, scale = scaled
    ours = nl.integrated_gradients(model, x, [0, 2, 3], steps=8, quadrature="gausslegendre", forward_args=(scale, 0.25))
    ref = captum_attr.IntegratedGradients(model).attribute(x, target=[0, 2, 3], n_steps=8, method="gausslegendre",
                                                           additional_forward_args=(scale, 0.25))
    assert rel(ours.values, ref) <= 1e-6
    keywords = nl.integrated_gradients(model, x, [0, 2, 3], steps=8, quadrature="gausslegendre",
                                       forward_args={"scale": scale, "shift": 0.25})
    assert rel(keywords.values, ref) <= 1e-6


# -- inputs that are not images ----------------------------------------------------------------

@pytest.mark.parametrize("method,captum_cls", [("saliency", "Saliency"), ("input_x_gradient", "InputXGradient")])
def test_feature_vectors_with_gradient_methods(method, captum_cls):
    torch.manual_seed(2)
    model, x = Features().double().eval(), torch.randn(4, 10, dtype=torch.float64)
    ref = getattr(captum_attr, captum_cls)(model).attribute(x, target=[0, 1, 2, 0])
    assert rel(getattr(nl, method)(model, x, [0, 1, 2, 0]).values, ref.abs() if method == "saliency" else ref) <= 1e-8


def test_feature_vectors_with_integrated_gradients_and_a_1d_occlusion_window():
    torch.manual_seed(3)
    model, x = Features().double().eval(), torch.randn(4, 10, dtype=torch.float64)
    ig = nl.integrated_gradients(model, x, 1, steps=9, quadrature="riemann_trapezoid", baseline="noise", seed=0)
    ours = nl.occlusion(model, x, 1, window=3, stride=2, baseline=0.0, progress=False)
    ref = captum_attr.Occlusion(model).attribute(x, sliding_window_shapes=(3,), strides=2, target=1)
    assert rel(ours.values, ref) <= 1e-6 and ours.extra["window"] == (3,)
    assert ig.values.shape == (4, 10) and torch.isfinite(ig.values).all()


def test_token_embeddings_as_a_one_input_tuple():
    """[N, T, E] would be ambiguous with one [C, H, W] image as a bare tensor; a tuple takes
    each input as the batch it is. An int window occludes whole tokens."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Flatten(), nn.Linear(7 * 6, 3)).double().eval()
    emb = torch.randn(2, 6, 5, dtype=torch.float64)
    ours = nl.occlusion(model, (emb,), 2, window=2, stride=1, progress=False)
    ref = captum_attr.Occlusion(model).attribute((emb,), sliding_window_shapes=((2, 5),), strides=1, target=2)
    assert rel(ours.values[0], ref[0]) <= 1e-6
    ig = nl.integrated_gradients(model, (emb,), 2, steps=6, quadrature="riemann_left")
    assert ig.values[0].shape == emb.shape


# -- occlusion edges ---------------------------------------------------------------------------

def test_occlusion_covers_the_last_pixels_like_captum():
    """A 1x3 input, window 2, stride 2: the third pixel gets a truncated window of its own."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(3, 2)).double().eval()
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]))
    x = torch.ones(1, 1, 1, 3, dtype=torch.float64)
    ours = nl.occlusion(model, x, 0, window=(1, 1, 2), stride=2, progress=False).values
    ref = captum_attr.Occlusion(model).attribute(x, sliding_window_shapes=(1, 1, 2), strides=2, target=0)
    assert torch.allclose(ours.flatten(), torch.tensor([3.0, 3.0, 3.0], dtype=torch.float64))  # [a, a, b], b = 3
    assert rel(ours, ref) <= 1e-12


def test_occlusions_default_windows_scale_with_the_input():
    """16 positions per axis, windows twice the stride: the same cost for any image size."""
    torch.manual_seed(6)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 3)).double().eval()
    x = torch.randn(1, 3, 64, 48, dtype=torch.float64)
    ours = nl.occlusion(model, x, 1, progress=False)
    assert ours.extra["window"] == (3, 8, 6) and ours.extra["stride"] == (3, 4, 3)
    ref = captum_attr.Occlusion(model).attribute(x, sliding_window_shapes=(3, 8, 6), strides=(3, 4, 3), target=1)
    assert rel(ours.values, ref) <= 1e-6
    assert nl.occlusion(model, x, 1, window=10, progress=False).extra["stride"] == (1, 5, 5)  # half the window
    assert nl.occlusion(model, x, 1, stride=5, progress=False).extra["window"] == (3, 10, 10)  # twice the stride
    rows = nl.occlusion(nn.Sequential(nn.Flatten(), nn.Linear(40, 2)).double(), (torch.randn(2, 40, 1).double(),), 0,
                        progress=False)
    assert rows.extra["window"] == ((4, 1),) and rows.extra["stride"] == ((2, 1),)  # tokens: whole rows, 40 / 16


def test_occlusion_edges_of_an_odd_sized_image_match_captum():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).double().eval()
    x = torch.randn(2, 3, 29, 23, dtype=torch.float64)
    ours = nl.occlusion(model, x, [0, 2], window=8, stride=(3, 5, 6), progress=False).values
    ref = captum_attr.Occlusion(model).attribute(x, sliding_window_shapes=(3, 8, 8), strides=(3, 5, 6), target=[0, 2])
    assert rel(ours, ref) <= 1e-6
    assert (ours[:, :, -1, :].abs().sum() > 0) and (ours[:, :, :, -1].abs().sum() > 0)  # the far edges too
    with pytest.raises(nl.InputError, match="larger than window"):
        nl.occlusion(model, x, 0, window=4, stride=5, progress=False)


# -- options -----------------------------------------------------------------------------------

def test_integrated_gradients_without_multiplying_by_inputs_matches_captum():
    torch.manual_seed(6)
    model, x = Features().double().eval(), torch.randn(3, 10, dtype=torch.float64)
    ours = nl.integrated_gradients(model, x, 2, steps=10, quadrature="riemann_right", baseline=0.3,
                                   multiply_by_inputs=False)
    ref = captum_attr.IntegratedGradients(model, multiply_by_inputs=False).attribute(
        x, baselines=0.3, target=2, n_steps=10, method="riemann_right")
    assert rel(ours.values, ref) <= 1e-6
    full = nl.integrated_gradients(model, x, 2, steps=10, quadrature="riemann_right", baseline=0.3)
    assert torch.allclose(full.values, ours.values * (x - 0.3)) and torch.allclose(full.delta, ours.delta)


def test_grad_cam_at_a_layer_input_matches_captum():
    torch.manual_seed(7)
    model = TwoStream().double().eval()
    img = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    meta = torch.randn(2, 6, dtype=torch.float64)
    layer = model.image[2]
    ref = captum_attr.LayerGradCam(model, layer).attribute((img, meta), target=TARGETS, attribute_to_layer_input=True,
                                                           relu_attributions=True)
    ours = nl.grad_cam(model, (img, meta), TARGETS, layer="image.2", layer_input=True, interpolate=False)
    assert ours.values.shape == (2, 1, 12, 12) and rel(ours.values, ref) <= 1e-8
    output = nl.grad_cam(model, (img, meta), TARGETS, layer="image.2", interpolate=False)
    assert output.values.shape == (2, 1, 6, 6)


def test_guided_grad_cam_interpolation_modes_match_captum():
    torch.manual_seed(8)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).double().eval()
    x = torch.randn(2, 3, 10, 10, dtype=torch.float64)
    for mode in ("nearest", "bilinear"):
        ours = nl.guided_grad_cam(model, x, [1, 2], layer="3", interpolate=mode)
        ref = captum_attr.GuidedGradCam(model, model[3]).attribute(x, target=[1, 2], interpolate_mode=mode)
        assert rel(ours.values, ref) <= 1e-8, mode
    near = nl.grad_cam(model, x, [1, 2], layer="3", interpolate="nearest").values
    assert torch.equal(near[:, :, ::2, ::2], near[:, :, 1::2, 1::2])  # each cell a 2x2 block
    with pytest.raises(nl.InputError, match="interpolate"):
        nl.grad_cam(model, x, 1, layer="3", interpolate="cubic")


class UnusedBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.used = nn.Conv2d(3, 4, 3, padding=1)
        self.unused = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        self.unused(x)  # computed, never reaches the output
        return self.fc(self.used(x).mean((2, 3)))


def test_a_layer_the_target_does_not_depend_on_is_a_clear_error():
    model, x = UnusedBranch().eval(), torch.randn(1, 3, 8, 8)
    for method in (nl.grad_cam, nl.grad_cam_pp, nl.guided_grad_cam):
        with pytest.raises(nl.NetloupeError, match="does not depend on the output of layer 'unused'"):
            method(model, x, 0, layer="unused")
    assert nl.grad_cam(model, x, 0, layer="used").values.shape == (1, 1, 8, 8)


def test_smoothgrad_of_a_method_without_a_map_for_one_input(two):
    """Guided Grad-CAM has no map for the metadata vector: SmoothGrad over it keeps that None instead of failing,
    and with no noise it is the method itself."""
    model, xs = two
    smooth = nl.smoothgrad(model, xs, TARGETS, method=nl.guided_grad_cam, n=2, noise=0.0, seed=0, layer="image.2")
    plain = nl.guided_grad_cam(model, xs, TARGETS, layer="image.2")
    assert smooth.values[1] is None and rel(smooth.values[0], plain.values[0]) <= 1e-8
