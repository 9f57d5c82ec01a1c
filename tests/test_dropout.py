"""Dropout as data augmentation: convergence, BatchNorm safety, batching, seeds, p = 0, the zoo."""

import copy
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import netloupe as nl
import zoo
from model_state import leaves_unchanged, scramble
from netloupe.cli import main


class TinyDropNet(nn.Module):
    """Conv + BatchNorm features, dropout, then fc1 followed by an in-place ReLU (so a capture of
    fc1 that is not protected would be overwritten by relu(fc1))."""

    def __init__(self, p=0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.drop = nn.Dropout(p)
        self.fc1 = nn.Linear(64, 16)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(16, 5)

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(self.drop(self.features(x)))))


def tiny(p=0.5):
    torch.manual_seed(0)
    return zoo._randomize_bn(TinyDropNet(p)).eval()


def images01(k, size=16, seed=1):
    """k inputs as the model sees images in [0, 1] (ImageNet normalization)."""
    g = torch.Generator().manual_seed(seed)
    return nl.Preprocess().normalize(torch.rand(k, 3, size, size, generator=g))


def fc1_of(model, x):
    """fc1's eval-mode output computed by hand, without netloupe."""
    m = copy.deepcopy(model).eval()
    with torch.no_grad():
        return m.fc1(m.features(x))


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_small_cnn_converges_with_batchnorm_untouched(optimizer):
    model = tiny()
    x = images01(2)
    scramble(model)  # some modules in training mode, BatchNorm included: augment must not care
    with leaves_unchanged(model):  # BatchNorm running statistics included
        r = nl.augment(model, x, "fc1", n=4, seed=0, optimizer=optimizer, progress=False)
    assert r.images.shape == (2, 4, 3, 16, 16) and r.targets.shape == (2, 4, 16)
    assert r.converged.all() and (r.loss <= r.tolerance).all()
    # the default tolerance is a fraction of each sample's starting MSE
    start = (fc1_of(model, x)[:, None] - r.targets).pow(2).mean(2)
    assert torch.allclose(r.tolerance, nl.dropout.TOLERANCE_FRACTION * start, rtol=1e-4)
    # fresh results: loss and outputs are those of the returned images, in eval mode
    flat = r.images.flatten(0, 1)
    assert torch.allclose(r.loss, (fc1_of(model, flat).view(2, 4, -1) - r.targets).pow(2).mean(2), rtol=1e-4, atol=1e-8)
    ref = copy.deepcopy(model).eval()
    with torch.no_grad():
        assert torch.allclose(r.augmented_output, ref(flat).view(2, 4, -1), atol=1e-5)
        assert torch.allclose(r.original_output, ref(x), atol=1e-5)
        # the target is fc1's own output (negative entries survive the in-place ReLU after it)
        assert (r.targets < 0).any()
        assert torch.allclose(r.target_output, ref.fc2(F.relu(r.targets)), atol=1e-5)
    # x~ stays inside the valid image range
    lo, hi = nl.Preprocess().normalize(torch.zeros(1, 3, 1, 1)), nl.Preprocess().normalize(torch.ones(1, 3, 1, 1))
    assert (r.images >= lo - 1e-6).all() and (r.images <= hi + 1e-6).all()
    # a converged sample stopped at its own step; the passes count only active samples
    assert r.steps.min() < r.steps.max() or r.steps.numel() == 1
    assert r.passes == int(r.steps.sum()) + r.steps.numel() + 2 + 2 * 4  # + the eval and dropout passes


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_default_model_converges(optimizer):
    model = nl.load_model("default")
    with leaves_unchanged(model.module):
        r = nl.augment(model, nl.samples.path("chelsea"), "classifier", n=2, seed=0, optimizer=optimizer,
                       steps=300, progress=False)
    assert r.converged.all() and (r.loss <= r.tolerance).all()
    assert r.augmented_output.shape == (1, 2, 1000) and r.original_output.shape == (1, 1000)
    assert (r.strength > 0).all()


def test_batch_of_three_equals_each_alone():
    model = tiny()
    x = images01(3, seed=2)
    batch = nl.augment(model, x, "fc1", n=3, seed=7, progress=False)
    for i in range(3):
        alone = nl.augment(model, x[i:i + 1], "fc1", n=3, seed=7, progress=False)
        assert torch.equal(alone.targets[0], batch.targets[i])
        assert torch.allclose(alone.images[0], batch.images[i], atol=1e-4)
        assert torch.allclose(alone.loss[0], batch.loss[i], rtol=1e-3, atol=1e-9)
        assert torch.equal(alone.steps[0], batch.steps[i])
    # the seed fixes the masks and leaves the caller's random state alone
    state = torch.random.get_rng_state()
    again = nl.augment(model, x, "fc1", n=3, seed=7, progress=False, batch_size=2)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(again.targets, batch.targets)


def test_targets_differ_and_so_do_augmentations():
    model = tiny()
    r = nl.augment(model, images01(1), "fc1", n=4, seed=0, progress=False)
    t, im = r.targets[0], r.images[0]
    for i in range(4):
        for j in range(i):
            assert not torch.allclose(t[i], t[j]), "two dropout samples share a mask"
            assert (im[i] - im[j]).abs().max() > 1e-3, "different targets gave the same augmentation"
    assert (r.strength > 0).all()


def test_rate_zero_gives_the_input_back():
    model = tiny(p=0.0)
    x = images01(2)
    r = nl.augment(model, x, "fc1", n=3, seed=0, progress=False)
    assert torch.equal(r.images, x[:, None].expand_as(r.images))
    assert (r.loss < 1e-10).all() and (r.steps == 0).all() and r.converged.all()


def test_sweep_runs_on_a_copy_and_grows_with_rate():
    model = tiny(p=0.5)
    scramble(model)
    with leaves_unchanged(model):
        s = nl.dropout_sweep(model, images01(1), "fc1", rates=(0.0, 0.2, 0.6), n=3, seed=0, progress=False)
    assert model.drop.p == 0.5
    assert s.strength.shape == (3, 1, 3)
    assert (s.strength[0] == 0).all()
    mean = s.strength.flatten(1).mean(1)
    assert mean[2] > mean[1] > 0
    assert s.to_pil().size[0] > 100
    with pytest.raises(nl.NetloupeError):
        nl.dropout_sweep(model, images01(1), "fc1", rates=(1.5,))


def test_result_unpacks_like_dropviz_and_draws(tmp_path):
    r = nl.augment(tiny(), images01(2), "fc1", n=2, seed=0, progress=False)
    images, (original, augmented) = r
    assert images is r.images and original is r.original_output and augmented is r.augmented_output
    pic = r.to_pil(cell=32)
    assert pic.size[0] >= 3 * 32 and pic.size[1] >= 4 * 32  # 2 inputs x (augmentations + differences) rows
    assert r.save(tmp_path / "grid.png").exists()


def test_probe_reports_dropout_rates():
    model = tiny(p=0.25)
    with nl.probe(model, stochastic=True) as p:
        model(images01(1))
    assert p.dropout_rates == [0.25]
    with nl.probe(model) as p:
        model(images01(1))
    assert p.dropout_rates == []
    default = zoo._default()
    with nl.probe(default, stochastic=True) as p, torch.no_grad():
        default(torch.zeros(1, 3, 32, 32))
    assert p.dropout_rates == [0.2]  # the default model's functional F.dropout


def test_clear_errors():
    model = tiny()
    x = images01(1)
    with pytest.raises(nl.NetloupeError, match="optimizer"):
        nl.augment(model, x, "fc1", optimizer="sgd")
    with pytest.raises(nl.UnitError):
        nl.augment(model, x, "fc9")
    with pytest.raises(nl.NetloupeError, match="no dropout acts before"):
        nl.augment(model, x, "features.0", n=2, progress=False)


def test_cli(tmp_path, capsys):
    assert main(["dropout", "chelsea", "--layer", "classifier", "-n", "2", "--steps", "2",
                 "--out", str(tmp_path), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.count("sample ") == 2 and "top-1" in out and "loss" in out
    assert (tmp_path / "dropout_grid.png").exists()
    assert main(["dropout", "chelsea", "--layer", "nope", "--device", "cpu"]) == 2


# layer per zoo model, and whether augment / sweep apply (False: a clear NetloupeError)
ZOO_CASES = {
    "default": ("classifier", True, True),
    "resnet18": ("fc", False, False),           # no dropout at all
    "densenet121": ("classifier", True, True),  # drop_rate 0.0: augmentations equal the input
    "googlenet": ("fc", True, True),
    "vgg11_bn": ("classifier.3", True, True),
    "mobilenet_v3_small": ("classifier.3", True, True),
    "vit": ("encoder.ln", True, True),          # dropout modules with p = 0: augmentations equal the input
    "functional": ("fc", False, False),
    "reused_relu": ("fc", False, False),
    "siamese": ("head", False, False),          # two inputs: not an image classifier
    # timm transformers: every dropout rate 0 (augmentations equal the input), token and NHWC layers
    "timm_vit": ("blocks.1", True, True), "deit": ("blocks.1", True, True), "vit_registers": ("blocks.1", True, True),
    "swin": ("layers.1", True, True),           # NHWC; its drop path (rate 0.1) acts even at dropout rate 0
    "convnext": ("head.fc", True, True), "mixer": ("blocks.1", True, True),
}
RATES_ZERO = {"vit", "densenet121", "timm_vit", "deit", "vit_registers", "convnext", "mixer"}


@pytest.mark.parametrize("call", ["augment", "sweep"])
@pytest.mark.parametrize("name", zoo.ZOO)
def test_zoo_leaves_model_unchanged(name, call):
    model, inputs = zoo.build(name)
    layer, ok_augment, ok_sweep = ZOO_CASES[name]
    # Adam moves every sample at every step, so "strength > 0" below shows that the run did something
    kw = dict(n=2, steps=2, seed=0, progress=False, optimizer="adam")
    run = {"augment": lambda: nl.augment(model, inputs[0], layer, **kw),
           "sweep": lambda: nl.dropout_sweep(model, inputs[0], layer, rates=(0.0, 0.5), **kw)}[call]
    ok = ok_augment if call == "augment" else ok_sweep
    scramble(model)
    with leaves_unchanged(model), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # two steps do not converge; that warning is expected here
        if not ok:
            with pytest.raises(nl.NetloupeError):
                run()
            return
        result = run()
    if call == "augment":
        assert result.images.shape == (len(inputs[0]), 2) + inputs[0].shape[1:]
        if name in RATES_ZERO:
            assert torch.equal(result.images, inputs[0][:, None].expand_as(result.images))
        else:
            assert (result.strength > 0).all()
    else:
        if name != "swin":  # stochastic depth is not a dropout rate the sweep sets
            assert (result.strength[0] == 0).all()


def test_lbfgs_steps_stay_bounded_where_the_loss_is_flat():
    # a random-weight MobileNetV3 has a nearly flat, noisy loss: L-BFGS's curvature estimate
    # once sent x~ half the pixel range away for no gain; each step is capped at 4 lr
    model, inputs = zoo.build("mobilenet_v3_small")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 5 steps do not converge
        r = nl.augment(model, inputs[0], "classifier.3", n=2, steps=5, seed=0, progress=False)
    assert r.optimizer == "lbfgs"
    moved = (r.images - r.inputs[:, None]).abs().flatten(2).max(2).values
    assert (moved <= 5 * nl.dropout._LBFGS_MAX_STEP * r.lr * (1 + 1e-5)).all()
