"""Yosinski et al. 2015, "Understanding Neural Networks Through Deep Visualization": gradient
ascent on plain pixels with four regularizers applied to the image between steps (the Deep
Visualization Toolbox's "maximal optimized" images).

Each regularizer is a pure function of an image batch [n, 3, h, w] of pixels about the model's
mean colour (0 is the mean, as in the paper's mean-subtracted images), each image on its own:
L2 decay, Gaussian blur, clipping pixels of small norm and clipping pixels of small
contribution. :func:`regularizer` chains them into render's ``after_step`` hook, :class:`Ascent`
is the paper's plain gradient step, and :data:`PRESETS` holds the four hyperparameter sets of the
paper's Table 1. ``visualize(model, unit, algorithm="yosinski", preset=3)`` puts them together.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, Union, overload

import torch

from ..errors import NetloupeError
from ..images import blur as gaussian_blur
from ..runtime import generator
from .param import Pixels, pixels

if TYPE_CHECKING:
    from torch.optim.optimizer import ParamsT

# the paper's pixels are in [0, 255]; ours in [0, 1]: a learning rate (a step per unit of gradient)
# scales by 1 / 255 ** 2, since the gradient scales by 255 and the step by 1 / 255
_RATE_UNIT = 1 / 255 ** 2


@dataclass(frozen=True)
class Preset:
    """One set of the paper's hyperparameters (Table 1, with the toolbox's steps and rates).

    decay: theta_decay, each step the image is multiplied by 1 - decay. blur_radius: the sigma of
    the Gaussian blur applied on every ``blur_every``-th step (0: never). norm_pct: pixels whose
    norm over colours is below this percentile of the image's are set to 0 (the mean colour).
    contribution_pct: likewise for the pixels' contribution, ``contribution`` "taylor" (the paper's
    |sum_c x_c g_c|, the first-order change of the objective when the pixel goes to 0) or "abs"
    (sum_c |x_c g_c|). lr: the step per unit of gradient (in [0, 1] pixels); with ``progress`` set,
    each image's step is instead chosen so that a linear objective grows by ``progress``, at most
    ``lr`` (the toolbox's "progress" policy). steps: the toolbox's iteration count.
    """

    decay: float = 0.0
    blur_radius: float = 0.0
    blur_every: int = 0
    norm_pct: float = 0.0
    contribution_pct: float = 0.0
    contribution: str = "taylor"
    lr: float = 100 * _RATE_UNIT
    progress: Optional[float] = None
    steps: int = 1000
    start_sd: float = 10 / 255  # the toolbox's start: the mean plus N(0, 10) in [0, 255] pixels

    def __post_init__(self) -> None:
        for name in ("decay", "blur_radius", "norm_pct", "contribution_pct", "lr", "start_sd"):
            if getattr(self, name) < 0:
                raise NetloupeError(f"Yosinski preset: {name} must be >= 0; got {getattr(self, name)}")
        if self.decay >= 1 or self.norm_pct > 100 or self.contribution_pct > 100:
            raise NetloupeError("Yosinski preset: decay must be below 1 and the percentiles at most 100")
        if self.blur_every < 0 or self.steps < 1 or (self.progress is not None and self.progress <= 0):
            raise NetloupeError("Yosinski preset: blur_every must be >= 0, steps >= 1 and progress > 0 (or None)")
        if self.contribution not in ("taylor", "abs"):
            raise NetloupeError(f"Yosinski preset: contribution is 'taylor' or 'abs'; got {self.contribution!r}")


#: The paper's Table 1, in its order (the toolbox's doc/running-optimize-image.md gives the steps and
#: rates); the third is the one behind most of the paper's images.
PRESETS = {
    1: Preset(decay=0.0, blur_radius=0.5, blur_every=4, norm_pct=50, steps=500, progress=2.0),
    2: Preset(decay=0.3, norm_pct=20, steps=750),
    3: Preset(decay=0.0001, blur_radius=1.0, blur_every=4, steps=1000),
    4: Preset(decay=0.0, blur_radius=0.5, blur_every=4, contribution_pct=90, steps=1000, progress=2.0,
              lr=100000000 * _RATE_UNIT),
}


def preset(which: Union[int, str, Preset] = 3, **changes: Any) -> Preset:
    """A preset by its row of Table 1 (1-4) or as given, with ``changes`` to its fields, e.g.
    ``preset(3, decay=0.01)``."""
    if isinstance(which, Preset):
        chosen = which
    else:
        key = int(which) if isinstance(which, str) and which.isdigit() else which
        if key not in PRESETS:
            raise NetloupeError(f"unknown Yosinski preset {which!r}; use 1, 2, 3 or 4 (the rows of the paper's "
                                "Table 1) or a netloupe.optvis.classic.Preset")
        chosen = PRESETS[key]
    try:
        return dataclasses.replace(chosen, **changes)
    except TypeError:
        fields = ", ".join(f.name for f in dataclasses.fields(Preset))
        raise NetloupeError(f"unknown Yosinski setting among {sorted(changes)}; the settings are {fields}") from None


def start(n: int, size: Sequence[int], zero: torch.Tensor | Sequence[float], p: Preset, seed: Optional[int] = None
          ) -> Pixels:
    """``n`` starting images of ``size`` (h, w) as the toolbox's: the mean colour ``zero`` plus
    Gaussian noise of standard deviation ``p.start_sd``."""
    noise = torch.randn((n, 3, *size), generator=generator(seed, "cpu")) * p.start_sd
    zero_t = torch.as_tensor(zero, dtype=torch.float32).view(1, 3, 1, 1)
    return pixels(noise + zero_t, zero_t)


# -- the regularizers, each a pure function of a batch -----------------------------------------

def decay(x: torch.Tensor, theta: float) -> torch.Tensor:
    """L2 decay: every pixel shrinks towards the mean colour by the factor 1 - theta."""
    return x * (1 - theta)


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of each colour plane with standard deviation ``sigma`` pixels (netloupe.images.blur)."""
    return gaussian_blur(x, sigma) if sigma > 0 else x


def _below(score: torch.Tensor, pct: float) -> torch.Tensor:
    """[n, h, w] True where a pixel's score is below the ``pct`` percentile of its image's (linear
    interpolation, as numpy.percentile)."""
    threshold = torch.quantile(score.flatten(1).float(), pct / 100, dim=1).to(score.dtype)
    return score < threshold.view(-1, 1, 1)


def clip_small_norm(x: torch.Tensor, pct: float) -> torch.Tensor:
    """Pixels whose norm over the colours is below the ``pct`` percentile of their image's go to 0."""
    if pct <= 0:
        return x
    return x * ~_below(x.norm(dim=1), pct)[:, None]


def contribution(x: torch.Tensor, grad: torch.Tensor, kind: str = "taylor") -> torch.Tensor:
    """[n, h, w] how much each pixel adds to the objective whose gradient is ``grad``: "taylor"
    |sum_c x_c g_c| (the paper's: setting the pixel to 0 changes the objective by about -x . g),
    "abs" sum_c |x_c g_c|."""
    return (x * grad).sum(1).abs() if kind == "taylor" else (x * grad).abs().sum(1)


def clip_small_contribution(x: torch.Tensor, grad: torch.Tensor, pct: float, kind: str = "taylor") -> torch.Tensor:
    """Pixels whose :func:`contribution` is below the ``pct`` percentile of their image's go to 0."""
    if pct <= 0:
        return x
    return x * ~_below(contribution(x, grad, kind), pct)[:, None]


def regularize(x: torch.Tensor, grad: torch.Tensor, step: int, p: Preset) -> torch.Tensor:
    """The paper's regularizers after gradient step ``step`` (counted from 1), in the toolbox's
    order: decay, blur (on steps 1, 1 + blur_every, ...), clipping by norm, then by contribution."""
    x = decay(x, p.decay)
    if p.blur_every and (step - 1) % p.blur_every == 0:
        x = blur(x, p.blur_radius)
    x = clip_small_norm(x, p.norm_pct)
    return clip_small_contribution(x, grad, p.contribution_pct, p.contribution)


def regularizer(p: Preset) -> Callable[[int, Pixels], None]:
    """render's ``after_step`` for a :class:`~netloupe.optvis.param.Pixels` param: regularize the
    pixels in place, then crop them to [0, 1] as the toolbox does before each forward pass."""
    def after_step(step: int, param: Pixels) -> None:
        grad = param.raw.grad if param.raw.grad is not None else torch.zeros_like(param.raw)
        param.raw.copy_(regularize(param.raw, grad, step, p))
        param.clamp_()
    return after_step


def stretch(images: torch.Tensor, zero: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """The toolbox's way of showing its results (its saveimagescc): each image's difference from
    the mean colour ``zero``, scaled so that its largest magnitude reaches the edge of [0, 1]. The
    optimized pixels themselves can differ from the mean by a few levels only, on nets as
    sensitive to small changes as the default model."""
    zero_t = torch.as_tensor(zero, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    d = images - zero_t
    scale = d.flatten(1).abs().amax(1).clamp(min=1e-12).view(-1, 1, 1, 1)
    return (0.5 + 0.5 * d / scale).clamp(0, 1)


class Ascent(torch.optim.Optimizer):
    """Plain gradient ascent on a batch of images (render minimizes minus the objective), a step
    size for each image: ``lr`` per unit of gradient (the paper's update x += lr * gradient); with
    ``progress``, chosen so that a linear objective grows by ``progress``, at most ``lr`` (the
    toolbox's "progress" policy, see :class:`Preset`); with ``normalize``, ``lr`` over the
    gradient's mean absolute value, so every step moves the image about as much whatever the
    layer (DeepDream's step)."""

    def __init__(self, params: ParamsT, lr: float, progress: Optional[float] = None, normalize: bool = False) -> None:
        super().__init__(params, dict(lr=lr, progress=progress, normalize=normalize))

    @overload
    def step(self, closure: None = None) -> None: ...

    @overload
    def step(self, closure: Callable[[], float]) -> float: ...

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None) -> Optional[float]:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                rate = torch.full((p.shape[0],), group["lr"], dtype=p.dtype, device=p.device)
                if group["progress"] is not None:
                    squared = p.grad.flatten(1).pow(2).sum(1)
                    rate = torch.where(squared > 0, group["progress"] / squared, rate).clamp(max=group["lr"])
                if group["normalize"]:
                    rate = rate / p.grad.abs().flatten(1).mean(1).clamp(min=1e-12)
                p.sub_(rate.view(-1, *[1] * (p.dim() - 1)) * p.grad)
        return loss
