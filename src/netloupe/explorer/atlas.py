"""The unit atlas (``netloupe atlas``): a static site in the spirit of OpenAI Microscope, for any
model. For every channel of the chosen layers: its feature visualization and, given data, its
top patches, the histogram of its per-image maximum and the channels most correlated with it.

Site layout (relative links only, no script, nothing fetched)::

    index.html                       the layers
    layers/<layer file>/index.html   a layer: the grid of its channels' renders
    layers/<layer file>/<c>.html     a channel: render, top patches, histogram, correlated channels
    renders/<layer file>/<c>.png     the renders (where the explorer's --atlas DIR reads them)
    patches/<layer file>/<c>.png     the top patches, 3 to a row

Renders come from netloupe.visualize, a batch of units per optimization; statistics from one
netloupe.scan. Under ``torchrun`` the batches are fixed first (the same chunks and seeds whatever
the world size), rank r renders chunks r, r + world, ..., and rank 0 writes the pages once every
render is on disk, so the site equals a one-process run.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Union, cast

import torch
import torch.distributed as dist
import torch.nn as nn
from PIL import Image

from .. import runtime
from ..data import DataLike, sample_inputs
from ..errors import InputError, NetloupeError, UnitError
from ..folders import template
from ..images import grid, to_pil
from ..models import LoadedModel, ModelLike, as_loaded, forward
from ..optvis import visualize
from ..optvis.param import Size
from ..optvis.recipes import check_size
from ..probe import probe
from ..stats import LayerStats, ReceptiveField, ScanResult, scan, top_patches
from ..units import Unit, UnitLike, as_unit, check_channel
from ..verbs import Arg, Option, data_of, model_of, verb

if TYPE_CHECKING:
    pass

Channels = Union[None, int, Sequence[int]]  # None: all; N: the first N; or those listed

PATCH_CELL = 96  # pixels of one top patch on a channel page
CORRELATED = 8  # correlated channels listed per channel


def layer_file(layer: str) -> str:
    """The folder name of a layer in the site: every character other than a letter, a digit,
    '.', '_' or '-' becomes '_' (the explorer reads ``renders/<layer file>/<c>.png`` with --atlas)."""
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in layer)


@dataclass
class _Layer:
    name: str
    file: str
    shape: Tuple[int, ...]  # one sample's output, e.g. (C, h, w) or (C,)
    layout: str
    total: int  # channels in the layer
    channels: List[int]  # channels in the atlas
    labels: Optional[List[str]] = None  # class names, for the layer that gives the model's output


# -- checks ----------------------------------------------------------------------------------

def _names(module: nn.Module, layers: Union[str, UnitLike, Sequence[UnitLike]]) -> List[str]:
    if isinstance(layers, str):
        layers = [s.strip() for s in layers.split(",") if s.strip()]
    elif not isinstance(layers, (list, tuple)):  # one layer
        layers = [cast(UnitLike, layers)]
    names: List[str] = []
    for layer in layers:
        unit = as_unit(module, layer)
        if unit.channel is not None:
            raise UnitError(f"the atlas takes layer names, not the unit {unit}; give {unit.layer!r} "
                            "(and channels= to choose its channels)")
        if unit.layer == "":
            raise UnitError("the atlas needs named layers; for the model's output give the name of its last "
                            "module (netloupe layers lists them), e.g. 'classifier' or 'fc'")
        names.append(unit.layer)
    names = list(dict.fromkeys(names))
    if not names:
        raise UnitError("give at least one layer for the atlas, e.g. layers=['blocks.4']")
    files: Dict[str, str] = {}
    for name in names:
        other = files.setdefault(layer_file(name), name)
        if other != name:
            raise UnitError(f"layers {other!r} and {name!r} would share the folder {layer_file(name)!r} of the "
                            "atlas; make an atlas of each")
    return names


def _out(out: Union[str, os.PathLike]) -> Path:
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise InputError(f"--out {str(out)!r} is a file; give a folder for the atlas (it is created if missing)")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"--out {str(out)!r} lies under the file {str(parent)!r}; give a folder")
            break
    return path


def _positive(name: str, value: object, low: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise NetloupeError(f"{name} must be an integer >= {low}; got {value!r}")


def _layers(loaded: LoadedModel, names: List[str], channels: Channels) -> List[_Layer]:
    """Each layer's output shape and layout (one forward pass of a zero image) and its channels
    in the atlas: all (None), the first N (an int) or those listed."""
    module = loaded.module
    h, w = loaded.input_size
    x = loaded.inputs(torch.zeros(1, 3, h, w))
    with probe(module, names, detach=True) as p, torch.no_grad():
        y = forward(module, [x])
    found: List[_Layer] = []
    for name in names:
        calls = p.calls.get(name)
        if not calls:
            raise UnitError(f"layer {name!r} did not run in the model's forward; pick a layer that does "
                            "(netloupe layers lists output shapes)")
        shape = tuple(calls[0].shape)
        if len(shape) < 2:
            raise UnitError(f"layer {name!r} gives shape {shape}; the atlas needs [N, C, ...] outputs")
        layout = p.layout(name, shape)
        total = layout.channels(shape)
        if channels is None:
            picked = list(range(total))
        elif isinstance(channels, int) and not isinstance(channels, bool):
            if channels < 1:
                raise NetloupeError(f"channels must be None (all), a count >= 1 or a list of channels; got {channels}")
            picked = list(range(min(channels, total)))
        else:
            picked = list(dict.fromkeys(int(c) for c in cast(Sequence[int], channels)))  # the channels listed
            if not picked:
                raise NetloupeError("channels is empty; give None (all channels), a count or channel numbers")
            for c in picked:
                check_channel(name, c, total)
        grid_hw = layout.spatial(shape)
        labels = loaded.labels if loaded.labels and len(loaded.labels) == total and isinstance(y, torch.Tensor) \
            and y.shape == calls[-1].shape and torch.equal(y, calls[-1]) else None  # the logits: units are classes
        found.append(_Layer(name, layer_file(name), (total,) + tuple(grid_hw or ()), str(layout), total, picked,
                            labels))
    return found


# -- distribution ----------------------------------------------------------------------------

def plan(layers: Sequence[_Layer], per_batch: int, seed: Optional[int]) -> List[Tuple[_Layer, List[int], Optional[int]]]:
    """The render batches: each layer's channels in chunks of ``per_batch``, chunk k of a layer
    with seed ``seed + k``, as visualize_channels(model, layer, channels, seed=seed,
    batch_size=per_batch) makes them. The same whatever the world size; rank r takes the
    batches r, r + world, ..."""
    jobs: List[Tuple[_Layer, List[int], Optional[int]]] = []
    for layer in layers:
        for k, part in enumerate(runtime.chunks(len(layer.channels), per_batch)):
            jobs.append((layer, layer.channels[part], None if seed is None else seed + k))
    return jobs


# -- per channel -----------------------------------------------------------------------------

def _stats_key(result: ScanResult, name: str) -> str:
    return name if name in result.layers else f"{name}#0"  # a module run several times: its first call


def _patch_picture(result: ScanResult, loaded: LoadedModel, key: str, channel: int, field: Optional[ReceptiveField]
                   ) -> Tuple[Image.Image, Optional[ReceptiveField]]:
    """(picture, field): the channel's top patches, 3 to a row; for a layer without a grid (a
    vector of units, such as logits) the whole top images."""
    stats = result[key]
    if len(stats.shape) == 3:
        p = top_patches(result, key, channel, field=field)
        tiles = [p.to_pil(index=j, cell=PATCH_CELL, captions=False, pad=0) for j in range(len(p.image_ids))]
        field = p.field
    else:
        tiles = []
        for i in stats.top_images[channel].tolist():
            if result.source is None:  # a result loaded from disk; the atlas's own scan has its data
                raise NetloupeError("the scan result has no data to show its top images from")
            parts = sample_inputs(result.source.dataset[i], loaded.preprocess, result.to_inputs)
            tiles.append(to_pil(loaded.preprocess.inverse(parts[0].unsqueeze(0).float())[0]))
    return grid(tiles, ncol=3, pad=2, cell=PATCH_CELL), field


def _histogram_svg(stats: LayerStats, channel: int, width: int = 320, height: int = 90) -> Dict[str, Any]:
    """The bars of a channel's histogram in an SVG box (drawn by the page template)."""
    edges, counts = stats.histogram(channel)
    lo, hi = float(edges[0]), float(edges[-1])
    if hi <= lo:
        hi = lo + 1.0
    top = max(int(counts.max()), 1)
    plot = height - 14  # room for the axis labels
    x = lambda v: (float(v) - lo) / (hi - lo) * width  # noqa: E731
    bars = [{"x": round(x(a), 2), "w": round(max(x(b) - x(a) - 0.5, 0.5), 2),
             "h": round(plot * int(n) / top, 2), "y": round(plot - plot * int(n) / top, 2), "n": int(n)}
            for a, b, n in zip(edges[:-1], edges[1:], counts) if n > 0]
    zero = round(x(0.0), 2) if lo <= 0 <= hi else None
    return {"width": width, "height": height, "plot": plot, "bars": bars, "zero": zero,
            "lo": f"{lo:.3g}", "hi": f"{hi:.3g}", "top": top}


def _correlated(stats: LayerStats, channel: int, among: Optional[Sequence[int]] = None) -> List[Tuple[int, str]]:
    """(channel, r) of the CORRELATED channels (of ``among``; default: the whole layer) whose
    per-image maximum correlates most with ``channel``'s, by |r|; undefined correlations left out."""
    candidates = torch.tensor([d for d in (range(stats.channels) if among is None else among) if d != channel],
                              dtype=torch.long)
    if not len(candidates):
        return []
    r = stats.correlation[channel, candidates]
    keep = ~torch.isnan(r)
    candidates, r = candidates[keep], r[keep]
    order = r.abs().argsort(descending=True, stable=True)[:CORRELATED]
    return [(int(candidates[k]), f"{float(r[k]):+.2f}") for k in order.tolist()]


# -- pages -----------------------------------------------------------------------------------

def _pages(out: Path, loaded: LoadedModel, layers: List[_Layer], result: Optional[ScanResult],
           notes: Dict[Tuple[str, int], str], settings: Dict[str, Any], top_k: int) -> Path:
    index_page, layer_page, unit_page = (template("netloupe.explorer", n)
                                         for n in ("index.html", "layer.html", "unit.html"))
    data = None
    if result is not None:
        data = {"count": result.count, "skipped": len(result.skipped), "top_k": top_k}
    summaries: List[Dict[str, Any]] = []
    for layer in layers:
        folder = out / "layers" / layer.file
        folder.mkdir(parents=True, exist_ok=True)
        stats = result[_stats_key(result, layer.name)] if result is not None else None
        dead = set(stats.dead_channels) if stats is not None else set()
        label = (lambda c: layer.labels[c] if layer.labels else None)  # noqa: E731
        cells = [{"channel": c, "dead": c in dead, "label": label(c),
                  "max": None if stats is None else f"{float(stats.max[c]):.3g}"} for c in layer.channels]
        info = {"name": layer.name, "file": layer.file, "shape": "x".join(map(str, layer.shape)),
                "layout": layer.layout, "total": layer.total, "count": len(layer.channels),
                "grid": len(layer.shape) == 3, "dead": len(dead) if stats is not None else None,
                # statistics of its first call
                "calls": stats is not None and result is not None and layer.name not in result.layers}
        summaries.append({**info, "preview": layer.channels[:8]})
        (folder / "index.html").write_text(layer_page.render(root="../../", model=loaded.name, layer=info,
                                                             cells=cells, data=data, settings=settings),
                                           encoding="utf-8")
        shown = set(layer.channels)
        for i, c in enumerate(layer.channels):
            unit: Dict[str, Any] = {
                "channel": c, "dead": c in dead, "note": notes.get((layer.name, c), ""), "label": label(c),
                "prev": layer.channels[i - 1] if i > 0 else None,
                "next": layer.channels[i + 1] if i + 1 < len(layer.channels) else None}
            if stats is not None and result is not None:  # (the one goes with the other)
                unit.update(
                    mean=f"{float(stats.mean[c]):.3g}", std=f"{float(stats.std[c]):.3g}",
                    min=f"{float(stats.min[c]):.3g}", max=f"{float(stats.max[c]):.3g}",
                    never_positive=f"{float(stats.never_positive[c]):.0%}", histogram=_histogram_svg(stats, c),
                    patches=(out / "patches" / layer.file / f"{c}.png").is_file(),
                    top=[{"id": result.ids[j], "value": f"{float(v):.3g}"}
                         for j, v in zip(stats.top_images[c].tolist(), stats.top_values[c].tolist())],
                    correlated=[{"channel": d, "r": r, "label": label(d)}
                                for d, r in _correlated(stats, c, layer.channels)],
                    layer_wide=[{"channel": d, "r": r, "linked": d in shown} for d, r in _correlated(stats, c)]
                    if len(layer.channels) < layer.total else [])
            (folder / f"{c}.html").write_text(unit_page.render(root="../../", model=loaded.name, layer=info,
                                                               unit=unit, data=data, settings=settings),
                                              encoding="utf-8")
    index = out / "index.html"
    index.write_text(index_page.render(root="", model=loaded.name, layers=summaries, data=data, settings=settings),
                     encoding="utf-8")
    return index


# -- the atlas -------------------------------------------------------------------------------

def atlas(model: ModelLike, layers: Union[str, UnitLike, Sequence[UnitLike]], *, data: Optional[DataLike] = None,
          out: Union[str, os.PathLike] = "netloupe-atlas", channels: Channels = None, steps: int = 256,
          size: Size = 128, top_k: int = 9, batch_size: Optional[int] = None, seed: Optional[int] = None,
          progress: bool = True) -> Path:
    """Write a static site of every channel of ``layers`` into ``out`` and return its index.html.

    layers: layer names (or modules), or one comma-separated string; a layer with a grid or a
    vector of units (a classifier's logits). channels: None (all), N (the first N of each
    layer) or a list of channel numbers. Every channel gets a render (``size`` px, ``steps``
    steps, ``batch_size`` units per optimization batch, None: the device's default; a layer's
    chunk k has seed ``seed + k``, so its renders equal visualize_channels(model, layer,
    channels, seed=seed, batch_size=...)). With ``data`` (anything netloupe.scan takes) one scan
    adds each channel's top-``top_k`` patches, histogram, statistics and most correlated
    channels. Under ``torchrun`` every process renders its share of the batches and rank 0
    writes the pages; the site equals a one-process run.
    """
    loaded = as_loaded(model)
    names = _names(loaded.module, layers)
    out = _out(out)
    _positive("steps", steps)
    _positive("top_k", top_k)
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise NetloupeError(f"seed must be an integer or None; got {seed!r}")
    per_batch = runtime.batch_size(batch_size, loaded.device, "render")
    found = _layers(loaded, names, channels)
    jobs = plan(found, per_batch, seed)
    rank, world, started = runtime.distributed(torch.device(loaded.device))
    try:
        result: Optional[ScanResult] = None
        if data is not None:
            result = scan(loaded, data, names, top_k=top_k, progress=progress and rank == 0)
        mine = jobs[rank::world]
        work = len(mine) + (sum(len(chs) for _, chs, _ in mine) if result is not None else 0)
        notes: Dict[Tuple[str, int], str] = {}
        bar = runtime.progress(None, total=work, desc="atlas", enabled=progress and rank == 0)
        try:
            fields: Dict[str, Optional[ReceptiveField]] = {}
            for layer, chs, chunk_seed in mine:
                r = visualize(loaded, [Unit(layer.name, c) for c in chs], size=size, steps=steps, seed=chunk_seed,
                              batch_size=len(chs), progress=False)
                folder = out / "renders" / layer.file
                folder.mkdir(parents=True, exist_ok=True)
                for c, picture in zip(chs, r.pils()):
                    picture.save(folder / f"{c}.png")
                bar.update(1)
                if result is None:
                    continue
                key = _stats_key(result, layer.name)
                folder = out / "patches" / layer.file
                folder.mkdir(parents=True, exist_ok=True)
                for c in chs:
                    target = folder / f"{c}.png"
                    target.unlink(missing_ok=True)  # a patch of an earlier atlas must not show for this one
                    try:
                        picture, fields[key] = _patch_picture(result, loaded, key, c, fields.get(key))
                        picture.save(target)
                    except NetloupeError as e:  # e.g. a layer that does not depend on the input
                        notes[(layer.name, c)] = str(e)
                    bar.update(1)
        finally:
            bar.close()
        if world > 1:  # every render is on disk once every rank has sent its notes
            gathered: list = [None] * world
            dist.all_gather_object(gathered, notes)
            notes = {k: v for part in gathered for k, v in part.items()}
        index = out / "index.html"
        if rank == 0:
            settings = {"steps": steps, "size": size, "seed": seed, "batch_size": per_batch}
            index = _pages(out, loaded, found, result, notes, settings, top_k)
        if world > 1:
            dist.barrier()  # every rank returns once the site is complete
    finally:
        if started:
            dist.destroy_process_group()
    return index


@verb("atlas", "a static site of every channel of some layers: renders, top patches, histograms", function=atlas,
      out="netloupe-atlas", order=100,
      args=(Arg.of("--layers", required=True, help="comma-separated layer names (see `netloupe layers`)"),
            Arg.of("--data", default=None, help="images for top patches and histograms: a folder, a list file, or "
                   "'samples' (default: renders only)")),
      options={"channels": Option("the first N channels of each layer (default: all)", type=int, minimum=1),
               "steps": Option("optimization steps per render", minimum=1),
               "size": Option("render size in pixels; at least the model's total stride", type=int, minimum=2),
               "top_k": Option("top patches per channel", minimum=1),
               "batch_size": Option("units rendered together (default: 8 on the CPU, 64 on a GPU)", type=int,
                                    minimum=1)})
def _atlas_verb(args: argparse.Namespace, keywords: Dict[str, Any]) -> None:
    model = model_of(args)
    check_size(model, keywords["size"])
    print(atlas(model, args.layers, data=data_of(args.data), out=args.out, **keywords).resolve())
