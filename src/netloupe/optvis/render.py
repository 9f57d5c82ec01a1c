"""The render loop: optimize a parameterized image so that an objective grows.

Each step: param -> images in [0, 1] -> random transforms -> for every model, its own
Preprocess.normalize and an upsample to its input size when the image is smaller -> forward
under netloupe.probe (eval mode, parameters frozen, activations captured) -> objective per
batch element -> gradient ascent on the image only.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..errors import NetloupeError
from ..images import Picture, shown
from ..images import grid as image_grid
from ..images import to_pil as tensor_to_pil
from ..models import LoadedModel, as_loaded, fixed_input_size, forward
from ..probe import Probe, Stopped, probe
from ..runtime import autocast, channels_last, check_precision, generator
from ..runtime import progress as progress_bar
from ..units import as_unit
from .objectives import OUTPUT, Context, Objective, as_objective
from .param import Param, image
from .transforms import resolve


@dataclass
class Rendering(Picture):
    """Rendered images [batch, 3, h, w] in [0, 1] on the model's device, the objective per step
    and element (``history`` [steps, batch], on the CPU), images at the threshold steps, and what
    made them."""

    images: torch.Tensor
    history: torch.Tensor
    snapshots: Dict[int, torch.Tensor] = field(default_factory=dict)
    objective: str = ""
    captions: Optional[List[str]] = None

    def __len__(self) -> int:
        return self.images.shape[0]

    def pils(self) -> List[Image.Image]:
        """One PIL image per batch element."""
        return [tensor_to_pil(im) for im in self.images]

    def grid(self, captions: Optional[Sequence[str]] = None, ncol: Optional[int] = None,
             cell: Optional[int] = None) -> Image.Image:
        """All images side by side, captioned with their units unless ``captions`` are given."""
        return image_grid(self.pils(), captions if captions is not None else self.captions, ncol=ncol, cell=cell)

    def to_pil(self, index: Optional[int] = None, **grid_kw: Any) -> Image.Image:
        """Element ``index`` (the only one, for a batch of one), else the grid of all."""
        if index is not None:
            return tensor_to_pil(self.images[shown(index, len(self), "images")[0]])
        return tensor_to_pil(self.images[0]) if len(self) == 1 else self.grid(**grid_kw)


def _loaded_models(model_or_models: Any) -> List[LoadedModel]:
    items = list(model_or_models) if isinstance(model_or_models, (list, tuple)) else [model_or_models]
    if not items:
        raise NetloupeError("render needs at least one model")
    return [as_loaded(m) for m in items]


def _key(model: Any, default: nn.Module) -> nn.Module:
    """The module an objective's ``model=`` names (None: the first model)."""
    return default if model is None else getattr(model, "module", model)


def _plan(models: List[LoadedModel], objective: Objective
          ) -> Tuple[List[LoadedModel], Dict[nn.Module, List[str]], nn.Module, Set[nn.Module]]:
    """The models to run (those an objective names are added) and, per model, the layer names to capture."""
    by_module: Dict[nn.Module, LoadedModel] = {}
    for m in models:
        by_module.setdefault(m.module, m)
    layers: Dict[nn.Module, List[str]] = {m.module: [] for m in by_module.values()}
    default = models[0].module
    for model, layer in objective.needs:
        key = _key(model, default)
        if key not in by_module:
            by_module[key] = as_loaded(key if model is None else model)
            layers[key] = []
        if layer is OUTPUT:
            continue
        unit = as_unit(key, layer)
        if unit.channel is not None:
            raise NetloupeError(f"objectives take a layer name, not the unit {unit}; e.g. channel({unit.layer!r}, {unit.channel})")
        if unit.layer not in layers[key]:
            layers[key].append(unit.layer)
    needed = {_key(m, default) for m, _ in objective.needs}
    outputs = {_key(m, default) for m, layer in objective.needs if layer is OUTPUT}
    return [by_module[k] for k in by_module if k in needed], layers, default, outputs


def model_input(x: torch.Tensor, loaded: LoadedModel, resize: bool = True) -> torch.Tensor:
    """The transformed image as this model takes it: on its device, normalized its way, and
    upsampled to its input size when smaller (unless ``resize`` is False); a model that takes one
    size only (a ViT's patch embedding) gets exactly that size."""
    x = loaded.preprocess.normalize(x.to(loaded.device))
    fixed = fixed_input_size(loaded.module)
    h, w = loaded.input_size
    if fixed and tuple(x.shape[2:]) != fixed:
        x = F.interpolate(x, size=fixed, mode="bilinear", align_corners=False, antialias=True)
    elif resize and (x.shape[2] < h or x.shape[3] < w):
        x = F.interpolate(x, size=(max(h, x.shape[2]), max(w, x.shape[3])), mode="bilinear", align_corners=False)
    return x


def _run_models(models: List[LoadedModel], probes: Dict[nn.Module, Probe], x: torch.Tensor,
                read_outputs: Set[nn.Module], precision: str, resize: bool
                ) -> Tuple[Dict[nn.Module, Any], Dict[nn.Module, Dict[str, torch.Tensor]]]:
    """Every model's output and captured activations for the transformed images ``x``; a model whose
    output the objective does not read stops after the last layer it reads, from its second pass on."""
    outputs: Dict[nn.Module, Any] = {}
    activations: Dict[nn.Module, Dict[str, torch.Tensor]] = {}
    for m in models:
        def run(xs: Tuple[torch.Tensor, ...], module: nn.Module = m.module) -> Any:
            return forward(module, xs)

        try:
            with autocast(precision, m.device):  # min_rows: one image renders faster in the usual layout
                outputs[m.module] = channels_last(m.module, run, (model_input(x, m, resize),), min_rows=2)
        except Stopped:  # the layers after the objective's were skipped
            outputs[m.module] = None
        activations[m.module] = probes[m.module].activations
        if m.module not in read_outputs:
            probes[m.module].stop_after_last()
    return outputs, activations


def _make_optimizer(optimizer: Any, params: List[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    """None: Adam; a torch.optim class; or a function params -> optimizer (see render)."""
    if optimizer is None:
        return torch.optim.Adam(params, lr=lr)
    if isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
        return optimizer(params, lr=lr)  # type: ignore[call-arg]  # every torch optimizer takes lr
    if callable(optimizer):
        return optimizer(params)
    raise NetloupeError("optimizer must be None (Adam), a torch.optim class, or a function params -> optimizer")


def render(model_or_models: Any, objective: Any, param: Optional[Param] = None, *, transforms: Any = "standard",
           steps: int = 512, lr: float = 0.05, optimizer: Any = None, thresholds: Optional[Sequence[int]] = None,
           seed: Optional[int] = None, progress: bool = True, callback: Optional[Callable[..., Any]] = None,
           captions: Optional[Sequence[str]] = None, after_step: Optional[Callable[..., Any]] = None,
           resize: bool = True, precision: str = "auto") -> Rendering:
    """Optimize ``param`` (default: one 128 px FFT, decorrelated image) to maximize ``objective``.

    model_or_models: a model or a list of them; objectives with ``model=`` name which one they
    read (models they name that are not in the list are added). thresholds: steps whose images
    are kept in ``snapshots`` (default: the last). callback(step, images, values) runs after
    every step. Models stay in eval mode; only the image gets gradients. A model whose output the
    objective does not read runs, after the first pass, only up to the last layer it reads.
    optimizer: None (Adam), a torch.optim class, or a function params -> optimizer; its ``step``
    gets a closure that evaluates the objective, so L-BFGS works too (one evaluation per step
    with ``max_iter=1``). after_step(step, param) runs after each optimizer step, without
    gradient tracking but with the step's gradient still in ``param.raw.grad``, and may change
    the param in place: regularizers that act on the image between steps (Yosinski et al.'s).
    resize=False feeds images smaller than the model's input size as they are (DeepDream's
    small octaves), instead of upsampling them. precision: the forward passes' (runtime.autocast;
    "auto" is bfloat16 on a GPU that has it, float32 elsewhere); the image and its optimizer stay float32.
    """
    objective = as_objective(objective)
    check_precision(precision)
    if not isinstance(steps, int) or steps < 1:
        raise NetloupeError(f"steps must be a positive integer; got {steps!r}")
    models, layers, default, read_outputs = _plan(_loaded_models(model_or_models), objective)
    device = models[0].device if models else _loaded_models(model_or_models)[0].device
    param = image(128, seed=seed) if param is None else param
    if not isinstance(param, Param):
        raise NetloupeError(f"param must come from netloupe.optvis.param (image, pixel, from_image); got {type(param).__name__}")
    param = param.to(device)
    transform = resolve(transforms)
    g = generator(seed, "cpu")
    opt = _make_optimizer(optimizer, list(param.parameters()), lr)
    keep = set(thresholds) if thresholds is not None else {steps}
    history: List[torch.Tensor] = []
    snapshots: Dict[int, torch.Tensor] = {}
    with contextlib.ExitStack() as stack:
        probes = {m.module: stack.enter_context(probe(m.module, layers[m.module])) for m in models}
        evaluated = []  # the objective at each evaluation of the current step

        def evaluate() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            images = param()
            outputs, activations = _run_models(models, probes, transform(images, g), read_outputs, precision, resize)
            values = objective(Context(images, activations, outputs, default, probes))
            if values.shape != (images.shape[0],):
                raise NetloupeError(f"objective {objective} gave shape {tuple(values.shape)}; it must give one "
                                    f"value per batch element ({images.shape[0]})")
            loss = -values.sum()
            loss.backward()
            evaluated.append(values.detach())
            return loss

        for step in progress_bar(range(1, steps + 1), total=steps, desc="render", enabled=progress):
            evaluated.clear()
            opt.step(evaluate)  # type: ignore[arg-type]  # a closure may return the loss tensor
            values = evaluated[0]  # at the step's starting point (an L-BFGS step may evaluate more)
            history.append(values)
            if after_step is not None:
                with torch.no_grad():
                    after_step(step, param)
            if step in keep or callback is not None:
                with torch.no_grad():
                    now = param().detach()
                if step in keep:
                    snapshots[step] = now
                if callback is not None:
                    callback(step, now, values)
    with torch.no_grad():
        final = param().detach()
    return Rendering(final, torch.stack(history).cpu(), snapshots, str(objective),
                     list(captions) if captions is not None else None)
