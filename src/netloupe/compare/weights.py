"""Weight drift: how far each channel's producing filter moved between two models."""

from __future__ import annotations

from typing import Optional, cast

import torch
import torch.nn as nn


def producer(module: nn.Module, layer: str, channels: int) -> Optional[str]:
    """The module whose weight makes ``layer``'s channels: the layer itself if it has a weight with
    one row per channel, else the last such module inside it (a block's last conv or norm)."""
    named = dict(module.named_modules())
    inside = [name for name in named if name == layer or name.startswith(layer + ".")] if layer else list(named)
    for name in reversed(inside):
        weight = getattr(named[name], "weight", None)
        if isinstance(weight, torch.Tensor) and weight.dim() >= 1 and weight.shape[0] == channels:
            return name
    return None


def drift(a: nn.Module, b: nn.Module, layer: str, channels: int) -> torch.Tensor:
    """[C] per channel ||W_b[c] - W_a[c]|| / ||W_a[c]|| of the producing filter (bias included);
    NaN where no module of the layer has one weight row per channel."""
    name = producer(a, layer, channels)
    if name is None:
        return torch.full((channels,), float("nan"), dtype=torch.float64)
    ma, mb = dict(a.named_modules())[name], dict(b.named_modules())[name]

    def rows(m: nn.Module) -> torch.Tensor:
        parts = [cast(torch.Tensor, m.weight).detach().double().reshape(channels, -1)]  # a tensor: see producer
        bias = getattr(m, "bias", None)
        if isinstance(bias, torch.Tensor):
            parts.append(bias.detach().double().reshape(channels, 1))
        return torch.cat(parts, 1).cpu()
    wa, wb = rows(ma), rows(mb)
    return (wb - wa).norm(dim=1) / wa.norm(dim=1).clamp_min(1e-12)
