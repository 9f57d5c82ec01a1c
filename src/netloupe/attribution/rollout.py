"""Attention rollout (Abnar & Zuidema 2020) and its gradient-weighted form, for vision
transformers: how much each grid token reaches the class token through the attention of every
layer, residual connections included."""

from __future__ import annotations

from typing import List, Union

import torch
import torch.nn as nn

from ..errors import InputError, NetloupeError
from ..layouts import infer
from ..probe import attention_layers, probe
from .engine import Attribution, MethodInputs, ModelLike, Prepared, TargetLike, interpolation_mode, prepare, upsample
from .registry import register

FUSIONS = ("mean", "max", "min")


def _has_attention(module: nn.Module) -> bool:
    """A ViT-like model: timm attention layers and a class token (Swin's window attention has none)."""
    return bool(attention_layers(module)) and getattr(module, "num_prefix_tokens", 0) >= 1


def _fuse(a: torch.Tensor, how: str) -> torch.Tensor:
    """One [N, T, T] map from the heads of [N, heads, T, T]."""
    if how == "mean":
        return a.mean(1)
    return a.amax(1) if how == "max" else a.amin(1)


def _discard(a: torch.Tensor, ratio: float) -> torch.Tensor:
    """The ``ratio`` weakest entries of each sample's map set to zero, never those of the class token
    (column 0): vit-explain's noise filter."""
    if ratio <= 0:
        return a
    flat = a.flatten(1).clone()
    k = int(flat.shape[1] * ratio)
    weakest = flat.topk(k, dim=1, largest=False).indices
    keep_cls = weakest % a.shape[-1] == 0
    flat.scatter_(1, weakest, torch.where(keep_cls, flat.gather(1, weakest), torch.zeros_like(weakest, dtype=a.dtype)))
    return flat.view_as(a)


def _rollout(c: Prepared, method: str, weighted: bool, head_fusion: str, discard_ratio: float,
             interpolate: Union[bool, str]) -> Attribution:
    if head_fusion not in FUSIONS:
        raise InputError(f"unknown head_fusion {head_fusion!r}; choose one of {', '.join(FUSIONS)}")
    if not 0 <= discard_ratio < 1:
        raise InputError(f"discard_ratio must be in [0, 1); got {discard_ratio!r}")
    module = c.loaded.module
    if not _has_attention(module):
        raise NetloupeError(f"{method} needs a vision transformer with timm attention layers and a class token; "
                            f"{type(module).__name__} is not one (try grad_cam, which reads any layer)")
    x = c.xs[0]
    with probe(module, c.target.layers, attention=True) as p, torch.set_grad_enabled(weighted):
        out = c.extra.call(module, c.xs)
        attentions = p.attentions
        s = c.target.score(out, p, torch.arange(c.n))  # checked even where the map ignores it (a class out of range)
        if weighted:
            found = torch.autograd.grad(s.sum(), attentions, allow_unused=True)
            grads: List[torch.Tensor] = [torch.zeros_like(a) if g is None else g for a, g in zip(attentions, found)]
    tokens = attentions[0].shape[-1]
    layout = infer(module, "", (c.n, tokens, 1), (x.shape[-2], x.shape[-1]))
    if layout.grid is None or layout.prefix < 1:
        raise NetloupeError(f"{method} reads the class token's row, but the model's {tokens} tokens have layout "
                            f"{layout}; give the layout with load_model(model, layouts={{'': 'tokens(K, HxW)'}})")
    eye = torch.eye(tokens, dtype=attentions[0].dtype, device=attentions[0].device)
    rollout = eye.expand(c.n, tokens, tokens)
    for i, a in enumerate(attentions):
        a = a.detach()
        fused = (a * grads[i]).mean(1).clamp(min=0) if weighted else _fuse(a, head_fusion)
        step = (_discard(fused, discard_ratio) + eye) / 2
        rollout = (step / step.sum(-1, keepdim=True)) @ rollout
    h, w = layout.grid
    cam = rollout[:, 0, layout.prefix:].reshape(c.n, 1, h, w)
    mode = interpolation_mode(interpolate)
    if mode is not None:
        cam = upsample(cam, x.shape[-2:], mode)
    return Attribution(cam, method, c.target.describe(), x.detach(), c.loaded.preprocess,
                       extra={"layers": len(attentions), "head_fusion": head_fusion, "discard_ratio": discard_ratio,
                              "interpolate": mode, "input": 0})


@register(caption="attention rollout (ignores the class)", rank=95, needs=_has_attention)
def attention_rollout(model: ModelLike, inputs: MethodInputs, target: TargetLike = "top", *, head_fusion: str = "mean",
                      discard_ratio: float = 0.0, interpolate: Union[bool, str] = True,
                      forward_args: object = None) -> Attribution:
    """Attention rollout (Abnar & Zuidema 2020): each layer's attention, fused over heads
    (``head_fusion``: mean, max or min), with the residual added as the identity (A + I) / 2
    and rows normalized, multiplied through the layers; the class token's row over the grid
    tokens is the map [N, 1, h, w] (resized to the input unless ``interpolate=False``).
    ``discard_ratio`` drops that share of the weakest attention entries per layer (as
    vit-explain does). Attention does not depend on the class, so neither does this map:
    ``target`` is recorded only. For timm's ViT family (class, distillation and register
    tokens); attention maps come from the probe, with timm's fused attention switched to its
    math path while it runs."""
    return _rollout(prepare(model, inputs, target, forward_args), "attention_rollout", False, head_fusion,
                    discard_ratio, interpolate)


@register(caption="gradient-weighted rollout", rank=96, needs=_has_attention)
def gradient_rollout(model: ModelLike, inputs: MethodInputs, target: TargetLike = "top", *, discard_ratio: float = 0.0,
                     interpolate: Union[bool, str] = True, forward_args: object = None) -> Attribution:
    """The class-specific form of attention rollout: each layer's attention weighted by the
    gradient of the target score with respect to it, the positive part averaged over heads
    (vit-explain's gradient rollout, after Chefer et al. 2021), then rolled out as in
    :func:`attention_rollout`."""
    return _rollout(prepare(model, inputs, target, forward_args), "gradient_rollout", True, "mean", discard_ratio,
                    interpolate)
