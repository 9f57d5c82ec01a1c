"""A contact sheet: every attribution method's map of one input side by side, each with
its colour bar, so that methods can be compared at a glance."""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from PIL import Image

from .. import images
from ..errors import InputError
from ..models import Inputs, ModelLike, as_loaded
from ..units import UnitLike
from ..verbs import IMAGES, Arg, image_paths, model_of, target_of, verb
from .registry import METHODS, lookup
from .result import Attribution
from .targets import TargetLike


@dataclass
class ContactSheet(images.Picture):
    """The input and each method's Attribution of it (``results``, by method name)."""

    results: Dict[str, Attribution]
    title: str = ""
    label: str = ""

    @staticmethod
    def view(method: str) -> str:
        """The kind a method's tile is drawn as: its registered view (overlay for other functions)."""
        return METHODS[method].view if method in METHODS else "overlay"

    def to_pil(self, ncol: int = 6, cell: int = 230, **kw: Any) -> Image.Image:
        """The sheet as one picture: the input first, then a tile per method with its colour bar,
        each ``cell`` pixels high."""
        first = next(iter(self.results.values()))
        tiles = len(self.results) + 1
        ncol = min(ncol, tiles)
        nrow = math.ceil(tiles / ncol)
        inches = cell / 100
        fig, axes = images.figure(nrow, ncol, figsize=(ncol * inches * 1.2, nrow * inches + 0.4), dpi=100)
        for ax in axes.flat:
            ax.set_axis_off()
        axes.flat[0].imshow(images.to_pil(first.image(0)))
        axes.flat[0].set_title(self.label or "input", fontsize=8)
        for ax, (method, result) in zip(list(axes.flat)[1:], self.results.items()):
            result.plot(ax=ax, kind=self.view(method), title=METHODS[method].caption if method in METHODS else method)
        if self.title:
            fig.suptitle(self.title, fontsize=9)
        fig.tight_layout()
        return images.figure_to_pil(fig)

    def write(self, folder: Union[str, os.PathLike], stem: str) -> List[Path]:
        """One PNG per method (drawn as the sheet shows it) and, for several methods, the sheet
        itself (``{stem}_all.png``), into ``folder``; returns their paths."""
        folder = Path(folder)
        written = [result.save(folder / f"{stem}_{method}.png", kind=self.view(method))
                   for method, result in self.results.items()]
        if len(self.results) > 1:
            written.append(self.save(folder / f"{stem}_all.png"))
        return written


def contact_sheet(model: ModelLike, inputs: Inputs, methods: Union[str, Sequence[str]] = "all", *,
                  target: TargetLike = "top", layer: Optional[UnitLike] = None, title: str = "") -> ContactSheet:
    """Run ``methods`` ("all": every method that applies to the model, or names from METHODS) on
    one input and lay them out side by side. ``layer`` goes to the methods that take one; the
    first tile names the explained class."""
    loaded = as_loaded(model)
    names: List[str] = [m for m, method in METHODS.items() if method.applies(loaded.module)] if methods == "all" \
        else [methods] if isinstance(methods, str) else list(methods)
    for m in names:
        if not isinstance(m, str) or m not in METHODS:
            lookup(str(m))  # raises, naming the known methods, before any work
    x = loaded.inputs(inputs)
    if len(x) != 1:
        raise InputError(f"a contact sheet explains one input; got {len(x)}")
    results: Dict[str, Attribution] = {}
    explained: Optional[object] = target
    for method in names:
        kw = {"layer": layer} if layer is not None and METHODS[method].takes_layer else {}
        results[method] = METHODS[method](loaded, x, target=explained, **kw)
        explained = results[method].target  # "top" resolved once: every tile explains the same class
    label = ""
    classes = results[names[0]].target
    if hasattr(classes, "shape") and loaded.labels and classes.numel() == 1:
        label = f"{loaded.labels[int(classes[0])]} ({int(classes[0])})"
    return ContactSheet(results, title, label)


@verb("attribute", "attribution maps (overlay PNGs; --method all: a contact sheet)", out="netloupe-out", order=30,
      args=(IMAGES, Arg.of("--method", default="all", help=lambda: f"{', '.join(METHODS)}, or all"),
            Arg.of("--target", default="top", help="top (the predicted class), a class index, or a unit like "
                   "blocks.6.0:12"),
            Arg.of("--layer", default=None, help="layer for the CAM methods (default: the last spatial layer)")))
def _attribute_verb(args: argparse.Namespace, keywords: Dict[str, Any]) -> None:
    methods = "all" if args.method == "all" else [lookup(args.method).name]
    paths = image_paths(args.images)
    model = model_of(args)
    x = model.inputs(paths)
    for i, name in enumerate(args.images):
        sheet = contact_sheet(model, x[i:i + 1], methods, target=target_of(args.target), layer=args.layer,
                              title=Path(name).stem)
        sheet.write(args.out, Path(name).stem)
        print(f"{name}: wrote {len(sheet.results)} attribution(s) to {Path(args.out).resolve()}")
