"""Comparison: what changed in each unit between models, measure by measure, with a combined
score, tables, pictures and its own persistence."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import torch

from .. import images
from ..errors import InputError
from ..folders import Contents, Stored

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

    from ..data import DataLike
    from ..models import LoadedModel

#: Each measure as a dissimilarity in [0, 1] (0: unchanged), for the combined score.
DISSIMILARITY: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "render_cosine": lambda v: (1 - v) / 2,   # cosine of the renders' embeddings in the reference net
    "ssim": lambda v: (1 - v) / 2,            # structural similarity of the two renders
    "gram_distance": lambda v: v / (1 + v),   # relative distance of their Gram matrices
    "correlation": lambda v: (1 - v) / 2,     # correlation over the data of the channel in both models
    "jaccard": lambda v: 1 - v,               # overlap of the two models' top-k images
    "weight_drift": lambda v: v / (1 + v),    # relative change of the channel's producing filter
}
#: The measures' names, in the order rows and tables give them.
MEASURES = tuple(DISSIMILARITY)


@dataclass
class Comparison(images.Chart, Stored):
    """Against the first model (``names[0]``), for each later model i and layer: ``measures[(i,
    layer)][name]`` is a [C] tensor over the compared ``channels[layer]`` (measures: MEASURES,
    those computed), ``gray[(i, layer)]`` which renders had no contrast (i = 0 included),
    ``renders[(i, layer)]`` [C, 3, h, w]; ``cka[i]`` the linear CKA matrix between the first
    model's ``cka_layers[0]`` (rows) and model i's ``cka_layers[i]`` (columns);
    ``top_images[(i, layer)]`` [C, k] the ids (into ``ids``) of each channel's top images.

    ``score`` combines the measures: the mean of those available, each first made a
    dissimilarity in [0, 1] (DISSIMILARITY): 0 is unchanged, 1 as changed as can be."""

    names: List[str]
    layers: List[str]
    channels: Dict[str, List[int]]
    measures: Dict[Tuple[int, str], Dict[str, torch.Tensor]] = field(default_factory=dict)
    gray: Dict[Tuple[int, str], torch.Tensor] = field(default_factory=dict)
    renders: Dict[Tuple[int, str], torch.Tensor] = field(default_factory=dict)
    cka: Dict[int, torch.Tensor] = field(default_factory=dict)
    cka_layers: Dict[int, List[str]] = field(default_factory=dict)
    top_images: Dict[Tuple[int, str], torch.Tensor] = field(default_factory=dict)
    ids: List[str] = field(default_factory=list)
    source: Optional[DataLike] = field(default=None, repr=False, compare=False)
    models: Optional[List[LoadedModel]] = field(default=None, repr=False, compare=False)

    figsize = (7.0, 4.0)

    def score(self, i: int, layer: str) -> torch.Tensor:
        """[C] the combined change of each channel of ``layer`` in model i (see the class docstring)."""
        parts = [DISSIMILARITY[name](v.double()).clamp(0, 1) for name, v in self.measures[(i, layer)].items()]
        stacked = torch.stack(parts)
        return torch.nanmean(stacked, 0)

    def rows(self) -> List[Dict[str, Any]]:
        """One row per later model, layer and channel: every measure, the gray flags and the score."""
        out = []
        for (i, layer), measures in self.measures.items():
            score = self.score(i, layer)
            for k, channel in enumerate(self.channels[layer]):
                row: Dict[str, Any] = {"model": self.names[i], "model_index": i, "layer": layer, "channel": channel}
                row.update({name: float(v[k]) for name, v in measures.items()})
                if (0, layer) in self.gray:
                    row["gray_first"], row["gray"] = bool(self.gray[(0, layer)][k]), bool(self.gray[(i, layer)][k])
                row["score"] = float(score[k])
                out.append(row)
        return out

    def to_frame(self) -> Union[pd.DataFrame, List[Dict[str, Any]]]:
        """The rows as a pandas DataFrame when pandas is installed, else as the list of dicts."""
        try:
            import pandas as pd
        except ImportError:
            return self.rows()
        return pd.DataFrame(self.rows())

    def top(self, n: int = 10, model: Optional[int] = None, least: bool = False) -> List[Dict[str, Any]]:
        """The ``n`` most changed channels (``least``: the least changed) of model ``model`` (default:
        the last), over every layer, by score."""
        i = len(self.names) - 1 if model is None else model
        rows = [r for r in self.rows() if r["model_index"] == i and not math.isnan(r["score"])]
        return sorted(rows, key=lambda r: r["score"], reverse=not least)[:n]

    def similarity(self, i: int, layer: str) -> float:
        """How alike ``layer`` stayed in model i: one minus the mean score of its channels."""
        return 1 - float(torch.nanmean(self.score(i, layer)))

    # -- pictures ----------------------------------------------------------------------------
    def plot(self, ax: Optional[Axes] = None, kind: str = "scores", model: Optional[int] = None) -> Axes:
        """kind: "scores" (the distribution of channel scores per layer), "cka" (the CKA matrix of
        model ``model``, default the last, against the first) or "trajectory" (each layer's
        similarity to the first model, model by model: a checkpoint sequence's drift)."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=self.figsize)
        i = len(self.names) - 1 if model is None else model
        if kind == "scores":
            data = [self.score(i, layer).numpy() for layer in self.layers]
            ax.boxplot([d[~np.isnan(d)] for d in data], tick_labels=self.layers)
            ax.set_ylabel("change score (0: unchanged)")
            ax.set_title(f"{self.names[i]} against {self.names[0]}", fontsize=9)
            ax.tick_params(axis="x", labelrotation=30, labelsize=7)
        elif kind == "cka":
            if i not in self.cka:
                raise InputError("this comparison holds no CKA; compare with data=")
            im = ax.imshow(self.cka[i].numpy(), vmin=0, vmax=1, cmap="viridis")
            ax.set_yticks(range(len(self.cka_layers[0])), self.cka_layers[0], fontsize=6)
            ax.set_xticks(range(len(self.cka_layers[i])), self.cka_layers[i], fontsize=6, rotation=60, ha="right")
            ax.set_ylabel(self.names[0], fontsize=8)
            ax.set_xlabel(self.names[i], fontsize=8)
            ax.set_title("linear CKA of the layers", fontsize=9)
            ax.figure.colorbar(im, ax=ax, fraction=0.046)
        elif kind == "trajectory":
            xs = list(range(len(self.names)))
            for layer in self.layers:
                ax.plot(xs, [1.0] + [self.similarity(j, layer) for j in xs[1:]], marker="o", label=layer)
            ax.set_xticks(xs, self.names, rotation=30, ha="right", fontsize=7)
            ax.set_ylabel(f"similarity to {self.names[0]}")
            ax.legend(fontsize=7)
            ax.set_title("how each layer drifts", fontsize=9)
        else:
            raise InputError(f"unknown kind {kind!r}; choose scores, cka or trajectory")
        return ax

    # -- persistence -------------------------------------------------------------------------
    KIND = "comparison"

    def contents(self) -> Contents:
        """What save writes: every measure, render, top-image list and CKA matrix (no models)."""
        arrays: Dict[str, np.ndarray] = {}
        for (i, layer), measures in self.measures.items():
            for name, v in measures.items():
                arrays[f"measure/{i}/{layer}/{name}"] = v.numpy()
        for store, prefix in ((self.gray, "gray"), (self.renders, "render"), (self.top_images, "top")):
            for (i, layer), v in store.items():
                arrays[f"{prefix}/{i}/{layer}"] = v.numpy()
        for i, v in self.cka.items():
            arrays[f"cka/{i}"] = v.numpy()
        meta = {"names": self.names, "layers": self.layers, "channels": self.channels,
                "cka_layers": {str(i): v for i, v in self.cka_layers.items()}, "ids": self.ids}
        return meta, arrays

    @classmethod
    def from_contents(cls, meta: Dict[str, Any], arrays: Dict[str, np.ndarray]) -> Comparison:
        result = cls(meta["names"], meta["layers"], meta["channels"],
                     cka_layers={int(i): v for i, v in meta["cka_layers"].items()}, ids=meta["ids"])
        for key, array in arrays.items():
            kind, _, rest = key.partition("/")
            value = torch.from_numpy(array)
            if kind == "cka":
                result.cka[int(rest)] = value
                continue
            i, _, rest = rest.partition("/")
            if kind == "measure":
                layer, _, name = rest.rpartition("/")
                result.measures.setdefault((int(i), layer), {})[name] = value
            else:
                store = {"gray": result.gray, "render": result.renders, "top": result.top_images}[kind]
                store[(int(i), rest)] = value
        return result
