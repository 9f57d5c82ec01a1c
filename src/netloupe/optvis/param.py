"""Image parameterizations: what the optimizer changes, and how it becomes an RGB image in [0, 1].

Lucid's defaults: the image lives in a scaled Fourier basis (so that every frequency learns at
a similar rate instead of high frequencies winning) and in a decorrelated colour space, and a
sigmoid keeps pixels in [0, 1]. A plain pixel parameterization is there for comparison.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from ..errors import InputError
from ..images import ImageLike, as_pil, pil_to01
from ..runtime import generator

# Lucid's colour correlation (square root of ImageNet's colour covariance, via SVD).
COLOR_CORRELATION = torch.tensor([[0.26, 0.09, 0.02],
                                  [0.27, 0.00, -0.05],
                                  [0.27, -0.09, 0.03]])
COLOR = COLOR_CORRELATION / COLOR_CORRELATION.norm(dim=0).max()  # divided by its largest column norm
FFT_DIVISOR = 4.0  # Lucid's constant

Size = Union[int, Sequence[int]]  # an image size: an int (square) or (h, w)
Device = Union[str, torch.device, None]


def spectrum_scale(h: int, w: int, decay_power: float = 1.0) -> torch.Tensor:
    """[h, w // 2 + 1] weights of the rFFT coefficients: 1 / max(freq, 1 / max(h, w)) ** decay_power * sqrt(h * w).

    With the inverse FFT's usual 1 / (h * w) (torch's norm="backward", TensorFlow's irfft2d)
    the net map is orthonormal (before the frequency weights), exactly as in Lucid. (An orthonormal inverse on top of the sqrt(h * w) would start the image
    sqrt(h * w) times too large, saturating the sigmoid from the first step.)"""
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(w, dtype=torch.float64)[None, :]
    freq = (fy ** 2 + fx ** 2).sqrt()
    scale = 1.0 / freq.clamp(min=1.0 / max(h, w)) ** decay_power
    return (scale * math.sqrt(h * w)).float()


class Param(nn.Module):
    """Images as a function of learnable tensors; calling it gives [batch, 3, h, w] in [0, 1]."""

    scale: torch.Tensor  # buffers
    color: torch.Tensor

    def __init__(self, raw: torch.Tensor, h: int, w: int, fft: bool, decorrelate: bool,
                 decay_power: float = 1.0) -> None:
        super().__init__()
        self.h, self.w, self.fft, self.decorrelate, self.decay_power = h, w, fft, decorrelate, decay_power
        self.raw = nn.Parameter(raw)
        self.register_buffer("scale", spectrum_scale(h, w, decay_power) if fft else torch.ones(()), persistent=False)
        self.register_buffer("color", COLOR.clone(), persistent=False)

    @property
    def n(self) -> int:
        """How many images this parameterizes."""
        return self.raw.shape[0]

    def forward(self) -> torch.Tensor:
        x: torch.Tensor = self.raw
        if self.fft:
            spectrum = torch.view_as_complex(x) * self.scale
            x = torch.fft.irfft2(spectrum, s=(self.h, self.w), norm="backward") / FFT_DIVISOR
        if self.decorrelate:
            x = torch.einsum("ij,bjhw->bihw", self.color, x)
        return torch.sigmoid(x)

    def extra_repr(self) -> str:
        return f"n={self.n}, h={self.h}, w={self.w}, fft={self.fft}, decorrelate={self.decorrelate}"


class Pixels(Param):
    """Plain pixels about a zero point: the image is clamp(raw + zero, 0, 1), with no sigmoid, so that
    a step on ``raw`` is a step on the pixels as in Yosinski et al.'s and Gatys et al.'s optimizers;
    ``zero`` (a colour) is where decay and clipping pull pixels, the model's mean colour for Yosinski's."""

    zero: torch.Tensor  # buffer

    def __init__(self, raw: torch.Tensor, zero: torch.Tensor) -> None:
        super().__init__(raw, raw.shape[2], raw.shape[3], fft=False, decorrelate=False)
        self.register_buffer("zero", zero.reshape(1, 3, 1, 1).to(raw), persistent=False)

    def forward(self) -> torch.Tensor:
        x = self.raw + self.zero
        # clipped, but with the gradient of the identity: a pixel that reached 0 or 1 can come back
        return x + (x.clamp(0, 1) - x).detach()

    @torch.no_grad()
    def clamp_(self) -> None:
        """Keep ``raw`` where the image is in [0, 1], as both papers' loops crop their pixels each step."""
        self.raw.clamp_(min=-self.zero, max=1 - self.zero)


def pixels(start: torch.Tensor, zero: torch.Tensor | Sequence[float] = (0.0, 0.0, 0.0), device: Device = None
           ) -> Pixels:
    """A :class:`Pixels` param starting at the images ``start`` ([n, 3, h, w] in [0, 1])."""
    if not isinstance(start, torch.Tensor) or start.dim() != 4 or start.shape[1] != 3:
        raise InputError(f"pixels takes a [n, 3, h, w] tensor in [0, 1]; got {getattr(start, 'shape', start)!r}")
    zero_t = torch.as_tensor(zero, dtype=torch.float32).reshape(1, 3, 1, 1)
    return Pixels(start.detach().float().cpu().clamp(0, 1) - zero_t, zero_t).to(device)


def hw(size: Size, name: str = "size") -> Tuple[int, int]:
    """(h, w) of an image size: an int (square) or (h, w)."""
    h, w = (size, size) if isinstance(size, int) else tuple(size) if isinstance(size, (tuple, list)) else (None, None)
    if not (isinstance(h, int) and isinstance(w, int)) or h < 2 or w < 2:
        raise InputError(f"image {name} must be an int or (h, w) of integers >= 2; got {size!r}")
    return h, w


def _count(n: int) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise InputError(f"n (how many images) must be an integer >= 1; got {n!r}")
    return n


def image(size: Size, *, n: int = 1, fft: bool = True, decorrelate: bool = True,
          sd: float = 0.01, decay_power: float = 1.0, seed: Optional[int] = None, device: Device = None) -> Param:
    """``n`` random images of ``size`` (an int or (h, w)), parameterized as in Lucid's
    ``param.image``; ``fft=False, decorrelate=False`` is the plain pixel parameterization."""
    h, w = hw(size)
    g = generator(seed, "cpu")
    shape = (_count(n), 3, h, w // 2 + 1, 2) if fft else (_count(n), 3, h, w)
    raw = torch.randn(shape, generator=g) * sd
    return Param(raw, h, w, fft, decorrelate, decay_power).to(device)


def pixel(size: Size, *, n: int = 1, sd: float = 0.01, seed: Optional[int] = None,
          device: Device = None) -> Param:
    """The plain pixel parameterization: each pixel (through a sigmoid) is a free variable."""
    return image(size, n=n, fft=False, decorrelate=False, sd=sd, seed=seed, device=device)


def _image01(img: Union[ImageLike, torch.Tensor], size: Optional[Tuple[int, int]]) -> torch.Tensor:
    if isinstance(img, torch.Tensor):
        t = img.detach().float().cpu()
        if t.dim() == 4 and t.shape[0] == 1:
            t = t[0]
        if t.dim() != 3 or t.shape[0] != 3:
            raise InputError(f"from_image takes a [3, H, W] tensor in [0, 1]; got shape {tuple(img.shape)}")
        if size is not None:
            t = torch.nn.functional.interpolate(t[None], size=size, mode="bilinear", align_corners=False)[0]
        return t.clamp(0, 1)
    pil = as_pil(img)
    if size is not None:
        pil = pil.resize(size[::-1])
    return pil_to01(pil)


def from_image(img: ImageLike, size: Optional[Size] = None, *, n: int = 1, fft: bool = True,
               decorrelate: bool = True, decay_power: float = 1.0, eps: float = 1e-3, device: Device = None) -> Param:
    """``n`` copies of a parameterization that starts at a photo (path, PIL, HWC array or
    [3, H, W] tensor in [0, 1]), resized to ``size`` (an int or (h, w)) when given: the exact
    inverse of sigmoid, colour matrix and spectrum scale."""
    t = _image01(img, None if size is None else hw(size))
    h, w = t.shape[1:]
    x = torch.logit(t.clamp(eps, 1 - eps))
    if decorrelate:
        x = torch.einsum("ij,jhw->ihw", torch.linalg.inv(COLOR), x)
    if fft:
        spectrum = torch.fft.rfft2(x * FFT_DIVISOR, norm="backward") / spectrum_scale(h, w, decay_power)
        x = torch.view_as_real(spectrum)
    raw = x.unsqueeze(0).repeat(_count(n), *([1] * x.dim())).contiguous()
    return Param(raw, h, w, fft, decorrelate, decay_power).to(device)


class Masked(Param):
    """A param seen through a mask: where the mask is 0 the image is exactly the photo and gets no
    gradient; elsewhere it blends the inner param's image in by the mask (torch-dreams's
    MaskedImageParam). Optimizing it optimizes the inner param."""

    photo: torch.Tensor  # buffers
    mask: torch.Tensor

    def __init__(self, inner: Param, photo: torch.Tensor, mask: torch.Tensor) -> None:
        nn.Module.__init__(self)  # its one learnable tensor is the inner param's
        self.inner, self.h, self.w = inner, inner.h, inner.w
        self.register_buffer("photo", photo, persistent=False)
        self.register_buffer("mask", mask, persistent=False)

    @property
    def n(self) -> int:
        return self.inner.n

    def forward(self) -> torch.Tensor:
        x = self.inner()
        return torch.where(self.mask > 0, self.mask * x + (1 - self.mask) * self.photo, self.photo)

    def extra_repr(self) -> str:
        return f"n={self.n}, h={self.h}, w={self.w}, mask covers {float((self.mask > 0).float().mean()):.0%}"


def as_mask(mask: ImageLike, hw: Sequence[int]) -> torch.Tensor:
    """A mask ([h, w], [1, h, w] or [n, 1, h, w] tensor or array in [0, 1], or a greyscale picture
    or its path: white is optimized) as a [n or 1, 1, h, w] float tensor, checked against the size
    ``hw`` of the images it masks."""
    import numpy as np

    if not isinstance(mask, torch.Tensor):
        mask = (torch.from_numpy(np.asarray(as_pil(mask).convert("L"), dtype=np.float32) / 255.0)
                if not isinstance(mask, np.ndarray) else torch.from_numpy(np.asarray(mask, dtype=np.float32)))
    m = mask.detach().float().cpu()
    m = m.view(1, 1, *m.shape) if m.dim() == 2 else m.unsqueeze(0) if m.dim() == 3 else m
    if m.dim() != 4 or m.shape[1] != 1:
        raise InputError(f"a mask is [h, w], [1, h, w] or [n, 1, h, w]; got shape {tuple(mask.shape)}")
    if tuple(m.shape[2:]) != tuple(hw):
        raise InputError(f"the mask is {m.shape[2]}x{m.shape[3]} but the image it masks is {hw[0]}x{hw[1]} (h x w); "
                         "give a mask of the image's size")
    if not torch.isfinite(m).all() or m.min() < 0 or m.max() > 1:
        raise InputError("mask values must be in [0, 1] (0: keep the photo, 1: optimize)")
    return m


def masked(photo: ImageLike, mask: ImageLike, param: Optional[Param] = None, *, n: int = 1, device: Device = None
           ) -> Masked:
    """Optimize ``param`` only where ``mask`` is above 0, the photo staying exactly as it is
    elsewhere. photo: what from_image takes, or an [n, 3, h, w] batch in [0, 1]; mask: see
    :func:`as_mask`; param (default: ``n`` plain pixel images starting at the photo): its size
    must be the photo's."""
    t = photo.detach().float().cpu() if isinstance(photo, torch.Tensor) and photo.dim() == 4 else _image01(photo, None)[None]
    if t.shape[1] != 3 or t.min() < 0 or t.max() > 1:
        raise InputError(f"masked takes photos [n, 3, h, w] in [0, 1]; got shape {tuple(t.shape)} with values "
                         f"in [{float(t.min()):.3g}, {float(t.max()):.3g}]")
    inner = pixels(t.expand(_count(n), -1, -1, -1) if t.shape[0] == 1 else t) if param is None else param
    if (inner.h, inner.w) != tuple(t.shape[2:]):
        raise InputError(f"the param is {inner.h}x{inner.w} but the photo is {t.shape[2]}x{t.shape[3]}; "
                         "give a param of the photo's size")
    return Masked(inner, t, as_mask(mask, t.shape[2:])).to(device)
