"""Yosinski et al.'s regularized pixel optimization (each regularizer on a known tensor, the
paper's presets, the step rule, the render hook) and Gatys et al.'s style transfer (Gram
matrices, the loss it minimizes, both optimizers, blended styles, bad input), with their CLI verbs."""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

import netloupe as nl
from model_state import leaves_unchanged
from netloupe.cli import main as cli_main
from netloupe.layouts import NHWC
from netloupe.optvis import classic
from netloupe.optvis.style import default_layers, gram, smoothing_for, softmax_smoothing


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(x.mean((2, 3)))


def tiny():
    return nl.LoadedModel(TinyNet().eval(), nl.Preprocess(size=16, resize=16))


def photo(seed):
    return np.random.default_rng(seed).integers(0, 256, (20, 20, 3), dtype=np.uint8)


# -- Yosinski: each regularizer on a known tensor ------------------------------------------------

def test_decay_scales_by_one_minus_theta():
    x = torch.randn(2, 3, 5, 4)
    assert torch.equal(classic.decay(x, 0.3), x * 0.7)
    assert torch.equal(classic.decay(x, 0.0), x)


def test_blur_equals_a_hand_gaussian_and_scipy():
    x = torch.zeros(1, 3, 15, 15)
    x[0, :, 7, 7] = 1.0
    taps = torch.tensor([math.exp(-k * k / 2) for k in range(-3, 4)])  # sigma 1: radius 3
    taps = taps / taps.sum()
    hand = torch.zeros(15, 15)
    hand[4:11, 4:11] = taps[:, None] * taps[None, :]
    out = classic.blur(x, 1.0)
    assert torch.allclose(out[0], hand.expand(3, 15, 15), atol=1e-6)
    from scipy.ndimage import gaussian_filter  # same kernel, edges mirrored without repeating the edge pixel

    y = torch.rand(2, 3, 9, 11, dtype=torch.float64)
    ref = np.stack([[gaussian_filter(c, 1.0, mode="mirror", truncate=3.0) for c in im] for im in y.numpy()])
    assert np.allclose(classic.blur(y, 1.0).numpy(), ref, atol=1e-12)
    assert torch.equal(classic.blur(y, 0.0), y)


def _pixels_with_norms(norms):
    """A [1, 3, 4, 5] image whose pixel norms over colours are ``norms`` (20 values), in random directions."""
    d = F.normalize(torch.randn(1, 3, 20, generator=torch.Generator().manual_seed(0)), dim=1)
    return (d * torch.as_tensor(norms, dtype=torch.float32)).reshape(1, 3, 4, 5)


def test_norm_clipping_zeroes_exactly_the_lowest_percentile_pixels():
    norms = torch.randperm(20, generator=torch.Generator().manual_seed(1)).float() + 1  # 1..20 shuffled
    x = _pixels_with_norms(norms)
    out = classic.clip_small_norm(torch.cat([x, 3 * x]), 25)  # each image its own percentile
    low = (norms <= 5).reshape(4, 5)  # numpy's 25th percentile of 1..20 is 5.75
    for im, src in zip(out, torch.cat([x, 3 * x])):
        assert torch.all(im[:, low] == 0) and torch.equal(im[:, ~low], src[:, ~low])
    assert torch.equal(classic.clip_small_norm(x, 0), x)
    np_threshold = np.percentile(x.norm(dim=1).numpy(), 25)
    assert torch.equal(low, x.norm(dim=1)[0] < torch.tensor(np_threshold))


def test_contribution_clipping_zeroes_exactly_the_lowest_percentile_pixels():
    contributions = torch.randperm(20, generator=torch.Generator().manual_seed(2)).float() + 1
    x = torch.rand(1, 3, 4, 5) + 0.5
    grad = torch.zeros_like(x)
    grad[:, 0] = contributions.reshape(4, 5) / x[:, 0] * torch.where(torch.arange(20) % 2 == 0, 1, -1).reshape(4, 5)
    assert torch.allclose(classic.contribution(x, grad), contributions.reshape(1, 4, 5))
    out = classic.clip_small_contribution(x, grad, 90)  # numpy's 90th percentile of 1..20 is 18.1
    top = (contributions > 18).reshape(4, 5)
    assert torch.all(out[0][:, ~top] == 0) and torch.equal(out[0][:, top], x[0][:, top])
    # the paper's Taylor estimate |sum_c x_c g_c| against sum_c |x_c g_c|: opposite terms cancel in the first
    x1, g1 = torch.tensor([1.0, 1.0, 0.0]).view(1, 3, 1, 1), torch.tensor([2.0, -2.0, 0.0]).view(1, 3, 1, 1)
    assert classic.contribution(x1, g1, "taylor").item() == 0 and classic.contribution(x1, g1, "abs").item() == 4


def test_presets_are_the_papers_table_1():
    table = {1: (0, 0.5, 4, 50, 0), 2: (0.3, 0, 0, 20, 0), 3: (0.0001, 1.0, 4, 0, 0), 4: (0, 0.5, 4, 0, 90)}
    for row, numbers in table.items():
        p = classic.PRESETS[row]
        assert (p.decay, p.blur_radius, p.blur_every, p.norm_pct, p.contribution_pct) == numbers
    assert [classic.PRESETS[r].steps for r in (1, 2, 3, 4)] == [500, 750, 1000, 1000]
    assert classic.PRESETS[3].lr == pytest.approx(100 / 255 ** 2) and classic.PRESETS[1].progress == 2.0
    assert classic.preset(3, decay=0.01).decay == 0.01 and classic.preset("2") == classic.PRESETS[2]
    for bad in (dict(which=7), dict(which=3, decay=-1), dict(which=3, colour=1), dict(which=1, norm_pct=120)):
        with pytest.raises(nl.NetloupeError):
            classic.preset(**bad)


def test_regularize_runs_decay_blur_and_clips_in_the_toolboxs_order():
    x, g = torch.randn(1, 3, 8, 8), torch.randn(1, 3, 8, 8)
    p = classic.Preset(decay=0.1, blur_radius=1.0, blur_every=4, norm_pct=30, contribution_pct=40)
    by_hand = classic.clip_small_contribution(classic.clip_small_norm(classic.blur(0.9 * x, 1.0), 30), g, 40)
    assert torch.allclose(classic.regularize(x, g, 5, p), by_hand)  # steps 1, 5, 9, ... blur
    no_blur = classic.clip_small_contribution(classic.clip_small_norm(0.9 * x, 30), g, 40)
    assert torch.allclose(classic.regularize(x, g, 6, p), no_blur)


def test_ascent_steps_by_the_rate_or_by_the_wanted_progress():
    x = nn.Parameter(torch.zeros(2, 3, 2, 2))
    x.grad = torch.ones_like(x) * torch.tensor([1.0, 0.1]).view(2, 1, 1, 1)  # render's grad: minus the objective's
    classic.Ascent([x], lr=0.5).step()
    assert torch.allclose(x.detach(), -0.5 * x.grad)
    x.data.zero_()
    classic.Ascent([x], lr=3.0, progress=2.0).step()  # |g|^2 = 12 and 0.12: rates 1/6 and 16.7, capped at 3
    assert torch.allclose(x.detach()[0], -x.grad[0] / 6) and torch.allclose(x.detach()[1], -3.0 * x.grad[1])


def test_yosinski_visualize_applies_the_regularizers_between_render_steps():
    m = tiny()
    start = classic.start(1, (16, 16), m.preprocess.mean, classic.PRESETS[2], seed=0).raw.detach().clone()
    r = nl.visualize(m, "conv2:1", algorithm="yosinski", preset=classic.preset(2, lr=0.0, decay=0.5, norm_pct=0),
                     size=16, steps=3, seed=0, progress=False)
    mean = torch.tensor(m.preprocess.mean).view(1, 3, 1, 1)
    assert torch.allclose(r.images, (start * 0.125 + mean).clamp(0, 1), atol=1e-6)  # three decays of 1/2
    grown = nl.visualize(m, ["conv2:1", "conv2:3"], algorithm="yosinski", preset=classic.preset(1, lr=1e3), size=16,
                         steps=30, seed=0, progress=False)  # a rate cap that lets "progress" rule this weak net
    assert grown.images.shape == (2, 3, 16, 16) and grown.images.min() >= 0 and grown.images.max() <= 1
    assert torch.all(grown.history[-1] > grown.history[0] + 0.3)


def test_yosinski_bad_preset_is_a_clear_error_and_leaves_the_model():
    m = tiny()
    with leaves_unchanged(m.module), pytest.raises(nl.NetloupeError, match="use 1, 2, 3 or 4"):
        nl.visualize(m, "conv2:1", algorithm="yosinski", preset=9, size=16, steps=1, progress=False)
    with pytest.raises(nl.NetloupeError, match="unknown visualization algorithm"):
        nl.visualize(m, "conv2:1", algorithm="magic", size=16, steps=1, progress=False)


def test_render_runs_a_model_only_up_to_the_last_layer_it_reads():
    m, ran = tiny(), []
    handle = m.module.fc.register_forward_hook(lambda *args: ran.append(1))
    try:
        kw = dict(param=nl.optvis.pixel(16, seed=0), transforms=None, steps=3, progress=False)
        early = nl.render(m, nl.optvis.objectives.channel("conv2", 1), **kw)
        assert len(ran) == 1  # the first pass learns where the objective's last layer is
        kw["param"] = nl.optvis.pixel(16, seed=0)
        full = nl.render(m, nl.optvis.objectives.channel("conv2", 1) + 0 * nl.optvis.objectives.class_logit(0), **kw)
        assert len(ran) == 4 and torch.equal(early.history, full.history)
    finally:
        handle.remove()


# -- style transfer -------------------------------------------------------------------------------

def test_gram_against_a_hand_computation():
    a = torch.randn(2, 3, 4, 5)
    hand = torch.zeros(2, 3, 3)
    for n in range(2):
        for i in range(3):
            for j in range(3):
                hand[n, i, j] = sum(a[n, i, y, x] * a[n, j, y, x] for y in range(4) for x in range(5)) / (3 * 4 * 5)
    assert torch.allclose(gram(a), hand, atol=1e-6)
    assert torch.allclose(gram(a.permute(0, 2, 3, 1), NHWC), hand, atol=1e-6)  # channels last, same matrix
    with pytest.raises(nl.NetloupeError, match="spatial grid"):
        gram(torch.randn(2, 8))


def _loss_by_hand(m, content, styles, weights, style_weight=1e6):
    """The style loss at the content photo (its content loss is 0 there)."""
    with nl.probe(m.module, ["conv1", "conv2"], detach=True) as p:
        m.module(m.inputs(content))
        ours = {n: gram(p.activations[n]) for n in ("conv1", "conv2")}
        targets = {n: 0 for n in ours}
        for s, w in zip(styles, weights):
            m.module(m.inputs(s))
            for n in ours:
                targets[n] = targets[n] + w * gram(p.activations[n])
    return style_weight * sum(F.mse_loss(ours[n], targets[n]) for n in ours).item()


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_style_loss_decreases_from_the_content_photo_with_both_optimizers(optimizer):
    m = tiny()
    content, style = photo(0), photo(1)
    with leaves_unchanged(m.module):
        r = nl.style_transfer(m, content, style, content_layers=["conv2"], style_layers=["conv1", "conv2"],
                              steps=25, optimizer=optimizer, smoothing="none", tv_weight=0, progress=False)
    assert r.history.shape == (25, 1) and r.images.shape == (1, 3, 16, 16)
    assert r.history[0, 0].item() == pytest.approx(_loss_by_hand(m, content, [style], [1.0]), rel=1e-4)
    x = nl.optvis.photo.as_photos(content, m)  # where it starts; the default adds 3e-3 x its total variation
    tv = ((x[..., 1:, :] - x[..., :-1, :]).abs().sum() + (x[..., 1:] - x[..., :-1]).abs().sum()).item()
    default = nl.style_transfer(m, content, style, content_layers=["conv2"], style_layers=["conv1", "conv2"], steps=1,
                                progress=False)
    assert default.history[0, 0].item() == pytest.approx(r.history[0, 0].item() + 3e-3 * tv, rel=1e-4)
    assert r.history[-1, 0] < 0.5 * r.history[0, 0]
    assert r.images.min() >= 0 and r.images.max() <= 1


def test_style_blend_weights():
    m = tiny()
    content, a, b = photo(0), photo(1), photo(2)
    kw = dict(content_layers=["conv2"], style_layers=["conv1", "conv2"], steps=5, smoothing="none", tv_weight=0,
              progress=False)
    single = nl.style_transfer(m, content, a, **kw)
    assert torch.equal(nl.style_transfer(m, content, [a, b], style_weights=[1, 0], **kw).images, single.images)
    blend = nl.style_transfer(m, content, [a, b], style_weights=[0.7, 0.3], **kw)  # the Gram targets, blended
    assert blend.history[0, 0].item() == pytest.approx(_loss_by_hand(m, content, [a, b], [0.7, 0.3]), rel=1e-4)
    same = nl.style_transfer(m, content, [a, b], style_weights=[7, 3], **kw)  # normalized to sum 1
    assert torch.allclose(same.images, blend.images)


def test_style_bad_input_is_a_clear_error_and_leaves_the_model(tmp_path):
    m = tiny()
    notes = tmp_path / "notes.png"
    notes.write_text("not an image")
    kw = dict(content_layers=["conv2"], style_layers=["conv1"], steps=1, progress=False)
    with leaves_unchanged(m.module):
        for call, match in [
            (lambda: nl.style_transfer(m, str(notes), photo(1), **kw), "notes.png"),
            (lambda: nl.style_transfer(m, photo(0), photo(1), content_layers=["conv2"], style_layers=["fc"],
                                       steps=1, progress=False), "spatial grid"),
            (lambda: nl.style_transfer(m, photo(0), photo(1), style_weight=-1, **kw), "style_weight must be"),
            (lambda: nl.style_transfer(m, photo(0), [photo(1), photo(2)], style_weights=[1, -1], **kw),
             "style_weights"),
            (lambda: nl.style_transfer(m, photo(0), photo(1), optimizer="sgd", **kw), "lbfgs"),
            (lambda: nl.style_transfer(m, photo(0), photo(1), smoothing="swag", **kw), "smoothing is"),
            (lambda: nl.style_transfer(m, photo(0), photo(1), steps=1, progress=False), "no default"),
        ]:
            with pytest.raises(nl.NetloupeError, match=match):
                call()
        vector_content = nl.style_transfer(m, photo(0), photo(1), content_layers=["fc"], style_layers=["conv1"],
                                           steps=2, progress=False)
    assert torch.isfinite(vector_content.history).all()


def test_default_layers_for_vgg_and_the_default_model():
    import torchvision

    assert default_layers(torchvision.models.vgg19(weights=None)) == (
        ["features.21"], ["features.0", "features.5", "features.10", "features.19", "features.28"])
    content, style = default_layers(nl.load_model())
    names = {r.name: r.shape for r in nl.layers(nl.load_model())}
    assert all(len(names[n]) == 4 for n in content + style)  # every one has a grid
    assert [names[n][2] for n in style] == [112, 112, 56, 28, 14]  # 1/2 .. 1/16 of the 224 input, as VGG's


# -- the CLI verbs ----------------------------------------------------------------------------------

def test_cli_style_and_yosinski(tmp_path, capsys):
    out = tmp_path / "style"
    assert cli_main(["style", "chelsea", "hubble", "--steps", "1", "--quiet", "--device", "cpu",
                     "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["contact_sheet.png", "style_transfer.png"]
    assert Image.open(out / "style_transfer.png").size == (224, 224)
    assert Image.open(out / "contact_sheet.png").size[0] > 3 * 200  # content, style, result
    assert cli_main(["visualize", ":281", "--algorithm", "yosinski", "--preset", "2", "--size", "32", "--steps", "1",
                     "--quiet", "--device", "cpu", "--out", str(tmp_path / "y")]) == 0
    assert (tmp_path / "y" / "output_281.png").exists()
    assert cli_main(["style", "chelsea", str(tmp_path / "missing.jpg"), "--out", str(tmp_path / "bad")]) == 2
    assert "missing.jpg" in capsys.readouterr().err and not (tmp_path / "bad").exists()


# -- style transfer: SWAG's softmax smoothing; tensors smaller than the model's input ----------------

class TinyVGG(nn.Module):
    """VGG's shape in miniature: five conv blocks in ``features``, each ending at a max-pool."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        layers, c = [], 3
        for convs in (1, 1, 1, 2, 1):
            for _ in range(convs):
                layers += [nn.Conv2d(c, 4, 3, padding=1), nn.ReLU()]
                c = 4
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)

    def forward(self, x):
        return self.features(x).mean((2, 3))


def test_auto_smoothing_is_none_on_vgg_style_nets_and_softmax_on_others():
    vgg = nl.LoadedModel(TinyVGG().eval(), nl.Preprocess(size=32, resize=32))
    assert default_layers(vgg) == (["features.11"], ["features.0", "features.3", "features.6", "features.9",
                                                     "features.14"])
    assert smoothing_for(vgg) == "none" and smoothing_for(vgg, "softmax") == "softmax"
    assert smoothing_for(tiny()) == "softmax" and smoothing_for(tiny(), "none") == "none"
    kw = dict(steps=3, progress=False)
    for m, mode, layers in [(vgg, "none", {}),
                            (tiny(), "softmax", dict(content_layers=["conv2"], style_layers=["conv1", "conv2"]))]:
        auto = nl.style_transfer(m, photo(0), photo(1), smoothing="auto", **layers, **kw)
        assert torch.equal(auto.history, nl.style_transfer(m, photo(0), photo(1), smoothing=mode, **layers,
                                                           **kw).history)
    plain = dict(content_layers=["conv2"], style_layers=["conv1", "conv2"], **kw)  # the default: plain Gatys
    assert torch.equal(nl.style_transfer(tiny(), photo(0), photo(1), **plain).history,
                       nl.style_transfer(tiny(), photo(0), photo(1), smoothing="none", **plain).history)
    with pytest.raises(nl.NetloupeError, match="smoothing is"):
        smoothing_for(vgg, "Softmax")


def test_softmax_smoothing_is_a_softmax_over_every_entry_times_their_count():
    a = torch.randn(2, 3, 4, 5)
    s = softmax_smoothing(a)
    assert s.shape == (2, 3, 20)
    for n in range(2):
        e = torch.exp(a[n].double())
        assert torch.allclose(s[n].double(), (e / e.sum() * 60).reshape(3, 20), rtol=1e-5)
    assert torch.allclose(softmax_smoothing(a + 7.0), s, rtol=1e-4)  # a constant shift changes nothing
    assert torch.allclose(softmax_smoothing(torch.full((1, 2, 3, 3), 0.3)), torch.ones(1, 2, 9))  # flat: 1
    assert torch.allclose(softmax_smoothing(a.permute(0, 2, 3, 1), NHWC), s)  # channels last, same values


def test_softmax_smoothed_loss_at_the_start_equals_a_hand_computation():
    m = tiny()
    content, style = photo(0), photo(1)

    def smoothed_grams(image):
        with nl.probe(m.module, ["conv1", "conv2"], detach=True) as p:
            m.module(m.inputs(image))
            grams = {}
            for n in ("conv1", "conv2"):
                a = p.activations[n][0].double().reshape(p.activations[n].shape[1], -1)  # [C, P]
                e = torch.exp(a)
                s = e / e.sum() * a.numel()  # SWAG's softmax over all C * P entries, times C * P
                grams[n] = s @ s.T / a.numel()
        return grams

    ours, targets = smoothed_grams(content), smoothed_grams(style)
    hand = 1e6 * sum(((ours[n] - targets[n]) ** 2).mean() for n in ours).item()  # content loss: 0 at the start
    r = nl.style_transfer(m, content, style, content_layers=["conv2"], style_layers=["conv1", "conv2"], steps=2,
                          smoothing="softmax", tv_weight=0, progress=False)
    assert r.history[0, 0].item() == pytest.approx(hand, rel=1e-4)
    plain = nl.style_transfer(m, content, style, content_layers=["conv2"], style_layers=["conv1", "conv2"], steps=2,
                              smoothing="none", tv_weight=0, progress=False)
    assert plain.history[0, 0].item() == pytest.approx(_loss_by_hand(m, content, [style], [1.0]), rel=1e-4)
    assert abs(plain.history[0, 0].item() - hand) > 1e-3 * hand  # the two losses differ


def _small_cnn(which):
    if which == "tiny":
        return nl.LoadedModel(TinyNet().eval(), nl.Preprocess(size=96, resize=96)), "conv2"
    import torchvision

    torch.manual_seed(0)
    return nl.LoadedModel(torchvision.models.resnet18(weights=None).eval(), nl.Preprocess()), "layer2"


@pytest.mark.parametrize("which", ["tiny", "resnet18"])
@pytest.mark.parametrize("smoothing", ["none", "softmax"])
def test_a_tensor_smaller_than_the_models_input_is_compared_as_render_feeds_it(which, smoothing):
    """Regression: the targets were computed on the 64 px tensors while render fed the model their
    upsampling to its input size, so the content loss failed with a size mismatch."""
    m, layer = _small_cnn(which)
    g = torch.Generator().manual_seed(0)
    content, style = torch.rand(1, 3, 64, 64, generator=g), torch.rand(1, 3, 64, 64, generator=g)
    kw = dict(content_layers=[layer], style_layers=[layer], smoothing=smoothing, tv_weight=0, progress=False)
    r = nl.style_transfer(m, content, style, steps=3, **kw)
    assert r.images.shape == (1, 3, 64, 64) and torch.isfinite(r.history).all() and r.history[0, 0] > 0
    # with the content photo as the style too, both targets are met exactly at the start
    assert nl.style_transfer(m, content, content, steps=1, **kw).history[0, 0].item() == pytest.approx(0, abs=1e-9)
