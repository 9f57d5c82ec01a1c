"""Style transfer (Gatys, Ecker & Bethge 2016): an image that keeps the content photo's features at
some layers and takes the style photos' feature correlations (Gram matrices) at others, optimized
on plain pixels from the content photo by the render loop.

The Gram matrix of a layer output with C channels over P grid positions is F F^T / (C * P), F the
[C, P] features (PyTorch's neural-style tutorial's normalization, which makes ``style_weight``
~1e6 balance ``content_weight`` 1 whatever the layer's size); each layer's style loss is the mean
squared difference of Gram entries, its content loss the mean squared difference of features.

Smoothing (Wang, Li & Vasconcelos, "Rethinking and Improving the Robustness of Image Style
Transfer", CVPR 2021: SWAG): networks other than VGG are said to stylize poorly because their
residual outputs are peaky (a few large entries, low entropy), so the squared Gram differences
chase those few entries. SWAG replaces each layer output F [C, P] by its softmax over all C * P
entries, exp(F_ik) / sum_mn exp(F_mn) (temperature 1, as in the paper), before the Gram matrices
and the content comparison. Here it is multiplied by C * P, so that a flat map is 1 everywhere:
the paper's loss up to a constant weight per layer, which keeps ``style_weight`` in plain Gatys's
range instead of the authors' code's 1e17. It is an option, not the default: measured on the default
model and on a random-weight ResNet-18 (benchmarks/style_quality.py; benchmarks/RESULTS.md,
"Style transfer quality"), it matched the style less well than plain Gatys (by a fixed scorer's Gram loss)
in nine of ten comparisons, and diverged on the ResNet.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import NetloupeError
from ..images import ImageLike, grid, save, to_pil
from ..layouts import Layout, guess
from ..models import LoadedModel, as_loaded, forward
from ..probe import probe
from ..units import UnitLike, as_unit
from ..verbs import IMAGE_HELP, Arg, Option, image_paths, model_of, verb
from . import objectives as obj
from .param import pixels
from .photo import Photos, as_photos
from .recipes import ModelLike
from .render import Rendering, model_input, render

# EfficientNet-Lite0 (the default model): the first expansion of each stage stands for VGG's
# conv1_1 .. conv5_1 (at 1/2 .. 1/16 of the input side), the one at 1/8 for conv4_2's content
EFFICIENTNET_LITE0 = (["blocks.3.0.bn1"], ["bn1", "blocks.1.0.bn1", "blocks.2.0.bn1", "blocks.3.0.bn1", "blocks.5.0.bn1"])
SMOOTHINGS = ("auto", "softmax", "none")
#: how style_transfer optimizes the image
OPTIMIZERS = ("adam", "lbfgs")
SOFTMAX_TEMPERATURE = 1.0  # SWAG's softmax(F / T); benchmarks/style_quality.py measures others


def gram(acts: torch.Tensor, layout: Optional[Layout] = None) -> torch.Tensor:
    """[N, C, C] Gram matrices of a layer output over its grid, divided by C * H * W. ``layout``
    (netloupe.layouts) says where its channels and grid are (default: guessed from the shape,
    NCHW for 4-d outputs); an output without a grid has no Gram matrix."""
    return _gram(_grid(acts, layout))


def _grid(acts: torch.Tensor, layout: Optional[Layout]) -> torch.Tensor:
    """[N, C, P]: a layer output's channels over its grid positions; an error without a grid."""
    layout = layout or guess(acts.shape)
    if layout.spatial(acts.shape) is None:
        raise NetloupeError(f"a Gram matrix needs a layer output with a spatial grid; this one has shape "
                            f"{tuple(acts.shape)} (layout {layout}); choose a convolutional layer for style_layers "
                            "(vector layers can serve as content_layers)")
    return layout.positions(acts)


def _gram(f: torch.Tensor) -> torch.Tensor:
    """[N, C, C] Gram matrices of features [N, C, P], divided by C * P."""
    return f @ f.transpose(1, 2) / (f.shape[1] * f.shape[2])


def softmax_smoothing(acts: torch.Tensor, layout: Optional[Layout] = None) -> torch.Tensor:
    """SWAG's smoothing of a layer output, as [N, C, P] (channels over grid positions; a vector
    output is [N, C, 1]): per element, the softmax over all C * P entries, times C * P (a flat map
    gives 1 everywhere; the softmax of F / SOFTMAX_TEMPERATURE, 1 as in the paper). Float32."""
    return _softmax((layout or guess(acts.shape)).positions(acts))


def _softmax(f: torch.Tensor) -> torch.Tensor:
    """[N, C, P] -> per element, the softmax over all C * P entries, times C * P (float32)."""
    f = f.float() / SOFTMAX_TEMPERATURE
    return torch.softmax(f.flatten(1), dim=1).view_as(f) * (f.shape[1] * f.shape[2])


def default_layers(model: ModelLike) -> Tuple[List[str], List[str]]:
    """(content layers, style layers) for the default model and VGG-style nets: in each block of a
    ``features`` Sequential ending at a max-pool, the first conv is a style layer (torchvision's
    vgg19: conv1_1 .. conv5_1 = features.0, 5, 10, 19, 28) and the fourth block's second conv
    the content layer (conv4_2 = features.21)."""
    module = as_loaded(model).module
    names = dict(module.named_modules())
    if type(module).__name__ == "EfficientNet" and all(n in names for n in sum(EFFICIENTNET_LITE0, [])):
        return list(EFFICIENTNET_LITE0[0]), list(EFFICIENTNET_LITE0[1])
    vgg = _vgg_layers(module)
    if vgg is not None:
        return vgg
    raise NetloupeError(f"no default style transfer layers for a {type(module).__name__}; pass content_layers= and "
                        "style_layers= (convolutional layers, early to late; see netloupe.layers(model))")


def _vgg_layers(module: nn.Module) -> Optional[Tuple[List[str], List[str]]]:
    """VGG's (content, style) layers when ``module`` is VGG-style (a ``features`` Sequential of at
    least five blocks of convs, each ending at a max-pool, the fourth of two convs or more), else None."""
    features = getattr(module, "features", None)
    if not isinstance(features, nn.Sequential):
        return None
    blocks: List[List[str]] = []
    convs: List[str] = []
    for i, m in enumerate(features):
        if isinstance(m, nn.Conv2d):
            convs.append(f"features.{i}")
        elif isinstance(m, nn.MaxPool2d) and convs:
            blocks.append(convs)
            convs = []
    if len(blocks) >= 5 and len(blocks[3]) >= 2:
        return [blocks[3][1]], [b[0] for b in blocks[:5]]
    return None


def smoothing_for(model: ModelLike, smoothing: str = "auto") -> str:
    """The smoothing ``style_transfer`` uses: ``smoothing`` itself, or for "auto" the paper's
    advice: "none" on a VGG-style net (:func:`default_layers` finds its conv blocks) and
    "softmax" (SWAG) on any other."""
    if smoothing not in SMOOTHINGS:
        raise NetloupeError(f"smoothing is 'auto', 'softmax' or 'none'; got {smoothing!r}")
    if smoothing != "auto":
        return smoothing
    return "none" if _vgg_layers(as_loaded(model).module) is not None else "softmax"


def _check_weights(**weights: object) -> None:
    for name, w in weights.items():
        if not isinstance(w, (int, float)) or w < 0 or w != w:
            raise NetloupeError(f"{name} must be a number >= 0; got {w!r}")


def _style_weights(style_weights: Optional[Sequence[float]], n: int) -> List[float]:
    ws = [1.0] * n if style_weights is None else list(style_weights)
    if len(ws) != n or any(not isinstance(w, (int, float)) or w < 0 for w in ws) or sum(ws) <= 0:
        raise NetloupeError(f"style_weights takes {n} numbers >= 0 (one per style image) with a positive sum; "
                            f"got {style_weights!r}")
    return [w / sum(ws) for w in ws]


def _features(loaded: LoadedModel, images01: torch.Tensor, layers: Sequence[str]
              ) -> Tuple[Dict[str, torch.Tensor], Dict[str, Layout]]:
    """The outputs of ``layers`` for images in [0, 1] fed as the render loop feeds them
    (render.model_input: normalized, upsampled when smaller than the model's input) and their
    layouts, without gradients."""
    with torch.no_grad(), probe(loaded.module, layers) as p:
        forward(loaded.module, (model_input(images01, loaded),))
        return {n: p.activations[n].detach() for n in layers}, {n: p.layout(n) for n in layers}


def _style_gram(acts: torch.Tensor, layout: Layout, smooth: bool) -> torch.Tensor:
    f = _grid(acts, layout)
    return _gram(_softmax(f) if smooth else f)


def _content_features(acts: torch.Tensor, layout: Layout, smooth: bool) -> torch.Tensor:
    return softmax_smoothing(acts, layout) if smooth else acts


def style_transfer(model: ModelLike, content: Photos, style: Photos, *,
                   content_layers: Optional[Sequence[UnitLike]] = None,
                   style_layers: Optional[Sequence[UnitLike]] = None, style_weights: Optional[Sequence[float]] = None,
                   style_weight: float = 1e6, content_weight: float = 1.0, tv_weight: float = 3e-3, steps: int = 300,
                   optimizer: str = "adam", lr: Optional[float] = None, smoothing: str = "none", progress: bool = True,
                   seed: Optional[int] = None) -> Rendering:
    """``content`` painted in the style of ``style`` (an image or a list of images, blended by
    ``style_weights``, which are normalized to sum 1; blending the Gram targets so gives the
    gradients of the weighted sum of each style's loss).

    Images are what the photo recipes take (optvis.photo.photos: paths, PIL, arrays, or tensors
    of RGB in [0, 1] like renderings' images), resized and cropped by the model's Preprocess;
    the optimization starts from the content photo. Loss: style_weight * sum of the style layers'
    Gram losses + content_weight * sum of the content layers' feature losses + tv_weight * the
    image's total variation (a sum over pixels; the default 3e-3 takes Adam's pixel noise away on
    the default model at 224 px and lowers the style loss too, benchmarks/RESULTS.md; 0 is plain
    Gatys). smoothing: "none" (plain Gatys), "softmax" (SWAG: every layer output is
    replaced by :func:`softmax_smoothing` before its Gram matrix and its content comparison; the
    same weights serve), or "auto", the paper's advice: none on VGG-style nets, softmax on any
    other (:func:`smoothing_for`). Plain is the default: measured, SWAG kept the photo's
    brightness and colours (chelsea in hubble's style stays a bright, speckled cat) and, on a
    random-weight ResNet-18, diverged (its deepest layer's smoothed map heads for one entry).
    optimizer: "adam" (lr 0.02) or "lbfgs" (lr 1, one function evaluation per step, as the
    PyTorch tutorial counts them; on the default model it stalls where pixels pinned at 0 or 1
    lead its direction: chelsea in hubble's style stays at a loss of 7195 from step 16 on, where
    Adam reaches 439 in 100 steps). Layers default to :func:`default_layers`.
    Returns a Rendering whose ``history`` [steps, 1] is the loss (lower is better). Nothing in it
    is random (it starts from the content photo); ``seed`` goes to the render loop all the same.
    """
    loaded = as_loaded(model)
    _check_weights(style_weight=style_weight, content_weight=content_weight, tv_weight=tv_weight)
    if optimizer not in OPTIMIZERS:
        raise NetloupeError(f"optimizer is 'lbfgs' or 'adam'; got {optimizer!r}")
    smooth = smoothing_for(loaded, smoothing) == "softmax"
    styles = list(style) if isinstance(style, list) else [style]
    blend = _style_weights(style_weights, len(styles))
    if content_layers is None or style_layers is None:
        defaults = default_layers(loaded)
        content_layers = defaults[0] if content_layers is None else content_layers
        style_layers = defaults[1] if style_layers is None else style_layers
    content_names = [as_unit(loaded.module, n).layer for n in content_layers]
    style_names = [as_unit(loaded.module, n).layer for n in style_layers]
    if not style_names and not content_names:
        raise NetloupeError("give at least one layer in content_layers= or style_layers=")
    content01 = as_photos(content, loaded)
    if content01.shape[0] != 1:
        raise NetloupeError(f"style_transfer takes one content image; got {content01.shape[0]}")
    acts, layouts = _features(loaded, content01, content_names)
    targets = {n: _content_features(acts[n], layouts[n], smooth) for n in content_names}
    grams: Dict[str, torch.Tensor] = {}  # each the blend of the style images' Gram matrices
    for image, w in zip(styles, blend):
        acts, layouts = _features(loaded, as_photos(image, loaded)[:1], style_names)
        for n in style_names:
            grams[n] = grams.get(n, 0) + w * _style_gram(acts[n], layouts[n], smooth)

    def loss(ctx: obj.Context) -> obj.Value:
        style_loss = sum(F.mse_loss(_style_gram(ctx.activation(n), ctx.layout(n), smooth), grams[n])
                         for n in style_names)
        content_loss = sum(F.mse_loss(_content_features(ctx.activation(n), ctx.layout(n), smooth), targets[n])
                           for n in content_names)
        return style_weight * style_loss + content_weight * content_loss

    objective = -obj.Objective(loss, "style transfer loss", [(None, n) for n in content_names + style_names])
    if tv_weight:
        objective = objective - tv_weight * obj.total_variation()
    make: Callable[..., torch.optim.Optimizer]
    if optimizer == "lbfgs":
        make = functools.partial(torch.optim.LBFGS, lr=1.0 if lr is None else lr, max_iter=1)
    else:
        make = functools.partial(torch.optim.Adam, lr=0.02 if lr is None else lr)
    start = pixels(content01)
    r = render(loaded, objective, start, transforms=None, steps=steps, optimizer=make, seed=seed, progress=progress,
               after_step=lambda step, param: param.clamp_(), captions=["style transfer"])
    r.history, r.objective = -r.history, "style transfer loss"
    return r


@verb("style", "style transfer (Gatys et al.): a photo painted in the style of others", function=style_transfer,
      out="netloupe-style", order=53,
      args=(Arg.of("content", metavar="CONTENT", help="the content photo: " + IMAGE_HELP),
            Arg.of("style", nargs="+", metavar="STYLE", help="the style photo(s), blended: " + IMAGE_HELP),
            Arg.of("--style-weights", default=None, metavar="W,W", help="comma-separated blend of the style photos "
                   "(default: equal)")),
      options={"style_weight": Option("weight of the style loss against content 1", minimum=0),
               "tv_weight": Option("weight of the image's total variation (takes the pixel noise away)", minimum=0),
               "steps": Option("optimization steps (function evaluations)", minimum=1),
               "optimizer": Option("how the image is optimized", choices=OPTIMIZERS),
               "smoothing": Option("none (plain Gatys), softmax (SWAG) or auto (softmax off VGG)", choices=SMOOTHINGS)})
def _style_verb(args: argparse.Namespace, keywords: Dict[str, Any]) -> None:
    content, *styles = image_paths([args.content] + args.style)
    model = model_of(args)
    weights = None if args.style_weights is None else [float(w) for w in args.style_weights.split(",")]
    r = style_transfer(model, content, list[ImageLike](styles), style_weights=weights, **keywords)
    out = Path(args.out)
    save(r.to_pil(), out / "style_transfer.png")
    photos = [to_pil(t) for t in model.preprocess.inverse(model.inputs([content] + styles))]
    captions = [f"content {Path(args.content).stem}"] + [f"style {Path(s).stem}" for s in args.style] + ["result"]
    grid(photos + [r.to_pil()], captions, ncol=len(captions)).save(out / "contact_sheet.png")
    print(f"final loss {r.history[-1, 0]:.4g}; wrote style_transfer.png and contact_sheet.png to {out.resolve()}")
