"""Feature visualization: parameterization math, transforms, objective algebra, the render loop
(batching, batch isolation, several models, segmentation), recipes, CLI, and the
leave-the-model-as-found fixture over the zoo."""

import math

import pytest
import torch
import torch.nn as nn
from PIL import Image

import netloupe as nl
import zoo
from model_state import leaves_unchanged, scramble
from netloupe.cli import main as cli_main
from netloupe.images import Preprocess
from netloupe.optvis import objectives as obj
from netloupe.optvis import transforms as tf
from netloupe.optvis.objectives import Context
from netloupe.optvis.param import COLOR, COLOR_CORRELATION, from_image, image, pixel, spectrum_scale

KEEP_SIZE = [tf.pad(2), tf.jitter(4)]  # random shifts that keep the image size (for fixed-size models)


class TinyNet(nn.Module):
    def __init__(self, seed=0, classes=5):
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self.fc = nn.Linear(8, classes)
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(x.mean((2, 3)))


class TinyFCN(nn.Module):
    """A fully convolutional segmenter returning torchvision's {"out": [N, classes, H, W]}."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1))

    def forward(self, x):
        return {"out": self.body(x)}


def tiny(size=16, **kw):
    return nl.LoadedModel(TinyNet(**kw).eval(), Preprocess(size=size))


# -- parameterizations -------------------------------------------------------------------------

def test_spectrum_scale_matches_the_formula_for_odd_and_even_sizes():
    for h, w in [(8, 6), (7, 5), (5, 9)]:
        s = spectrum_scale(h, w)
        assert s.shape == (h, w // 2 + 1)
        for ky in range(h):
            for kx in range(w // 2 + 1):
                fy = (ky if ky <= (h - 1) // 2 else ky - h) / h
                freq = math.hypot(fy, kx / w)
                want = 1 / max(freq, 1 / max(h, w)) * math.sqrt(h * w)
                assert s[ky, kx].item() == pytest.approx(want, rel=1e-5)
    assert torch.allclose(spectrum_scale(8, 8, decay_power=2), spectrum_scale(8, 8) ** 2 / 8, rtol=1e-5)


def test_fft_param_inverse_transform_and_divisor_pin_the_image_scale():
    # a spectrum holding only the DC term gives a flat image of value DC * scale / (h * w) / 4
    h, w = 7, 5
    p = image((h, w), fft=True, decorrelate=False)
    with torch.no_grad():
        p.raw.zero_()
        p.raw[0, :, 0, 0, 0] = torch.tensor([0.1, -0.2, 0.3])
    want = torch.sigmoid(torch.tensor([0.1, -0.2, 0.3]) * max(h, w) * math.sqrt(h * w) / (h * w) / 4)
    out = p()
    assert out.shape == (1, 3, h, w)
    assert torch.allclose(out[0], want.view(3, 1, 1).expand(3, h, w), atol=1e-6)


def test_random_init_starts_near_grey_like_lucid():
    for fft in (True, False):
        x = image(128, n=2, fft=fft, decorrelate=fft, seed=0)()
        assert x.shape == (2, 3, 128, 128)
        assert (x - 0.5).abs().max() < 0.06  # sd 0.01: a faint noise around grey, not a saturated image
        assert x.std() > 1e-3


def test_colour_matrix_is_lucids_divided_by_its_largest_column_norm():
    lucid = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
    assert torch.equal(COLOR_CORRELATION, lucid)
    norms = COLOR.norm(dim=0)
    assert norms.max().item() == pytest.approx(1.0)
    assert torch.allclose(COLOR * lucid.norm(dim=0).max(), lucid)
    p = image((3, 4), fft=False, decorrelate=True)
    v = torch.tensor([1.0, -2.0, 0.5])
    with torch.no_grad():
        p.raw.copy_(v.view(1, 3, 1, 1).expand_as(p.raw))
    assert torch.allclose(p()[0, :, 1, 2], torch.sigmoid(COLOR @ v), atol=1e-6)


def test_output_range_and_odd_non_square_sizes():
    for fft, dec in [(True, True), (True, False), (False, True), (False, False)]:
        p = image((9, 14), n=3, fft=fft, decorrelate=dec, sd=5.0, seed=1)
        x = p()
        assert x.shape == (3, 3, 9, 14) and x.min() >= 0 and x.max() <= 1
        x.sum().backward()
        assert p.raw.grad is not None and p.raw.grad.abs().sum() > 0
    assert pixel(5).raw.shape == (1, 3, 5, 5)


def test_from_image_starts_exactly_at_the_photo():
    g = torch.Generator().manual_seed(0)
    photo = torch.rand(3, 11, 8, generator=g) * 0.9 + 0.05
    for fft, dec in [(True, True), (True, False), (False, True)]:
        p = from_image(photo, n=2, fft=fft, decorrelate=dec)
        x = p()
        assert x.shape == (2, 3, 11, 8)
        assert torch.allclose(x[1], photo, atol=1e-4)
    resized = from_image(nl.samples.path("coffee"), (20, 30))()
    assert resized.shape == (1, 3, 20, 30)
    with pytest.raises(nl.InputError):
        image(1)


# -- transforms --------------------------------------------------------------------------------

def _ramp(b=4, h=10, w=10):
    return torch.arange(b * 3 * h * w, dtype=torch.float32).view(b, 3, h, w) / (b * 3 * h * w)


def test_pad_adds_constant_border():
    x = _ramp()
    y = tf.pad(3)(x)
    assert y.shape == (4, 3, 16, 16)
    assert torch.equal(y[:, :, 3:13, 3:13], x)
    assert (y[:, :, :3] == 0.5).all() and (y[..., -3:] == 0.5).all()
    assert torch.equal(tf.pad(2, mode="reflect")(x)[:, :, 2:12, 2:12], x)


def test_jitter_crops_at_independent_offsets_per_element():
    x = _ramp(1).expand(16, 3, 10, 10)
    g = torch.Generator().manual_seed(0)
    y = tf.jitter(3)(x, g)
    assert y.shape == (16, 3, 7, 7)
    offsets = []
    for i in range(16):
        found = [(oy, ox) for oy in range(4) for ox in range(4) if torch.equal(y[i], x[0, :, oy:oy + 7, ox:ox + 7])]
        assert len(found) == 1
        offsets.append(found[0])
    assert len(set(offsets)) > 1
    y2 = tf.jitter(3)(x, torch.Generator().manual_seed(0))
    assert torch.equal(y, y2)  # same seed, same draws


def test_random_scale_zooms_about_the_centre_and_keeps_size():
    x = torch.zeros(2, 3, 32, 32)
    x[:, :, 12:20, 12:20] = 1.0  # an 8x8 square in the middle
    assert torch.allclose(tf.random_scale([1.0])(x), x, atol=1e-5)
    big = tf.random_scale([2.0])(x)
    small = tf.random_scale([0.5])(x)
    assert big.shape == x.shape
    assert big.sum() / x.sum() == pytest.approx(4.0, rel=0.1)
    assert small.sum() / x.sum() == pytest.approx(0.25, rel=0.15)
    assert big[0, 0, 16, 16] == 1 and big[0, 0, 9, 9] > 0.5  # grew outward from the centre


def test_random_rotate_turns_each_element_on_its_own():
    x = _ramp(1, 12, 12)
    r = tf.random_rotate([90])(x)
    assert torch.allclose(r, torch.rot90(x, 1, dims=(2, 3)), atol=1e-4)
    xs = x.expand(16, 3, 12, 12)
    out = tf.random_rotate([0, 90])(xs, torch.Generator().manual_seed(3))
    turned = [not torch.allclose(out[i], xs[i], atol=1e-4) for i in range(16)]
    assert any(turned) and not all(turned)
    nonsquare = tf.random_rotate([0])(torch.rand(2, 3, 6, 10))
    assert nonsquare.shape == (2, 3, 6, 10)


def test_standard_transforms_are_lucids_and_differentiable():
    t = tf.standard()
    x = torch.rand(3, 3, 40, 30, requires_grad=True)
    y = t(x, torch.Generator().manual_seed(0))
    assert y.shape == (3, 3, 40 + 24 - 12, 30 + 24 - 12)  # pad 12 each side, jitter 8, jitter 4
    y.sum().backward()
    assert x.grad.abs().sum() > 0
    assert "pad(12" in repr(t) and "jitter(8)" in repr(t) and "jitter(4)" in repr(t)
    assert tf.resolve(lambda im: im * 2)(torch.ones(1, 3, 2, 2)).max() == 2
    with pytest.raises(nl.NetloupeError):
        tf.resolve("fancy")


# -- objectives --------------------------------------------------------------------------------

def _ctx(act, out=None, images=None):
    key = nn.Identity()
    images = torch.rand(act.shape[0], 3, 4, 4) if images is None else images
    return Context(images, {key: {"l": act}}, {key: out}, key)


def test_objective_values_and_algebra():
    a = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)
    ctx = _ctx(a, out=torch.tensor([[1.0, 2.0], [3.0, 5.0]]))
    ch = obj.channel("l", 1)
    assert torch.allclose(ch(ctx), a[:, 1].mean((1, 2)))
    assert torch.allclose(obj.neuron("l", 2)(ctx), a[:, 2, 2, 2])
    assert torch.allclose(obj.neuron("l", 2, 1, 3)(ctx), a[:, 2, 1, 3])
    assert torch.allclose(obj.layer("l")(ctx), a.flatten(1).mean(1))
    assert torch.allclose(obj.deepdream("l")(ctx), (a ** 2).flatten(1).mean(1))
    assert torch.allclose(obj.class_logit(1)(ctx), torch.tensor([2.0, 5.0]))
    assert torch.allclose(obj.output(lambda o: o.sum(1))(ctx), torch.tensor([3.0, 8.0]))
    n0, n1 = obj.neuron("l", 0), obj.channel("l", 2)
    combo = (2 * n0 + n1 - 1) / 4 - n1 / n0 + 3 - (-n0) * 0.5
    v0, v1 = n0(ctx), n1(ctx)
    assert torch.allclose(combo(ctx), (2 * v0 + v1 - 1) / 4 - v1 / v0 + 3 + v0 * 0.5)
    assert torch.allclose((1 - n0)(ctx), 1 - v0) and torch.allclose((6 / n1)(ctx), 6 / v1)
    assert "neuron(l, 0)" in repr(combo) and "channel(l, 2)" in repr(combo)
    with pytest.raises(nl.UnitError):
        obj.channel("l", 3)(ctx)


def test_direction_objective():
    a = torch.randn(2, 4, 3, 3)
    v = torch.tensor([1.0, 0.0, -1.0, 2.0])
    dot = (a * v.view(1, 4, 1, 1)).sum(1)
    assert torch.allclose(obj.direction("l", v)(_ctx(a)), dot.flatten(1).mean(1), atol=1e-6)
    cos = dot / (a.norm(dim=1) * v.norm())
    want = (dot * cos.clamp(min=0.1) ** 2).flatten(1).mean(1)
    assert torch.allclose(obj.direction("l", v, cossim_pow=2)(_ctx(a)), want, atol=1e-5)
    with pytest.raises(nl.NetloupeError):
        obj.direction("l", [1.0, 2.0])(_ctx(a))


def test_image_objectives_tv_l2_blur():
    img = torch.zeros(2, 3, 4, 4)
    img[1, :, :, 2:] = 1.0  # element 1: one vertical edge in each of 3 channels, 4 rows
    ctx = _ctx(torch.zeros(2, 1, 1, 1), images=img)
    assert torch.allclose(obj.total_variation()(ctx), torch.tensor([0.0, 12.0]))
    assert torch.allclose(obj.l2()(ctx), torch.tensor([1e-6, 24 + 1e-6]).sqrt())
    assert torch.allclose(obj.l2(constant=0.5)(ctx), torch.full((2,), (48 * 0.25 + 1e-6) ** 0.5))
    b = obj.blur()(ctx)
    assert b[0] == 0 and b[1] > 0  # a flat image is its own blur


def test_diversity_matches_lucid_and_its_gradient_pushes_elements_apart():
    torch.manual_seed(0)
    base = torch.rand(1, 4, 5, 5)
    a = (base + 0.3 * torch.rand(3, 4, 5, 5)).requires_grad_(True)

    def gram_sims(t):
        g = torch.nn.functional.normalize(torch.einsum("bchw,bdhw->bcd", t, t).flatten(1), dim=1)
        return g @ g.T

    sims = gram_sims(a.detach())
    lucid = -(sims.sum() - sims.diagonal().sum()) / 3
    div = obj.diversity("l")(_ctx(a))
    assert div.sum().item() == pytest.approx(lucid.item(), rel=1e-5)
    div.sum().backward()
    stepped = a.detach() + 0.05 * a.grad / a.grad.norm()
    before, after = gram_sims(a.detach()), gram_sims(stepped)
    off = ~torch.eye(3, dtype=torch.bool)
    assert after[off].mean() < before[off].mean()  # ascending diversity makes elements less alike


def test_batch_isolation_gives_other_elements_zero_gradient():
    model = tiny(16)
    p = image(16, n=2, seed=0)
    r = nl.render(model, obj.channel("conv2", 3, index=0), p, steps=1, seed=0, progress=False,
                  optimizer=lambda ps: torch.optim.SGD(ps, lr=0.0))
    grad = p.raw.grad
    assert grad[0].abs().sum() > 0
    assert torch.equal(grad[1], torch.zeros_like(grad[1]))
    assert r.history.shape == (1, 2) and r.history[0, 1] == 0
    with pytest.raises(nl.NetloupeError):
        nl.render(model, obj.channel("conv2", 0, index=5), image(16, n=2), steps=1, progress=False)


# -- render ------------------------------------------------------------------------------------

def test_render_raises_the_objective_and_keeps_snapshots():
    model = tiny(16)
    r = nl.render(model, obj.channel("conv1", 1), image(16, n=1, seed=0), steps=30, lr=0.1,
                  thresholds=(10, 30), seed=0, progress=False)
    assert r.images.shape == (1, 3, 16, 16) and 0 <= r.images.min() and r.images.max() <= 1
    assert r.history.shape == (30, 1)
    assert r.history[-5:].mean() > r.history[:5].mean() + 0.1
    assert sorted(r.snapshots) == [10, 30] and torch.equal(r.snapshots[30], r.images)
    assert isinstance(r.to_pil(), Image.Image) and r.to_pil().size == (16, 16)
    again = nl.render(model, obj.channel("conv1", 1), image(16, n=1, seed=0), steps=30, lr=0.1,
                      thresholds=(10, 30), seed=0, progress=False)
    assert torch.equal(again.images, r.images)  # same seed, same result


class ViewNet(nn.Module):
    """A LeNet-style net that flattens a conv output with .view, which a channels_last tensor refuses."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).view(x.shape[0], -1))


def test_cpu_batches_go_in_channels_last_and_models_that_refuse_it_still_render():
    model = tiny(16)
    nl.render(model, obj.channel("conv1", 1), image(16, n=2, seed=0), steps=1, seed=0, progress=False)
    assert model.module.seen[-1].is_contiguous(memory_format=torch.channels_last)
    nl.render(model, obj.channel("conv1", 1), image(16, n=1, seed=0), steps=1, seed=0, progress=False)
    assert model.module.seen[-1].is_contiguous()  # one image: the usual layout (faster there)
    view_net = nl.LoadedModel(ViewNet().eval(), Preprocess(size=8))
    with leaves_unchanged(view_net.module):
        r = nl.render(view_net, obj.class_logit(0), image(8, n=2, seed=0), transforms=KEEP_SIZE, steps=20,
                      lr=0.1, seed=0, progress=False)
    assert (r.history[-3:].mean(0) > r.history[:3].mean(0)).all()


def test_small_images_are_upsampled_to_the_model_input_after_normalization():
    model = tiny(24)
    model.preprocess = Preprocess(size=24, mean=(0.2, 0.4, 0.6), std=(0.5, 0.25, 0.1))
    net = model.module
    calls = []
    r = nl.render(model, obj.channel("conv1", 0), image(10, n=2, seed=0), transforms=None, steps=1,
                  progress=False, callback=lambda step, images, values: calls.append((step, values.shape)))
    assert net.seen[-1].shape == (2, 3, 24, 24)
    assert calls == [(1, (2,))]
    x0 = image(10, n=2, seed=0)().detach()
    want = torch.nn.functional.interpolate(model.preprocess.normalize(x0), size=(24, 24), mode="bilinear",
                                           align_corners=False)
    assert torch.allclose(net.seen[0], want, atol=1e-5)
    assert r.images.shape == (2, 3, 10, 10)


def test_several_models_see_the_same_image_through_their_own_preprocess():
    a, b = tiny(16, seed=0), tiny(16, seed=1)
    a.preprocess = Preprocess(size=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    b.preprocess = Preprocess(size=16, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    objective = obj.channel("conv2", 0) + obj.channel("conv2", 5, model=b)
    p = image(16, n=2, seed=0)
    r = nl.render(a, objective, p, steps=2, seed=3, progress=False)  # b joins because the objective names it
    # each model: one forward per step (channels_last is tried on the step's own batch)
    assert len(a.module.seen) == 2 and len(b.module.seen) == 2
    for xa, xb in zip(a.module.seen, b.module.seen):
        assert torch.allclose(a.preprocess.inverse(xa), b.preprocess.inverse(xb), atol=1e-5)
        assert not torch.allclose(xa, xb)
    only_b = nl.render([a, b], obj.channel("conv2", 5, model=b.module), image(16, seed=0), steps=1,
                       progress=False)
    assert len(a.module.seen) == 2 and len(b.module.seen) == 3  # a has no objective: not run
    assert r.history.shape == (2, 2) and only_b.history.shape == (1, 1)


def test_segmentation_objective_on_a_fully_convolutional_net():
    seg = nl.LoadedModel(TinyFCN().eval(), Preprocess(size=12))
    ctx_out = {"out": torch.arange(2 * 4 * 3 * 3, dtype=torch.float32).view(2, 4, 3, 3)}
    key = nn.Identity()
    ctx = Context(torch.zeros(2, 3, 3, 3), {}, {key: ctx_out}, key)
    assert torch.allclose(obj.segmentation_class(2)(ctx), ctx_out["out"][:, 2].mean((1, 2)))
    r = nl.render(seg, obj.segmentation_class(2), image((20, 16), seed=0), transforms=KEEP_SIZE, steps=25, lr=0.2,
                  seed=0, progress=False)
    assert r.images.shape == (1, 3, 20, 16)  # larger than the input size: fed as is, no resize
    assert r.history[-1, 0] > r.history[0, 0] + 0.03
    with pytest.raises(nl.UnitError):
        nl.render(seg, obj.segmentation_class(9), image(12), steps=1, progress=False)


def test_visualize_renders_a_list_in_one_batch_one_unit_per_element():
    model = tiny(16)
    units = ["conv2:0", "conv2:1@2,3", "conv1"]
    r = nl.visualize(model, units, size=16, steps=3, seed=0, progress=False)
    # one blank image checks the units first, then 3 steps: each one forward of all 3 units
    assert [x.shape[0] for x in model.module.seen] == [1, 3, 3, 3]
    assert r.images.shape == (3, 3, 16, 16) and r.captions == units
    split = nl.visualize(model, units, size=16, steps=2, seed=0, progress=False, batch_size=2)
    assert [x.shape[0] for x in model.module.seen[4:]] == [1, 2, 2, 1, 1]  # the check; 2 for 2 steps, then 1
    assert split.images.shape == (3, 3, 16, 16) and split.history.shape == (2, 3)
    assert isinstance(r.grid(), Image.Image)
    with pytest.raises(nl.UnitError):
        nl.visualize(model, "conv9:1", steps=1, progress=False)
    with pytest.raises(nl.UnitError):
        nl.visualize(model, "conv2:99", size=16, steps=1, progress=False)


def test_recipes_on_the_default_model():
    m = nl.load_model("default")
    r = nl.visualize_class(m, ["espresso", 281], size=32, steps=2, seed=0, progress=False)
    assert r.captions == ["espresso", "tabby"] and r.images.shape == (2, 3, 32, 32)
    with pytest.raises(nl.NetloupeError):
        nl.visualize_class(m, "not a class", steps=1, progress=False)
    d = nl.visualize_diverse(m, "blocks.2:3", n=2, size=32, steps=2, seed=0, progress=False)
    assert d.images.shape == (2, 3, 32, 32) and not torch.equal(d.images[0], d.images[1])
    c = nl.visualize_channels(m, "blocks.2", range(3), size=32, steps=1, batch_size=2, progress=False)
    assert c.captions == ["blocks.2:0", "blocks.2:1", "blocks.2:2"]
    dream = nl.dream(m, nl.samples.path("chelsea"), "blocks.2", size=48, octaves=2, steps_per_octave=1, progress=False)
    assert dream.images.shape == (1, 3, 48, 48)
    pic = nl.FeatureVisualizer(m, size=(40, 30), seed=0)(act_idx=309, steps=2, progress=False)
    assert isinstance(pic, Image.Image) and pic.size == (30, 40)


def test_cli_visualize(tmp_path, capsys):
    rc = cli_main(["visualize", "blocks.2:1", ":281", "--size", "32", "--steps", "1", "--quiet",
                   "--device", "cpu", "--out", str(tmp_path)])
    assert rc == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocks.2_1.png", "contact_sheet.png", "output_281.png"]
    assert Image.open(tmp_path / "blocks.2_1.png").size == (32, 32)
    assert cli_main(["visualize", "blocks.2:1", "--diverse", "2", "--size", "32", "--steps", "1", "--quiet",
                     "--device", "cpu", "--out", str(tmp_path / "d")]) == 0
    assert len(list((tmp_path / "d").glob("blocks.2_1_*.png"))) == 2
    assert cli_main(["visualize", "nolayer:1", "--steps", "1", "--device", "cpu"]) == 2
    assert "no layer named" in capsys.readouterr().err


# -- the model is left as found ----------------------------------------------------------------

def _layer(name):
    return zoo.SPATIAL_LAYER[name]


PUBLIC_CALLS = {
    "render": lambda m, s, layer: nl.render(m, obj.channel(layer, 0) + obj.class_logit(0) - 0.01 * obj.total_variation(),
                                        image(s, n=2), transforms=KEEP_SIZE, steps=1, progress=False),
    "visualize": lambda m, s, layer: nl.visualize(m, [f"{layer}:0", f"{layer}:1"], size=s, steps=1, transforms=KEEP_SIZE,
                                              progress=False),
    "visualize_channels": lambda m, s, layer: nl.visualize_channels(m, layer, range(2), size=s, steps=1, transforms=KEEP_SIZE,
                                                                progress=False),
    "visualize_class": lambda m, s, layer: nl.visualize_class(m, [0, 1], size=s, steps=1, transforms=KEEP_SIZE,
                                                          progress=False),
    "visualize_diverse": lambda m, s, layer: nl.visualize_diverse(m, f"{layer}:0", n=2, size=s, steps=1,
                                                              transforms=KEEP_SIZE, progress=False),
    "dream": lambda m, s, layer: nl.dream(m, image(s, seed=0)().detach(), layer, octaves=1, steps_per_octave=1,
                                          transforms=KEEP_SIZE, progress=False),
    "FeatureVisualizer": lambda m, s, layer: nl.FeatureVisualizer(m, size=s, transforms=KEEP_SIZE)(
        0, steps=1, progress=False),
}


@pytest.mark.parametrize("name", zoo.ZOO)
def test_public_functions_leave_model_unchanged(name):
    module, inputs = zoo.build(name)  # built once per model (vgg11_bn is slow to build), checked per call
    size = inputs[0].shape[-1]
    loaded = nl.LoadedModel(module, Preprocess(size=size))
    scramble(module)
    for call in sorted(PUBLIC_CALLS):
        with leaves_unchanged(module):
            if name == "siamese":  # two inputs: no single image to optimize, a clear error instead
                with pytest.raises(nl.InputError):
                    PUBLIC_CALLS[call](loaded, size, _layer(name))
            else:
                r = PUBLIC_CALLS[call](loaded, size, _layer(name))
                assert r is not None, call
