"""Layer-wise relevance propagation with composites (netloupe.rules.lrp holds the rules)."""

from __future__ import annotations

from typing import Any

import torch

from ..rules.lrp import LRP, Composite, as_composite
from .engine import (
    Attribution,
    MethodInputs,
    ModelLike,
    Prepared,
    TargetLike,
    completeness_gap,
    input_gradients,
    prepare,
)
from .registry import register


def input_bounds(c: Prepared) -> tuple:
    """The lowest and highest value each input pixel can take: [0, 1] images through the model's
    normalization, per channel."""
    x = c.xs[0]
    p = c.loaded.preprocess
    if x.dim() == 4 and len(p.mean) == x.shape[1]:
        mean = torch.tensor(p.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(p.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return ((0 - mean) / std).expand_as(x[:1]), ((1 - mean) / std).expand_as(x[:1])
    return x.min(), x.max()


@register(view="raw", rank=50)
def lrp(model: ModelLike, inputs: MethodInputs, target: TargetLike = "top", *,
        composite: Any = "epsilon_plus_flat", attention: str = "attnlrp", epsilon: float = 1e-6, low: Any = None,
        high: Any = None, forward_args: object = None) -> Attribution:
    """Layer-wise relevance propagation (Bach et al. 2015): the target score, handed back layer
    by layer by each layer's rule, so the relevances sum to about the score (``result.delta`` is
    the sum minus the score: what biases and ε absorbed; on networks with BatchNorm merged into
    their layers, most of it).

    composite: zennit's names ("epsilon_plus_flat", the default and the literature's usual choice
    for images; "epsilon_gamma_box", "epsilon_alpha2_beta1", "epsilon_plus", "epsilon") or a
    netloupe.rules.lrp.Composite of your own. epsilon: ε of the linear layers' rule. low/high: the
    input's bounds for the z-box rule (default: black and white through the model's
    normalization). attention: "attnlrp" (default) or "conservative", how relevance crosses the
    softmax attention of a transformer (netloupe.rules.lrp.LRP). BatchNorm is merged into the
    layer before it, residual sums split relevance by contribution, activations pass it on,
    LayerNorm is read as linear (netloupe.rules.lrp says how each part is read)."""
    c = prepare(model, inputs, target, forward_args)
    if isinstance(composite, Composite):
        chosen = composite
    else:
        lo, hi = input_bounds(c)
        chosen = as_composite(composite, epsilon=epsilon, low=lo if low is None else low,
                              high=hi if high is None else high)
    grads, scores = input_gradients(c.loaded.module, c.xs, c.target, rule=LRP(chosen, attention), extra=c.extra)
    # the relevance starts at the target's score; the rules are linear in it
    values = tuple(g * scores.view(-1, *([1] * (g.dim() - 1))) for g in grads)
    name = composite if isinstance(composite, str) else "custom"
    return c.result(values, "lrp", delta=completeness_gap(values, scores),
                    extra={"composite": name, "attention": attention})
