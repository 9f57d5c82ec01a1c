import numpy as np
import pytest
import torch
from PIL import Image

import netloupe as nl
from netloupe import images


def test_preprocess_accepts_every_input_kind(tmp_path):
    pre = nl.Preprocess(size=32, resize=40)
    pil = nl.samples.image("chelsea")
    path = tmp_path / "cat.png"
    pil.save(path)
    arr = np.asarray(pil)
    from_pil, from_path, from_arr = pre(pil), pre(str(path)), pre(arr)
    assert from_pil.shape == (1, 3, 32, 32)
    assert torch.equal(from_pil, from_path) and torch.equal(from_pil, from_arr)
    batch = pre([pil, path, arr, from_pil[0]])
    assert batch.shape == (4, 3, 32, 32) and torch.equal(batch[3], from_pil[0])
    assert torch.equal(pre(from_pil), from_pil)  # tensors are already model inputs


def test_grayscale_rgba_and_float_arrays_are_converted():
    pre = nl.Preprocess(size=16, resize=None)
    gray = Image.new("L", (20, 20), 128)
    rgba = Image.new("RGBA", (20, 20), (255, 0, 0, 255))
    x = pre([gray, rgba, np.full((20, 20), 0.5, np.float32)])
    assert x.shape == (3, 3, 16, 16)
    back = pre.inverse(x)
    assert torch.allclose(back[0], torch.full((3, 16, 16), 128 / 255), atol=1e-6)
    assert torch.allclose(back[1, :, 0, 0], torch.tensor([1.0, 0.0, 0.0]), atol=1e-6)


PREPROCESS_SETTINGS = {
    "default-model": dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bicubic"),
    "imagenet": dict(interpolation="bilinear"),
}


@pytest.mark.parametrize("settings", PREPROCESS_SETTINGS.values(), ids=PREPROCESS_SETTINGS.keys())
@pytest.mark.parametrize("photo", nl.samples.names())
def test_resize_short_side_then_centre_crop_matches_torchvision(photo, settings):
    """Odd aspect ratios too (chelsea 451x300, rocket, hubble): the long side is truncated, as torchvision does."""
    import torchvision.transforms as T

    pil = nl.samples.image(photo)
    pre = nl.Preprocess(size=224, resize=256, **settings)
    ref = T.Compose([T.Resize(256, interpolation=T.InterpolationMode(pre.interpolation)), T.CenterCrop(224),
                     T.ToTensor(), T.Normalize(pre.mean, pre.std)])(pil)
    assert torch.allclose(pre(pil)[0], ref, atol=1e-5)


def test_images_smaller_than_the_crop_are_upsampled_not_padded():
    white = Image.new("RGB", (30, 10), (255, 255, 255))
    for pre in (nl.Preprocess(size=16, resize=12), nl.Preprocess(size=(24, 40), resize=8)):
        x = pre(white)
        assert x.shape[-2:] == pre.hw and torch.allclose(pre.inverse(x), torch.ones_like(x))  # no black border


def _scipy_blur(t, sigma, radius):
    """scipy's Gaussian filter over the last two dims, ``radius`` (y, x) pixels out; its "mirror"
    mode is torch's reflection."""
    from scipy.ndimage import gaussian_filter

    lead = (0,) * (t.dim() - 2)
    return torch.from_numpy(gaussian_filter(t.numpy(), lead + (sigma, sigma), mode="mirror", radius=lead + radius))


@pytest.mark.parametrize("shape,sigma", [((224, 224), 2.24), ((2, 3, 64, 48), 3.2), ((2, 2, 3, 20, 30), 0.3),
                                         ((1, 3, 40, 40), 1.0)])
def test_blur_matches_scipy(shape, sigma):
    radius = max(1, int(3 * sigma))
    x = torch.rand(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(images.blur(x, sigma), _scipy_blur(x, sigma, (radius, radius)), atol=1e-12)
    assert torch.allclose(images.blur(x.float(), sigma), _scipy_blur(x, sigma, (radius, radius)).float(), atol=1e-6)


def test_blur_cuts_its_radius_on_sides_too_short_to_mirror():
    x = torch.rand(2, 4, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(images.blur(x, 2.0), _scipy_blur(x, 2.0, (3, 6)), atol=1e-12)  # radius 6, cut to 3 on y
    row = x[:, :1]
    assert torch.allclose(images.blur(row, 2.0), _scipy_blur(row, 2.0, (0, 6)), atol=1e-12)  # one pixel high


def test_blur_is_differentiable():
    x = torch.rand(1, 2, 5, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: images.blur(t, 1.5), (x,))


def test_inverse_undoes_normalize():
    pre = nl.Preprocess(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    img = torch.rand(2, 3, 8, 8)
    assert torch.allclose(pre.inverse(pre.normalize(img)), img, atol=1e-6)


def test_bad_inputs(tmp_path):
    pre = nl.Preprocess()
    with pytest.raises(nl.InputError, match="not found"):
        pre(tmp_path / "missing.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(nl.InputError, match="cannot read"):
        pre(tmp_path / "notes.txt")
    with pytest.raises(nl.InputError, match=r"\[N, C, H, W\]"):
        pre(torch.zeros(5))  # no batch dimension
    assert pre(torch.zeros(2, 2, 3, 4, 5)).shape == (2, 2, 3, 4, 5)  # tensors are taken as model inputs as they are
    assert pre(torch.zeros(3, 4, 5)).shape == (1, 3, 4, 5)  # one image
    with pytest.raises(nl.InputError, match="batch is empty"):
        pre(torch.zeros(0, 3, 4, 4))
    with pytest.raises(nl.InputError, match="a tuple means several model inputs"):
        pre((torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4)))
    with pytest.raises(nl.InputError, match="NaN"):
        pre(torch.full((1, 3, 4, 4), float("nan")))
    with pytest.raises(nl.InputError, match="cannot use a dict"):
        pre({"a": 1})
    with pytest.raises(nl.InputError, match="no inputs"):
        pre([])


def test_to_pil_grid_heatmap_overlay(tmp_path):
    img = torch.zeros(3, 10, 12)
    img[0] = 1.0
    pil = images.to_pil(img)
    assert pil.size == (12, 10) and pil.getpixel((0, 0)) == (255, 0, 0)
    g = images.grid([img, img, img], captions=["a", "b", "c"], ncol=2, pad=2)
    assert g.size[0] == 2 * 12 + 3 * 2 and g.size[1] > 2 * 10
    ramp = torch.linspace(0, 1, 50).view(5, 10)
    heat = images.heatmap(ramp, cmap="gray")
    assert heat.getpixel((0, 0)) == (0, 0, 0) and heat.getpixel((9, 4)) == (255, 255, 255)
    over = images.overlay(img, ramp, alpha=0.5)
    assert over.size == pil.size
    p = images.save(over, tmp_path / "sub" / "o.png")
    assert Image.open(p).size == (12, 10)


def test_picture_mixin_save_and_plot(tmp_path):
    import matplotlib

    matplotlib.use("Agg")

    class Dot(images.Picture):
        def to_pil(self, colour=(255, 0, 0)):
            return Image.new("RGB", (4, 3), colour)

    path = Dot().save(tmp_path / "a" / "dot.png", colour=(0, 255, 0))
    assert Image.open(path).getpixel((0, 0)) == (0, 255, 0)
    ax = Dot().plot()
    assert ax.get_images()[0].get_array().shape == (3, 4, 3)


def test_chart_renders_off_screen_without_touching_pyplot():
    import matplotlib
    import matplotlib.pyplot as plt

    class Line(images.Chart):
        figsize = (3.0, 2.0)

        def plot(self, ax=None):
            ax.plot([0, 1], [0, 1])
            return ax

    backend, open_figures = matplotlib.get_backend(), plt.get_fignums()
    im = Line().to_pil()
    assert im.size == (300, 200) and im.mode == "RGB"
    assert len(np.unique(np.asarray(im).reshape(-1, 3), axis=0)) > 2  # something was drawn
    assert matplotlib.get_backend() == backend and plt.get_fignums() == open_figures


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG file whose header claims width x height pixels; its data is a single byte."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def test_images_above_the_decompression_bomb_limit_are_refused_with_the_way_out(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_claiming(100_000, 100_000))
    with pytest.raises(nl.InputError, match=f"limit of {Image.MAX_IMAGE_PIXELS:,}") as e:
        images.load_image(bomb)
    assert "PIL.Image.MAX_IMAGE_PIXELS = N" in str(e.value) and "--max-pixels N" in str(e.value)
    small = tmp_path / "small.png"
    Image.new("RGB", (20, 20)).save(small)  # 400 pixels
    for limit in (300, 150):  # Pillow only warns below twice the limit, and raises above it: both are refused
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
        with pytest.raises(nl.InputError, match=f"limit of {limit}"):
            images.load_image(small)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400)
    assert images.load_image(small).size == (20, 20)
