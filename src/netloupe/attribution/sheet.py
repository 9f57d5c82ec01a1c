"""A contact sheet: every attribution method's map of one input side by side, each with
its colour bar, so that methods can be compared at a glance."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Union

from PIL import Image

from .. import images
from ..errors import InputError
from ..models import as_loaded
from .result import Attribution

#: How each method is best looked at: signed fine detail as raw RGB, the rest over the photo.
RAW_VIEW = {"guided_backprop", "deconvnet", "guided_grad_cam"}
#: Methods that take a layer.
LAYER_METHODS = {"grad_cam", "grad_cam_pp", "guided_grad_cam"}
#: What a reader should know when looking at a method's tile (benchmarks/RESULTS.md, README).
CAPTIONS = {"deconvnet": "deconvnet (ignores image and class)"}


@dataclass
class ContactSheet(images.Picture):
    """The input and each method's Attribution of it (``results``, by method name)."""

    results: Dict[str, Attribution]
    title: str = ""
    label: str = ""

    @staticmethod
    def view(method: str) -> str:
        """The kind a method's tile is drawn as (raw or overlay)."""
        return "raw" if method in RAW_VIEW else "overlay"

    def to_pil(self, ncol: int = 6, cell: float = 2.3, **kw) -> Image.Image:
        """The sheet as one picture: the input first, then a tile per method with its colour bar."""
        first = next(iter(self.results.values()))
        tiles = len(self.results) + 1
        ncol = min(ncol, tiles)
        nrow = math.ceil(tiles / ncol)
        fig, axes = images.figure(nrow, ncol, figsize=(ncol * cell * 1.2, nrow * cell + 0.4), dpi=100)
        for ax in axes.flat:
            ax.set_axis_off()
        axes.flat[0].imshow(images.to_pil(first.image(0)))
        axes.flat[0].set_title(self.label or "input", fontsize=8)
        for ax, (method, result) in zip(list(axes.flat)[1:], self.results.items()):
            result.plot(ax=ax, kind=self.view(method), title=CAPTIONS.get(method, method))
        if self.title:
            fig.suptitle(self.title, fontsize=9)
        fig.tight_layout()
        return images.figure_to_pil(fig)


def contact_sheet(model, inputs, methods: Union[str, Sequence[str]] = "all", target="top",
                  layer=None, title: str = "") -> ContactSheet:
    """Run ``methods`` ("all", or names from METHODS) on one input and lay them out side by side.
    ``layer`` goes to the methods that take one; the first tile names the explained class."""
    from . import METHODS

    loaded = as_loaded(model)
    names: List[str] = list(METHODS) if methods == "all" else [methods] if isinstance(methods, str) else list(methods)
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise InputError(f"unknown method {unknown[0]!r}; choose one of {', '.join(METHODS)} or all")
    x = loaded.inputs(inputs)
    if len(x) != 1:
        raise InputError(f"a contact sheet explains one input; got {len(x)}")
    results: Dict[str, Attribution] = {}
    explained: Optional[object] = target
    for method in names:
        kw = {"layer": layer} if layer is not None and method in LAYER_METHODS else {}
        results[method] = METHODS[method](loaded, x, target=explained, **kw)
        explained = results[method].target  # "top" resolved once: every tile explains the same class
    label = ""
    classes = results[names[0]].target
    if hasattr(classes, "shape") and loaded.labels and classes.numel() == 1:
        label = f"{loaded.labels[int(classes[0])]} ({int(classes[0])})"
    return ContactSheet(results, title, label)
