"""Attribution: what a method says about each input pixel (or CAM cell), and how to draw it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple, Union

import torch
from PIL import Image

from .. import images
from ..errors import InputError
from ..images import Preprocess

if TYPE_CHECKING:
    from matplotlib.axes import Axes

KINDS = ("heatmap", "overlay", "raw", "gray", "norm-blur")
_CMAPS = {"heatmap": "inferno", "overlay": "jet", "gray": "gray", "norm-blur": "inferno"}

Values = Union[torch.Tensor, Tuple[Optional[torch.Tensor], ...]]


@dataclass
class Attribution(images.Picture):
    """values: [N, C, H, W] for input-space methods, [N, 1, h, w] for class activation maps;
    for a model with several inputs, a tuple with one tensor per input (same shapes as the
    inputs; None where a method has nothing to say about that input).

    inputs are the model inputs explained (for overlays; a tuple for several), target what was
    explained (class indices per sample, a unit string or a callable), delta the completeness
    gap of integrated gradients per sample.
    """

    values: Values
    method: str
    target: Any
    inputs: Optional[Values] = None
    preprocess: Optional[Preprocess] = None
    delta: Optional[torch.Tensor] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def several(self) -> bool:
        """Whether this explains a model with several inputs (values is a tuple)."""
        return isinstance(self.values, tuple)

    def __len__(self) -> int:
        first = next(v for v in self.values if v is not None) if isinstance(self.values, tuple) else self.values
        return first.shape[0]

    def part(self, i: int) -> "Attribution":
        """The attribution of input ``i`` alone, for drawing and metrics."""
        values = self.values
        if not isinstance(values, tuple):  # not several
            if i != 0:
                raise InputError(f"this attribution explains one input; part({i}) does not exist")
            return self
        if not 0 <= i < len(values):
            raise InputError(f"part {i} out of range; this attribution explains {len(values)} inputs")
        value = values[i]
        if value is None:
            raise InputError(f"{self.method} has no attribution for input {i} (it has no spatial grid)")
        inputs = self.inputs[i] if isinstance(self.inputs, tuple) else self.inputs
        return replace(self, values=value, inputs=inputs)

    def _map_values(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Values:
        values = self.values
        return tuple(None if v is None else fn(v) for v in values) if isinstance(values, tuple) else fn(values)

    def positive(self) -> "Attribution":
        """Only the evidence for the target (positive values)."""
        return replace(self, values=self._map_values(lambda v: v.clamp(min=0)), method=f"{self.method}+")

    def negative(self) -> "Attribution":
        """Only the evidence against the target, as magnitudes."""
        return replace(self, values=self._map_values(lambda v: (-v).clamp(min=0)), method=f"{self.method}-")

    def _single(self, what: str) -> torch.Tensor:
        """The values of an attribution that explains one input (for ``what``, which needs one)."""
        values = self.values
        if isinstance(values, tuple):  # several
            raise InputError(f"this attribution explains {len(values)} inputs; {what} one of them with "
                             f"result.part(i).{what}(...)")
        return values

    def map(self) -> torch.Tensor:
        """[N, H, W]: the per-pixel magnitude, |values| summed over channels."""
        return self._single("map").detach().abs().sum(1)

    def image(self, index: int = 0) -> torch.Tensor:
        """The explained input as [3, H, W] in [0, 1]."""
        if self.inputs is None or isinstance(self.inputs, tuple):
            raise InputError("this attribution holds no single image input to draw under it")
        x = self.inputs[index: index + 1].detach().float().cpu()
        return (self.preprocess.inverse(x) if self.preprocess else x.clamp(0, 1))[0]

    def _view(self, kind: str, index: int) -> Tuple[torch.Tensor, Tuple[float, Optional[float]]]:
        """What ``kind`` draws for sample ``index``: an [H, W] map (or signed [3, H, W] for raw) in
        [0, 1] and the attribution value at each end of that range."""
        if kind not in KINDS:
            raise InputError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
        values = self._single("to_pil")
        (index,) = images.shown(index, len(self))
        v = values[index].detach().float().cpu()
        if v.dim() != 3:
            raise InputError(f"only image-shaped attributions [N, C, H, W] can be drawn; these have shape "
                             f"{tuple(values.shape)}")
        if kind == "raw":  # signed values around gray, one robust scale for all channels
            rgb = v.expand(3, -1, -1) if v.shape[0] == 1 else v[:3]
            hi = float(_robust_max(rgb.abs()))
            return (rgb / hi).clamp(-1, 1) * 0.5 + 0.5, (-hi, hi)
        m = v.abs().sum(0)
        hi = float(_robust_max(m))
        m = (m / hi).clamp(0, 1)
        if kind == "norm-blur":
            return _robust_unit(images.blur(m, sigma=max(1.0, m.shape[-1] / 100))), (0.0, None)
        return m, (0.0, hi)

    def to_pil(self, kind: str = "heatmap", index: Optional[int] = None, cmap: Optional[str] = None,
               alpha: float = 0.5) -> Image.Image:
        """Draw sample ``index`` (None: every sample, side by side): heatmap, overlay (on the
        input), raw (signed RGB), gray, norm-blur."""
        if index is None:
            tiles = [self.to_pil(kind, i, cmap, alpha) for i in images.shown(None, len(self))]
            return tiles[0] if len(tiles) == 1 else images.grid(tiles)
        m, _ = self._view(kind, index)
        if kind in ("raw", "gray"):
            return images.to_pil(m)
        if kind != "overlay":
            return images.heatmap(m, cmap or _CMAPS[kind], vmin=0.0, vmax=1.0)
        base = images.to_pil(self.image(index))
        heat = images.heatmap(m, cmap or _CMAPS[kind], vmin=0.0, vmax=1.0).resize(base.size, Image.Resampling.BILINEAR)
        return Image.blend(base, heat, alpha)

    def plot(self, ax: Optional[Axes] = None, kind: str = "heatmap", index: Optional[int] = None,
             cmap: Optional[str] = None, alpha: float = 0.5, colorbar: bool = True, title: Optional[str] = None) -> Axes:
        """Draw sample ``index`` on a matplotlib axis (a new figure if none) with a colour bar in
        attribution units: |values| summed over channels, from 0 to the robust maximum (the
        99.5th percentile; brighter values saturate); for ``raw``, the signed value per channel.
        ``index=None`` (as in to_pil) is the sample of a one-sample attribution; with several, one
        axis holds one sample: give its index."""
        if index is None:
            if len(self) != 1:
                raise InputError(f"this attribution holds {len(self)} samples and an axis shows one: pass "
                                 "plot(index=i), or to_pil() to draw them all")
            index = 0
        import matplotlib.pyplot as plt
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        if ax is None:
            _, ax = plt.subplots()
        m, (lo, hi) = self._view(kind, index)
        ax.imshow(self.to_pil(kind=kind, index=index, cmap=cmap, alpha=alpha))
        ax.set_axis_off()
        ax.set_title(self.method if title is None else title, fontsize=8)
        if colorbar:
            name = "gray" if kind == "raw" else cmap or _CMAPS[kind]
            scale = Normalize(0.0, 1.0) if hi is None else Normalize(lo, hi)
            bar = ax.figure.colorbar(ScalarMappable(scale, name), ax=ax, fraction=0.046, pad=0.02)
            bar.ax.tick_params(labelsize=6)
            bar.ax.yaxis.get_offset_text().set_fontsize(6)
            bar.set_label("relative" if hi is None else "signed value" if kind == "raw" else "|attribution|",
                          fontsize=6)
        return ax


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
