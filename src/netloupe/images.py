"""Images in and out: Preprocess (and its inverse), loading, saving, grids and heatmap overlays."""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Tuple, Union, cast

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from .errors import InputError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .runtime import DeviceLike

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray, torch.Tensor]
#: a picture to draw or save: a PIL image or an image tensor in [0, 1] (see :func:`to_pil`)
PictureLike = Union[Image.Image, torch.Tensor]


def load_image(path: Union[str, os.PathLike]) -> Image.Image:
    """Open an image file as RGB (grayscale, palette and RGBA are converted).

    An image above Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``), or whose
    header claims to be, is refused: Pillow only warns below twice the limit, and decoding such
    a file can take all the memory there is."""
    import warnings

    path = Path(path)
    if not path.exists():
        raise InputError(f"image file not found: {path}; check the path")
    if path.is_dir():
        raise InputError(f"{path} is a folder; give an image file (jpg, png, ...)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                return to_rgb(im)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise InputError(f"{path} has more pixels than Pillow's limit of {Image.MAX_IMAGE_PIXELS:,} (its guard "
                         "against decompression bombs); if you trust the file, raise the limit: "
                         "PIL.Image.MAX_IMAGE_PIXELS = N in Python, --max-pixels N on the command line") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise InputError(f"cannot read {path} as an image ({e}); give a jpg, png, bmp or webp file") from None


def to_rgb(im: Image.Image) -> Image.Image:
    """RGB version of a PIL image; transparent areas become white."""
    if im.mode == "RGB":
        return im
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.split()[-1])
        return bg
    return im.convert("RGB")


def _array_to_pil(a: np.ndarray) -> Image.Image:
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise InputError(f"a numpy image must be HxW or HxWxC with C in 1, 3, 4; got shape {a.shape}")
    if a.dtype != np.uint8:
        if not np.issubdtype(a.dtype, np.floating):
            raise InputError(f"a numpy image must be uint8 (0..255) or float (0..1); got {a.dtype}")
        if not np.isfinite(a).all():
            raise InputError("the numpy image contains NaN or infinite values")
        a = (np.clip(a, 0, 1) * 255).round().astype(np.uint8)
    if a.shape[2] == 1:
        return Image.fromarray(a[:, :, 0], "L").convert("RGB")
    return to_rgb(Image.fromarray(a))


@dataclass
class Preprocess:
    """What a model expects: resize the short side, centre-crop, normalize.

    ``__call__`` turns paths, PIL images, HWC numpy arrays or lists of them into an NCHW
    float batch; tensors are taken as already preprocessed. ``inverse`` maps model inputs
    back to [0, 1] RGB.
    """

    size: Union[int, Tuple[int, int]] = 224
    resize: Optional[int] = 256
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD
    interpolation: str = "bilinear"

    @property
    def hw(self) -> Tuple[int, int]:
        return (self.size, self.size) if isinstance(self.size, int) else cast(Tuple[int, int], tuple(self.size))

    def _stats(self, like: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        mean = torch.as_tensor(self.mean, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)
        std = torch.as_tensor(self.std, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)
        return mean, std

    def normalize(self, images01: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB batch -> model input (differentiable)."""
        mean, std = self._stats(images01)
        return (images01 - mean) / std

    def inverse(self, inputs: torch.Tensor) -> torch.Tensor:
        """Model input batch -> [0, 1] RGB (clamped)."""
        mean, std = self._stats(inputs)
        return (inputs * std + mean).clamp(0, 1)

    def pil_to_tensor01(self, im: Image.Image) -> torch.Tensor:
        """Resize and crop a PIL image as torchvision's ``Resize(resize)``, ``CenterCrop(size)``,
        ``ToTensor()`` do; return a [3, H, W] tensor in [0, 1]. An image still smaller than the
        crop after resizing is upsampled to cover it (torchvision would pad it with black)."""
        import torchvision.transforms.functional as TF  # here, not at the top: `import netloupe` stays light

        h, w = self.hw
        mode = TF.InterpolationMode(self.interpolation)
        im = TF.resize(im, self.resize or [h, w], mode)
        W, H = im.size
        if W < w or H < h:
            im = TF.resize(im, [max(H, h), max(W, w)], mode)
        return TF.to_tensor(TF.center_crop(im, [h, w]))

    def __call__(self, inputs: Union[ImageLike, Sequence[ImageLike]], device: Optional[DeviceLike] = None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
        if isinstance(inputs, torch.Tensor):
            return input_tensor(inputs.unsqueeze(0) if inputs.dim() == 3 else inputs, device, dtype)
        if isinstance(inputs, tuple):
            raise InputError(f"got a tuple of {len(inputs)} items: a tuple means several model inputs, which this "
                             "function does not take; pass a list for a batch of images")
        items: List[Any] = list(inputs) if isinstance(inputs, list) else [inputs]  # as_pil checks each
        if not items:
            raise InputError("no inputs given; pass an image path, PIL image, numpy array or tensor")
        batch: List[torch.Tensor] = []
        for item in items:
            if isinstance(item, torch.Tensor):
                t = self(item)
                batch.extend(t.to(dtype))
                continue
            batch.append(self.normalize(self.pil_to_tensor01(as_pil(item)).unsqueeze(0))[0])
        shapes = {tuple(t.shape) for t in batch}
        if len(shapes) > 1:
            raise InputError(f"inputs have different shapes {sorted(shapes)}; give tensors of one size")
        return torch.stack(batch).to(device=device, dtype=dtype)


def input_tensor(x: torch.Tensor, device: Optional[DeviceLike] = None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A tensor taken as a model input batch as is ([N, C, H, W] images, [N, D] features, ...),
    checked and moved to ``device`` and ``dtype``."""
    if x.dim() < 2:
        raise InputError(f"expected a batch tensor [N, ...] (images [N, C, H, W] or one image [C, H, W], features "
                         f"[N, D]); got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise InputError(f"the input batch is empty (shape {tuple(x.shape)}); give at least one input")
    if not x.is_floating_point():
        raise InputError(f"tensors are taken as model inputs and must be float; got {x.dtype}. Pass a uint8 image "
                         "as a numpy HWC array or PIL image instead; integer inputs (token ids, masks) go in "
                         "forward_args=")
    if not torch.isfinite(x).all():
        raise InputError("the input tensor contains NaN or infinite values")
    return x.to(device=device or x.device, dtype=dtype)


def shown(index: Optional[int], count: int, what: str = "inputs") -> List[int]:
    """Which of ``count`` items a picture shows: item ``index`` alone, or all of them for None
    (``to_pil(index=...)`` means this on every result)."""
    if index is None:
        return list(range(count))
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < count:
        raise InputError(f"index {index!r} out of range; there are {count} {what} (0..{count - 1})")
    return [index]


class Picture:
    """Mixin for results that can be drawn: subclasses define ``to_pil(**kw)``; ``save`` and
    ``plot`` follow from it."""

    # *args and **kw: each result's to_pil (and plot) takes parameters of its own, and only a base
    # method of this form lets the overrides be checked as such
    def to_pil(self, *args: Any, **kw: Any) -> Image.Image:  # pragma: no cover - defined by each result
        raise NotImplementedError

    def save(self, path: Union[str, os.PathLike], **kw: Any) -> Path:
        """Write ``to_pil(**kw)`` to ``path`` (format from the suffix); folders are created."""
        return save(self.to_pil(**kw), path)

    #: the longest side of the picture a notebook shows
    notebook_size = 900

    def _repr_png_(self) -> bytes:
        """What a notebook shows for a result that ends a cell: its picture, at most
        ``notebook_size`` pixels a side (IPython calls this; nothing imports IPython)."""
        picture = self.to_pil()
        picture.thumbnail((self.notebook_size, self.notebook_size))
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        return buffer.getvalue()

    def plot(self, ax: Optional[Axes] = None, *args: Any, **kw: Any) -> Axes:
        """Show ``to_pil(**kw)`` on a matplotlib axis (a new figure if none); returns the axis."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        ax.imshow(self.to_pil(*args, **kw))
        ax.set_axis_off()
        return ax


def figure(nrow: int = 1, ncol: int = 1, **kw: Any) -> Tuple[Figure, np.ndarray]:
    """A matplotlib figure drawn off-screen, with its axes grid: no pyplot, so the user's
    backend and open figures are never touched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kw)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrow, ncol, squeeze=False)


def figure_to_pil(fig: Figure) -> Image.Image:
    """Render an off-screen figure to an RGB PIL image."""
    canvas = cast("FigureCanvasAgg", fig.canvas)  # figure() gives every figure an Agg canvas
    canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba())[:, :, :3].copy())


class Chart(Picture):
    """Mixin for results drawn as a chart: subclasses define ``plot(ax)``; ``to_pil`` renders
    it off-screen at ``figsize`` inches."""

    figsize = (6.0, 4.0)

    def to_pil(self, **kw: Any) -> Image.Image:
        fig, axes = figure(figsize=self.figsize, dpi=100)
        self.plot(ax=axes[0, 0], **kw)
        fig.tight_layout()
        return figure_to_pil(fig)


def pil_to01(im: Image.Image) -> torch.Tensor:
    """An RGB PIL image as a [3, H, W] float tensor in [0, 1], at its own size."""
    return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)


def as_pil(item: Union[str, os.PathLike, Image.Image, np.ndarray]) -> Image.Image:
    """A path, PIL image or HWC numpy array as an RGB PIL image."""
    if isinstance(item, (str, os.PathLike)):
        return load_image(item)
    if isinstance(item, Image.Image):
        return to_rgb(item)
    if isinstance(item, np.ndarray):
        return _array_to_pil(item)
    raise InputError(
        f"cannot use a {type(item).__name__} as an image; give a file path, PIL image, HWC numpy array or tensor")


def to_pil(image: torch.Tensor) -> Image.Image:
    """A [3, H, W] or [1, 3, H, W] tensor in [0, 1], or an [H, W] map in [0, 1], as a PIL image."""
    t = image.detach().float().cpu()
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() == 3 and t.shape[0] in (1, 3):
        t = t.permute(1, 2, 0)
        if t.shape[2] == 1:
            t = t[:, :, 0]
    elif t.dim() != 2:
        raise InputError(f"to_pil takes [3, H, W] or [H, W]; got shape {tuple(image.shape)}")
    a = (t.clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(a)


def save(image: PictureLike, path: Union[str, os.PathLike]) -> Path:
    """Save a tensor or PIL image; folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    (image if isinstance(image, Image.Image) else to_pil(image)).save(path)
    return path


def blur(t: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur over the last two dims (any leading dims); differentiable.

    The kernel's radius is ``max(1, int(3 * sigma))`` and the edges are mirrored (torchvision's
    reflection: the edge pixel is not repeated). Reflection cannot reach further than the side
    minus one pixel, so along a side that short the radius is cut to it (a side of one pixel
    stays as it is). One pass per direction: torchvision convolves with the whole 2-D kernel,
    (2r+1)^2 products a pixel instead of 2(2r+1), 20 times slower at integrated gradients'
    blur baseline."""
    import torchvision.transforms.functional as TF

    radius = max(1, int(3 * sigma))
    H, W = t.shape[-2:]
    flat = t.reshape(-1, 1, H, W)
    flat = TF.gaussian_blur(flat, [2 * min(radius, W - 1) + 1, 1], float(sigma))  # sizes are [x, y]
    flat = TF.gaussian_blur(flat, [1, 2 * min(radius, H - 1) + 1], float(sigma))
    return flat.reshape(t.shape)


def heatmap(values: torch.Tensor, cmap: str = "inferno", vmin: Optional[float] = None,
            vmax: Optional[float] = None) -> Image.Image:
    """Colour an [H, W] map with a matplotlib colormap (scaled to its min..max unless given)."""
    from matplotlib import colormaps

    a = values.detach().float().cpu().numpy()
    if a.ndim != 2:
        raise InputError(f"heatmap takes an [H, W] map; got shape {a.shape}")
    lo = float(a.min()) if vmin is None else vmin
    hi = float(a.max()) if vmax is None else vmax
    a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    rgba = colormaps[cmap](np.clip(a, 0, 1))
    return Image.fromarray((rgba[:, :, :3] * 255).round().astype(np.uint8))


def overlay(image: PictureLike, values: torch.Tensor, cmap: str = "jet", alpha: float = 0.5) -> Image.Image:
    """Blend a heatmap of ``values`` (resized to the image) over ``image``."""
    base = image if isinstance(image, Image.Image) else to_pil(image)
    heat = heatmap(values, cmap).resize(base.size, Image.Resampling.BILINEAR)
    return Image.blend(base.convert("RGB"), heat, alpha)


def scaled_map(values: torch.Tensor, cmap: str = "viridis", side: int = 224) -> Image.Image:
    """An [h, w] map enlarged to about ``side`` pixels with nearest-neighbour steps (one block per
    cell, nothing smoothed away), coloured from its min to its max, with a colour bar that gives
    those values at its ends and middle."""
    m = values.detach().float().cpu()
    if m.dim() != 2:
        raise InputError(f"scaled_map takes an [h, w] map; got shape {tuple(values.shape)}")
    lo, hi = float(m.min()), float(m.max())
    h, w = m.shape
    k = max(1, side // max(h, w))
    picture = heatmap(m, cmap, lo, hi).resize((w * k, h * k), Image.Resampling.NEAREST)
    bar_h = picture.height
    ramp = torch.linspace(hi, lo, bar_h)[:, None].expand(bar_h, 12)
    bar = heatmap(ramp, cmap, lo, hi) if hi > lo else heatmap(torch.zeros(bar_h, 12), cmap, 0.0, 1.0)
    font = ImageFont.load_default()
    labels = [f"{v:.3g}" for v in (hi, (lo + hi) / 2, lo)]
    text_w = max(int(font.getlength(t)) for t in labels) + 6
    out = Image.new("RGB", (picture.width + 8 + 12 + text_w, bar_h), (255, 255, 255))
    out.paste(picture, (0, 0))
    out.paste(bar, (picture.width + 8, 0))
    draw = ImageDraw.Draw(out)
    x = picture.width + 8 + 12 + 3
    for y, text in zip((0, bar_h // 2 - 6, bar_h - 12), labels):
        draw.text((x, max(0, y)), text, fill=(0, 0, 0), font=font)
    return out


def grid(images: Sequence[PictureLike], captions: Optional[Sequence[str]] = None, ncol: Optional[int] = None,
         pad: int = 4, cell: Optional[int] = None, background: Tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Lay images (tensors or PIL) out in a grid, with an optional caption under each."""
    pils = [im if isinstance(im, Image.Image) else to_pil(im) for im in images]
    if not pils:
        raise InputError("grid needs at least one image")
    if cell:
        pils = [im.resize((cell, round(cell * im.size[1] / im.size[0])), Image.Resampling.BILINEAR) for im in pils]
    ncol = ncol or math.ceil(math.sqrt(len(pils)))
    nrow = math.ceil(len(pils) / ncol)
    cw = max(im.size[0] for im in pils)
    ch = max(im.size[1] for im in pils)
    font = ImageFont.load_default()
    text_h = 14 * max((str(c).count("\n") + 1 for c in captions), default=1) if captions else 0
    out = Image.new("RGB", (ncol * (cw + pad) + pad, nrow * (ch + text_h + pad) + pad), background)
    draw = ImageDraw.Draw(out)
    for i, im in enumerate(pils):
        r, c = divmod(i, ncol)
        x, y = pad + c * (cw + pad), pad + r * (ch + text_h + pad)
        out.paste(im, (x, y))
        if captions:
            draw.text((x, y + ch + 1), str(captions[i]), fill=(0, 0, 0), font=font)
    return out


def channel_grid(maps: torch.Tensor, cmap: str = "viridis", norm: str = "channel", ncol: Optional[int] = None,
                 pad: int = 1) -> Tuple[Image.Image, int]:
    """Every channel's map [C, h, w] coloured and tiled in one picture, at the maps' own
    resolution (scale it up when showing it), ``pad`` pixels of grey between tiles; returns the
    picture and its number of columns. norm: "channel" scales each map to its own min..max,
    "layer" all of them to the layer's."""
    from matplotlib import colormaps

    if maps.dim() != 3:
        raise InputError(f"channel_grid takes maps [C, h, w]; got shape {tuple(maps.shape)}")
    if norm not in ("channel", "layer"):
        raise InputError(f"norm must be 'channel' or 'layer'; got {norm!r}")
    if cmap not in colormaps:
        raise InputError(f"unknown colour map {cmap!r}; e.g. viridis, inferno, gray, RdBu_r")
    m = maps.detach().float().cpu()
    c, h, w = m.shape
    dims = (1, 2) if norm == "channel" else (0, 1, 2)
    lo, hi = m.amin(dims, keepdim=True), m.amax(dims, keepdim=True)
    m = torch.where(hi > lo, (m - lo) / (hi - lo).clamp_min(1e-12), torch.zeros_like(m))
    lut = torch.from_numpy(colormaps[cmap](np.linspace(0, 1, 256))[:, :3]).float()
    rgb = lut[(m * 255).round().long()]  # [C, h, w, 3]
    ncol = ncol or math.ceil(math.sqrt(c * h / w))
    nrow = math.ceil(c / ncol)
    tiles = torch.full((nrow * ncol, h + pad, w + pad, 3), 0.5)  # each tile with its grey border below and right
    tiles[:c, :h, :w] = rgb
    canvas = tiles.view(nrow, ncol, h + pad, w + pad, 3).permute(0, 2, 1, 3, 4).reshape(nrow * (h + pad), -1, 3)
    canvas = torch.nn.functional.pad(canvas.permute(2, 0, 1), (pad, 0, pad, 0), value=0.5).permute(1, 2, 0)
    return Image.fromarray((canvas.numpy() * 255).round().astype(np.uint8)), ncol
