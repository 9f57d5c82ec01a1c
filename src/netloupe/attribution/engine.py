"""The attribution engine: what every method builds on, in one place. A call resolved
(``prepare``: model, inputs, forward arguments, target), batched input gradients and target
scores, baselines, and resizing a map to the input. Methods import this module and the registry
only (every name a method needs is here, re-exported where it is defined elsewhere in the
package), so a new method is one file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import InputError, NetloupeError
from ..images import blur
from ..models import LoadedModel, ModelLike, as_loaded
from ..probe import probe
from ..rules import RuleLike
from ..runtime import batch_size as pick_batch_size
from ..runtime import channels_last, chunks, generator
from .inputs import ForwardArgs, MethodInputs, Tensors, as_tensors, model_inputs, per_input, unpack
from .result import Attribution
from .targets import ScoreFn, Target, TargetLike, resolve

__all__ = ["as_tensors", "Attribution", "InputError", "chunks", "completeness_gap", "ForwardArgs", "generator", "input_gradients",
           "interpolation_mode", "INTERPOLATIONS", "make_baseline", "make_baselines", "MethodInputs", "ModelLike",
           "per_input", "pick_batch_size", "prepare", "Prepared", "resolve", "ScoreFn", "Target", "target_scores",
           "TargetLike", "Tensors", "unpack", "upsample"]

INTERPOLATIONS = ("bilinear", "nearest")


@dataclass
class Prepared:
    """A method's call, resolved: the model, its input batches (on its device), whether the
    user gave several inputs, the extra forward arguments and the target."""

    loaded: LoadedModel
    xs: Tensors
    several: bool
    extra: ForwardArgs
    target: Target

    @property
    def n(self) -> int:
        return self.xs[0].shape[0]

    def result(self, values: Tensors, method: str, inputs: Optional[Tensors] = None, **kw: Any) -> Attribution:
        """The Attribution of per-input ``values`` (explaining ``inputs``, by default the inputs)."""
        inputs = tuple(x.detach() for x in self.xs) if inputs is None else inputs
        return Attribution(unpack(values, self.several), method, self.target.describe(), unpack(inputs, self.several),
                           self.loaded.preprocess, **kw)


def prepare(model: ModelLike, inputs: MethodInputs, target: TargetLike, forward_args: object = None) -> Prepared:
    """Resolve a method's model, inputs (one, or a tuple of several), forward arguments and target."""
    loaded = as_loaded(model)
    xs, several = model_inputs(loaded, inputs)
    extra = ForwardArgs.of(forward_args, xs[0].shape[0])
    return Prepared(loaded, xs, several, extra, resolve(loaded.module, xs, target, extra))


def input_gradients(module: nn.Module, xs: Tensors, target: Target, rows: Optional[torch.Tensor] = None,
                    rule: Optional[RuleLike] = None, batch_size: Optional[int] = None,
                    extra: ForwardArgs = ForwardArgs()) -> Tuple[Tensors, torch.Tensor]:
    """d score / d input for every row of the inputs ``xs`` (row i explains sample ``rows[i]``,
    whose forward arguments in ``extra`` it takes), in chunks of ``batch_size`` rows; returns
    (one gradient per input, scores). An input the score does not depend on gets zeros."""
    n = xs[0].shape[0]
    rows = torch.arange(n) if rows is None else rows
    grads = tuple(torch.zeros_like(x) for x in xs)
    scores = torch.empty(n, dtype=xs[0].dtype, device=xs[0].device)
    with probe(module, target.layers, rule=rule) as p:
        for sl in chunks(n, batch_size or n):
            def run(chunk: Tensors, sl: slice = sl) -> Tuple[torch.Tensor, Tuple[Optional[torch.Tensor], ...]]:
                xi = tuple(x.detach().requires_grad_(True) for x in chunk)
                s = target.score(extra.take(rows[sl]).call(module, xi), p, rows[sl])
                gs = torch.autograd.grad(s.sum(), xi, allow_unused=True) if s.requires_grad else (None,) * len(xi)
                return s, gs

            s, gs = channels_last(module, run, tuple(x[sl] for x in xs))
            if all(g is None for g in gs):
                raise NetloupeError("the target score does not depend on the input; check the target")
            for g, out in zip(gs, grads):
                if g is not None:
                    out[sl] = g
            scores[sl] = s.detach()
    return grads, scores


def target_scores(module: nn.Module, xs: Sequence[torch.Tensor], target: Target, rows: Optional[torch.Tensor] = None,
                  batch_size: Optional[int] = None, extra: ForwardArgs = ForwardArgs()) -> torch.Tensor:
    """The target score of every row of the inputs ``xs`` without gradients, in chunks of ``batch_size``."""
    n = xs[0].shape[0]
    rows = torch.arange(n) if rows is None else rows
    scores = torch.empty(n, dtype=xs[0].dtype, device=xs[0].device)
    with probe(module, target.layers) as p, torch.no_grad():
        for sl in chunks(n, batch_size or n):
            def run(chunk: Tensors, sl: slice = sl) -> torch.Tensor:
                return target.score(extra.take(rows[sl]).call(module, list(chunk)), p, rows[sl])

            scores[sl] = channels_last(module, run, tuple(x[sl] for x in xs))
    return scores


def completeness_gap(values: Tensors, explained: torch.Tensor) -> torch.Tensor:
    """Per sample, the attributions' sum over every input minus the score change they explain
    (integrated gradients', DeepLIFT's and LRP's ``delta``)."""
    return torch.stack([v.flatten(1).sum(1) for v in values]).sum(0) - explained


def make_baseline(x: torch.Tensor, baseline: Any, seed: Optional[int] = None) -> torch.Tensor:
    """A baseline batch like ``x``: a number, a tensor, "blur" (a heavily blurred image) or
    "noise" (uniform noise over each input's range)."""
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return torch.full_like(x, float(baseline))
    if isinstance(baseline, torch.Tensor):
        b = baseline.to(x)
        try:
            return b.expand_as(x).clone()
        except RuntimeError:
            raise InputError(f"baseline of shape {tuple(baseline.shape)} does not fit inputs {tuple(x.shape)}") from None
    if baseline == "blur":
        if x.dim() != 4:
            raise InputError(f"baseline 'blur' needs image inputs [N, C, H, W]; got shape {tuple(x.shape)}; "
                             "use a number or a tensor")
        return blur(x, sigma=max(x.shape[-2:]) / 20)
    if baseline == "noise":
        dims = tuple(range(1, x.dim()))
        lo, hi = x.amin(dim=dims, keepdim=True), x.amax(dim=dims, keepdim=True)
        u = torch.rand(x.shape, generator=generator(seed, x.device), device=x.device, dtype=x.dtype)
        return lo + u * (hi - lo)
    raise InputError(f"unknown baseline {baseline!r}; use a number, a tensor, 'blur' or 'noise'")


def make_baselines(xs: Tensors, baseline: Any, seed: Optional[int] = None) -> Tensors:
    """One baseline per input: ``baseline`` for all, or a tuple with one per input."""
    return tuple(make_baseline(x, b, None if seed is None else seed + i)
                 for i, (x, b) in enumerate(zip(xs, per_input(baseline, len(xs), "baseline"))))



def interpolation_mode(interpolate: Union[bool, str]) -> Optional[str]:
    """True means bilinear; False or None keeps the layer's resolution."""
    if interpolate is True:
        return "bilinear"
    if interpolate is False or interpolate is None:
        return None
    if interpolate not in INTERPOLATIONS:
        raise InputError(f"interpolate must be True, False or one of {', '.join(INTERPOLATIONS)}; got {interpolate!r}")
    return interpolate


def upsample(cam: torch.Tensor, size: Sequence[int], mode: str) -> torch.Tensor:
    """A CAM [N, 1, h, w] resized to ``size`` (captum's LayerAttribution.interpolate)."""
    return F.interpolate(cam, size=tuple(size), mode=mode, **({} if mode == "nearest" else {"align_corners": False}))
