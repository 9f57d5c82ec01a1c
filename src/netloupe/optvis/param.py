"""Image parameterizations: what the optimizer changes, and how it becomes an RGB image in [0, 1].

Lucid's defaults: the image lives in a scaled Fourier basis (so that every frequency learns at
a similar rate instead of high frequencies winning) and in a decorrelated colour space, and a
sigmoid keeps pixels in [0, 1]. A plain pixel parameterization is there for comparison.
"""

from __future__ import annotations

import math
import warnings
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn

from ..deprecation import renamed
from ..errors import InputError
from ..images import ImageLike, as_pil
from ..runtime import generator

# Lucid's colour correlation (square root of ImageNet's colour covariance, via SVD).
COLOR_CORRELATION = torch.tensor([[0.26, 0.09, 0.02],
                                  [0.27, 0.00, -0.05],
                                  [0.27, -0.09, 0.03]])
COLOR = COLOR_CORRELATION / COLOR_CORRELATION.norm(dim=0).max()  # divided by its largest column norm
FFT_DIVISOR = 4.0  # Lucid's constant


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

    def __init__(self, raw: torch.Tensor, h: int, w: int, fft: bool, decorrelate: bool, decay_power: float = 1.0):
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
        x = self.raw
        if self.fft:
            spectrum = torch.view_as_complex(x) * self.scale
            x = torch.fft.irfft2(spectrum, s=(self.h, self.w), norm="backward") / FFT_DIVISOR
        if self.decorrelate:
            x = torch.einsum("ij,bjhw->bihw", self.color, x)
        return torch.sigmoid(x)

    def extra_repr(self) -> str:
        return f"n={self.n}, h={self.h}, w={self.w}, fft={self.fft}, decorrelate={self.decorrelate}"


def hw(size, w: Optional[int] = None, name: str = "size") -> Tuple[int, int]:
    """(h, w) of an image size: an int (square) or (h, w); a separate ``w`` is the old way of
    giving a width (deprecated)."""
    if w is not None:
        warnings.warn(f"giving the width as a second argument is deprecated; pass {name}=(h, w)", DeprecationWarning,
                      stacklevel=3)
        size = (size, w)
    h, w = (size, size) if isinstance(size, int) else tuple(size) if isinstance(size, (tuple, list)) else (None, None)
    if not (isinstance(h, int) and isinstance(w, int)) or h < 2 or w < 2:
        raise InputError(f"image {name} must be an int or (h, w) of integers >= 2; got {size!r}")
    return h, w


def _count(n: int) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise InputError(f"n (how many images) must be an integer >= 1; got {n!r}")
    return n


@renamed(batch="n")
def image(size, w: Optional[int] = None, *, n: int = 1, fft: bool = True, decorrelate: bool = True,
          sd: float = 0.01, decay_power: float = 1.0, seed: Optional[int] = None, device=None) -> Param:
    """``n`` random images of ``size`` (an int or (h, w)), parameterized as in Lucid's
    ``param.image``; ``fft=False, decorrelate=False`` is the plain pixel parameterization."""
    h, w = hw(size, w)
    g = generator(seed, "cpu")
    shape = (_count(n), 3, h, w // 2 + 1, 2) if fft else (_count(n), 3, h, w)
    raw = torch.randn(shape, generator=g) * sd
    return Param(raw, h, w, fft, decorrelate, decay_power).to(device)


@renamed(batch="n")
def pixel(size, w: Optional[int] = None, *, n: int = 1, sd: float = 0.01, seed: Optional[int] = None,
          device=None) -> Param:
    """The plain pixel parameterization: each pixel (through a sigmoid) is a free variable."""
    return image(hw(size, w), n=n, fft=False, decorrelate=False, sd=sd, seed=seed, device=device)


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
    import numpy as np

    return torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255.0).permute(2, 0, 1)


@renamed(batch="n")
def from_image(img, size=None, w: Optional[int] = None, *, n: int = 1, fft: bool = True, decorrelate: bool = True,
               decay_power: float = 1.0, eps: float = 1e-3, device=None) -> Param:
    """``n`` copies of a parameterization that starts at a photo (path, PIL, HWC array or
    [3, H, W] tensor in [0, 1]), resized to ``size`` (an int or (h, w)) when given: the exact
    inverse of sigmoid, colour matrix and spectrum scale."""
    t = _image01(img, None if size is None else hw(size, w))
    h, w = t.shape[1:]
    x = torch.logit(t.clamp(eps, 1 - eps))
    if decorrelate:
        x = torch.einsum("ij,jhw->ihw", torch.linalg.inv(COLOR), x)
    if fft:
        spectrum = torch.fft.rfft2(x * FFT_DIVISOR, norm="backward") / spectrum_scale(h, w, decay_power)
        x = torch.view_as_real(spectrum)
    raw = x.unsqueeze(0).repeat(_count(n), *([1] * x.dim())).contiguous()
    return Param(raw, h, w, fft, decorrelate, decay_power).to(device)
