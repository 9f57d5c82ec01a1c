"""Scan results on disk (npz + json, no pickle) and as pictures: histogram grids of every channel
(paged) with dead channels marked, layer activity, labelled correlation heatmaps, top-k montages,
and an index.html."""

from __future__ import annotations

import functools
import html
import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .. import runtime
from ..errors import InputError, NetloupeError
from ..images import figure, figure_to_pil, grid
from .scan import LayerStats, ScanResult

_FORMAT = 1


def save_result(result: ScanResult, directory) -> Path:
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {f"{key}/{name}": getattr(stats, name).numpy() for key, stats in result.layers.items()
              for name in LayerStats.ARRAYS}
    np.savez_compressed(out / "stats.npz", **arrays)
    meta = {
        "format": _FORMAT, "model_name": result.model_name, "ids": result.ids,
        "skipped": [list(s) for s in result.skipped], "count": result.count, "top_k": result.top_k,
        "bottom_k": result.bottom_k, "bins": result.bins, "input_shapes": [list(s) for s in result.input_shapes],
        "layers": {key: {"layer": s.layer, "call": s.call, "shape": list(s.shape), "count": s.count}
                   for key, s in result.layers.items()},
    }
    (out / "scan.json").write_text(json.dumps(meta, indent=1))
    return out


def load_result(directory) -> ScanResult:
    d = Path(directory)
    if not (d / "scan.json").is_file() or not (d / "stats.npz").is_file():
        raise InputError(f"{d} holds no saved scan (scan.json and stats.npz); write one with result.save(dir)")
    meta = json.loads((d / "scan.json").read_text())
    if meta.get("format") != _FORMAT:
        raise InputError(f"{d}/scan.json has format {meta.get('format')}; this netloupe reads format {_FORMAT}")
    layers = {}
    with np.load(d / "stats.npz", allow_pickle=False) as npz:
        for key, info in meta["layers"].items():
            arrays = {name: torch.from_numpy(npz[f"{key}/{name}"].copy()) for name in LayerStats.ARRAYS}
            layers[key] = LayerStats(info["layer"], info["call"], tuple(info["shape"]), info["count"], **arrays)
    return ScanResult(meta["model_name"], layers, meta["ids"], [tuple(s) for s in meta["skipped"]], meta["count"],
                      meta["top_k"], meta["bottom_k"], meta["bins"], [tuple(s) for s in meta["input_shapes"]])


# -- pictures --------------------------------------------------------------------------------

def histogram_pages(stats: LayerStats, per_page: int = 64) -> int:
    """How many pages of ``per_page`` channels the histogram grid of a layer takes."""
    if not isinstance(per_page, int) or per_page < 1:
        raise InputError(f"per_page must be a positive integer; got {per_page!r}")
    return math.ceil(stats.channels / per_page)


def _histogram_figure(stats: LayerStats, page: int, per_page: int, ncol: int):
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
    fig.tight_layout(rect=(0, 0, 1, 0.97 if nrow > 2 else 0.9), h_pad=0.3, w_pad=0.2)
    return fig


def histogram_grid(stats: LayerStats, page: int = 1, per_page: int = 64, ncol: int = 8) -> Image.Image:
    """Small multiples of the per-image maximum of each channel, dead channels in red: page
    ``page`` (from 1; :func:`histogram_pages` says how many) of ``per_page`` channels, so a wide
    layer is shown whole over several pictures that stay readable."""
    return figure_to_pil(_histogram_figure(stats, page, per_page, ncol))


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


def _tick_step(ax, fig, n: int) -> int:
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


def _label_channels(ax, fig, order, rect) -> None:
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


def _correlation_figure(stats: LayerStats):
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
    rect = (0, 0, 1, 1)
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


def montage(result: ScanResult, layer: str, channels=None, max_channels: int = 16, cell: int = 72,
            model=None, data=None) -> Image.Image:
    """One row per channel: its top-k receptive-field patches (checkerboard beyond the border;
    for a field that covers the whole input, the photo with where the channel fired)."""
    from .receptive import top_patches

    stats = result[layer]
    if channels is None:  # the most active channels first, dead ones last
        channels = torch.argsort(stats.max, descending=True, stable=True)[:max_channels].tolist()
    rows, field = [], None
    for c in channels:
        p = top_patches(result, layer, c, model=model, data=data, field=field)
        field = p.field  # measured once per layer
        rows.append(grid([p.to_pil(cell=cell, captions=False)], [f"{layer}:{c}  max {float(stats.max[c]):.3g}"],
                         ncol=1, pad=2))
    return grid(rows, ncol=1, pad=2)


def report(result: ScanResult, directory, *, model=None, data=None, per_page: int = 64,
           montage_channels: int = 16, progress: bool = True) -> Path:
    """Write per-layer histogram grids (every channel, ``per_page`` to a picture), the
    layer-activity histograms, correlation heatmaps and top-k montages as PNGs plus an index.html
    linking them; returns the index's path. Drawing takes a while on big layers, so a bar shows
    it (``progress=False`` silences it).
    Montages need the images: they come from the scan itself, or from model=/data= for a result
    loaded from disk (they are left out, with a note, when neither is available)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(None, "activity.png", functools.partial(activity_histograms, result))]  # (layer, file, draw)
    for key, stats in result.layers.items():
        slug = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in key)
        for number in range(1, histogram_pages(stats, per_page) + 1):
            jobs.append((key, f"{slug}_histograms{'' if number == 1 else f'_{number}'}.png",
                         functools.partial(histogram_grid, stats, number, per_page)))
        jobs.append((key, f"{slug}_correlation.png", functools.partial(correlation_heatmap, stats)))
        jobs.append((key, f"{slug}_topk.png", functools.partial(montage, result, key, max_channels=montage_channels,
                                                                model=model, data=data)))
    pictures = {key: [] for key in result.layers}
    notes = dict.fromkeys(result.layers, "")
    for key, name, draw in runtime.progress(jobs, desc="report", enabled=progress):
        try:
            draw().save(out / name)
        except NetloupeError as e:  # only a montage may be missing: no images to crop from
            if draw.func is not montage:
                raise
            notes[key] = f"<p>No top-k montage: {html.escape(str(e))}</p>"
            continue
        if key is not None:
            pictures[key].append(name)
    sections = []
    for key, stats in result.layers.items():
        dead = stats.dead_channels
        sections.append(
            f"<h2>{html.escape(key)}</h2><p>{stats.channels} channels, {len(dead)} dead "
            f"({stats.dead_share:.0%}){': ' + ', '.join(map(str, dead[:50])) if dead else ''}"
            f"{' ...' if len(dead) > 50 else ''}</p>{notes[key]}"
            + "".join(f'<p><a href="{p}"><img src="{p}" style="max-width:100%"></a></p>' for p in pictures[key]))
    skipped = "".join(f"<li>{html.escape(i)}: {html.escape(r)}</li>" for i, r in result.skipped)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>netloupe scan: {html.escape(result.model_name)}"
            f"</title></head><body style='font-family:sans-serif'><h1>Scan of {html.escape(result.model_name)}</h1>"
            f"<p>{result.count} images, {len(result.skipped)} skipped, top-{result.top_k}.</p>"
            + (f"<details><summary>skipped images</summary><ul>{skipped}</ul></details>" if skipped else "")
            + "<h2>Layer activity</h2><p><a href='activity.png'><img src='activity.png' style='max-width:100%'></a></p>"
            + "".join(sections) + "</body></html>")
    index = out / "index.html"
    index.write_text(page)
    return index
