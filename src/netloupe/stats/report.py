"""Reports of a scan result: layer activity, labelled correlation heatmaps, top-k montages and,
with the result's own histogram grids (every channel, paged, dead channels marked), an
index.html that links them all."""

from __future__ import annotations

import argparse
import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image

from .. import runtime
from ..data import DataLike
from ..errors import NetloupeError
from ..folders import template
from ..images import figure, figure_to_pil, grid
from ..models import ModelLike
from ..verbs import Arg, Option, data_of, model_of, verb
from .receptive import ReceptiveField, top_patches
from .result import LayerStats, ScanResult, histogram_grid, histogram_pages
from .scan import scan

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Rect = Tuple[float, float, float, float]  # (left, bottom, right, top) of a figure, in figure fractions


def activity_histograms(result: ScanResult) -> Image.Image:
    """Per layer, a histogram over channels of the share of images where the channel fires
    (is positive somewhere): a pile at 0 is a dead layer (the Toolbox's 'inactive layers')."""
    n = len(result.layers)
    fig, axes = figure(1, n, figsize=(3.2 * n, 2.6))
    for ax, (key, stats) in zip(axes[0], result.layers.items()):
        active = (1 - stats.never_positive).numpy()
        ax.hist(active, bins=20, range=(0, 1), color="#1f77b4")
        ax.set_title(f"{key}\n{stats.dead_share:.0%} of {stats.channels} channels dead", fontsize=8)
        ax.set_xlabel("share of images where the channel fires", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    return figure_to_pil(fig)


_CONSTANT = "#bbbbbb"  # the colour of undefined correlations
_TICK_FONT = 6  # points


def _tick_step(ax: Axes, fig: Figure, n: int) -> int:
    """The smallest 1-2-5 step at which labels of ``n`` rows fit along the (square) heatmap
    without overlapping: one label per 1.5 font heights."""
    pos = ax.get_position()
    width, height = fig.get_size_inches()
    side = min(pos.width * width, pos.height * height) * 72  # points; imshow keeps the axes square
    need = n / max(1.0, side / (1.5 * _TICK_FONT))
    step, k = 1, 0
    while step < need:
        k += 1
        step = (1, 2, 5)[k % 3] * 10 ** (k // 3)
    return step


def _label_channels(ax: Axes, fig: Figure, order: Sequence[int], rect: Rect) -> None:
    """Label rows and columns with their channel numbers, every k-th where all would overlap."""
    step = 0
    while True:  # labels shrink the axes, which can call for a larger step: grow it until it holds
        new = max(step, _tick_step(ax, fig, len(order)))
        if new == step:
            return
        step = new
        ticks = list(range(0, len(order), step))
        labels = [str(order[i]) for i in ticks]
        ax.set_xticks(ticks, labels, rotation=90, fontsize=_TICK_FONT)
        ax.set_yticks(ticks, labels, fontsize=_TICK_FONT)
        ax.tick_params(length=2, pad=1)
        fig.tight_layout(rect=rect)


def _correlation_figure(stats: LayerStats) -> Figure:
    from matplotlib import colormaps
    from matplotlib.patches import Patch

    order = stats.order.tolist()
    corr = stats.correlation[order][:, order].numpy()
    constant = int(np.isnan(np.diagonal(corr)).sum())
    fig, axes = figure(figsize=(5.4, 5.0))
    ax = axes[0, 0]
    cmap = colormaps["RdBu_r"].with_extremes(bad=_CONSTANT)
    im = ax.imshow(np.ma.masked_invalid(corr), cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
    ax.set_title(f"{stats.layer}: channel correlation, {len(order)} channels in clustered order", fontsize=8)
    ax.set_xlabel("channel", fontsize=7)
    ax.set_ylabel("channel", fontsize=7)
    fig.colorbar(im, ax=ax, fraction=0.046).ax.tick_params(labelsize=7)
    rect: Rect = (0, 0, 1, 1)
    if constant:
        fig.legend(handles=[Patch(facecolor=_CONSTANT, edgecolor="#888888",
                                  label=f"constant channel (no correlation): {constant} of {len(order)}")],
                   loc="lower left", fontsize=7, frameon=False)
        rect = (0, 0.06, 1, 1)
    fig.tight_layout(rect=rect)
    _label_channels(ax, fig, order, rect)
    return fig


def correlation_heatmap(stats: LayerStats) -> Image.Image:
    """Channel correlation (of per-image maxima) in clustered order, so that groups of channels
    that fire together show as blocks; rows are labelled with their channel numbers, and
    channels constant over the data (no correlation defined) are grey, as the legend says."""
    return figure_to_pil(_correlation_figure(stats))


def montage(result: ScanResult, layer: str, channels: Optional[Sequence[int]] = None, max_channels: int = 16,
            cell: int = 72, model: Optional[ModelLike] = None, data: Optional[DataLike] = None) -> Image.Image:
    """One row per channel: its top-k receptive-field patches (checkerboard beyond the border;
    for a field that covers the whole input, the photo with where the channel fired)."""
    stats = result[layer]
    if channels is None:  # the most active channels first, dead ones last
        channels = torch.argsort(stats.max, descending=True, stable=True)[:max_channels].tolist()
    rows: List[Image.Image] = []
    field: Optional[ReceptiveField] = None
    for c in channels:
        p = top_patches(result, layer, c, model=model, data=data, field=field)
        field = p.field  # measured once per layer
        rows.append(grid([p.to_pil(cell=cell, captions=False)], [f"{layer}:{c}  max {float(stats.max[c]):.3g}"],
                         ncol=1, pad=2))
    return grid(rows, ncol=1, pad=2)


def scan_report(result: ScanResult, directory: Union[str, os.PathLike], *, layers: Optional[Sequence[str]] = None,
           model: Optional[ModelLike] = None, data: Optional[DataLike] = None, per_page: int = 64,
           montage_channels: int = 16, progress: bool = True) -> Path:
    """Write per-layer histogram grids (every channel, ``per_page`` to a picture), the
    layer-activity histograms, correlation heatmaps and top-k montages as PNGs plus an index.html
    linking them; returns the index's path. layers: the scanned layers to report (default: all;
    a wide layer takes a while: 1152 channels about a minute on two CPU cores), with a bar
    (``progress=False`` silences it).
    Montages need the images: they come from the scan itself, or from model=/data= for a result
    loaded from disk (they are left out, with a note, when neither is available)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    chosen = {key: result[key] for key in (result.layers if layers is None else layers)}
    # (layer, file, draw)
    jobs: List[Tuple[Optional[str], str, functools.partial[Image.Image]]] = [
        (None, "activity.png", functools.partial(activity_histograms, result))]
    for key, stats in chosen.items():
        slug = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in key)
        for number in range(1, histogram_pages(stats, per_page) + 1):
            jobs.append((key, f"{slug}_histograms{'' if number == 1 else f'_{number}'}.png",
                         functools.partial(histogram_grid, stats, number, per_page)))
        jobs.append((key, f"{slug}_correlation.png", functools.partial(correlation_heatmap, stats)))
        jobs.append((key, f"{slug}_topk.png", functools.partial(montage, result, key, max_channels=montage_channels,
                                                                model=model, data=data)))
    pictures: Dict[str, List[str]] = {key: [] for key in chosen}
    notes = dict.fromkeys(chosen, "")
    for key, name, draw in runtime.progress(jobs, desc="report", enabled=progress):
        try:
            draw().save(out / name)
        except NetloupeError as e:  # only a montage may be missing: no images to crop from
            if draw.func is not montage:
                raise
            notes[key] = str(e)
            continue
        if key is not None:
            pictures[key].append(name)
    rows = [{"name": key, "channels": stats.channels, "dead": stats.dead_channels, "dead_share": stats.dead_share,
               "note": notes[key], "pictures": pictures[key]} for key, stats in chosen.items()]
    page = template("netloupe.stats", "report.html").render(
        model_name=result.model_name, count=result.count, top_k=result.top_k, skipped=result.skipped, layers=rows)
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


@verb("scan", "dataset-wide statistics and top-k patches of layers' channels", function=scan, out="netloupe-scan",
      order=70,
      args=(Arg.of("data", help="a folder of images, an image list or pair list file, or 'samples'"),
            Arg.of("--layers", required=True, help="comma-separated layer names (see `netloupe layers`)")),
      options={"top_k": Option("highest-activating patches kept per channel", minimum=1),
               "bottom_k": Option("lowest-activating patches kept per channel", minimum=0),
               "bins": Option("histogram bins per channel", minimum=2),
               "batch_size": Option("images per batch (default: 32 on the CPU, 128 on a GPU)", type=int, minimum=1),
               "num_workers": Option("DataLoader worker processes for reading images", minimum=0, flag="--workers")})
def _scan_verb(args: argparse.Namespace, keywords: Dict[str, Any]) -> None:
    result = scan(model_of(args), data_of(args.data), args.layers, **keywords)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun every rank holds the merged result; one writes
        result.save(args.out)
        print(scan_report(result, args.out, progress=keywords["progress"]).resolve())
