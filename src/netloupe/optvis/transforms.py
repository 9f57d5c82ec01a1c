"""Differentiable random transforms: the image must keep exciting the unit while it is padded,
shifted, zoomed and turned, which is what keeps feature visualizations from turning into
high-frequency noise (Lucid's transformation robustness).

A transform is called as ``t(images, generator)`` on a [batch, 3, h, w] batch; every random
draw is made for each batch element on its own, from ``generator`` (a CPU torch.Generator,
or None for the global RNG).
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Optional, Sequence, Union

import torch
import torch.nn.functional as F

from ..errors import NetloupeError

# what resolve() takes: "standard", None, a Transform, a function of the batch (or of batch and
# generator), or a list/tuple of those
TransformSpec = Union[str, Callable[..., torch.Tensor], Sequence[Any], None]


class Transform:
    """A named differentiable function of an image batch (and a random generator)."""

    def __init__(self, fn: Callable[[torch.Tensor, Optional[torch.Generator]], torch.Tensor], name: str) -> None:
        self.fn, self.name = fn, name

    def __call__(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        return self.fn(x, generator)

    def __repr__(self) -> str:
        return self.name


def _choice(values: Sequence[float], n: int, generator: Optional[torch.Generator]) -> torch.Tensor:
    table = torch.as_tensor(list(values), dtype=torch.float32)
    if table.numel() == 0:
        raise NetloupeError("a random transform needs at least one value to choose from")
    return table[torch.randint(len(table), (n,), generator=generator)]


def pad(n: int, mode: str = "constant", value: float = 0.5) -> Transform:
    """Pad every side by ``n`` pixels (``mode`` as in F.pad: constant, reflect, replicate, circular)."""
    if mode not in ("constant", "reflect", "replicate", "circular"):
        raise NetloupeError(f"unknown pad mode {mode!r}; use constant, reflect, replicate or circular")

    def fn(x: torch.Tensor, g: Optional[torch.Generator]) -> torch.Tensor:
        return F.pad(x, (n, n, n, n), mode=mode, value=value) if mode == "constant" else F.pad(x, (n, n, n, n), mode=mode)
    return Transform(fn, f"pad({n}, {mode!r})")


def jitter(d: int) -> Transform:
    """Crop ``d`` pixels off each dimension at a random offset 0..d per element (Lucid's jitter):
    the image shifts by up to ``d`` pixels and shrinks by ``d``."""
    if d < 0:
        raise NetloupeError(f"jitter needs d >= 0; got {d}")

    def fn(x: torch.Tensor, g: Optional[torch.Generator]) -> torch.Tensor:
        if d == 0:
            return x
        h, w = x.shape[2] - d, x.shape[3] - d
        oy = torch.randint(d + 1, (x.shape[0],), generator=g).tolist()
        ox = torch.randint(d + 1, (x.shape[0],), generator=g).tolist()
        return torch.stack([x[i, :, oy[i]:oy[i] + h, ox[i]:ox[i] + w] for i in range(x.shape[0])])
    return Transform(fn, f"jitter({d})")


def _affine(x: torch.Tensor, angle_deg: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Turn each element by its angle and zoom it by its scale about the centre, keeping its size."""
    h, w = x.shape[2:]
    a = angle_deg.to(x.device, x.dtype) * math.pi / 180
    s = scale.to(x.device, x.dtype)
    cos, sin = a.cos() / s, a.sin() / s
    zero = torch.zeros_like(cos)
    # pixel-space rotation written in normalized coordinates of a (possibly non-square) image
    theta = torch.stack([torch.stack([cos, -sin * h / w, zero], 1),
                         torch.stack([sin * w / h, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_scale(scales: Sequence[float]) -> Transform:
    """Zoom each element by a factor drawn from ``scales`` (> 1 enlarges), about its centre.

    Lucid resizes the image instead; here the size is kept because the image is resized to the
    model's input size afterwards, so only a zoom changes what the model sees."""
    scales = list(scales)
    if any(s <= 0 for s in scales):
        raise NetloupeError(f"scales must be positive; got {scales}")

    def fn(x: torch.Tensor, g: Optional[torch.Generator]) -> torch.Tensor:
        s = _choice(scales, x.shape[0], g)
        return _affine(x, torch.zeros_like(s), s)
    return Transform(fn, f"random_scale({len(scales)} values)")


def random_rotate(angles: Sequence[float]) -> Transform:
    """Turn each element by an angle in degrees drawn from ``angles``."""
    angles = list(angles)

    def fn(x: torch.Tensor, g: Optional[torch.Generator]) -> torch.Tensor:
        a = _choice(angles, x.shape[0], g)
        return _affine(x, a, torch.ones_like(a))
    return Transform(fn, f"random_rotate({len(angles)} values)")


def compose(*transforms: TransformSpec) -> Transform:
    """Apply transforms in order: netloupe's, plain functions of the batch (torchvision.transforms.v2
    ones included) and anything else :func:`resolve` takes."""
    ts = [resolve(t) for t in transforms if t is not None]

    def fn(x: torch.Tensor, g: Optional[torch.Generator]) -> torch.Tensor:
        for t in ts:
            x = t(x, g)
        return x
    return Transform(fn, "compose(" + ", ".join(map(repr, ts)) + ")")


def roll(d: int) -> Transform:
    """Shift the batch circularly by up to ``d`` pixels each way (DeepDream's jitter). One shift
    for the whole batch, so that a batch of photos dreams as each photo would alone."""
    if not isinstance(d, int) or d < 0:
        raise NetloupeError(f"roll needs an integer d >= 0; got {d!r}")

    def fn(x: torch.Tensor, g: Optional[torch.Generator]) -> torch.Tensor:
        if d == 0:
            return x
        oy, ox = torch.randint(-d, d + 1, (2,), generator=g).tolist()
        return torch.roll(x, (oy, ox), dims=(2, 3))
    return Transform(fn, f"roll({d})")


def fit(h: int, w: int, value: float = 0.5) -> Transform:
    """Centre-crop, or pad with ``value``, to h x w: after transforms that change the size, the
    batch lines up with a photo of that size again (its activations with the photo's)."""
    def fn(x: torch.Tensor, g: Optional[torch.Generator]) -> torch.Tensor:
        dy, dx = x.shape[2] - h, x.shape[3] - w
        if dy < 0 or dx < 0:
            py, px = max(-dy, 0), max(-dx, 0)
            x = F.pad(x, (px // 2, px - px // 2, py // 2, py - py // 2), value=value)
            dy, dx = x.shape[2] - h, x.shape[3] - w
        return x[:, :, dy // 2:dy // 2 + h, dx // 2:dx // 2 + w]
    return Transform(fn, f"fit({h}, {w})")


def standard() -> Transform:
    """Lucid's standard transforms: pad 12 (0.5 grey), jitter 8, scale 0.9..1.1, rotate -10..10 degrees
    (with five extra zeros), jitter 4."""
    return compose(pad(12, value=0.5), jitter(8), random_scale([1 + (i - 5) / 50 for i in range(11)]),
                   random_rotate(list(range(-10, 11)) + [0] * 5), jitter(4))


def resolve(transforms: TransformSpec) -> Transform:
    """``"standard"``, None (no transforms), one callable or a list of them -> one Transform.

    A callable of one argument gets the batch alone: a torchvision.transforms.v2 transform
    draws one set of random parameters for the whole batch, from torch's global RNG (so
    ``seed=`` does not fix it)."""
    if transforms is None:
        return compose()
    if isinstance(transforms, str):
        if transforms != "standard":
            raise NetloupeError(f"unknown transforms {transforms!r}; use 'standard', None or a list of transforms")
        return standard()
    if isinstance(transforms, (list, tuple)):
        return compose(*transforms)
    if isinstance(transforms, Transform):
        return transforms
    if callable(transforms):  # a plain function of the batch, or of (batch, generator)
        try:
            positional = [p for p in inspect.signature(transforms).parameters.values()
                          if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        except (TypeError, ValueError):  # no signature to read (some builtins): a function of the batch
            positional = []
        takes_generator = len(positional) >= 2
        fn = transforms if takes_generator else (lambda x, g: transforms(x))
        return Transform(fn, getattr(transforms, "__name__", repr(transforms)))
    raise NetloupeError(f"transforms must be 'standard', None, a transform or a list of them; got {type(transforms).__name__}")
