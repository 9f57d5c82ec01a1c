"""Recipes from photos: DeepDream's octaves and detail carry-over, feature inversion, caricatures
(the sign for a negative cosine), adversarial twins, the masked param, user transforms, the
command-line verbs and bad inputs."""

import pytest
import torch
import torch.nn as nn
from PIL import Image
from torchvision.transforms import v2

import netloupe as nl
from model_state import leaves_unchanged, scramble
from netloupe.cli import main as cli_main
from netloupe.optvis import objectives as obj
from netloupe.optvis import transforms as tf
from netloupe.optvis.objectives import Context
from netloupe.optvis.param import image, masked, pixels
from netloupe.optvis.photo import as_photos


class Spy(nn.Module):
    """A small conv net that records the shape of every batch it is given."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.fc = nn.Linear(8, 5)
        self.seen = []

    def forward(self, x):
        self.seen.append(tuple(x.shape))
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(x.mean((2, 3)))


def spy(size=16):
    return nl.LoadedModel(Spy().eval(), nl.Preprocess(size=size, resize=None), list("abcde"), "spy")


def smooth_photo(h=16, w=16, seed=0, n=None):
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n or 1, 3, 4, 4, generator=g)
    t = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False) * 0.6 + 0.2
    return t if n else t[0]


# an objective whose gradient is known: the mean pixel (times a weight per element), so that each
# normalized step adds exactly lr to every pixel; the model still runs (0 times a channel)
def brightness(weights=(1.0,)):
    w = torch.tensor(weights)
    return obj.Objective(lambda ctx: ctx.images.flatten(1).mean(1) * w, "brightness") + 0 * obj.channel("conv1", 0)


# -- DeepDream ---------------------------------------------------------------------------------

def test_dream_runs_octaves_smallest_first_and_carries_the_detail_up():
    m = spy()
    photo = smooth_photo(40, 30, n=2)
    steps, lr = 3, 0.01
    r = nl.dream(m, photo, brightness((100.0, 1.0)), octaves=3, octave_scale=1.5, steps_per_octave=steps, lr=lr,
                 seed=0, progress=False)
    sizes = [(18, 13), (27, 20), (40, 30)]  # 40 / 1.5 ** 2 = 17.8, 30 / 2.25 = 13.3; smaller than the model's 16 x 16
    # one pass at the model's input size measures its stride (the smallest octave is checked against it),
    # then per octave its steps, all at the octave's own size (no upsampling)
    assert m.module.seen == [(1, 3, 16, 16)] + [(2, 3, *s) for s in sizes for _ in range(steps)]
    assert [tuple(v.shape[2:]) for _, v in sorted(r.snapshots.items())] == sizes and sorted(r.snapshots) == [3, 6, 9]
    # every normalized step adds lr to every pixel of each image, whatever its gradient's scale (100 vs 1),
    # and the detail carried up through the octaves adds up: 3 octaves x 3 steps
    assert torch.allclose(r.images, photo + 3 * steps * lr, atol=1e-5)
    assert torch.allclose(r.snapshots[3], nl.optvis.photo._resized(photo, sizes[0]) + steps * lr, atol=1e-5)
    assert r.images.shape == photo.shape and r.history.shape == (9, 2)
    one = nl.dream(m, photo[0], brightness(), octaves=3, octave_scale=1.5, steps_per_octave=steps, lr=lr, seed=0,
                   progress=False)
    assert torch.allclose(one.images[0], r.images[0], atol=1e-6)
    with pytest.raises(nl.NetloupeError, match="would be 1x1 px, below 2 px .spy.s total stride"):
        nl.dream(m, photo, brightness(), octaves=6, octave_scale=2.0, steps_per_octave=1, progress=False)


def test_dream_scales_a_huge_photo_down_to_its_max_side(recwarn):
    """An 8000 x 8000 photo would need gigabytes per octave; dream works at max_side (1024 by default)
    and says so, as the other recipes work at the model's input size."""
    m = spy()
    huge = Image.new("RGB", (8000, 6000), (120, 60, 30))
    r = nl.dream(m, huge, "conv2", octaves=2, steps_per_octave=1, progress=False)
    assert r.images.shape == (1, 3, 768, 1024) and max(m.module.seen[-1][2:]) == 1024
    assert any("scaled down to 1024x768 (max_side=1024)" in str(w.message) for w in recwarn)
    assert nl.dream(m, huge, "conv2", octaves=1, steps_per_octave=1, max_side=64, progress=False).images.shape[-2:] == (48, 64)
    with pytest.raises(nl.NetloupeError, match="max_side"):
        nl.dream(m, huge, "conv2", max_side=0)


def test_dream_clips_to_the_range_and_saturated_pixels_still_move():
    m = spy()
    photo = torch.ones(3, 16, 16)
    up = nl.dream(m, photo, brightness(), octaves=1, steps_per_octave=2, lr=0.1, progress=False)
    assert torch.equal(up.images[0], photo)  # stays at 1, never beyond
    down = nl.dream(m, photo, -1 * brightness(), octaves=1, steps_per_octave=2, lr=0.1, progress=False)
    assert torch.allclose(down.images[0], photo - 0.2, atol=1e-6)  # white pixels get a gradient and come back


def test_dream_a_batch_of_photos_equals_single_calls_with_the_same_seed():
    m = spy()
    batch = smooth_photo(20, 24, n=3)
    kw = dict(octaves=2, steps_per_octave=3, jitter=4, seed=5, progress=False)
    together = nl.dream(m, batch, "conv2", **kw)
    for i in range(3):
        alone = nl.dream(m, batch[i], "conv2", **kw)
        assert torch.allclose(together.images[i], alone.images[0], atol=1e-5)
    assert not torch.allclose(together.images, batch, atol=1e-3)  # it did dream
    assert together.captions == ["dream deepdream(conv2)"] * 3 and together.grid().size[0] > 3 * 24


def test_dream_objectives_from_layers_units_and_classes():
    m = spy()
    photo = smooth_photo()
    for what, name in [("conv1", "deepdream(conv1)"), ("conv1:3", "channel(conv1, 3)"), (2, "class_logit(2)"),
                       (obj.neuron("conv2", 1), "neuron(conv2, 1)")]:
        r = nl.dream(m, photo, what, octaves=1, steps_per_octave=4, progress=False)
        assert r.objective == name
        assert r.history[-1, 0] > r.history[0, 0]  # the objective rose
    with pytest.raises(nl.UnitError, match="layer with a grid"):
        nl.dream(m, photo, "fc", octaves=1, steps_per_octave=1, progress=False)


def test_masked_param_leaves_outside_pixels_bit_identical():
    photo = smooth_photo(12, 10)
    mask = torch.zeros(12, 10)
    mask[3:8, 2:6] = 1.0
    mask[8, 2:6] = 0.5  # a soft edge
    p = masked(photo, mask, image((12, 10), seed=0))
    x = p()
    outside = (mask == 0).expand(3, -1, -1)
    assert torch.equal(x[0][outside], photo[outside])
    assert torch.allclose(x[0][:, 8, 2:6], 0.5 * p.inner()[0][:, 8, 2:6] + 0.5 * photo[:, 8, 2:6])
    x.sum().backward()
    grad = p.inner.raw.grad  # FFT coefficients: every one feeds the inside
    assert grad.abs().sum() > 0
    m = spy()
    r = nl.dream(m, photo, "conv1", mask=mask, octaves=2, steps_per_octave=3, progress=False)
    assert torch.equal(r.images[0][outside], photo[outside]) and not torch.equal(r.images[0], photo)
    inv = nl.invert(m, photo, ["conv1"], steps=3, mask=mask, progress=False)
    car = nl.caricature(m, photo, ["conv1", "conv2"], steps=3, mask=mask, progress=False)
    for images in (inv.images, car.images):
        for im in images:
            assert torch.equal(im[outside], photo[outside])


# -- feature inversion -------------------------------------------------------------------------

def test_inversion_matches_the_photos_activations_several_layers_in_one_batch():
    m = spy()
    photo = smooth_photo()
    m.module.seen.clear()
    r = nl.invert(m, photo, ["conv1", "conv2"], steps=150, lr=0.1, tv_weight=0.05, range_weight=0.0, seed=0,
                  progress=False)
    assert set(m.module.seen[1:]) == {(2, 3, 16, 16)}  # the photo's forward, then both layers in each step
    assert r.layers == ["conv1", "conv2"] and r.images.shape == (2, 3, 16, 16)
    assert (r.errors < 0.1).all(), r.errors
    assert r.history[0].max() < -0.5  # from noise, far off at first
    with nl.probe(m.module, ["conv1", "conv2"], detach=True) as p, torch.no_grad():
        m.module(m.preprocess.normalize(torch.cat([photo[None], r.images])))
    for i, name in enumerate(r.layers):  # the reported error is the relative L2 distance of the activations
        a = p.activations[name]
        assert r.errors[i].item() == pytest.approx(((a[i + 1] - a[0]).norm() / a[0].norm()).item(), rel=1e-4)
    assert r.captions[0].startswith("conv1\nerror 0.0") and r.grid().size[0] > 3 * 16


def test_match_objective_is_minus_the_relative_distance():
    a = torch.randn(2, 4, 3, 3)
    target = torch.randn(4, 3, 3)
    key = nn.Identity()
    ctx = Context(torch.zeros(2, 3, 4, 4), {key: {"l": a}}, {}, key)
    want = -(a - target).flatten(1).norm(dim=1) / target.norm()
    assert torch.allclose(obj.match("l", target)(ctx), want)
    grey = Context(torch.full((1, 3, 2, 2), 0.5), {}, {}, key)
    assert obj.alpha_norm()(grey).item() == 0 and obj.alpha_norm()(Context(torch.ones(1, 3, 2, 2), {}, {}, key)) == 1
    with pytest.raises(nl.NetloupeError, match="target has shape"):
        obj.match("l", torch.zeros(4, 2, 2))(ctx)


# -- caricatures and adversarial twins ---------------------------------------------------------

def test_caricature_objective_keeps_its_sign_for_a_negative_cosine():
    torch.manual_seed(0)
    a0 = torch.rand(4, 3, 3) + 0.1  # the photo's activations
    a = (-a0 + 0.05 * torch.randn(4, 3, 3))[None].requires_grad_(True)  # a rendering pointing the other way
    key = nn.Identity()
    ctx = Context(torch.zeros(1, 3, 4, 4), {key: {"l": a}}, {}, key)
    dot = (a * a0).sum()
    cos = dot / (a.norm() * a0.norm())
    assert cos < -0.9
    value = obj.direction("l", a0, cossim_pow=1.0)(ctx)
    assert value.item() == pytest.approx(0.1 * dot.item(), rel=1e-5) and value < 0  # the 0.1 floor, not cos
    assert (dot * cos).item() > 0  # torch-dreams's dot * cos: positive, so ascent would push further away
    value.sum().backward()
    assert (a.grad * a0).sum() > 0  # ascent turns the rendering toward the photo's activations
    b = (a0 + 0.1 * torch.rand(4, 3, 3))[None]
    aligned = Context(torch.zeros(1, 3, 4, 4), {key: {"l": b}}, {}, key)
    d, c = (b * a0).sum(), (b * a0).sum() / (b.norm() * a0.norm())
    assert obj.direction("l", a0, cossim_pow=2.0)(aligned).item() == pytest.approx((d * c ** 2).item(), rel=1e-5)


def test_adversarial_twins_stay_in_the_ball_and_reach_the_target():
    m = spy()
    photo = smooth_photo(n=2)
    with torch.no_grad():
        before = m.module(m.preprocess.normalize(photo)).argmax(1)
        others = m.module(m.preprocess.normalize(torch.rand(64, 3, 16, 16, generator=torch.Generator().manual_seed(1))))
    target = int(next(c for c in others.argmax(1).tolist() if c != before[0]))  # a class some picture gets
    r = nl.adversarial(m, photo, target, eps=0.8, steps=40, seed=0, progress=False)
    assert (r.images - photo).abs().max() <= 0.8 + 1e-6 and r.images.min() >= 0 and r.images.max() <= 1
    assert torch.equal(r.before, before) and r.target == target
    assert r.fooled.all() and (r.after == target).all()
    assert r.history.shape == (40, 2) and (r.history[-1] > r.history[0]).all()
    small = nl.adversarial(m, photo, eps=0.01, steps=3, seed=0, progress=False)
    assert (small.images - photo).abs().max() <= 0.01 + 1e-6 and small.target is None


def test_caricature_of_a_photo_and_its_twin_in_one_batch_laid_out_by_layer():
    m = spy()
    photo = smooth_photo()
    m.module.seen.clear()
    r = nl.caricature(m, photo, ["conv1", "conv2"], adversarial=True, eps=0.1, attack_steps=2, steps=4, seed=0,
                      progress=False)
    assert r.captions == ["conv1", "conv1 twin", "conv2", "conv2 twin"]
    assert r.photos.shape == (2, 3, 16, 16) and r.photo_captions[0].startswith("photo: ")
    assert r.photo_captions[1].startswith("twin: ")
    assert (2 * 2, 3, 16, 16) in m.module.seen  # four renderings, one batch
    sheet = r.grid()
    assert sheet.size[0] < 3 * 20 and sheet.size[1] > 3 * 16  # two columns, a row per layer under the photos
    plain = nl.caricature(m, photo, "conv2", steps=4, seed=0, progress=False)
    assert plain.captions == ["conv2"] and plain.history[-1, 0] > plain.history[0, 0]


# -- user transforms ---------------------------------------------------------------------------

def test_render_takes_torchvision_v2_transforms_mixed_with_netloupes():
    m = spy()
    torch.manual_seed(0)
    mixed = [tf.pad(2), v2.RandomRotation(10), lambda x: x.flip(3), tf.jitter(4), v2.ColorJitter(brightness=0.1)]
    r = nl.render(m, obj.channel("conv1", 0), image(16, n=2, seed=0), transforms=mixed, steps=5, progress=False)
    assert r.history[-1].mean() > r.history[0].mean()
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(tf.resolve([lambda t: t.flip(3), None, "standard"])(x, torch.Generator().manual_seed(0)),
                       tf.standard()(x.flip(3), torch.Generator().manual_seed(0)))
    assert tf.fit(6, 10)(x).shape == (2, 3, 6, 10) and torch.equal(tf.fit(6, 6)(x), x[:, :, 1:7, 1:7])


# -- bad inputs --------------------------------------------------------------------------------

def test_bad_inputs_are_clear_errors_and_leave_the_model_as_found(tmp_path):
    m = spy()
    scramble(m.module)
    photo = smooth_photo()
    text = tmp_path / "notes.txt"
    text.write_text("not a picture")
    bad = [
        (lambda: nl.dream(m, str(text), "conv1"), "cannot read"),
        (lambda: nl.invert(m, torch.rand(3, 16, 16) * 3, "conv1"), r"RGB in \[0, 1\]"),
        (lambda: nl.invert(m, torch.rand(4, 16), "conv1"), "photo tensor is"),
        (lambda: nl.dream(m, photo, "conv1", mask=torch.ones(8, 8)), "mask is 8x8 but the image it masks is 16x16"),
        (lambda: nl.caricature(m, photo, "conv1", mask=torch.ones(3, 5, 5)), "mask is"),
        (lambda: nl.dream(m, photo, "conv1", octaves=0), "octaves must be an integer >= 1"),
        (lambda: nl.dream(m, photo, "conv1", octaves=9), "smallest of 9 octaves"),
        (lambda: nl.dream(m, photo, "fc", octaves=1, steps_per_octave=1, progress=False), "layer with a grid"),
        (lambda: nl.invert(m, photo, "conv1", tv_weight=-1), "tv_weight must be a number >= 0"),
        (lambda: nl.caricature(m, photo, "conv1", cossim_pow=-1), "cossim_pow must be"),
        (lambda: nl.adversarial(m, photo, eps=-0.1), "eps must be"),
        (lambda: nl.invert(m, photo, "conv9"), "conv9"),
        (lambda: nl.invert(m, photo, "conv1:2"), "takes whole layers"),
        (lambda: nl.invert(m, [photo, photo], "conv1"), "takes one photo"),
        (lambda: nl.dream(m, [photo, smooth_photo(8, 8)], "conv1"), "different sizes"),
    ]
    with leaves_unchanged(m.module):
        for call, message in bad:
            with pytest.raises(nl.NetloupeError, match=message):
                call()
    assert list(tmp_path.iterdir()) == [text]


# -- the command line --------------------------------------------------------------------------

TINY = '''
import torch.nn as nn
import netloupe as nl


def tiny():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
    return nl.LoadedModel(net.eval(), nl.Preprocess(size=32, resize=36), ["a", "b", "c", "d", "e"], "tiny")
'''


def test_cli_dream_invert_caricature_write_pngs_and_a_contact_sheet(tmp_path, monkeypatch, capsys):
    (tmp_path / "tinymodels.py").write_text(TINY)
    monkeypatch.syspath_prepend(str(tmp_path))
    small = tmp_path / "small.png"
    Image.fromarray((smooth_photo(40, 48).permute(1, 2, 0).numpy() * 255).astype("uint8")).save(small)
    common = ["--model", "tinymodels:tiny", "--quiet"]
    assert cli_main(["dream", str(small), "--layer", "0", "--octaves", "2", "--steps-per-octave", "2", "--out",
                     str(tmp_path / "d"), *common]) == 0
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["contact_sheet.png", "small_dream.png"]
    assert Image.open(tmp_path / "d" / "small_dream.png").size == (48, 40)  # the photo's own size
    assert cli_main(["invert", str(small), "--layers", "0,2", "--steps", "2", "--out", str(tmp_path / "i"),
                     *common]) == 0
    assert sorted(p.name for p in (tmp_path / "i").iterdir()) == ["contact_sheet.png", "small_0.png", "small_2.png"]
    assert "relative activation error" in capsys.readouterr().out
    assert cli_main(["caricature", str(small), "--layers", "0,2", "--adversarial", "--steps", "2", "--out",
                     str(tmp_path / "c"), *common]) == 0
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [
        "contact_sheet.png", "small_0.png", "small_0_twin.png", "small_2.png", "small_2_twin.png", "small_twin.png"]
    assert cli_main(["dream", str(small), "--layer", "0", "--octaves", "0", *common]) == 2
    assert cli_main(["invert", str(small), "--layers", "9", "--out", str(tmp_path / "bad"), *common]) == 2
    assert not (tmp_path / "bad").exists()
    assert as_photos(str(small)).shape == (1, 3, 40, 48)
    assert pixels(as_photos(str(small)))().shape == (1, 3, 40, 48)
