"""What a scan finds, kept, stored and drawn: per-layer statistics (LayerStats), the whole
result (ScanResult) with its folder on disk (npz + json, no pickle), and the histogram grids
that are its picture. Knows nothing of how a scan runs: scan.py builds these, report.py draws
the rest."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from PIL import Image

from ..errors import InputError, UnitError
from ..folders import Contents, Stored
from ..images import figure, figure_to_pil
from ..models import LoadedModel
from ..units import check_channel

if TYPE_CHECKING:
    from matplotlib.figure import Figure



def _cluster_order(corr: torch.Tensor) -> torch.Tensor:
    """A display order that puts correlated channels next to each other: channels sorted by the
    Fiedler vector of the graph weighted by |correlation| (spectral seriation); constant channels
    (no correlation defined) go last."""
    valid = ~torch.isnan(corr.diagonal())
    idx = torch.nonzero(valid).flatten()
    rest = torch.nonzero(~valid).flatten()
    if len(idx) < 3:
        return torch.cat([idx, rest])
    w = torch.nan_to_num(corr[idx][:, idx].abs(), nan=0.0)
    w.fill_diagonal_(0)
    fiedler = torch.linalg.eigh(torch.diag(w.sum(1)) - w).eigenvectors[:, 1]
    if fiedler[fiedler.abs().argmax()] < 0:  # a sign convention, so the order is deterministic
        fiedler = -fiedler
    return torch.cat([idx[torch.from_numpy(np.lexsort((np.arange(len(idx)), fiedler.numpy())))], rest])


@dataclass
class LayerStats:
    """Statistics of one layer (one call of it, for a module run several times per forward).

    Per channel, over images, of the per-image spatial maximum: ``mean``, ``std``, ``min``,
    ``max``, ``never_positive`` (fraction of images where the channel is <= 0 everywhere),
    histogram (``histogram(c)``), ``correlation`` between channels and a clustered ``order``
    (computed when first read);
    ``top_*``/``bottom_*``: per channel the k images (ids into ScanResult.ids) with the
    highest/lowest maximum, the values, and the (y, x) of the maximum on the layer's grid. ``shape``
    is (channels, h, w) whatever the layer's layout (tokens, channels last): (channels,) for a
    vector; ``layout`` says how the output was laid out."""

    layer: str
    call: int
    shape: Tuple[int, ...]
    count: int
    mean: torch.Tensor
    std: torch.Tensor
    min: torch.Tensor
    max: torch.Tensor
    never_positive: torch.Tensor
    correlation: torch.Tensor
    hist_counts: torch.Tensor
    hist_origin: torch.Tensor
    hist_exp: torch.Tensor
    top_values: torch.Tensor
    top_images: torch.Tensor
    top_positions: torch.Tensor
    bottom_values: torch.Tensor
    bottom_images: torch.Tensor
    bottom_positions: torch.Tensor
    layout: str = "nchw"  # where the layer kept its channels and grid (netloupe.layouts); shape is (C, h, w)

    ARRAYS = ("mean", "std", "min", "max", "never_positive", "correlation", "hist_counts", "hist_origin",
              "hist_exp", "top_values", "top_images", "top_positions", "bottom_values", "bottom_images",
              "bottom_positions")

    @functools.cached_property
    def order(self) -> torch.Tensor:
        """Channels in a clustered order for display (computed on first use: an eigendecomposition)."""
        return _cluster_order(self.correlation)

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def dead_channels(self) -> List[int]:
        """Channels never positive on any image."""
        return torch.nonzero(self.never_positive >= 1.0).flatten().tolist()

    @property
    def dead_share(self) -> float:
        """Share of the layer's channels that are dead (near 1: a dead layer)."""
        return len(self.dead_channels) / self.channels

    def histogram(self, channel: int) -> Tuple[np.ndarray, np.ndarray]:
        """(edges, counts) of one channel's histogram, trimmed to its non-empty range."""
        check_channel(self.layer, channel, self.channels)
        counts = self.hist_counts[channel].numpy()
        nz = np.nonzero(counts)[0]
        first, last = int(nz[0]), int(nz[-1])
        j = np.arange(first, last + 2, dtype=np.float64) + float(self.hist_origin[channel])
        return np.ldexp(j, int(self.hist_exp[channel])), counts[first:last + 1].copy()


@dataclass
class ScanResult(Stored):
    """What :func:`scan` found: ``layers`` maps a layer name (``name#i`` for the i-th call of a
    module run several times per forward, e.g. a shared siamese branch) to its LayerStats;
    ``ids`` names every image of the source (top_images index into it); ``skipped`` lists
    (id, reason) for unreadable images. ``model``, ``source`` (the scan's stats.scan.Source) and
    ``inputs`` let top_patches reload the images; a loaded result has none of them."""

    model_name: str
    layers: Dict[str, LayerStats]
    ids: List[str]
    skipped: List[Tuple[str, str]]
    count: int
    top_k: int
    bottom_k: int
    bins: int
    input_shapes: List[Tuple[int, ...]]
    model: Optional[LoadedModel] = field(default=None, repr=False, compare=False)
    source: Optional[Any] = field(default=None, repr=False, compare=False)
    to_inputs: Optional[Callable[[Any], Any]] = field(default=None, repr=False, compare=False)

    def __getitem__(self, layer: str) -> LayerStats:
        if layer not in self.layers:
            raise UnitError(f"layer {layer!r} was not scanned; scanned: {', '.join(self.layers)}")
        return self.layers[layer]

    KIND = "scan"

    def contents(self) -> Contents:
        """What save writes: the statistics of every layer (no model, no data)."""
        arrays = {f"{key}/{name}": getattr(stats, name).numpy() for key, stats in self.layers.items()
                  for name in LayerStats.ARRAYS}
        meta = {
            "model_name": self.model_name, "ids": self.ids,
            "skipped": [list(s) for s in self.skipped], "count": self.count, "top_k": self.top_k,
            "bottom_k": self.bottom_k, "bins": self.bins, "input_shapes": [list(s) for s in self.input_shapes],
            "layers": {key: {"layer": s.layer, "call": s.call, "shape": list(s.shape), "count": s.count,
                             "layout": s.layout} for key, s in self.layers.items()},
        }
        return meta, arrays

    @classmethod
    def from_contents(cls, meta: Dict[str, Any], arrays: Dict[str, np.ndarray]) -> ScanResult:
        layers = {}
        for key, info in meta["layers"].items():
            values = {name: torch.from_numpy(arrays[f"{key}/{name}"]) for name in LayerStats.ARRAYS}
            layers[key] = LayerStats(info["layer"], info["call"], tuple(info["shape"]), info["count"], **values,
                                     layout=info.get("layout", "nchw"))
        return cls(meta["model_name"], layers, meta["ids"], [tuple(s) for s in meta["skipped"]], meta["count"],
                   meta["top_k"], meta["bottom_k"], meta["bins"], [tuple(s) for s in meta["input_shapes"]])

    def to_pil(self, layer: Optional[str] = None, **kw: Any) -> Image.Image:
        """The histogram grid of ``layer`` (default: the first scanned): its first page of 64
        channels; ``page=`` (from 1) and ``per_page=`` show the others."""
        return histogram_grid(self[layer or next(iter(self.layers))], **kw)


# -- the picture -----------------------------------------------------------------------------

def histogram_pages(stats: LayerStats, per_page: int = 64) -> int:
    """How many pages of ``per_page`` channels the histogram grid of a layer takes."""
    if not isinstance(per_page, int) or per_page < 1:
        raise InputError(f"per_page must be a positive integer; got {per_page!r}")
    return math.ceil(stats.channels / per_page)


def _histogram_figure(stats: LayerStats, page: int, per_page: int, ncol: int) -> Figure:
    pages = histogram_pages(stats, per_page)
    if not isinstance(page, int) or not 1 <= page <= pages:
        raise InputError(f"layer {stats.layer!r} has {pages} histogram page(s) of {per_page} channels; "
                         f"choose page 1..{pages}, not {page!r}")
    channels = range((page - 1) * per_page, min(page * per_page, stats.channels))
    dead = set(stats.dead_channels)
    nrow = math.ceil(len(channels) / ncol)
    fig, axes = figure(nrow, ncol, figsize=(ncol * 1.5, nrow * 1.15 + 0.6))
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, c in zip(axes.flat, channels):
        edges, counts = stats.histogram(c)
        colour = "#d62728" if c in dead else "#1f77b4"
        ax.set_axis_on()
        title = f"{c}" + (" dead" if c in dead else "")
        if len(counts) == 1 and float(stats.min[c]) == float(stats.max[c]):  # one value on every image
            value = float(stats.min[c])
            ax.bar([value], counts, width=0.05 * max(abs(value), 1.0), color=colour)
            ax.set_xlim(min(value, 0) - 0.5 * max(abs(value), 1.0), max(value, 0) + 0.5 * max(abs(value), 1.0))
            title += f" (always {value:.3g})"
        else:
            ax.stairs(counts, edges, fill=True, color=colour)
        ax.axvline(0, color="#888", lw=0.5)
        ax.set_title(title, fontsize=7, color=colour, pad=2)
        ax.tick_params(labelsize=5, length=2, pad=1)
        ax.set_yticks([])
    shown = f"channels {channels[0]}-{channels[-1]} of {stats.channels}"
    if pages > 1:
        here = len(dead.intersection(channels))
        shown += f" (page {page} of {pages}), {here} dead here (red), {len(dead)} in the layer"
    else:
        shown += f", {len(dead)} dead (red)"
    fig.suptitle(f"{stats.layer}{'' if stats.call == 0 else f' (call {stats.call})'}: per-image max activation, "
                 f"{shown}, {stats.count} images", fontsize=9)
    # fixed margins in inches (tight_layout measures all 64 axes' text: the slowest part of a report)
    height = nrow * 1.15 + 0.6
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.22 / height, top=1 - 0.55 / height, wspace=0.12,
                        hspace=0.5)
    return fig


def histogram_grid(stats: LayerStats, page: int = 1, per_page: int = 64, ncol: int = 8) -> Image.Image:
    """Small multiples of the per-image maximum of each channel, dead channels in red: page
    ``page`` (from 1; :func:`histogram_pages` says how many) of ``per_page`` channels, so a wide
    layer is shown whole over several pictures that stay readable."""
    return figure_to_pil(_histogram_figure(stats, page, per_page, ncol))
