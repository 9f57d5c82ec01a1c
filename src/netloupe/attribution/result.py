"""Attribution: what a method says about each input pixel (or CAM cell), and how to draw it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Optional

import torch
from PIL import Image

from .. import images
from ..errors import InputError
from ..images import Preprocess

KINDS = ("heatmap", "overlay", "raw", "gray", "norm-blur")


@dataclass
class Attribution(images.Picture):
    """values: [N, C, H, W] for input-space methods, [N, 1, h, w] for class activation maps.

    inputs are the model inputs explained (for overlays), target what was explained
    (class indices per sample, a unit string or a callable), delta the completeness gap of
    integrated gradients per sample.
    """

    values: torch.Tensor
    method: str
    target: Any
    inputs: Optional[torch.Tensor] = None
    preprocess: Optional[Preprocess] = None
    delta: Optional[torch.Tensor] = None
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return self.values.shape[0]

    def positive(self) -> "Attribution":
        """Only the evidence for the target (positive values)."""
        return replace(self, values=self.values.clamp(min=0), method=f"{self.method}+")

    def negative(self) -> "Attribution":
        """Only the evidence against the target, as magnitudes."""
        return replace(self, values=(-self.values).clamp(min=0), method=f"{self.method}-")

    def map(self) -> torch.Tensor:
        """[N, H, W]: the per-pixel magnitude, |values| summed over channels."""
        return self.values.detach().abs().sum(1)

    def image(self, index: int = 0) -> torch.Tensor:
        """The explained input as [3, H, W] in [0, 1]."""
        if self.inputs is None:
            raise InputError("this attribution holds no inputs to draw under it")
        x = self.inputs[index: index + 1].detach().float().cpu()
        return (self.preprocess.inverse(x) if self.preprocess else x.clamp(0, 1))[0]

    def to_pil(self, kind: str = "heatmap", index: int = 0, cmap: Optional[str] = None,
               alpha: float = 0.5) -> Image.Image:
        """Draw sample ``index``: heatmap, overlay (on the input), raw (signed RGB), gray, norm-blur."""
        if kind not in KINDS:
            raise InputError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
        if not 0 <= index < len(self):
            raise InputError(f"index {index} out of range for {len(self)} attributions")
        v = self.values[index].detach().float().cpu()
        if kind == "raw":  # signed values around gray, one robust scale for all channels
            rgb = v.expand(3, -1, -1) if v.shape[0] == 1 else v[:3]
            return images.to_pil((rgb / _robust_max(rgb.abs())).clamp(-1, 1) * 0.5 + 0.5)
        m = _robust_unit(v.abs().sum(0))
        if kind == "norm-blur":
            m = _robust_unit(images.blur(m, sigma=max(1.0, m.shape[-1] / 100)))
        if kind == "gray":
            return images.to_pil(m)
        if kind == "heatmap":
            return images.heatmap(m, cmap or "inferno", vmin=0.0, vmax=1.0)
        base = images.to_pil(self.image(index))
        heat = images.heatmap(m, cmap or "jet", vmin=0.0, vmax=1.0).resize(base.size, Image.BILINEAR)
        return Image.blend(base, heat, alpha)


def _robust_max(m: torch.Tensor) -> torch.Tensor:
    """The 99.5th percentile of a non-negative map (its max if that is 0; 1 for an all-zero
    map), so that a few hot pixels don't wash the picture out."""
    hi = torch.quantile(m.flatten()[:: max(1, m.numel() // 100_000)], 0.995) if m.numel() > 1 else m.max()
    if hi <= 0:
        hi = m.max()
    return hi if hi > 0 else torch.ones(())


def _robust_unit(m: torch.Tensor) -> torch.Tensor:
    """A non-negative map scaled to [0, 1] by its robust max."""
    return (m / _robust_max(m)).clamp(0, 1)
