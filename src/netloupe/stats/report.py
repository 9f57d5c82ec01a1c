"""Scan results on disk (npz + json, no pickle) and as pictures: histogram grids with dead
channels marked, layer activity, correlation heatmaps, top-k montages, and an index.html."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image

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

def _shown_channels(stats: LayerStats, max_channels: Optional[int]):
    n = stats.channels if max_channels is None else min(stats.channels, max_channels)
    return list(range(n))


def histogram_grid(stats: LayerStats, max_channels: Optional[int] = 64, ncol: int = 8) -> Image.Image:
    """Small multiples of the per-image maximum of each channel; dead channels in red."""
    channels = _shown_channels(stats, max_channels)
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
    shown = f"channels 0-{channels[-1]} of {stats.channels}" if len(channels) < stats.channels else \
        f"{stats.channels} channels"
    fig.suptitle(f"{stats.layer}{'' if stats.call == 0 else f' (call {stats.call})'}: per-image max activation, "
                 f"{shown}, {len(dead)} dead (red), {stats.count} images", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.97 if nrow > 2 else 0.9), h_pad=0.3, w_pad=0.2)
    return figure_to_pil(fig)


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


def correlation_heatmap(stats: LayerStats) -> Image.Image:
    """Channel correlation (of per-image maxima) in clustered order; dead channels grey."""
    from matplotlib import colormaps

    order = stats.order
    corr = stats.correlation[order][:, order].numpy()
    fig, axes = figure(figsize=(5, 4.3))
    ax = axes[0, 0]
    cmap = colormaps["RdBu_r"].with_extremes(bad="#bbbbbb")
    im = ax.imshow(np.ma.masked_invalid(corr), cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
    ax.set_title(f"{stats.layer}: channel correlation (clustered order)", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return figure_to_pil(fig)


def montage(result: ScanResult, layer: str, channels=None, max_channels: int = 16, cell: int = 72,
            model=None, data=None) -> Image.Image:
    """One row per channel: its top-k receptive-field patches (checkerboard beyond the border)."""
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


def report(result: ScanResult, directory, *, model=None, data=None, max_channels: int = 64,
           montage_channels: int = 16) -> Path:
    """Write per-layer histogram grids, the layer-activity histograms, correlation heatmaps and
    top-k montages as PNGs plus an index.html linking them; returns the index's path.
    Montages need the images: they come from the scan itself, or from model=/data= for a result
    loaded from disk (they are left out, with a note, when neither is available)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    activity_histograms(result).save(out / "activity.png")
    sections = []
    for key, stats in result.layers.items():
        slug = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in key)
        histogram_grid(stats, max_channels).save(out / f"{slug}_histograms.png")
        correlation_heatmap(stats).save(out / f"{slug}_correlation.png")
        pictures = [f"{slug}_histograms.png", f"{slug}_correlation.png"]
        note = ""
        try:
            montage(result, key, max_channels=montage_channels, model=model, data=data).save(out / f"{slug}_topk.png")
            pictures.append(f"{slug}_topk.png")
        except NetloupeError as e:
            note = f"<p>No top-k montage: {html.escape(str(e))}</p>"
        dead = stats.dead_channels
        sections.append(
            f"<h2>{html.escape(key)}</h2><p>{stats.channels} channels, {len(dead)} dead "
            f"({stats.dead_share:.0%}){': ' + ', '.join(map(str, dead[:50])) if dead else ''}"
            f"{' ...' if len(dead) > 50 else ''}</p>{note}"
            + "".join(f'<p><a href="{p}"><img src="{p}" style="max-width:100%"></a></p>' for p in pictures))
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


