"""Dataset-wide unit statistics in one streaming pass (the Deep Visualization Toolbox's analyses).

For every channel of the scanned layers, each image contributes one number: the channel's
spatial maximum on that image. From those numbers the scan keeps, without storing them:
a histogram, mean, std, min, max, how often the channel is never positive, the channel
correlation matrix (float64 co-moments), and the k images with the highest (and lowest)
maximum together with where the maximum sits. State size depends on the layer, never on the
number of images, so a scan runs over any dataset; under ``torchrun`` each process scans its
shard and the states are merged so that the result equals a one-process scan. The result it
returns (LayerStats, ScanResult: stored, loaded, drawn) lives in result.py.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union, cast

import torch
import torch.distributed as dist

from .. import runtime
from ..data import DataLike, ToInputs, as_source, load_batches
from ..errors import InputError, NetloupeError, UnitError
from ..layouts import Layout
from ..models import ModelLike, as_loaded, forward
from ..probe import Probe, probe
from ..units import UnitLike, as_unit
from .result import LayerStats, ScanResult

# -- streaming state -------------------------------------------------------------------------

def _fit_exp(lo: torch.Tensor, hi: torch.Tensor, exp: torch.Tensor, slots: int) -> torch.Tensor:
    """The smallest power-of-two bin width exponent >= ``exp`` at which [lo, hi] spans at most
    ``slots`` bins (per channel). Starts one below the bound 2**exp >= (hi - lo) / slots, which
    no narrower width can beat, so the loop runs a step or two."""
    bound = torch.ceil(torch.log2(((hi - lo) / slots).clamp_min(1e-300))).long() - 1
    exp = torch.where(hi > lo, torch.maximum(exp, bound), exp)
    while True:
        span = torch.floor(torch.ldexp(hi, -exp)) - torch.floor(torch.ldexp(lo, -exp)) + 1
        over = span > slots
        if not over.any():
            return exp
        exp = exp + over.long()


class _Histogram:
    """Per-channel histograms whose bins are fixed without seeing the data: bin j of a channel
    covers [(origin + j) * 2**exp, (origin + j + 1) * 2**exp). When a value falls outside,
    the width doubles and pairs of bins merge, which is exact because power-of-two edges nest;
    so streaming, batching and merging across processes give the same counts as one pass.
    A channel ends with between bins/2 and 2*bins bins."""

    def __init__(self, counts: torch.Tensor, origin: torch.Tensor, exp: torch.Tensor, bins: int) -> None:
        self.counts, self.origin, self.exp, self.bins = counts, origin, exp, bins

    @classmethod
    def of(cls, v: torch.Tensor, bins: int) -> "_Histogram":
        """Histogram of values ``v`` [n, C] (float64)."""
        lo, hi = v.min(0).values, v.max(0).values
        big = torch.maximum(lo.abs(), hi.abs())
        # keep |value| / 2**exp below 2**50 so bin indices stay exact integers
        floor_exp = torch.where(big > 0, torch.floor(torch.log2(big.clamp_min(1e-300))) - 50, torch.zeros_like(big))
        wanted = torch.where(hi > lo, torch.ceil(torch.log2((hi - lo).clamp_min(1e-300) / bins)), floor_exp)
        exp = _fit_exp(lo, hi, torch.maximum(wanted, floor_exp).long(), bins)
        origin = torch.floor(torch.ldexp(lo, -exp)).long()
        counts = torch.zeros(v.shape[1], 2 * bins, dtype=torch.long, device=v.device)
        slot = torch.floor(torch.ldexp(v, -exp)).long() - origin
        counts.scatter_add_(1, slot.T, torch.ones_like(slot.T))
        return cls(counts, origin, exp, bins)

    def _occupied(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Lower edges of each channel's first and last non-empty bins."""
        nz = self.counts > 0
        slots = torch.arange(self.counts.shape[1], device=self.counts.device)
        first = torch.where(nz, slots, self.counts.shape[1]).min(1).values
        last = torch.where(nz, slots, -1).max(1).values
        return (torch.ldexp((self.origin + first).double(), self.exp),
                torch.ldexp((self.origin + last).double(), self.exp))

    def _rebin(self, exp: torch.Tensor, origin: torch.Tensor) -> torch.Tensor:
        shift = (exp - self.exp).clamp(0, 63).unsqueeze(1)
        absolute = self.origin.unsqueeze(1) + torch.arange(self.counts.shape[1], device=self.counts.device)
        slot = torch.bitwise_right_shift(absolute, shift) - origin.unsqueeze(1)
        slot = torch.where(self.counts > 0, slot, 0)  # empty slots may fall outside; they add nothing
        return torch.zeros_like(self.counts).scatter_add_(1, slot, self.counts)

    def merge(self, other: "_Histogram") -> "_Histogram":
        (alo, ahi), (blo, bhi) = self._occupied(), other._occupied()
        lo, hi = torch.minimum(alo, blo), torch.maximum(ahi, bhi)
        exp = _fit_exp(lo, hi, torch.maximum(self.exp, other.exp), 2 * self.bins)
        origin = torch.floor(torch.ldexp(lo, -exp)).long()
        return _Histogram(self._rebin(exp, origin) + other._rebin(exp, origin), origin, exp, self.bins)


Ranking = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (values, images, positions) of each channel's kept images


def _rank(values: torch.Tensor, images: torch.Tensor, positions: torch.Tensor, k: int, largest: bool) -> Ranking:
    """The first k of each row by value (descending if ``largest``), ties to the lower image id.
    values, images: [C, m]; positions: [C, m, 2]."""
    if k == 0:
        return values[:, :0], images[:, :0], positions[:, :0]
    def take(order: torch.Tensor) -> Ranking:
        return values.gather(1, order), images.gather(1, order), \
            positions.gather(1, order.unsqueeze(2).expand(-1, -1, 2))

    values, images, positions = take(images.argsort(dim=1, stable=True))
    return take(values.argsort(dim=1, descending=largest, stable=True)[:, :k])


class _LayerState:
    """Everything the scan keeps for one layer; ``merge`` combines two disjoint sets of images
    (Chan et al.'s pairwise update for mean and co-moments, in float64)."""

    def __init__(self, shape: Tuple[int, ...], count: int, mean: torch.Tensor, comoment: torch.Tensor, lo: torch.Tensor,
                 hi: torch.Tensor, nonpos: torch.Tensor, hist: _Histogram, top: Ranking, bottom: Ranking) -> None:
        self.shape, self.count, self.mean, self.comoment = shape, count, mean, comoment
        self.lo, self.hi, self.nonpos, self.hist, self.top, self.bottom = lo, hi, nonpos, hist, top, bottom

    @classmethod
    def of_batch(cls, act: torch.Tensor, layout: Layout, images: torch.Tensor, top_k: int, bottom_k: int, bins: int,
                 device: Union[str, torch.device]) -> _LayerState:
        """The state of one batch of a layer's outputs (laid out as ``layout``: channels and grid
        wherever they are) for images with global ids ``images``."""
        flat = layout.positions(act)  # [n, C, positions]
        peak, where = flat.to(device).max(2)  # per image and channel: spatial maximum and its flat index
        v = peak.double()
        if not torch.isfinite(v).all():
            raise NetloupeError("the scanned layer produced NaN or infinite activations; check the model and inputs")
        grid = layout.spatial(act.shape)
        width = grid[1] if grid else flat.shape[2]
        pos = torch.stack([where // width, where % width], -1).transpose(0, 1)  # [C, n, 2]
        ids = images.to(device).unsqueeze(0).expand(v.shape[1], -1)
        mean = v.mean(0)
        centred = v - mean
        rank = lambda k, largest: _rank(v.T, ids, pos, k, largest)  # noqa: E731
        shape = (flat.shape[1],) + (tuple(grid) if grid else (flat.shape[2],) if flat.shape[2] > 1 else ())
        return cls(shape, v.shape[0], mean, centred.T @ centred, v.min(0).values, v.max(0).values,
                   (v <= 0).sum(0), _Histogram.of(v, bins), rank(top_k, True), rank(bottom_k, False))

    def merge(self, other: "_LayerState", top_k: int, bottom_k: int) -> "_LayerState":
        """The state of both image sets (reuses this state's co-moment buffer: self is consumed)."""
        if other.shape[0] != self.shape[0]:
            raise InputError(f"the layer gave {self.shape[0]} channels on one batch and {other.shape[0]} on another")
        n = self.count + other.count
        delta = other.mean - self.mean
        comoment = self.comoment.add_(other.comoment).addr_(delta, delta, alpha=self.count * other.count / n)

        def ranking(a: Ranking, b: Ranking, k: int, largest: bool) -> Ranking:
            values, images, positions = (torch.cat([x, y], 1) for x, y in zip(a, b))
            return _rank(values, images, positions, k, largest)

        return _LayerState(self.shape, n, self.mean + delta * (other.count / n), comoment,
                           torch.minimum(self.lo, other.lo), torch.maximum(self.hi, other.hi),
                           self.nonpos + other.nonpos, self.hist.merge(other.hist),
                           ranking(self.top, other.top, top_k, True),
                           ranking(self.bottom, other.bottom, bottom_k, False))

    def stats(self, layer: str, call: int, layout: str) -> LayerStats:
        """The finished statistics of this state, on the CPU."""
        s = self.to("cpu")
        var = (torch.diagonal(s.comoment) / s.count).clamp_min(0)
        sd = var.sqrt()
        corr = s.comoment / torch.outer(torch.diagonal(s.comoment), torch.diagonal(s.comoment)).sqrt()
        corr = torch.where(torch.outer(sd > 0, sd > 0), corr, torch.full_like(corr, math.nan)).clamp(-1, 1)
        return LayerStats(layer, call, tuple(s.shape), int(s.count), s.mean, sd, s.lo, s.hi,
                          s.nonpos.double() / s.count, corr, s.hist.counts, s.hist.origin,
                          s.hist.exp, *s.top, *s.bottom, layout=layout)

    def to(self, device: Union[str, torch.device]) -> _LayerState:
        mv = lambda t: t.to(device)  # noqa: E731
        h = self.hist
        return _LayerState(self.shape, self.count, mv(self.mean), mv(self.comoment), mv(self.lo), mv(self.hi),
                           mv(self.nonpos), _Histogram(mv(h.counts), mv(h.origin), mv(h.exp), h.bins),
                           cast(Ranking, tuple(map(mv, self.top))), cast(Ranking, tuple(map(mv, self.bottom))))


# -- the scan --------------------------------------------------------------------------------

def _gather(states: Dict[str, _LayerState], skipped: List[Tuple[int, str]], world: int, top_k: int, bottom_k: int,
            device: Union[str, torch.device]) -> Tuple[Dict[str, _LayerState], List[Tuple[int, str]]]:
    """Every rank's states merged in rank order, on every rank."""
    # each rank's (states, skipped), unpickled from wherever it ran
    gathered: List[Any] = [None] * world
    dist.all_gather_object(gathered, ({k: s.to("cpu") for k, s in states.items()}, skipped))
    merged: Dict[str, _LayerState] = {}
    all_skipped: List[Tuple[int, str]] = []
    for rank_states, rank_skipped in gathered:
        all_skipped += rank_skipped
        for key, s in rank_states.items():
            s = s.to(device)
            merged[key] = merged[key].merge(s, top_k, bottom_k) if key in merged else s
    return merged, sorted(all_skipped)


def _add_batch(p: Probe, names: List[str], images: torch.Tensor, states: Dict[str, _LayerState],
               layouts: Dict[str, Layout], keep: Tuple[int, int, int], device: Union[str, torch.device]) -> None:
    """Merge one batch's captured outputs of the scanned layers into ``states`` (a module run several
    times per forward gets a state per call, ``name#i``); ``keep`` is (top_k, bottom_k, bins)."""
    top_k, bottom_k, bins = keep
    for name in names:
        calls = p.calls.get(name)
        if not calls:
            raise UnitError(f"layer {name!r} did not run in the model's forward; pick a layer that does "
                            "(netloupe.layers(model) lists output shapes)")
        for call, act in enumerate(calls):
            if act.dim() < 2:
                raise UnitError(f"layer {name!r} gives shape {tuple(act.shape)}; a scan needs "
                                "[N, C, ...] outputs (one row per image)")
            key = name if len(calls) == 1 else f"{name}#{call}"
            layouts[key] = p.layout(name, act.shape)
            state = _LayerState.of_batch(act, layouts[key], images, top_k, bottom_k, bins, device)
            states[key] = states[key].merge(state, top_k, bottom_k) if key in states else state


def scan(model: ModelLike, data: DataLike, layers: Union[str, Sequence[UnitLike]], *, top_k: int = 9,
         bottom_k: int = 0, bins: int = 50, batch_size: Optional[int] = None, num_workers: int = 0,
         stats_device: Union[str, torch.device, None] = None, progress: bool = True,
         to_inputs: Optional[ToInputs] = None,
         precision: str = "auto") -> ScanResult:
    """Statistics of every channel of ``layers`` over a dataset, in one streaming pass.

    data: a folder (recursive), a text file of image paths or of path pairs, an image list,
    a torch Dataset or DataLoader (its sampler's batches are used, except a DistributedSampler's:
    the scan shards the data itself). Unreadable images are
    skipped with a warning and listed in ``result.skipped``.
    layers: layer names (or modules), or one comma-separated string.
    to_inputs: builds the model's inputs from one sample, e.g. ``lambda pair: (pair[0], pair[1])``
    for a two-input model; by default a sample's leading images are its inputs.
    bins: target number of histogram bins per channel (widths are powers of two, see _Histogram).
    stats_device: where the running statistics live (default: the model's device; the model is never moved).
    Under ``torchrun`` each process scans every world_size-th batch and all get the merged result.
    precision: the forward passes' (runtime.autocast): "auto" is bfloat16 on a GPU that has it,
    float32 on the CPU; the statistics are kept in float64 either way.
    """
    loaded = as_loaded(model)
    module = loaded.module
    for name, value, low in (("top_k", top_k, 1), ("bottom_k", bottom_k, 0), ("bins", bins, 2)):
        if not isinstance(value, int) or value < low:
            raise NetloupeError(f"{name} must be an integer >= {low}; got {value!r}")
    if isinstance(layers, str):
        layers = [s.strip() for s in layers.split(",") if s.strip()]
    names = list(dict.fromkeys(as_unit(module, layer).layer for layer in layers))
    if not names:
        raise UnitError("give at least one layer to scan, e.g. layers=['blocks.3', 'blocks.5']")
    source = as_source(data)
    model_device = loaded.device
    stats_device = torch.device(stats_device) if stats_device is not None else model_device
    dtype = loaded.dtype
    size = runtime.batch_size(batch_size, model_device, "scan")
    cast = runtime.autocast(precision, model_device)
    batches = source.batches or [list(range(s.start, s.stop)) for s in runtime.chunks(len(source), size)]
    rank, world, started = runtime.distributed(model_device)
    try:
        if world > 1 and source.batches:  # a shuffling DataLoader: every rank takes rank 0's order
            shared = [batches]
            dist.broadcast_object_list(shared, src=0)
            batches = shared[0]
        mine = batches[rank::world]
        loader = load_batches(source, loaded.preprocess, mine, to_inputs, num_workers)
        states: Dict[str, _LayerState] = {}
        layouts: Dict[str, Layout] = {}
        skipped: List[Tuple[int, str]] = []
        input_shapes: List[Tuple[int, ...]] = []
        with probe(module, names, detach=True) as p, torch.no_grad(), cast:
            for images, parts, bad in runtime.progress(loader, total=len(mine), desc="scan",
                                                        enabled=progress and rank == 0):
                for i, reason in bad:
                    warnings.warn(f"skipped {source.ids[i]}: {reason}", stacklevel=2)
                    skipped.append((i, reason))
                if not len(images):
                    continue
                input_shapes = [tuple(t.shape[1:]) for t in parts]
                forward(module, [t.to(device=model_device, dtype=dtype) for t in parts])
                _add_batch(p, names, images, states, layouts, (top_k, bottom_k, bins), stats_device)
        if world > 1:
            states, skipped = _gather(states, skipped, world, top_k, bottom_k, stats_device)
            shapes: List[Optional[List[Tuple[int, ...]]]] = [None] * world
            dist.all_gather_object(shapes, input_shapes)
            input_shapes = next((s for s in shapes if s), [])
    finally:
        if started:
            dist.destroy_process_group()
    if not states:
        raise InputError(f"none of the {len(source)} images could be read ({len(skipped)} skipped); "
                         "check the files, e.g. open one with netloupe.images.load_image")
    layer_stats = {}
    for key in sorted(states, key=lambda k: (names.index(k.split("#")[0]), k)):  # the order asked, then calls
        layer, _, call_number = key.partition("#")
        layer_stats[key] = states[key].stats(layer, int(call_number or 0), str(layouts.get(key, "nchw")))
    count = next(iter(layer_stats.values())).count
    skipped_ids = [(source.ids[i], reason) for i, reason in sorted(skipped)]
    return ScanResult(loaded.name, layer_stats, list(source.ids), skipped_ids, count, top_k, bottom_k, bins,
                      input_shapes, loaded, source, to_inputs)
