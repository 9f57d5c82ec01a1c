"""Ready-made renderings: units, channels, classes, diverse sets, and transfer-visualization's
FeatureVisualizer for its users (renderings that start from a photo are in optvis.photo)."""

from __future__ import annotations

import argparse
import functools
import math
import operator
import re
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union, cast

import torch
from PIL import Image

from .. import runtime
from ..errors import NetloupeError, UnitError
from ..images import grid, save, to_pil
from ..models import ModelLike, as_loaded, forward, layers
from ..probe import probe
from ..runtime import chunks
from ..units import Unit, UnitLike, as_unit
from ..verbs import Arg, Option, model_of, number, verb
from . import classic
from . import objectives as obj
from .param import Param, Size, hw, image
from .render import Rendering, model_input, render
from .transforms import TransformSpec

#: optimization steps of a Lucid render when ``steps=None`` (Yosinski's come from its preset)
LUCID_STEPS = 512
#: how visualize optimizes: Lucid's way, or Yosinski et al.'s regularized pixels
ALGORITHMS = ("lucid", "yosinski")


def _render_units(model: ModelLike, objs: List[obj.Objective], captions: List[str], size: Size,
                  steps: Optional[int], fft: bool, decorrelate: bool, transforms: TransformSpec, lr: Optional[float],
                  seed: Optional[int], progress: bool, batch_size: Optional[int], algorithm: str = "lucid",
                  preset: Union[int, str, classic.Preset] = 3, precision: str = "auto") -> Rendering:
    """Render objective i on element i, ``batch_size`` elements per optimization batch (None:
    the device's default, runtime.BATCH_SIZES["render"]), the way ``algorithm`` optimizes: "lucid"
    (Adam on an FFT image under random transforms) or "yosinski" (see optvis.classic)."""
    loaded = as_loaded(model)
    per_batch = runtime.batch_size(batch_size, loaded.device, "render")
    if algorithm not in ALGORITHMS:
        raise NetloupeError(f"unknown visualization algorithm {algorithm!r}; use 'lucid' or 'yosinski'")
    if algorithm == "yosinski":
        settings = classic.preset(preset, **({} if lr is None else {"lr": lr}))
        steps = settings.steps if steps is None else steps
        transforms = None if transforms == "standard" else transforms  # the paper's images had none
    parts: List[Rendering] = []
    kw: Dict[str, Any]
    param: Param
    for k, part in enumerate(chunks(len(objs), per_batch)):
        items = objs[part]
        total = functools.reduce(operator.add, [o if len(items) == 1 else o.on(i) for i, o in enumerate(items)])
        chunk_seed = None if seed is None else seed + k
        if algorithm == "yosinski":
            param = classic.start(len(items), hw(size), loaded.preprocess.mean, settings, chunk_seed)
            kw = dict(optimizer=lambda params: classic.Ascent(params, settings.lr, settings.progress),
                      after_step=classic.regularizer(settings))
        else:
            param = image(size, n=len(items), fft=fft, decorrelate=decorrelate, seed=chunk_seed)
            kw = dict(lr=0.05 if lr is None else lr)
        parts.append(render(loaded, total, param, transforms=transforms, steps=LUCID_STEPS if steps is None else steps,
                            seed=chunk_seed, progress=progress, captions=captions[part], precision=precision, **kw))
    if len(parts) == 1:
        return parts[0]
    return Rendering(torch.cat([p.images for p in parts]), torch.cat([p.history for p in parts], 1),
                     {s: torch.cat([p.snapshots[s] for p in parts]) for s in parts[0].snapshots},
                     " | ".join(p.objective for p in parts), captions)


def file_name(caption: str) -> str:
    """A file name for a unit or caption: ``blocks.4:3`` -> ``blocks.4_3``, the output ``:281`` -> ``output_281``."""
    text = caption if not caption.startswith(":") else "output" + caption
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "output"


def min_size(model: ModelLike) -> int:
    """The smallest image side, in pixels, worth rendering for ``model``: its total stride, the
    input side (``preprocess.hw``) over the smallest grid side among its layers' [N, C, H, W]
    outputs at that size (224 / 7 = 32 for the default model). Below it the coarsest layer has
    less than one cell to respond with. One-cell grids are left out: global pooling and
    squeeze-excite gates make them at any input size."""
    loaded = as_loaded(model)
    h, w = loaded.input_size
    grids = [r.shape[2:] for r in layers(loaded) if r.shape is not None and len(r.shape) == 4 and min(r.shape[2:]) > 1]
    if not grids:
        return 1
    return max(math.ceil(h / min(g[0] for g in grids)), math.ceil(w / min(g[1] for g in grids)))


def check_units(model: ModelLike, units: Union[str, Unit, Iterable[Union[str, Unit]]], size: Size = 128
                ) -> List[Unit]:
    """The units as Units, each checked before any rendering: the layer exists, and the channel,
    position or token lies inside its output when the model sees a ``size`` render (one forward
    pass of a blank image, only the units' layers captured)."""
    items = [units] if isinstance(units, (str, Unit)) else list(units)
    if not items:
        raise UnitError("give at least one unit, e.g. 'blocks.4:12'")
    loaded = as_loaded(model)
    checked = [as_unit(loaded.module, u) for u in items]
    names = list(dict.fromkeys(u.layer for u in checked if u.channel is not None))
    if names:
        blank = model_input(torch.full((1, 3, *hw(size)), 0.5), loaded)
        with probe(loaded.module, names, detach=True) as p, torch.no_grad():
            forward(loaded.module, (blank.to(loaded.dtype),))
        for u in checked:
            if u.channel is not None:
                if u.layer not in p.activations:
                    raise UnitError(f"layer {u.layer!r} did not run in the model's forward pass; choose a layer that "
                                    "does (netloupe.layers(model) lists them with their output shapes)")
                u.check(p.activations[u.layer].shape, p.layout(u.layer))
    return checked


def visualize(model: ModelLike, units: Union[str, Unit, Sequence[Union[str, Unit]]], *, algorithm: str = "lucid",
              preset: Union[int, str, classic.Preset] = 3, size: Size = 128, steps: Optional[int] = None,
              fft: bool = True, decorrelate: bool = True, transforms: TransformSpec = "standard",
              lr: Optional[float] = None, seed: Optional[int] = None, progress: bool = True,
              batch_size: Optional[int] = None, precision: str = "auto") -> Rendering:
    """Feature visualizations of units (``"layer"``, ``"layer:c"``, ``"layer:c@y,x"``; layer ``""``
    is the model output, so ``":309"`` is logit 309), one image per unit, ``batch_size`` units
    per optimization batch (None: the device's default, 8 on the CPU and 64 on a GPU).

    algorithm: "lucid" (Adam at ``lr`` 0.05 for 512 steps on an FFT, decorrelated image under
    Lucid's standard transforms) or "yosinski" (Yosinski et al. 2015: gradient ascent on pixels
    with the regularizers of ``preset``, a row 1-4 of the paper's Table 1 or an
    optvis.classic.Preset; ``steps`` and ``lr`` default to the preset's, "standard" transforms
    are none, as in the paper; ``fft`` and ``decorrelate`` do not apply). precision: the forward
    passes' ("auto": bfloat16 autocast on a GPU that has it, float32 on the CPU; runtime.autocast)."""
    us = check_units(model, units, size)
    return _render_units(model, [obj.from_unit(u) for u in us], [str(u) for u in us], size, steps, fft,
                         decorrelate, transforms, lr, seed, progress, batch_size, algorithm, preset, precision)


def visualize_channels(model: ModelLike, layer: UnitLike, channels: Iterable[int] = range(16),
                       **kw: Any) -> Rendering:
    """One image per channel of ``layer`` (``channels``: the channel numbers; the first 16 by
    default); the keywords of :func:`visualize`."""
    loaded = as_loaded(model)
    name = as_unit(loaded.module, layer).layer
    return visualize(loaded, [Unit(name, c) for c in channels], **kw)


def visualize_class(model: ModelLike, classes: Union[int, str, Sequence[Union[int, str]]], *, size: Size = 128,
                    steps: Optional[int] = None, seed: Optional[int] = None, progress: bool = True,
                    batch_size: Optional[int] = None, fft: bool = True, decorrelate: bool = True,
                    transforms: TransformSpec = "standard", lr: float = 0.05, precision: str = "auto") -> Rendering:
    """What the model takes for each of ``classes`` (indices or labels; one image each): the
    class logit, maximized; ``precision`` as in :func:`visualize`."""
    loaded = as_loaded(model)
    # a list, tuple or range holds several classes; anything else is one
    many = classes if isinstance(classes, (list, tuple, range)) else [cast(Union[int, str], classes)]
    indices = [loaded.class_index(c) for c in many]
    labels = loaded.labels
    label: Callable[[int], str] = (lambda c: labels[c]) if labels else str
    return _render_units(loaded, [obj.class_logit(c) for c in indices], [label(c) for c in indices], size, steps,
                         fft, decorrelate, transforms, lr, seed, progress, batch_size, precision=precision)


def visualize_diverse(model: ModelLike, unit: Union[str, Unit], *, n: int = 4, weight: float = 10.0,
                      diversity_layer: Optional[obj.LayerRef] = None, size: Size = 128, steps: Optional[int] = None,
                      seed: Optional[int] = None, progress: bool = True, fft: bool = True, decorrelate: bool = True,
                      transforms: TransformSpec = "standard", lr: float = 0.05, precision: str = "auto") -> Rendering:
    """``n`` different images that all excite ``unit``: its objective on every element plus
    ``weight`` times Lucid's diversity term at ``diversity_layer`` (default: the unit's layer);
    ``precision`` as in :func:`visualize`."""
    loaded = as_loaded(model)
    (u,) = check_units(loaded, [unit], size)
    if not isinstance(n, int) or n < 2:
        raise NetloupeError(f"visualize_diverse needs n >= 2 images; got {n!r}")
    objective = obj.from_unit(u) + weight * obj.diversity(diversity_layer or u.layer)
    param = image(size, n=n, fft=fft, decorrelate=decorrelate, seed=seed)
    return render(loaded, objective, param, transforms=transforms, steps=LUCID_STEPS if steps is None else steps,
                  lr=lr, seed=seed, progress=progress, captions=[f"{u} #{i}" for i in range(n)], precision=precision)


class FeatureVisualizer:
    """transfer-visualization's interface: ``FeatureVisualizer(model)(act_idx=309)`` -> PIL image.

    ``act_idx`` indexes the model output (a logit, or the mean of a feature map when the output
    is a volume), or the output of ``layer`` when one is given, so no model surgery is needed.
    """

    def __init__(self, model: ModelLike, size: Size = (224, 224), layer: Optional[UnitLike] = None, fft: bool = True,
                 decorrelate: bool = True, transforms: TransformSpec = "standard", seed: Optional[int] = None) -> None:
        self.model = as_loaded(model)
        self.size = hw(size if isinstance(size, int) else tuple(size)[:2])  # (h, w, 3) as the seed wrote it
        self.layer = "" if layer is None else as_unit(self.model.module, layer).layer
        self.fft, self.decorrelate, self.transforms, self.seed = fft, decorrelate, transforms, seed
        self.last: Optional[Rendering] = None

    def __call__(self, act_idx: int, steps: int = 200, lr: float = 0.05,
                 optimizer: Optional[Callable[..., torch.optim.Optimizer]] = None, maximize: bool = True,
                 progress: bool = True) -> Image.Image:
        objective = obj.channel(self.layer, act_idx)
        param = image(self.size, fft=self.fft, decorrelate=self.decorrelate, seed=self.seed)
        self.last = render(self.model, objective if maximize else -objective, param, transforms=self.transforms,
                           steps=steps, lr=lr, optimizer=optimizer, seed=self.seed, progress=progress)
        return self.last.to_pil()


def check_size(model: ModelLike, size: int) -> None:
    """Refuse a render side below the model's :func:`min_size` (one cell of its coarsest layer)."""
    smallest = min_size(model)
    if size < smallest:
        raise NetloupeError(f"--size {size} is below this model's minimum of {smallest} px (one cell of its "
                            f"coarsest layer); use --size {smallest} or more")


@verb("visualize", "feature visualizations of units (one PNG each + a contact sheet)", function=visualize,
      out="netloupe-visualize", order=40,
      args=(Arg.of("units", nargs="+", metavar="UNIT", help="layer, layer:channel or layer:channel@y,x (':N' is "
                   "output N)"),
            Arg.of("--diverse", type=number(int, 0), default=0, metavar="N", help="N diverse images per unit (0: one image per "
                   "unit; lucid only)")),
      options={"algorithm": Option("lucid (FFT image, random transforms) or yosinski (regularized pixels, Yosinski et "
                                   "al. 2015)", choices=ALGORITHMS),
               "preset": Option("with yosinski: the row of the paper's Table 1 (decay, blur, clipping)", type=int,
                                choices=(1, 2, 3, 4)),
               "size": Option("image side in pixels; at least the model's total stride (32 for the default model)",
                              type=int, minimum=2),
               "steps": Option("optimization steps (default: 512; with yosinski, the preset's)", type=int, minimum=1),
               "batch_size": Option("units per optimization batch (default: the device's, 8 on the CPU)", type=int,
                                    minimum=1)})
def _visualize_verb(args: argparse.Namespace, keywords: Dict[str, Any]) -> None:
    if args.diverse < 0 or (args.diverse and args.algorithm != "lucid"):
        raise NetloupeError("--diverse N takes N >= 0 images, with --algorithm lucid only")
    for unit in args.units:  # the syntax, before the model loads
        Unit.parse(unit)
    model = model_of(args)
    check_units(model, args.units, args.size)  # layers, channels and positions, before any rendering
    check_size(model, args.size)
    if args.diverse:
        common = {k: keywords[k] for k in ("size", "steps", "seed", "progress")}
        results = [visualize_diverse(model, u, n=args.diverse, **common) for u in args.units]
    else:
        results = [visualize(model, args.units, **keywords)]
    pictures: List[Image.Image] = []
    captions: List[str] = []
    for r in results:
        assert r.captions is not None  # every render of visualize is captioned with its unit
        shown = r.images if args.algorithm == "lucid" else classic.stretch(r.images, model.preprocess.mean)
        for pil, caption in zip(map(to_pil, shown), r.captions):
            save(pil, Path(args.out) / f"{file_name(caption)}.png")
            pictures.append(pil)
            captions.append(caption)
    grid(pictures, captions, ncol=args.diverse or None, cell=min(args.size, 224)).save(Path(args.out) / "contact_sheet.png")
    print(f"wrote {len(pictures)} PNGs and contact_sheet.png to {Path(args.out).resolve()}")
