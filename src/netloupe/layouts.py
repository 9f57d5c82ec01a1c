"""Where a layer's output keeps its channels and its spatial grid: the ONLY place that knows.

A convolutional layer gives [N, C, H, W] ("nchw"); Swin stages, timm's channels-last blocks and
linear layers or LayerNorms on an image grid give [N, H, W, C] ("nhwc"); vision transformers and
MLP-Mixers give tokens [N, k + h*w, C] with k prefix tokens (class, distillation, register
tokens) before the h x w grid ("tokens"); a classifier gives [N, C] ("vector"). Every method asks
this module instead of assuming NCHW.

The layout is inferred from the module (its type, timm's ``output_fmt``), the model (timm's
``num_prefix_tokens`` and ``patch_embed``, torchvision's ``class_token`` and ``patch_size``)
and the input size. Where that is not enough, give it per layer, in a small grammar:

    "nchw" | "nhwc" | "vector" | "tokens" | "tokens(K)" | "tokens(K, HxW)"

e.g. ``load_model(model, layouts={"blocks.5": "tokens(1)"})`` (or ``layouts.override``): K prefix
tokens, and the grid
(default: the grid that fits the token count and the input's aspect ratio).
"""

from __future__ import annotations

import math
import re
import weakref
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from .errors import NetloupeError

KINDS = ("nchw", "nhwc", "tokens", "vector")
GRAMMAR = '"nchw", "nhwc", "vector", "tokens", "tokens(K)" or "tokens(K, HxW)"'
_SPEC = re.compile(r"^\s*(nchw|nhwc|vector|tokens)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*x\s*(\d+)\s*)?\))?\s*$")
# module types whose 4-D output is channels first, and those whose last dimension is the channels
_CHANNELS_FIRST = (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm, nn.modules.pooling._MaxPoolNd,
                   nn.modules.pooling._AvgPoolNd, nn.modules.pooling._AdaptiveAvgPoolNd,
                   nn.modules.pooling._AdaptiveMaxPoolNd, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)
_CHANNELS_LAST = (nn.Linear, nn.LayerNorm)


@dataclass(frozen=True)
class Layout:
    """kind: one of KINDS; prefix: tokens before the grid; grid: (h, w) of the grid tokens (None
    for tokens without a grid, e.g. a pooled class token)."""

    kind: str
    prefix: int = 0
    grid: Optional[Tuple[int, int]] = None

    def __str__(self) -> str:
        if self.kind != "tokens":
            return self.kind
        return f"tokens({self.prefix}" + (f", {self.grid[0]}x{self.grid[1]})" if self.grid else ")")

    # -- shapes ------------------------------------------------------------------------------
    def channels(self, shape: Sequence[int]) -> int:
        """How many channels an output of ``shape`` [N, ...] has."""
        if self.kind == "nchw":
            return shape[1]
        return shape[-1]

    def spatial(self, shape: Sequence[int]) -> Optional[Tuple[int, int]]:
        """(h, w) of the grid of an output of ``shape``, or None without one."""
        if self.kind == "nchw" and len(shape) == 4:
            return (shape[2], shape[3])
        if self.kind == "nhwc" and len(shape) == 4:
            return (shape[1], shape[2])
        return self.grid if self.kind == "tokens" else None

    def check(self, shape: Sequence[int], layer: str = "") -> None:
        """Raise if an output of ``shape`` cannot have this layout, naming the override to use."""
        rank = {"nhwc": 4, "tokens": 3, "vector": 2}.get(self.kind)
        fits = len(shape) >= 3 if rank is None else len(shape) == rank
        if fits and self.kind == "tokens":
            fits = self.prefix <= shape[1] and (self.grid is None or self.prefix + self.grid[0] * self.grid[1] == shape[1])
        if not fits:
            raise NetloupeError(f"layer {layer!r} has output shape {tuple(shape)}, which the layout {self} does not fit; "
                                f"give the layout of that layer as one of {GRAMMAR}, e.g. "
                                f"load_model(model, layouts={{{layer!r}: 'tokens(1)'}})")

    # -- views ---------------------------------------------------------------------------------
    def grid_view(self, a: torch.Tensor) -> Optional[torch.Tensor]:
        """The output as [N, C, h, w] over its grid (prefix tokens left out), or None without a grid."""
        if self.kind == "nchw":
            return a if a.dim() == 4 else None
        if self.kind == "nhwc":
            return a.permute(0, 3, 1, 2) if a.dim() == 4 else None
        if self.kind == "tokens" and self.grid is not None:
            h, w = self.grid
            return a[:, self.prefix:].reshape(a.shape[0], h, w, a.shape[2]).permute(0, 3, 1, 2)
        return None

    def positions(self, a: torch.Tensor) -> torch.Tensor:
        """[N, C, P]: every channel over its P grid positions (P = 1 for a vector), row-major."""
        g = self.grid_view(a)
        if g is not None:
            return g.flatten(2)
        if self.kind == "tokens":  # tokens without a grid: every non-prefix token is a position
            return a[:, self.prefix:].transpose(1, 2)
        return a.reshape(a.shape[0], a.shape[1], -1)

    def channel(self, a: torch.Tensor, c: int) -> torch.Tensor:
        """Channel ``c`` over the grid ([N, h, w]; [N, tokens] without a grid; [N] for a vector)."""
        if self.kind == "nchw":
            return a[:, c]
        if self.kind == "nhwc":
            return a[..., c]
        if self.kind == "tokens":
            t = a[:, self.prefix:, c]
            return t.reshape(a.shape[0], *self.grid) if self.grid is not None else t
        return a[:, c]

    def token(self, a: torch.Tensor, t: int, c: int) -> torch.Tensor:
        """Channel ``c`` of token ``t`` (counting the prefix tokens: the class token is 0), [N]."""
        if self.kind != "tokens":
            raise NetloupeError(f"a token can be addressed only on a token layer; this layer is {self}")
        return a[:, t, c]


NCHW, NHWC, VECTOR = Layout("nchw"), Layout("nhwc"), Layout("vector")


def parse(spec: Union[str, Layout], tokens: Optional[int] = None, aspect: float = 1.0) -> Layout:
    """A Layout from its text (see the module docstring); ``tokens``, the layer's token count, and
    ``aspect`` (the input's width / height) fill in a grid left out."""
    if isinstance(spec, Layout):
        return spec
    m = _SPEC.match(spec) if isinstance(spec, str) else None
    if m is None:
        raise NetloupeError(f"unknown layout {spec!r}; write one of {GRAMMAR}")
    kind, k, h, w = m.group(1), m.group(2), m.group(3), m.group(4)
    if kind != "tokens":
        if k is not None:
            raise NetloupeError(f"layout {spec!r}: only tokens take a prefix and grid; write one of {GRAMMAR}")
        return Layout(kind)
    if h is not None:
        return Layout("tokens", int(k), (int(h), int(w)))
    if k is None:
        return Layout("tokens", *_prefix_and_grid(tokens, aspect)) if tokens else Layout("tokens")
    k = int(k)
    return Layout("tokens", k, _grid(tokens - k, aspect) if tokens else None)


def _grid(count: int, aspect: float) -> Optional[Tuple[int, int]]:
    """The h x w grid of ``count`` tokens whose w / h is nearest ``aspect`` (exact for a square)."""
    if count < 1:
        return None
    best = None
    for h in range(1, math.isqrt(count) * 2 + 2):
        if count % h:
            continue
        w = count // h
        err = abs(math.log(w / h) - math.log(aspect))
        if best is None or err < best[0] - 1e-9:
            best = (err, (h, w))
    return best[1] if best and best[0] < 0.35 else None  # within a factor of ~1.4 of the input's shape


def _prefix_and_grid(tokens: int, aspect: float) -> Tuple[int, Optional[Tuple[int, int]]]:
    """The fewest prefix tokens (0 to 16) that leave a grid fitting the input's aspect ratio."""
    for k in range(0, min(16, tokens - 1) + 1):
        g = _grid(tokens - k, aspect)
        if g is not None and g[0] * g[1] > 1:
            return k, g
    return 0, None


def _model_tokens(model: nn.Module, input_hw: Optional[Tuple[int, int]]
                  ) -> Tuple[Optional[int], Optional[Tuple[int, int]]]:
    """(prefix tokens, grid) that the model itself declares for its token layers, where it does:
    timm's VisionTransformer family (num_prefix_tokens, patch_embed) and MLP-Mixer (stem),
    torchvision's VisionTransformer (class_token, patch_size)."""
    prefix = getattr(model, "num_prefix_tokens", None)
    if prefix is None and isinstance(getattr(model, "class_token", None), torch.Tensor):
        prefix = 1
    embed = getattr(model, "patch_embed", None) or getattr(model, "stem", None)
    patch = getattr(embed, "patch_size", None) or getattr(model, "patch_size", None)
    if prefix is None and embed is not None and patch is not None:
        prefix = 0  # a patch stem without prefix tokens (MLP-Mixer)
    grid = None
    if patch is not None and input_hw is not None:
        ph, pw = (patch, patch) if isinstance(patch, int) else tuple(patch)[:2]
        grid = (input_hw[0] // ph, input_hw[1] // pw)
    return prefix, grid


def _declared_format(module: Optional[nn.Module], model: nn.Module) -> Optional[str]:
    """A layer's own or its model's timm ``output_fmt`` ("NCHW" / "NHWC"), if any."""
    for m in (module, model):
        fmt = getattr(m, "output_fmt", None)
        if fmt is not None:
            return str(getattr(fmt, "value", fmt)).upper()
    return None


#: per-model layout overrides, set by load_model(model, layouts=...); kept beside the model, not in it
_OVERRIDES: "weakref.WeakKeyDictionary[nn.Module, Dict[str, str]]" = weakref.WeakKeyDictionary()


def override(model: nn.Module, layouts: Dict[str, str]) -> None:
    """Remember layouts (name -> grammar text) for layers of ``model``, each checked to parse."""
    for spec in layouts.values():
        parse(spec)
    _OVERRIDES.setdefault(model, {}).update(layouts)


def overrides(model: nn.Module) -> Dict[str, str]:
    """The layouts given for layers of ``model`` (a copy)."""
    return dict(_OVERRIDES.get(model, {}))


def infer(model: nn.Module, name: str, shape: Sequence[int], input_hw: Optional[Tuple[int, int]] = None) -> Layout:
    """The layout of layer ``name``'s output of ``shape`` (for an input of ``input_hw``)."""
    aspect = input_hw[1] / input_hw[0] if input_hw else 1.0
    given = _OVERRIDES.get(model, {})
    if name in given:
        layout = parse(given[name], shape[1] if len(shape) == 3 else None, aspect)
        layout.check(shape, name)
        return layout
    rank = len(shape)
    module = dict(model.named_modules()).get(name)
    channels_first = isinstance(module, _CHANNELS_FIRST) or type(module).__name__[-2:] in ("1d", "2d", "3d")
    if rank == 2:
        return VECTOR
    if channels_first and rank != 4:  # [N, C, L] of a Conv1d, [N, C, D, H, W] of a Conv3d
        return NCHW
    if rank == 3:
        prefix, grid = _model_tokens(model, input_hw)
        if grid is not None and shape[1] == grid[0] * grid[1]:  # the patch embedding, before prefix tokens join
            return Layout("tokens", 0, grid)
        if prefix is not None and grid is not None and prefix + grid[0] * grid[1] == shape[1]:
            return Layout("tokens", prefix, grid)
        if prefix is not None and shape[1] > prefix:
            g = _grid(shape[1] - prefix, aspect)
            return Layout("tokens", prefix, g if g is not None and g[0] * g[1] > 1 else None)
        return Layout("tokens", *_prefix_and_grid(shape[1], aspect))
    if rank != 4:
        return VECTOR
    if channels_first:
        return NCHW
    if isinstance(module, _CHANNELS_LAST):
        return NHWC
    if _declared_format(module, model) == "NHWC":
        return NHWC
    a, b, c = shape[1:]
    first, last = abs(math.log(c / b) - math.log(aspect)), abs(math.log(b / a) - math.log(aspect))
    return NHWC if last < 0.05 and first > 0.05 else NCHW  # the grid is the pair shaped like the input


def guess(shape: Sequence[int]) -> Layout:
    """The layout of an output from its shape alone, when nothing else is known: [N, C, H, W]
    channels first, tokens [N, T, C] (prefix and grid from the token count), [N, C] a vector."""
    if len(shape) == 4:
        return NCHW
    if len(shape) == 3:
        return Layout("tokens", *_prefix_and_grid(shape[1], 1.0))
    return VECTOR
