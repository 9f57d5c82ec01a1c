"""A comparison as a page: the most and least changed channels with both models' renders and top
images side by side, the score distributions, the CKA matrix and a checkpoint trajectory."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union

import torch
from PIL import Image

from .. import images, runtime
from ..data import DataLike, Source, as_source, sample_inputs
from ..folders import template
from ..models import LoadedModel
from ..optvis.recipes import check_size
from ..verbs import Arg, Option, data_of, model_of, verb
from .comparison import compare
from .result import MEASURES, Comparison

if TYPE_CHECKING:
    pass


def _thumbs(result: Comparison, source: Optional[Source], i: int, layer: str, channel: int, top_k: int
            ) -> List[Image.Image]:
    """The top-k images of a channel in model i, as the first model's preprocessing shows them."""
    if source is None or (i, layer) not in result.top_images:
        return []
    first = result.models[0] if result.models else None
    if first is None:
        return []
    row = result.channels[layer].index(channel)
    pictures = []
    for index in result.top_images[(i, layer)][row][:top_k].tolist():
        x = sample_inputs(source.dataset[index], first.preprocess)[0]
        pictures.append(images.to_pil(first.preprocess.inverse(x[None].float())[0]))
    return pictures


def _unit_picture(result: Comparison, source: Optional[Source], i: int, row: Dict[str, Any], top_k: int
                  ) -> Optional[Image.Image]:
    layer, channel = row["layer"], row["channel"]
    tiles: List[Union[torch.Tensor, Image.Image]] = []  # renders and photos
    captions: List[str] = []
    position = result.channels[layer].index(channel)
    for j, name in ((0, result.names[0]), (i, result.names[i])):
        if (j, layer) in result.renders:
            tiles.append(result.renders[(j, layer)][position])
            captions.append(f"{name} render")
    for j, name in ((0, result.names[0]), (i, result.names[i])):
        for n, picture in enumerate(_thumbs(result, source, j, layer, channel, top_k)):
            tiles.append(picture)
            captions.append(f"{name} top {n + 1}")
    if not tiles:
        return None
    return images.grid(tiles, captions, ncol=len(tiles), cell=96)


def comparison_report(result: Comparison, directory: Union[str, os.PathLike], *, data: Optional[DataLike] = None, n: int = 6,
           top_k: int = 3, progress: bool = True) -> Path:
    """Write index.html and its pictures into ``directory``; returns the index's path. ``data``:
    the compared images, for top images of a result loaded from disk; n: how many of the most and
    least changed channels; top_k: how many top images of each model to show for each."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    given = data if data is not None else result.source
    source = as_source(given) if given is not None else None
    overview: List[Tuple[str, str]] = []
    last = len(result.names) - 1
    kinds = ["scores"] + (["cka"] if last in result.cka else []) + (["trajectory"] if len(result.names) > 2 else [])
    for kind in kinds:
        result.to_pil(kind=kind).save(out / f"{kind}.png")
        overview.append((f"{kind}.png", {"scores": "Change scores per layer", "cka": "Linear CKA of the layers",
                                         "trajectory": "Similarity to the first model, model by model"}[kind]))
    sections: List[Dict[str, Any]] = []
    for title, rows in (("Most changed channels", result.top(n, last)), ("Least changed channels",
                                                                          result.top(n, last, least=True))):
        units: List[Dict[str, Any]] = []
        for rank, row in enumerate(runtime.progress(rows, desc="compare report", enabled=progress)):
            picture = _unit_picture(result, source, last, row, top_k)
            name = None
            if picture is not None:
                name = f"{'most' if title.startswith('Most') else 'least'}_{rank}.png"
                picture.save(out / name)
            units.append({"layer": row["layer"], "channel": row["channel"], "score": row["score"],
                          "row": {m: row[m] for m in MEASURES if m in row}, "picture": name or ""})
        sections.append({"title": f"{title} of {result.names[last]}", "units": units})
    page = template("netloupe.compare", "report.html").render(
        names=result.names, layers=result.layers, overview=overview, sections=sections, measures=MEASURES)
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


@verb("compare", "what changed in each unit between models (a base and its fine-tuned weights, or checkpoints)",
      function=compare, out="netloupe-compare", order=80,
      args=(Arg.of("models", nargs="+", metavar="MODEL", help="model specs, or weights files for --model's "
                   "architecture (a checkpoint sequence: base first)"),
            Arg.of("--layers", required=True, help="comma-separated layer names (see `netloupe layers`)"),
            Arg.of("--data", default=None, help="images for the data-based measures and CKA: a folder, a list file, "
                   "or 'samples'"),
            Arg.of("--channels", default=None, help="channels to compare: N (the first N) or A-B (default: all)")),
      options={"steps": Option("render steps per channel", minimum=1),
               "size": Option("render size in pixels: at least 7 (SSIM's window) and the model's total stride",
                              minimum=7),
               "renders": Option("skip the render-based measures", flag="--no-renders")})
def _compare_verb(args: argparse.Namespace, keywords: Dict[str, Any]) -> None:
    spec = model_of(args) if any(Path(m).is_file() for m in args.models) else None
    models = [m if Path(m).is_file() else model_of(args, m) for m in args.models]
    if keywords["renders"]:
        check_size(spec or [m for m in models if isinstance(m, LoadedModel)][0], keywords["size"])
    channels = int(args.channels) if args.channels and args.channels.isdigit() else args.channels
    result = compare(models, args.layers, data_of(args.data), channels=channels, spec=spec, **keywords)
    result.save(args.out)
    for row in result.top(5):
        print(f"{row['layer']}:{row['channel']}  score {row['score']:.3f}")
    print(comparison_report(result, args.out, progress=keywords["progress"]).resolve())
