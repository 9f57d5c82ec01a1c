"""netloupe.stats: scans checked against planted structure and brute force, receptive fields
against analytic values, patches fed back through the model, persistence, report, CLI, and a
real two-process torchrun scan against the one-process scan."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

import netloupe as nl
from netloupe.cli import main
from netloupe.stats import ScanResult
from netloupe.stats.report import _correlation_figure, histogram_grid, histogram_pages
from netloupe.stats.result import _histogram_figure

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _random_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 3, stride=2, padding=1),
                         nn.ReLU()).eval()


# -- planted structure -----------------------------------------------------------------------

def _planted():
    """A conv layer whose channel 0 averages input channel 0 over 3x3, channels 1 and 2 are
    identical, and channel 3 is dead by construction (zero weights, negative bias)."""
    conv = nn.Conv2d(3, 4, 3, padding=1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[0, 0] = 1 / 9
        torch.manual_seed(3)
        conv.weight[1] = torch.randn(3, 3, 3)
        conv.weight[2] = conv.weight[1]
        conv.bias[1] = conv.bias[2] = 0.1
        conv.bias[3] = -1.0
    return nn.Sequential(conv, nn.ReLU()).eval()


def test_planted_structure_is_found():
    model = _planted()
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 12, 12, generator=g) * 0.5 for _ in range(40)]
    images[17][0, 4:7, 7:10] = 1.0  # the only place where channel 0 reaches 1.0: image 17 at (5, 8)
    result = nl.scan(model, images, ["1"], top_k=3, bins=20, batch_size=6, progress=False)
    s = result["1"]
    assert s.dead_channels == [3] and s.dead_share == 0.25
    assert s.correlation[1, 2].item() == pytest.approx(1.0, abs=1e-12)
    assert torch.isnan(s.correlation[3]).all()  # a constant channel has no correlation
    assert s.top_images[0, 0].item() == 17 and s.top_positions[0, 0].tolist() == [5, 8]
    assert s.top_values[0, 0].item() == pytest.approx(1.0, abs=1e-6)
    assert result.count == 40 and result.skipped == []
    # the clustered order puts the identical pair side by side
    order = s.order.tolist()
    assert abs(order.index(1) - order.index(2)) == 1


# -- brute force -----------------------------------------------------------------------------

def _brute(model, images, layer):
    """Per-image spatial maxima [N, C] and flat argmax of a layer, all images in one pass."""
    with nl.probe(model, [layer], detach=True) as p, torch.no_grad():
        model(torch.stack(images))
    a = p.activations[layer].flatten(2)
    return a.max(2).values.double(), a.argmax(2), p.activations[layer].shape[-1]


def _expected_ranking(v, pos, width, k, largest):
    ids, vals, where = [], [], []
    for c in range(v.shape[1]):
        order = sorted(range(v.shape[0]), key=lambda i: ((-1 if largest else 1) * v[i, c].item(), i))[:k]
        ids.append(order)
        vals.append([v[i, c].item() for i in order])
        where.append([[pos[i, c].item() // width, pos[i, c].item() % width] for i in order])
    return torch.tensor(ids), torch.tensor(vals, dtype=torch.float64), torch.tensor(where)


@pytest.mark.parametrize("loader", ["list", "shuffled", "distributed"])
def test_scan_matches_brute_force_over_200_images(loader):
    model = _random_net().double()
    g = torch.Generator().manual_seed(1)
    # growing scales widen every channel's range batch after batch, so histograms coarsen repeatedly
    images = [(torch.randn(3, 10, 10, generator=g) * (0.05 + i / 40)).double() for i in range(200)]
    data = images
    if loader == "shuffled":
        data = torch.utils.data.DataLoader(images, batch_size=7, shuffle=True, generator=g)
    elif loader == "distributed":  # a rank's shard of 2; the scan still takes every image once
        sampler = torch.utils.data.DistributedSampler(images, num_replicas=2, rank=1)
        data = torch.utils.data.DataLoader(images, batch_size=9, sampler=sampler)
    result = nl.scan(model, data, ["1", "2"], top_k=5, bottom_k=3, bins=12, batch_size=16, progress=False)
    for layer in ("1", "2"):
        s = result[layer]
        v, pos, width = _brute(model, images, layer)
        vn = v.numpy()
        for k, largest, (ids, vals, where) in ((5, True, (s.top_images, s.top_values, s.top_positions)),
                                              (3, False, (s.bottom_images, s.bottom_values, s.bottom_positions))):
            e_ids, e_vals, e_where = _expected_ranking(v, pos, width, k, largest)
            assert torch.equal(ids, e_ids)
            assert torch.equal(where, e_where)
            torch.testing.assert_close(vals, e_vals, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(s.mean.numpy(), vn.mean(0), rtol=1e-10)
        np.testing.assert_allclose(s.std.numpy(), vn.std(0), rtol=1e-9)
        np.testing.assert_array_equal(s.min.numpy(), vn.min(0))
        np.testing.assert_array_equal(s.max.numpy(), vn.max(0))
        np.testing.assert_array_equal(s.never_positive.numpy(), (vn <= 0).mean(0))
        ok = vn.std(0) > 0
        np.testing.assert_allclose(s.correlation.numpy()[np.ix_(ok, ok)], np.corrcoef(vn.T)[np.ix_(ok, ok)],
                                   atol=1e-10)
        for c in range(s.channels):
            edges, counts = s.histogram(c)
            assert 6 <= len(counts) <= 24  # between bins/2 and 2 * bins
            assert counts.sum() == 200
            below = np.searchsorted(edges, vn[:, c], side="right") - 1  # half-open bins [e_j, e_j+1)
            np.testing.assert_array_equal(np.bincount(below, minlength=len(counts)), counts)


def test_histogram_bins_are_exact_at_their_edges():
    """Values that lie exactly on power-of-two edges land in the bin they open."""
    model = nn.Sequential(nn.Flatten(), nn.Identity())
    values = [0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.5, 2.0]
    images = [torch.full((1, 1, 1), x) for x in values]
    s = nl.scan(model, images, ["1"], bins=4, batch_size=3, progress=False)["1"]
    edges, counts = s.histogram(0)
    assert np.all(np.log2(np.diff(edges)) == np.round(np.log2(np.diff(edges))))  # power-of-two widths
    for x in set(values):
        j = int(np.searchsorted(edges, x, side="right")) - 1
        assert edges[j] <= x < edges[j + 1]
    assert counts[int(np.searchsorted(edges, 1.0, side="right")) - 1] >= 2


# -- data sources ----------------------------------------------------------------------------

def _write_images(folder: Path, n: int, seed=0):
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        sub = folder / ("a" if i % 2 else "b" / Path("deep"))
        sub.mkdir(parents=True, exist_ok=True)
        suffix = (".png", ".jpg", ".bmp", ".webp")[i % 4]
        path = sub / f"img{i:02d}{suffix}"
        Image.fromarray(rng.integers(0, 255, (18 + i % 3, 20, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _small_model():
    return nl.load_model(_random_net(), preprocess=nl.Preprocess(size=16, resize=16))


def test_folder_scan_skips_corrupt_files_with_a_warning(tmp_path):
    _write_images(tmp_path, 7)
    (tmp_path / "a" / "broken.png").write_bytes(b"not a png at all")
    (tmp_path / "notes.txt").write_text("ignored: not an image suffix")
    with pytest.warns(UserWarning, match="broken.png"):
        result = nl.scan(_small_model(), tmp_path, "1,3", top_k=2, batch_size=3, progress=False)
    assert result.count == 7 and len(result.ids) == 8
    assert [Path(i).name for i, _ in result.skipped] == ["broken.png"]
    assert set(result.layers) == {"1", "3"}


def test_list_files_and_lists(tmp_path):
    paths = _write_images(tmp_path / "imgs", 5)
    listing = tmp_path / "list.txt"
    listing.write_text("# images, Caffe style with labels\n" +
                       "\n".join(f"{p.relative_to(tmp_path)} {i}" for i, p in enumerate(paths)) + "\n")
    model = _small_model()
    from_list = nl.scan(model, listing, ["1"], top_k=2, num_workers=2, progress=False)  # read in worker processes
    from_paths = nl.scan(model, [str(p) for p in paths], ["1"], top_k=2, progress=False)
    pils = [Image.open(p).convert("RGB") for p in paths]
    from_pil = nl.scan(model, pils, ["1"], top_k=2, progress=False)
    for r in (from_list, from_pil):
        assert torch.equal(r["1"].top_images, from_paths["1"].top_images)
        torch.testing.assert_close(r["1"].mean, from_paths["1"].mean)
    assert from_list.ids == [str(p) for p in paths]


def test_empty_and_unreadable_sources_are_errors(tmp_path):
    model = _small_model()
    (tmp_path / "empty").mkdir()
    for data in (tmp_path / "empty", [], tmp_path / "missing"):
        with pytest.raises(nl.InputError):
            nl.scan(model, data, ["1"], progress=False)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.jpg").write_bytes(b"junk")
    with pytest.raises(nl.InputError, match="none of the 1 images"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nl.scan(model, tmp_path / "bad", ["1"], progress=False)
    with pytest.raises(nl.UnitError):
        nl.scan(model, tmp_path / "bad", ["nope"], progress=False)


def test_siamese_pair_list_gives_stats_per_branch(tmp_path):
    import zoo

    model, _ = zoo.build("siamese")
    loaded = nl.load_model(model, preprocess=nl.Preprocess(size=16, resize=16))
    a = _write_images(tmp_path / "a", 6, seed=1)
    b = _write_images(tmp_path / "b", 6, seed=2)
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("".join(f"{x}\t{y}\n" for x, y in zip(a, b)))
    result = nl.scan(loaded, pairs, ["branch.1"], top_k=3, progress=False)
    assert set(result.layers) == {"branch.1#0", "branch.1#1"}
    branch = nl.load_model(model.branch, preprocess=loaded.preprocess)
    for key, side in (("branch.1#0", a), ("branch.1#1", b)):
        alone = nl.scan(branch, [str(p) for p in side], ["1"], top_k=3, progress=False)["1"]
        assert torch.equal(result[key].top_images, alone.top_images)
        torch.testing.assert_close(result[key].mean, alone.mean)
    # a to_inputs= callable builds the pair from one sample of another shape
    swapped = nl.scan(loaded, [{"left": str(x), "right": str(y)} for x, y in zip(a, b)], ["branch.1"], top_k=3,
                      to_inputs=lambda s: (s["right"], s["left"]), progress=False)
    assert torch.equal(swapped["branch.1#0"].top_images, result["branch.1#1"].top_images)
    patches = nl.top_patches(result, "branch.1#1", 0)
    assert patches.field.input_index == 1
    result.save(tmp_path / "saved")  # a loaded result finds both images of a pair again
    again = nl.top_patches(ScanResult.load(tmp_path / "saved"), "branch.1#1", 0, model=loaded)
    assert torch.equal(again.windows, patches.windows)


# -- receptive fields ------------------------------------------------------------------------

def _analytic(specs):
    """(size, stride, offset) of a stack of (kernel, stride, padding, dilation) layers."""
    size, jump, start = 1, 1, 0
    for k, s, p, d in specs:
        size += (k - 1) * d * jump
        start -= p * jump
        jump *= s
    return size, jump, start


def _stack(specs, channels=4, groups=False):
    mods, c = [], 3
    for k, s, p, d in specs:
        if k == "pool":
            mods.append(nn.MaxPool2d(s, s))
            continue
        g = c if groups and c == channels else 1
        mods += [nn.Conv2d(c, channels, k, stride=s, padding=p, dilation=d, groups=g), nn.ReLU()]
        c = channels
    return nn.Sequential(*mods).eval()


@pytest.mark.parametrize("specs", [
    [(3, 1, 1, 1)] * 3,                                   # three 3x3 convs -> 7
    [(3, 2, 1, 1), (3, 1, 1, 1), (3, 2, 1, 1)],          # with stride-2 layers
    [(3, 1, 2, 2), (3, 1, 4, 4), (3, 1, 0, 1)],          # with dilation
    [(5, 2, 0, 1), (3, 1, 1, 1), (1, 1, 0, 1)],          # unpadded, 1x1
])
def test_receptive_field_equals_analytic(specs):
    model = _stack(specs)
    rf = nl.receptive_field(model, str(len(model) - 1), 64)
    size, stride, offset = _analytic(specs)
    assert (rf.size, rf.stride, rf.offset, rf.clipped) == ((size, size), (stride, stride), (offset, offset), False)
    if specs == [(3, 1, 1, 1)] * 3:
        assert rf.size == (7, 7)


def test_receptive_field_with_pooling_and_depthwise_and_clipping():
    model = _stack([(3, 1, 1, 1), ("pool", 2, 0, 1), (5, 1, 2, 1), (3, 2, 1, 1)], groups=True)
    assert isinstance(model[3], nn.Conv2d) and model[3].groups == 4  # depthwise
    rf = nl.receptive_field(model, "5", (48, 40))
    # analytic: 3x3 -> 3; pool 2/2 -> 4, jump 2; 5x5 -> 12; 3x3 s2 -> 16, jump 4
    assert rf.size == (16, 16) and rf.stride == (4, 4) and rf.offset == (-7, -7) and not rf.clipped
    small = nl.receptive_field(model, "5", 10)
    assert small.clipped and small.box(0, 0) == (0, 0, 10, 10)


# -- top patches -----------------------------------------------------------------------------

def _feed_back(model, image, patches, j, channel):
    """The unit's value when the model sees only the patch's window of the image (zero elsewhere)."""
    top, left, bottom, right = patches.boxes[j].tolist()
    canvas = torch.zeros_like(image)
    H, W = image.shape[-2:]
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(bottom, H), min(right, W)
    canvas[:, y0:y1, x0:x1] = patches.windows[j][:, y0 - top:y1 - top, x0 - left:x1 - left]
    y, x = patches.positions[j].tolist()
    with nl.probe(model, [patches.field.layer], detach=True) as p, torch.no_grad():
        model(canvas.unsqueeze(0))
    return p.activations[patches.field.layer][0, channel, y, x].item()


def test_each_top_patch_fed_back_reproduces_its_activation():
    model = _stack([(3, 1, 1, 1), (3, 2, 1, 1), (3, 1, 1, 1)], channels=6)
    torch.manual_seed(2)
    images = [torch.randn(3, 20, 20) for _ in range(30)]
    result = nl.scan(model, images, ["5"], top_k=4, bottom_k=2, progress=False)
    border = 0
    for channel in range(6):
        for bottom in (False, True):
            patches = nl.top_patches(result, "5", channel, bottom=bottom)
            assert patches.windows.shape[-2:] == (9, 9)  # 3 + 2 + 2 * 2
            assert not patches.field.clipped and patches.fired is None and patches.cells is None
            for j, index in enumerate(patches.images.tolist()):
                assert _feed_back(model, images[index], patches, j, channel) == pytest.approx(
                    patches.values[j].item(), rel=1e-5, abs=1e-6)
                top, left, bottom_, right = patches.boxes[j].tolist()
                ys, xs = torch.meshgrid(torch.arange(top, bottom_), torch.arange(left, right), indexing="ij")
                inside = (ys >= 0) & (ys < 20) & (xs >= 0) & (xs < 20)
                pic = patches.pictures[j]
                rgb = result.model.preprocess.inverse(images[index].unsqueeze(0))[0]
                assert torch.equal(pic[:, inside], rgb[:, ys[inside], xs[inside]])
                if not inside.all():  # padding beyond the border is a checkerboard in the stored picture,
                    border += 1
                    pad = pic[:, ~inside]
                    assert torch.all(torch.minimum((pad - 0.55).abs(), (pad - 0.75).abs()) < 1e-6)
                    # and is cropped away when drawn, at the scale of a whole window (9 px -> 90 px)
                    tile = patches.tile(j, cell=90)
                    rows, cols = inside.any(1).sum().item(), inside.any(0).sum().item()
                    assert tile.size == (cols * 10, rows * 10) and patches.tile(j, 90, "checker").size == (90, 90)
                    t, le, b, r = patches.inside(j)
                    shown = torch.from_numpy(np.asarray(patches.tile(j, cell=9))).permute(2, 0, 1) / 255
                    assert torch.allclose(shown, pic[:, t:b, le:r], atol=1 / 255)  # only the image, no padding
    assert border > 0  # the border case was exercised


def test_default_model_patches_fed_back(tmp_path):
    model = nl.load_model("default")
    data = nl.samples.dataset(6, 224)
    result = nl.scan(model, data, ["blocks.2"], top_k=2, batch_size=6, progress=False)
    patches = nl.top_patches(result, "blocks.2", 5)
    assert patches.field.stride == (8, 8) and not patches.field.clipped
    for j, index in enumerate(patches.images.tolist()):
        image = model.inputs(data[index])[0]
        got = _feed_back(model.module, image, patches, j, 5)
        assert got == pytest.approx(patches.values[j].item(), rel=1e-4, abs=1e-4)
    assert patches.image_ids[0] in data.names


def test_attribution_callback_is_cropped_with_the_patch():
    model = _stack([(3, 1, 1, 1), (3, 1, 1, 1)])
    torch.manual_seed(4)
    images = [torch.randn(3, 12, 12) for _ in range(8)]
    result = nl.scan(model, images, ["3"], top_k=3, progress=False)
    seen = []

    def ramp(loaded, inputs, unit):
        seen.append(unit)
        return torch.arange(144.0).view(12, 12) + 1000 * inputs[0][0, 0, 0, 0].item()

    patches = nl.top_patches(result, "3", 2, attribute=ramp)
    assert [(u.channel, u.y, u.x) for u in seen] == [(2, y, x) for y, x in patches.positions.tolist()]
    for j, index in enumerate(patches.images.tolist()):
        top, left, _, _ = patches.boxes[j].tolist()
        y, x = patches.positions[j].tolist()
        # the patch centre is the unit's own position (3x3 stacks with padding 1 are centred)
        assert patches.maps[j][y - top, x - left].item() == pytest.approx(
            12 * y + x + 1000 * images[index][0, 0, 0].item(), rel=1e-6)
    assert patches.to_pil().size[0] > 3 * 64


def _clipped_net(seed=5):
    """Three convs whose receptive field covers a 12 x 12 input; the output grid is 4 x 4, so a
    grid cell spans 3 input pixels and pixel 3 * y + 1 sits exactly on cell y's centre."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=3), nn.ReLU(),
                         nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()).eval()


def test_deep_layer_patches_show_where_the_unit_fired():
    from model_state import leaves_unchanged, scramble

    model = scramble(_clipped_net())
    g = torch.Generator().manual_seed(6)
    images = [torch.randn(3, 12, 12, generator=g) for _ in range(10)]
    with leaves_unchanged(model):
        result = nl.scan(model, images, ["5"], top_k=3, progress=False)
        channel = int(result["5"].max.argmax())
        patches = nl.top_patches(result, "5", channel)
    assert patches.field.clipped and patches.fired.shape == (3, 12, 12) and patches.cells.shape == (3, 4)
    for j, (y, x) in enumerate(patches.positions.tolist()):
        assert patches.cells[j].tolist() == [3 * y, 3 * x, 3 * y + 3, 3 * x + 3]
        value = patches.values[j].item()
        # the upsampled map holds the unit's value at its cell's centre and nowhere more
        assert patches.fired[j, 3 * y + 1, 3 * x + 1].item() == pytest.approx(value, rel=1e-5)
        assert patches.fired[j].max().item() == pytest.approx(value, rel=1e-5)
    # the picture: the heat overlay changes the photo, the outline sits on the cell's border
    drawn = np.asarray(patches.to_pil(cell=36, captions=False, pad=0)).astype(int)
    unboxed = np.asarray(dataclasses.replace(patches, cells=None).to_pil(cell=36, captions=False, pad=0)).astype(int)
    plain = np.asarray(dataclasses.replace(patches, cells=None, fired=None).to_pil(cell=36, captions=False, pad=0))
    assert np.abs(unboxed - plain).mean() > 5
    for j, (top, left, bottom, right) in enumerate((patches.cells * 3).tolist()):  # 12 px shown as 36
        changed = np.abs(drawn[:, 36 * j:36 * (j + 1)] - unboxed[:, 36 * j:36 * (j + 1)]).sum(2) > 0
        ys, xs = np.nonzero(changed)
        assert abs(ys.min() - max(top - 1, 0)) <= 1 and abs(ys.max() - min(bottom, 35)) <= 1
        assert abs(xs.min() - max(left - 1, 0)) <= 1 and abs(xs.max() - min(right, 35)) <= 1
        inner = changed[top + 2:bottom - 2, left + 2:right - 2]
        assert not inner.any()  # an outline: the cell's own pixels stay visible
    # attribution maps, when given, take the overlay's place; the outline stays
    ramp = torch.arange(144.0).view(12, 12)
    with_maps = nl.top_patches(result, "5", channel, attribute=lambda *_: ramp)
    assert torch.equal(with_maps.fired, patches.fired)
    assert np.array_equal(np.asarray(with_maps.to_pil(cell=36)),
                          np.asarray(dataclasses.replace(patches, fired=with_maps.maps).to_pil(cell=36)))


# -- persistence, report, CLI ----------------------------------------------------------------

def test_save_load_roundtrip_without_pickle(tmp_path):
    paths = _write_images(tmp_path / "imgs", 6)
    model = _small_model()
    result = nl.scan(model, tmp_path / "imgs", ["1", "3"], top_k=3, bottom_k=1, progress=False)
    result.save(tmp_path / "out")
    with np.load(tmp_path / "out" / "scan.npz", allow_pickle=False) as npz:
        assert all(npz[k].dtype != object for k in npz.files)
    json.loads((tmp_path / "out" / "scan.json").read_text())
    back = ScanResult.load(tmp_path / "out")
    assert back.ids == result.ids and back.count == result.count and list(back.layers) == list(result.layers)
    for key, s in result.layers.items():
        for name in s.ARRAYS:
            a, b = getattr(s, name), getattr(back[key], name)
            assert a.dtype == b.dtype and torch.equal(torch.nan_to_num(a), torch.nan_to_num(b)), name
        assert back[key].dead_channels == s.dead_channels
    # a loaded result finds its images again through their paths
    again = nl.top_patches(back, "3", 1, model=model)
    assert torch.equal(again.windows, nl.top_patches(result, "3", 1).windows)
    assert len(paths) == 6
    with pytest.raises(nl.NetloupeError, match="model="):
        nl.top_patches(back, "3", 1)


def test_save_writes_what_the_path_says(tmp_path):
    """An image suffix gets the picture (as every result's save), any other path the folder."""
    g = torch.Generator().manual_seed(0)
    result = nl.scan(_planted(), [torch.rand(3, 8, 8, generator=g) for _ in range(6)], ["0", "1"], top_k=2,
                     progress=False)
    png = result.save(tmp_path / "x.png")
    assert png == tmp_path / "x.png" and png.is_file()
    with Image.open(png) as im:
        assert im.format == "PNG" and im.tobytes() == result.to_pil().tobytes()
    with Image.open(result.save(tmp_path / "pics" / "one.JPG", layer="1")) as im:  # folders made, case ignored
        assert im.format == "JPEG" and im.size == result.to_pil(layer="1").size
    for name in ("x", "scan.v1"):  # no suffix, or one that is no image: the folder load reads
        folder = result.save(tmp_path / name)
        assert sorted(p.name for p in folder.iterdir()) == ["scan.json", "scan.npz"]
        assert torch.equal(ScanResult.load(folder)["1"].top_images, result["1"].top_images)
    with pytest.raises(nl.InputError, match="picture"):
        result.save(tmp_path / "y", layer="1")
    assert not (tmp_path / "y").exists()


def test_report_writes_pictures_and_index(tmp_path, capsys):
    model = _planted()
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 12, 12, generator=g) for _ in range(12)]
    result = nl.scan(model, images, ["0", "1"], top_k=3, progress=False)
    index = nl.report(result, tmp_path / "rep")
    assert "report" in capsys.readouterr().err  # the drawing phase shows its own bar
    page = index.read_text()
    linked = {part.split('"')[0] for part in page.split('src="')[1:]} | {"activity.png"}
    assert {"1_histograms.png", "1_correlation.png", "1_topk.png", "activity.png"} <= linked
    for name in linked:
        with Image.open(tmp_path / "rep" / name) as im:
            assert im.size[0] > 100 and im.size[1] > 50
    assert "1 dead" in page
    grid = np.asarray(result.to_pil(layer="1"))  # a dead channel is drawn in red
    assert ((grid[:, :, 0] > 200) & (grid[:, :, 1] < 60) & (grid[:, :, 2] < 60)).sum() > 20


def test_histograms_show_every_channel_paged(tmp_path, capsys):
    model = nn.Sequential(nn.Conv2d(3, 12, 1), nn.ReLU()).eval()
    g = torch.Generator().manual_seed(0)
    images = [torch.randn(3, 4, 4, generator=g) for _ in range(6)]
    result = nl.scan(model, images, ["1"], top_k=2, progress=False)
    stats = result["1"]
    assert histogram_pages(stats) == 1 and histogram_pages(stats, per_page=8) == 2
    index = nl.report(result, tmp_path / "rep", per_page=8, progress=False)
    assert capsys.readouterr().err == ""  # progress=False: silent
    page = index.read_text()
    written = sorted(p.name for p in (tmp_path / "rep").glob("1_histograms*.png"))
    assert written == ["1_histograms.png", "1_histograms_2.png"]
    assert all(f'src="{name}"' in page for name in written)
    shown = []
    for number in (1, 2):
        fig = _histogram_figure(stats, number, 8, 4)
        channels = [int(ax.get_title().split()[0]) for ax in fig.axes if ax.get_title()]
        assert f"channels {channels[0]}-{channels[-1]} of 12" in fig.get_suptitle()
        assert f"page {number} of 2" in fig.get_suptitle()
        shown += channels
    assert shown == list(range(12))  # every channel once, in order
    assert result.to_pil(per_page=8).tobytes() == histogram_grid(stats, 1, 8).tobytes()  # to_pil: the first page
    with pytest.raises(nl.InputError, match="page 1..2"):
        histogram_grid(stats, page=3, per_page=8)


def _heatmap_axes(fig):
    return next(ax for ax in fig.axes if ax.get_images() and ax.get_xlabel() == "channel")


def _no_overlap(extents, lo, hi):
    spans = sorted((getattr(e, lo), getattr(e, hi)) for e in extents)
    return all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


def test_correlation_heatmap_labels_channels_and_explains_grey():
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 12, 12, generator=g) for _ in range(12)]
    stats = nl.scan(_planted(), images, ["1"], top_k=2, progress=False)["1"]  # channel 3 is constant
    fig = _correlation_figure(stats)
    ax = _heatmap_axes(fig)
    order = [str(c) for c in stats.order.tolist()]
    assert [t.get_text() for t in ax.get_xticklabels()] == order  # few channels: every one labelled
    assert [t.get_text() for t in ax.get_yticklabels()] == order
    (legend,) = fig.legends
    assert "constant channel" in legend.get_texts()[0].get_text()
    grey = ax.get_images()[0].get_cmap().get_bad()
    assert np.allclose(legend.legend_handles[0].get_facecolor(), grey)
    # no constant channel, no legend
    varied = nl.scan(_random_net(), [torch.randn(3, 6, 6, generator=g) for _ in range(12)], ["0"], progress=False)
    assert not torch.isnan(varied["0"].correlation).any() and _correlation_figure(varied["0"]).legends == []


def test_correlation_heatmap_labels_a_readable_subset_of_many_channels():
    model = nn.Sequential(nn.Conv2d(3, 300, 1)).eval()
    g = torch.Generator().manual_seed(1)
    stats = nl.scan(model, [torch.randn(3, 2, 2, generator=g) for _ in range(20)], ["0"], progress=False)["0"]
    fig = _correlation_figure(stats)
    fig.canvas.draw()
    ax = _heatmap_axes(fig)
    order = stats.order.tolist()
    ticks = [int(t) for t in ax.get_yticks()]
    step = ticks[1] - ticks[0]
    assert ticks == list(range(0, 300, step)) and 10 <= len(ticks) < 300
    assert [t.get_text() for t in ax.get_yticklabels()] == [str(order[t]) for t in ticks]
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(order[t]) for t in ticks]
    renderer = fig.canvas.get_renderer()
    assert _no_overlap([t.get_window_extent(renderer) for t in ax.get_yticklabels()], "y0", "y1")
    assert _no_overlap([t.get_window_extent(renderer) for t in ax.get_xticklabels()], "x0", "x1")


def test_cli_scan(tmp_path, capsys):
    _write_images(tmp_path / "imgs", 5)
    model_file = tmp_path / "tiny.pt"
    torch.save(_random_net(), model_file)
    code = main(["scan", str(tmp_path / "imgs"), "--layers", "1,3", "--model", str(model_file), "--top-k", "2",
                 "--out", str(tmp_path / "out"), "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code == 0 and out.strip().endswith("index.html") and Path(out.strip()).is_file()
    assert ScanResult.load(tmp_path / "out")["3"].top_images.shape == (5, 2)
    code = main(["scan", str(tmp_path / "nothing"), "--layers", "1", "--model", str(model_file)])
    assert code == 2 and "does not exist" in capsys.readouterr().err


# -- torchrun --------------------------------------------------------------------------------

_SCRIPT = """
import os, sys, warnings
import torch, torch.nn as nn
import netloupe as nl
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 3, stride=2, padding=1)).eval()
g = torch.Generator().manual_seed(1)
data = [torch.randn(3, 12, 12, generator=g) * (1 + i / 10) for i in range(37)]
data[11] = "missing-image.png"
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    result = nl.scan(model, data, ["1", "2"], top_k=4, bottom_k=2, bins=8, batch_size=5, progress=False)
if int(os.environ.get("RANK", "0")) == 0:
    result.save(sys.argv[1])
print("ranks-done", os.environ.get("WORLD_SIZE", "1"))
"""


def test_two_process_torchrun_scan_equals_one_process(tmp_path):
    script = tmp_path / "scan_job.py"
    script.write_text(textwrap.dedent(_SCRIPT))
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    one = subprocess.run([sys.executable, str(script), str(tmp_path / "one")], env=env, capture_output=True,
                         text=True, timeout=120)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(script), str(tmp_path / "two")], env=env, capture_output=True, text=True, timeout=180)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("ranks-done") == 2 and "1" not in two.stdout  # both ranks of 2 (prints may interleave)
    a, b = ScanResult.load(tmp_path / "one"), ScanResult.load(tmp_path / "two")
    assert a.ids == b.ids and a.skipped == b.skipped and a.count == b.count == 36
    assert [i for i, _ in a.skipped] == ["missing-image.png"]
    for key in ("1", "2"):
        x, y = a[key], b[key]
        for name in ("top_images", "top_positions", "top_values", "bottom_images", "bottom_positions",
                     "bottom_values", "hist_counts", "hist_origin", "hist_exp", "min", "max", "never_positive"):
            assert torch.equal(getattr(x, name), getattr(y, name)), name
        for name in ("mean", "std", "correlation"):
            torch.testing.assert_close(getattr(x, name), getattr(y, name), rtol=1e-12, atol=1e-12, equal_nan=True)


# -- leave the model as found ----------------------------------------------------------------

def _zoo_scan(model, inputs, name):
    import zoo

    layer = zoo.SPATIAL_LAYER[name]
    samples = list(zip(*inputs)) if len(inputs) > 1 else list(inputs[0])
    result = nl.scan(model, samples, [layer], top_k=2, bins=8, progress=False)
    key = next(iter(result.layers))
    assert result.count == len(samples) and result[key].top_images.shape[1] == 2
    if result[key].shape and len(result[key].shape) == 3:
        rf = nl.receptive_field(model, layer, inputs=inputs, call=result[key].call)
        assert rf.size[0] >= 1
        patches = nl.top_patches(result, key, 0)
        assert len(patches.image_ids) == 2
    else:  # no [C, H, W] output (a transformer's tokens): a clear error, the model still unchanged
        with pytest.raises(nl.UnitError, match="receptive field"):
            nl.receptive_field(model, layer, inputs=inputs)
        with pytest.raises(nl.UnitError, match="receptive field"):
            nl.top_patches(result, key, 0)


def _zoo_names():
    import zoo

    return zoo.ZOO


@pytest.mark.parametrize("name", _zoo_names())
def test_stats_functions_leave_zoo_models_unchanged(name):
    import zoo
    from model_state import leaves_unchanged, scramble

    model, inputs = zoo.build(name)
    scramble(model)
    with leaves_unchanged(model):
        _zoo_scan(model, inputs, name)
